//! One import path for every image source: a source hands out an image's
//! manifest, its config and its layer blobs; the steps every image goes
//! through between them (parse the manifest and check its media types,
//! bound and parse the config, match its diff ids to the layers) are
//! written once, here. The store then commits what [`import`] returns
//! (see `ImageStore::load_archive` and `registry::pull`).
//!
//! Model: containerd's `images.Handler` chain, where a fetcher (a
//! registry, an archive) differs only in how it gets bytes and the
//! handlers that check them are shared. The two sources are the archive
//! ([`super::archive`], which never waits) and the registry
//! ([`super::registry`], async on tokio); the trait is async so both fit,
//! and [`import_now`] drives a source that never waits without a runtime.

use std::future::Future;
use std::path::PathBuf;

use futures_util::FutureExt as _;
use oci_spec::image::{Descriptor, ImageConfiguration, ImageManifest};

use super::{media, Error, MAX_JSON_SIZE};

/// Where an image's documents and layer blobs come from.
pub(crate) trait ImageSource {
    /// The source's own error; checks shared by all sources fail with
    /// the store's [`Error`].
    type Error: From<Error>;

    /// The image manifest (chosen through any index): its digest,
    /// verified or computed by the source, and its bytes.
    fn manifest(&mut self) -> impl Future<Output = Result<(String, Vec<u8>), Self::Error>>;

    /// The bytes of the config `desc` names, checked against its digest
    /// and size; `desc.size()` is at most [`MAX_JSON_SIZE`].
    fn config(&mut self, desc: &Descriptor) -> impl Future<Output = Result<Vec<u8>, Self::Error>>;

    /// What this source asks of a config beyond the shared checks.
    fn check_config(&self, _config: &ImageConfiguration) -> Result<(), Self::Error> {
        Ok(())
    }

    /// The layer blobs of checked documents, bottom first, each verified
    /// against its descriptor; a blob the store has already may be named
    /// by its store path.
    fn layers(
        &mut self,
        docs: &Documents,
    ) -> impl Future<Output = Result<Vec<LayerFile>, Self::Error>>;
}

/// An image's manifest and config, fetched and checked.
#[derive(Debug)]
pub(crate) struct Documents {
    pub(crate) manifest_digest: String,
    pub(crate) manifest_bytes: Vec<u8>,
    pub(crate) manifest: ImageManifest,
    pub(crate) config_digest: String,
    pub(crate) config_bytes: Vec<u8>,
    /// The config's `rootfs.diff_ids`, one per layer of the manifest.
    pub(crate) diff_ids: Vec<String>,
}

/// A layer blob a source has verified, where it lies now (a staged or
/// downloaded file, or the store's own copy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LayerFile {
    pub(crate) digest: String,
    pub(crate) path: PathBuf,
}

/// One verified image, ready for the store to commit.
#[derive(Debug)]
pub(crate) struct Imported {
    /// Normalized names (`repo:tag`); empty for an unnamed image.
    pub(crate) names: Vec<String>,
    pub(crate) docs: Documents,
    pub(crate) layers: Vec<LayerFile>,
}

/// Gets and checks the manifest and config of `src`'s image.
pub(crate) async fn documents<S: ImageSource>(src: &mut S) -> Result<Documents, S::Error> {
    let (manifest_digest, manifest_bytes) = src.manifest().await?;
    let manifest = parse_manifest(&manifest_digest, &manifest_bytes)?;
    if manifest.layers().len() > super::MAX_LAYERS {
        return Err(super::Error::TooManyLayers {
            digest: manifest_digest,
            count: manifest.layers().len(),
        }
        .into());
    }
    let config_desc = manifest.config().clone();
    let config_digest = config_desc.digest().to_string();
    check_json_size("image config", &config_desc)?;
    let config_bytes = src.config(&config_desc).await?;
    let config = parse_config(&config_digest, &config_bytes)?;
    src.check_config(&config)?;
    let diff_ids = diff_ids(&manifest_digest, &manifest, &config)?;
    Ok(Documents {
        manifest_digest,
        manifest_bytes,
        manifest,
        config_digest,
        config_bytes,
        diff_ids,
    })
}

/// Gets and checks everything of `src`'s image, named `names`.
pub(crate) async fn import<S: ImageSource>(
    src: &mut S,
    names: Vec<String>,
) -> Result<Imported, S::Error> {
    let docs = documents(src).await?;
    let layers = src.layers(&docs).await?;
    Ok(Imported {
        names,
        docs,
        layers,
    })
}

/// [`import`] for a source whose operations never wait (they do their
/// I/O synchronously): runs it to the end without an executor.
pub(crate) fn import_now<S: ImageSource>(
    src: &mut S,
    names: Vec<String>,
) -> Result<Imported, S::Error> {
    import(src, names)
        .now_or_never()
        .expect("a synchronous image source never waits")
}

/// Parses an image manifest and checks its media types.
pub(crate) fn parse_manifest(digest: &str, bytes: &[u8]) -> Result<ImageManifest, Error> {
    let manifest: ImageManifest =
        serde_json::from_slice(bytes).map_err(|source| Error::InvalidJson {
            what: "image manifest",
            digest: digest.to_string(),
            source,
        })?;
    media::check_manifest(&manifest, digest)?;
    Ok(manifest)
}

/// Parses an image config.
pub(crate) fn parse_config(digest: &str, bytes: &[u8]) -> Result<ImageConfiguration, Error> {
    serde_json::from_slice(bytes).map_err(|source| Error::InvalidJson {
        what: "image config",
        digest: digest.to_string(),
        source,
    })
}

/// Refuses a JSON document whose descriptor says it is over
/// [`MAX_JSON_SIZE`], before anything of it is read.
pub(crate) fn check_json_size(what: &'static str, desc: &Descriptor) -> Result<(), Error> {
    if desc.size() > MAX_JSON_SIZE {
        return Err(Error::TooLarge {
            what,
            digest: desc.digest().to_string(),
            limit: MAX_JSON_SIZE,
        });
    }
    Ok(())
}

/// The config's diff ids, which must be one per layer of the manifest.
pub(crate) fn diff_ids(
    manifest_digest: &str,
    manifest: &ImageManifest,
    config: &ImageConfiguration,
) -> Result<Vec<String>, Error> {
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != manifest.layers().len() {
        return Err(Error::LayerCountMismatch {
            digest: manifest_digest.to_string(),
            layers: manifest.layers().len(),
            diff_ids: diff_ids.len(),
        });
    }
    Ok(diff_ids.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::sha256_hex;
    use serde_json::json;

    /// A source serving fixed documents from memory; it records which
    /// operations were asked for.
    #[derive(Default)]
    struct Fake {
        manifest: Vec<u8>,
        config: Vec<u8>,
        platform_ok: bool,
        asked: Vec<&'static str>,
    }

    impl ImageSource for Fake {
        type Error = Error;

        async fn manifest(&mut self) -> Result<(String, Vec<u8>), Error> {
            self.asked.push("manifest");
            let digest = format!("sha256:{}", sha256_hex(&self.manifest));
            Ok((digest, self.manifest.clone()))
        }

        async fn config(&mut self, _desc: &Descriptor) -> Result<Vec<u8>, Error> {
            self.asked.push("config");
            Ok(self.config.clone())
        }

        fn check_config(&self, _config: &ImageConfiguration) -> Result<(), Error> {
            match self.platform_ok {
                true => Ok(()),
                false => Err(Error::WrongPlatform {
                    image: "fake".into(),
                    platform: "linux/arm64".into(),
                }),
            }
        }

        async fn layers(&mut self, docs: &Documents) -> Result<Vec<LayerFile>, Error> {
            self.asked.push("layers");
            let layers = docs.manifest.layers().iter();
            Ok(layers
                .map(|d| LayerFile {
                    digest: d.digest().to_string(),
                    path: PathBuf::from("/nowhere"),
                })
                .collect())
        }
    }

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn config(diff_ids: usize) -> Vec<u8> {
        let ids: Vec<String> = (0..diff_ids).map(|_| digest('d')).collect();
        serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": ids},
        }))
        .unwrap()
    }

    fn manifest(config: &[u8], config_size: u64, layers: usize) -> Vec<u8> {
        let layer = json!({
            "mediaType": media::MT_OCI_LAYER_GZIP, "digest": digest('a'), "size": 10,
        });
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": media::MT_OCI_MANIFEST,
            "config": {
                "mediaType": media::MT_OCI_CONFIG,
                "digest": format!("sha256:{}", sha256_hex(config)),
                "size": config_size,
            },
            "layers": vec![layer; layers],
        }))
        .unwrap()
    }

    fn fake(manifest: Vec<u8>, config: Vec<u8>) -> Fake {
        Fake {
            manifest,
            config,
            platform_ok: true,
            ..Fake::default()
        }
    }

    #[test]
    fn a_good_image_goes_through_every_step() {
        let c = config(2);
        let mut src = fake(manifest(&c, c.len() as u64, 2), c.clone());
        let img = import_now(&mut src, vec!["a/b:1".into()]).unwrap();
        assert_eq!(src.asked, ["manifest", "config", "layers"]);
        assert_eq!(img.docs.config_bytes, c);
        assert_eq!(img.docs.diff_ids, vec![digest('d'); 2]);
        assert_eq!(
            img.docs.manifest_digest,
            format!("sha256:{}", sha256_hex(&src.manifest))
        );
        assert_eq!(img.layers.len(), 2);
        assert_eq!(img.names, ["a/b:1"]);
    }

    #[test]
    fn a_bad_manifest_stops_before_the_config() {
        let mut src = fake(b"{not json".to_vec(), config(0));
        let err = import_now(&mut src, vec![]).unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidJson {
                    what: "image manifest",
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(src.asked, ["manifest"]);

        let c = config(1);
        let mut m: serde_json::Value = serde_json::from_slice(&manifest(&c, 1, 1)).unwrap();
        m["layers"][0]["mediaType"] = json!("application/vnd.example.layer");
        let mut src = fake(serde_json::to_vec(&m).unwrap(), c);
        let err = import_now(&mut src, vec![]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("unsupported media type application/vnd.example.layer for layer"),
            "{err}"
        );
        assert_eq!(src.asked, ["manifest"]);
    }

    #[test]
    fn diff_ids_must_match_the_layers() {
        let c = config(1);
        let mut src = fake(manifest(&c, c.len() as u64, 2), c);
        let err = import_now(&mut src, vec![]).unwrap_err();
        assert!(
            matches!(
                err,
                Error::LayerCountMismatch {
                    layers: 2,
                    diff_ids: 1,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(src.asked, ["manifest", "config"], "no layer was fetched");
    }

    #[test]
    fn an_oversize_config_is_never_fetched() {
        let c = config(1);
        let mut src = fake(manifest(&c, MAX_JSON_SIZE + 1, 1), c);
        let err = import_now(&mut src, vec![]).unwrap_err();
        assert!(
            matches!(
                err,
                Error::TooLarge {
                    what: "image config",
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(src.asked, ["manifest"]);
    }

    #[test]
    fn bad_configs_and_source_checks_stop_before_the_layers() {
        let c = b"[]".to_vec();
        let mut src = fake(manifest(&c, 2, 0), c);
        let err = import_now(&mut src, vec![]).unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidJson {
                    what: "image config",
                    ..
                }
            ),
            "{err}"
        );

        let c = config(1);
        let mut src = fake(manifest(&c, c.len() as u64, 1), c);
        src.platform_ok = false;
        let err = import_now(&mut src, vec![]).unwrap_err();
        assert!(matches!(err, Error::WrongPlatform { .. }), "{err}");
        assert_eq!(src.asked, ["manifest", "config"]);
    }
}
