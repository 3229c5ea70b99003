//! Writing a new image into the store: a base (a stored image, or nothing
//! for `scratch`), the layer blobs a builder made on top and the config
//! it wants, turned into an OCI manifest and config and committed the way
//! a pull commits (every new layer applied with its diff id checked, the
//! rootfs disk built, blobs and names recorded in one step; a failure
//! leaves nothing). Plus what a builder reads back: the layers and config of
//! a stored image and its files in the store's unpacked tree.
//!
//! Model: the image writer of BuildKit's `exporter/containerimage`
//! (config and manifest from the base's plus new layers and history),
//! reduced to our store's one commit path (`ImageStore::commit_pulled`).

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::media::{MT_OCI_CONFIG, MT_OCI_MANIFEST};
use super::source::{Documents, Imported, LayerFile};
use super::store::ImageStore;
use super::{digest, Error, Image};

/// A layer blob a builder made, in a file of its own outside the store
/// (the writer copies it in; the file stays the builder's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewLayer {
    pub path: PathBuf,
    /// `sha256:<hex>` of the blob as stored.
    pub digest: String,
    /// `sha256:<hex>` of the uncompressed tar.
    pub diff_id: String,
    pub size: u64,
    pub media_type: String,
}

/// A layer of a stored image: its blob in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredLayer {
    pub path: PathBuf,
    pub digest: String,
    pub diff_id: String,
    pub size: u64,
    pub media_type: String,
}

/// The image a builder wants stored.
#[derive(Clone, Debug)]
pub struct NewImage<'a> {
    /// The stored image (its id) whose layers come first; `None` for
    /// `scratch`.
    pub base: Option<&'a str>,
    /// The new layers, bottom first, on top of the base's.
    pub layers: &'a [NewLayer],
    /// The whole image config (OCI, Docker's extensions kept); the
    /// writer sets its `rootfs` from the layers.
    pub config: Value,
    /// Normalized `repo:tag` names; none for an untagged image.
    pub names: &'a [String],
}

impl ImageStore {
    /// Stores `new` and returns it (under its first name, if any).
    pub fn write_image(&self, new: NewImage<'_>) -> Result<Image, Error> {
        let base = match new.base {
            Some(id) => self.layers_of(id)?,
            None => Vec::new(),
        };
        if base.len() + new.layers.len() > super::MAX_LAYERS {
            return Err(Error::TooManyLayers {
                digest: "(new image)".to_string(),
                count: base.len() + new.layers.len(),
            });
        }
        let diff_ids: Vec<&str> = base
            .iter()
            .map(|l| l.diff_id.as_str())
            .chain(new.layers.iter().map(|l| l.diff_id.as_str()))
            .collect();
        let mut config = new.config;
        if !config.is_object() {
            config = json!({});
        }
        config["rootfs"] = json!({ "type": "layers", "diff_ids": diff_ids });
        let config_bytes = serde_json::to_vec(&config).map_err(|source| Error::InvalidJson {
            what: "image config",
            digest: "(new image)".to_string(),
            source,
        })?;
        let config_digest = format!("sha256:{}", digest::sha256_hex(&config_bytes));
        let layer_descs: Vec<Value> = base
            .iter()
            .map(|l| descriptor(&l.media_type, &l.digest, l.size))
            .chain(
                new.layers
                    .iter()
                    .map(|l| descriptor(&l.media_type, &l.digest, l.size)),
            )
            .collect();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MT_OCI_MANIFEST,
            "config": descriptor(MT_OCI_CONFIG, &config_digest, config_bytes.len() as u64),
            "layers": layer_descs,
        });
        let manifest_bytes =
            serde_json::to_vec(&manifest).map_err(|source| Error::InvalidJson {
                what: "image manifest",
                digest: "(new image)".to_string(),
                source,
            })?;
        let manifest_digest = format!("sha256:{}", digest::sha256_hex(&manifest_bytes));
        let parsed = super::source::parse_manifest(&manifest_digest, &manifest_bytes)?;
        super::source::parse_config(&config_digest, &config_bytes)?;

        // New blobs wait in ingest/ (a prune leaves it alone while we hold
        // the guard); the commit moves them in or drops them if the store
        // has them already.
        let _guard = self.ingest_guard()?;
        let mut staged = Vec::new();
        let result = self
            .stage_layers(new.layers, &mut staged)
            .and_then(|new_files| {
                let layers = base
                    .iter()
                    .map(|l| LayerFile {
                        digest: l.digest.clone(),
                        path: l.path.clone(),
                    })
                    .chain(new_files)
                    .collect();
                let imported = Imported {
                    names: new.names.to_vec(),
                    docs: Documents {
                        manifest_digest,
                        manifest_bytes,
                        manifest: parsed,
                        config_digest,
                        config_bytes,
                        diff_ids: diff_ids.iter().map(|d| d.to_string()).collect(),
                    },
                    layers,
                };
                self.commit_pulled(&imported)
            });
        for path in staged {
            let _ = fs::remove_file(path);
        }
        result
    }

    /// Copies each new layer into `ingest/` under its digest.
    fn stage_layers(
        &self,
        layers: &[NewLayer],
        staged: &mut Vec<PathBuf>,
    ) -> Result<Vec<LayerFile>, Error> {
        let ingest = self.root().join("ingest");
        let mut out = Vec::new();
        for l in layers {
            let hex = digest::parse(&l.digest)?;
            let dest = ingest.join(format!("build-{hex}"));
            if !self.blob_path(&l.digest)?.exists() {
                let _ = fs::remove_file(&dest);
                if fs::hard_link(&l.path, &dest).is_err() {
                    fs::copy(&l.path, &dest).map_err(Error::io(&dest))?;
                }
                staged.push(dest.clone());
            }
            out.push(LayerFile {
                digest: l.digest.clone(),
                path: dest,
            });
        }
        Ok(out)
    }

    /// The layers of stored image `id` (`sha256:…`), bottom first.
    pub fn layers_of(&self, id: &str) -> Result<Vec<StoredLayer>, Error> {
        let inspect = self.inspect(id)?;
        inspect
            .layers
            .into_iter()
            .map(|l| {
                Ok(StoredLayer {
                    path: self.blob_path(&l.digest)?,
                    digest: l.digest,
                    diff_id: l.diff_id,
                    size: l.size,
                    media_type: l.media_type,
                })
            })
            .collect()
    }

    /// The config of stored image `id` exactly as stored (Docker's
    /// extensions, history and all).
    pub fn config_of(&self, id: &str) -> Result<Value, Error> {
        Ok(self.inspect(id)?.config)
    }

    /// Where `path` of `image`'s root filesystem is on the host, in the
    /// store's unpacked tree of the image (symlinks on the way followed as
    /// the container would, the last one not); `None` when it does not
    /// exist. The tree is the store's: read it, never change it.
    pub fn path_in(&self, image: &Image, path: &str) -> Result<Option<PathBuf>, Error> {
        let Some(tree) = self.unpacked_tree(image)? else {
            return Ok(None);
        };
        let p = Path::new(path);
        let (parent, name) = match (p.parent(), p.file_name()) {
            (Some(parent), Some(name)) => (parent, name),
            _ => return Ok(Some(tree)),
        };
        let Some(dir) = super::copy_out::resolve(&tree, &parent.to_string_lossy()) else {
            return Ok(None);
        };
        let at = dir.join(name);
        Ok(fs::symlink_metadata(&at).is_ok().then_some(at))
    }

    /// The unpacked tree of `image`'s layers (made now if it is not
    /// there); read-only for the caller.
    fn unpacked_tree(&self, image: &Image) -> Result<Option<PathBuf>, Error> {
        let layers: Vec<_> = self
            .layers_of(&image.id)?
            .into_iter()
            .map(|l| super::layer::LayerSource {
                digest: l.digest,
                path: l.path,
                diff_id: l.diff_id,
                fresh: false,
            })
            .collect();
        let _lock = self.lock()?;
        Ok(self.layer_cache().unpack(&layers)?.0)
    }
}

fn descriptor(media_type: &str, digest: &str, size: u64) -> Value {
    json!({ "mediaType": media_type, "digest": digest, "size": size })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_utils::{store_fixture, LayerBuilder, OciArchive, TestImage};
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn new_layer(dir: &Path, tar: &[u8]) -> NewLayer {
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(tar).unwrap();
        let blob = gz.finish().unwrap();
        let digest = format!("sha256:{}", digest::sha256_hex(&blob));
        let path = dir.join(digest.trim_start_matches("sha256:"));
        fs::write(&path, &blob).unwrap();
        NewLayer {
            path,
            digest,
            diff_id: format!("sha256:{}", digest::sha256_hex(tar)),
            size: blob.len() as u64,
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".to_string(),
        }
    }

    #[test]
    fn an_image_on_a_base_and_on_scratch() {
        let f = store_fixture();
        let base_layers = vec![LayerBuilder::new()
            .dir("etc", 0o755)
            .file("etc/os", b"base", 0o644)
            .build()];
        let base = f.load_first(&OciArchive::new(vec![TestImage::new(base_layers)]), "b.tar");
        let tar = LayerBuilder::new().file("etc/app", b"app", 0o644).build();
        let layer = new_layer(f.dir.path(), &tar);
        let mut config = f.store.config_of(&base.id).unwrap();
        config["config"]["Cmd"] = json!(["/app"]);
        let names = ["hull-test/built:1".to_string()];
        let img = f
            .store
            .write_image(NewImage {
                base: Some(&base.id),
                layers: std::slice::from_ref(&layer),
                config,
                names: &names,
            })
            .unwrap();
        assert_eq!(img.name, "hull-test/built:1");
        assert_eq!(img.config.cmd, ["/app"]);
        let layers = f.store.layers_of(&img.id).unwrap();
        assert_eq!(layers.len(), 2);
        assert_eq!(layers[1].digest, layer.digest);
        // The builder's file is still its own; nothing is left in ingest/.
        assert!(layer.path.exists());
        assert_eq!(
            fs::read_dir(f.store.root().join("ingest")).unwrap().count(),
            0
        );
        let app = f.store.path_in(&img, "/etc/app").unwrap().unwrap();
        assert_eq!(fs::read(app).unwrap(), b"app");
        assert!(f.store.path_in(&img, "/etc/nope").unwrap().is_none());
        assert!(f.store.path_in(&img, "/etc").unwrap().unwrap().is_dir());

        // Written again: the same id.
        let again = f
            .store
            .write_image(NewImage {
                base: Some(&base.id),
                layers: std::slice::from_ref(&layer),
                config: f.store.config_of(&img.id).unwrap(),
                names: &names,
            })
            .unwrap();
        assert_eq!(again.id, img.id);

        let scratch = f
            .store
            .write_image(NewImage {
                base: None,
                layers: std::slice::from_ref(&layer),
                config: json!({"architecture": "amd64", "os": "linux", "config": {}}),
                names: &[],
            })
            .unwrap();
        assert_eq!(f.store.layers_of(&scratch.id).unwrap().len(), 1);
    }

    #[test]
    fn a_layer_whose_diff_id_lies_leaves_nothing() {
        let f = store_fixture();
        let tar = LayerBuilder::new().file("a", b"a", 0o644).build();
        let mut layer = new_layer(f.dir.path(), &tar);
        layer.diff_id = format!("sha256:{}", "0".repeat(64));
        let err = f
            .store
            .write_image(NewImage {
                base: None,
                layers: &[layer],
                config: json!({"architecture": "amd64", "os": "linux"}),
                names: &["hull-test/bad:1".to_string()],
            })
            .unwrap_err();
        assert!(err.to_string().contains("diff id"), "{err}");
        assert!(f.store.list().unwrap().is_empty());
        assert_eq!(
            fs::read_dir(f.store.root().join("ingest")).unwrap().count(),
            0
        );
        assert_eq!(
            fs::read_dir(f.store.root().join("blobs/sha256"))
                .unwrap()
                .count(),
            0
        );
    }
}
