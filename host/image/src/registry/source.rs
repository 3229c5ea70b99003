//! A registry as an [`ImageSource`]: the manifest (through an index) and
//! the config fetched whole and checked, the layers this store lacks
//! downloaded a few at a time into `ingest/` (see [`super::fetch`]).
//!
//! Model: containerd's `remotes.Fetcher` behind its shared image handlers;
//! Docker's three parallel layer downloads.

use std::path::PathBuf;

use futures_util::{StreamExt, TryStreamExt};
use oci_client::Client;
use oci_spec::image::{Descriptor, ImageConfiguration};

use super::fetch::{self, BlobRequest};
use super::remote::{map_oci_error, Remote};
use super::session::Session;
use super::Error;
use crate::layer::stream_limit;
use crate::media::{self, MT_DOCKER_LIST, MT_DOCKER_MANIFEST, MT_OCI_INDEX, MT_OCI_MANIFEST};
use crate::progress::{LayerBar, PullProgress};
use crate::source::{Documents, ImageSource, LayerFile};
use crate::{digest, ImageStore, Limits};

/// Layers downloaded at the same time (Docker's default is 3).
const PARALLEL_DOWNLOADS: usize = 3;
const ACCEPT: &[&str] = &[
    MT_OCI_MANIFEST,
    MT_DOCKER_MANIFEST,
    MT_OCI_INDEX,
    MT_DOCKER_LIST,
];

/// One image in a registry, pulled into `store`.
pub(super) struct RegistrySource<'a> {
    pub(super) client: Client,
    /// The token and the replies read whole (see [`super::session`]).
    pub(super) session: Session,
    pub(super) remote: Remote,
    pub(super) store: &'a ImageStore,
    pub(super) progress: &'a mut PullProgress,
    /// One progress line per layer, kept until the pull ends.
    pub(super) bars: Vec<LayerBar>,
    /// The downloads this pull finished (in `ingest/`), to be removed if
    /// the pull fails for good.
    pub(super) fresh: Vec<PathBuf>,
}

impl ImageSource for RegistrySource<'_> {
    type Error = Error;

    async fn manifest(&mut self) -> Result<(String, Vec<u8>), Error> {
        let (digest, bytes) = self.fetch_manifest(&self.remote).await?;
        if !media::is_index(&bytes) {
            return Ok((digest, bytes));
        }
        let chosen = media::platform_manifest(&digest, &bytes)?;
        let at = self.remote.at_digest(chosen.digest().as_ref());
        self.fetch_manifest(&at).await
    }

    async fn config(&mut self, desc: &Descriptor) -> Result<Vec<u8>, Error> {
        self.fetch_config(desc.digest().as_ref(), desc.size()).await
    }

    fn check_config(&self, config: &ImageConfiguration) -> Result<(), Error> {
        let (os, arch) = (config.os().to_string(), config.architecture().to_string());
        if os != "linux" || arch != "amd64" {
            return Err(crate::Error::WrongPlatform {
                image: self.remote.display(),
                platform: format!("{os}/{arch}"),
            }
            .into());
        }
        Ok(())
    }

    async fn layers(&mut self, docs: &Documents) -> Result<Vec<LayerFile>, Error> {
        let wanted = self.plan(docs)?;
        let mut downloaded = Vec::new();
        let mut first_err = None;
        for (digest, result) in self.download(&wanted).await {
            match result {
                Ok((path, fresh)) => {
                    if fresh {
                        self.fresh.push(path.clone());
                    }
                    downloaded.push((digest, path));
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        let layers = docs.manifest.layers().iter();
        layers
            .map(|d| self.layer_file(d.digest().as_ref(), &downloaded))
            .collect()
    }
}

/// A layer blob to download, and the index of its progress bar.
struct Wanted {
    digest: String,
    size: u64,
    bar: usize,
}

impl RegistrySource<'_> {
    /// Fetches the manifest (or index) `remote` names (bounded, within
    /// the deadline); returns its digest, computed here, and its bytes. A
    /// pinned digest must match.
    async fn fetch_manifest(&self, remote: &Remote) -> Result<(String, Vec<u8>), Error> {
        let bytes = self.session.manifest(remote, ACCEPT).await?;
        let actual = format!("sha256:{}", digest::sha256_hex(&bytes));
        if let Some(want) = remote.digest.as_ref().filter(|want| **want != actual) {
            return Err(crate::Error::DigestMismatch {
                digest: want.clone(),
                actual: actual.trim_start_matches("sha256:").to_string(),
            }
            .into());
        }
        Ok((actual, bytes))
    }

    /// Fetches a config blob of `size` bytes (at most
    /// [`crate::MAX_JSON_SIZE`]) within the deadline, and checks it.
    async fn fetch_config(&self, digest: &str, size: u64) -> Result<Vec<u8>, Error> {
        let hex = digest::parse(digest)?;
        let out = self
            .session
            .within("the image config", async {
                let sized = self
                    .client
                    .pull_blob_stream(&self.remote.oci(), digest)
                    .await
                    .map_err(|e| map_oci_error(e, &self.remote, Some(digest)))?;
                read_config_stream(sized.stream, digest, size).await
            })
            .await?;
        let actual = digest::sha256_hex(&out);
        if actual != hex {
            return Err(crate::Error::DigestMismatch {
                digest: digest.to_string(),
                actual,
            }
            .into());
        }
        Ok(out)
    }

    /// The layers to download (each once); adds a progress bar per
    /// layer of the manifest.
    fn plan(&mut self, docs: &Documents) -> Result<Vec<Wanted>, Error> {
        check_blob_sizes(docs.manifest.layers(), self.store.limits)?;
        let mut wanted: Vec<Wanted> = Vec::new();
        let mut to_download = 0u64;
        for desc in docs.manifest.layers() {
            let digest = desc.digest().to_string();
            let bar = self.progress.layer(&digest, desc.size());
            if self.store.blobs().has(&digest)? {
                bar.finish("Already exists");
            } else if !wanted.iter().any(|w| w.digest == digest) {
                to_download += desc.size();
                let (size, bar) = (desc.size(), self.bars.len());
                wanted.push(Wanted { digest, size, bar });
            }
            self.bars.push(bar);
        }
        self.progress.start_total(to_download);
        Ok(wanted)
    }

    /// Downloads `wanted` into `ingest/`, a few at a time; for each blob,
    /// in the order they finish, its path and whether this call
    /// downloaded it.
    async fn download(&self, wanted: &[Wanted]) -> Vec<(String, Result<(PathBuf, bool), Error>)> {
        let ingest = self.store.root().join("ingest");
        let ingest = &ingest;
        let fetches = wanted.iter().map(|w| async move {
            let fetched = async {
                let stored = self.store.blobs().path(&w.digest)?;
                let req = BlobRequest {
                    client: &self.client,
                    session: &self.session,
                    remote: &self.remote,
                    ingest,
                    stored: &stored,
                    digest: &w.digest,
                    size: w.size,
                    bar: &self.bars[w.bar],
                };
                fetch::fetch(&req).await
            };
            (w.digest.clone(), fetched.await)
        });
        futures_util::stream::iter(fetches)
            .buffer_unordered(PARALLEL_DOWNLOADS)
            .collect()
            .await
    }

    /// Where layer `digest` is: downloaded now, or in the store already.
    fn layer_file(
        &self,
        digest: &str,
        downloaded: &[(String, PathBuf)],
    ) -> Result<LayerFile, Error> {
        let path = match downloaded.iter().find(|(d, _)| d == digest) {
            Some((_, path)) => path.clone(),
            None => self.store.blobs().path(digest)?,
        };
        let digest = digest.to_string();
        Ok(LayerFile { digest, path })
    }

    /// Forgets this pull's downloads (the pull failed for good).
    pub(super) fn forget_fresh(&self) {
        for p in &self.fresh {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Refuses, before anything is downloaded, layer blobs whose descriptors
/// claim more than their uncompressed bound could ever need (a registry
/// could otherwise fill the disk with a blob that matches its digest):
/// per layer and for the image.
fn check_blob_sizes(layers: &[Descriptor], limits: Limits) -> Result<(), crate::Error> {
    let layer_limit = stream_limit(limits.max_layer_size);
    let image_limit = stream_limit(limits.max_image_size);
    let mut total = 0u64;
    for desc in layers {
        total = total.saturating_add(desc.size());
        for (size, what, limit) in [
            (desc.size(), "layer", layer_limit),
            (total, "layers up to and including layer", image_limit),
        ] {
            if size > limit {
                return Err(crate::Error::TooLarge {
                    what,
                    digest: desc.digest().to_string(),
                    limit,
                });
            }
        }
    }
    Ok(())
}

/// Reads a config blob's stream, refusing more than `size` bytes and
/// naming a short one.
async fn read_config_stream<S, B>(mut stream: S, digest: &str, size: u64) -> Result<Vec<u8>, Error>
where
    S: futures_util::Stream<Item = std::io::Result<B>> + Unpin,
    B: AsRef<[u8]>,
{
    let mut out = Vec::new();
    loop {
        match stream.try_next().await {
            Ok(Some(chunk)) => {
                let chunk = chunk.as_ref();
                if (out.len() + chunk.len()) as u64 > size {
                    return Err(Error::Oversized {
                        digest: digest.to_string(),
                        expected: size,
                    });
                }
                out.extend_from_slice(chunk);
            }
            Ok(None) => break,
            Err(e) if fetch::is_digest_error(&e) => break, // checked by the caller
            Err(source) => {
                return Err(Error::Interrupted {
                    digest: digest.to_string(),
                    got: out.len() as u64,
                    expected: size,
                    source,
                })
            }
        }
    }
    if (out.len() as u64) < size {
        return Err(Error::Truncated {
            digest: digest.to_string(),
            got: out.len() as u64,
            expected: size,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(size: u64) -> Descriptor {
        serde_json::from_value(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": format!("sha256:{}", "a".repeat(64)),
            "size": size,
        }))
        .unwrap()
    }

    #[test]
    fn blob_sizes_are_bounded_before_downloading() {
        let limits = Limits {
            max_layer_size: 1000,
            max_image_size: 3000,
            ..Limits::default()
        };
        let per_layer = stream_limit(1000);
        check_blob_sizes(&[layer(per_layer)], limits).unwrap();
        let err = check_blob_sizes(&[layer(per_layer + 1)], limits).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "layer sha256:{} is larger than {per_layer} bytes",
                "a".repeat(64)
            )
        );
        let whole = stream_limit(3000);
        let many = vec![layer(per_layer); (whole / per_layer + 1) as usize];
        let err = check_blob_sizes(&many, limits).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("layers up to and including layer sha256:"),
            "{err}"
        );
    }
}
