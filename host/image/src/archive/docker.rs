//! `docker save` tarballs: `manifest.json` lists each image's config and
//! layer files by path; we turn each entry into an OCI manifest of our
//! own over the same config and layer files, so the store keeps one kind
//! of manifest.
//!
//! Model: containerd's `images/archive` importer, which does the same for
//! Docker's legacy layout.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use oci_spec::image::Descriptor;
use serde::Deserialize;

use super::{normalize_name, read_small, Error, Staged};
use crate::digest;
use crate::media::{MT_OCI_CONFIG, MT_OCI_LAYER_GZIP, MT_OCI_LAYER_TAR, MT_OCI_MANIFEST};
use crate::source::{self, Documents, ImageSource, Imported, LayerFile};

/// One image of `manifest.json`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct Entry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// The images of a `docker save` tarball's `manifest.json`.
pub(super) fn images(staged: &mut Staged, bytes: &[u8]) -> Result<Vec<Imported>, crate::Error> {
    let mut out = Vec::new();
    for (entry, names) in entries(bytes)? {
        let mut image = DockerImage {
            staged,
            entry: &entry,
            config: Vec::new(),
            layers: Vec::new(),
        };
        out.push(source::import_now(&mut image, names)?);
    }
    Ok(out)
}

/// The entries of `manifest.json`, each with its names normalized.
pub(super) fn entries(bytes: &[u8]) -> Result<Vec<(Entry, Vec<String>)>, crate::Error> {
    let entries: Vec<Entry> = serde_json::from_slice(bytes).map_err(invalid_json)?;
    entries
        .into_iter()
        .map(|entry| {
            let names = entry
                .repo_tags
                .iter()
                .flatten()
                .map(|t| normalize_name(t))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((entry, names))
        })
        .collect()
}

fn invalid_json(source: serde_json::Error) -> crate::Error {
    crate::Error::InvalidJson {
        what: "docker manifest",
        digest: "manifest.json".to_string(),
        source,
    }
}

/// One entry of `manifest.json`; its config and layers are read with the
/// manifest made for it.
struct DockerImage<'a> {
    staged: &'a mut Staged,
    entry: &'a Entry,
    config: Vec<u8>,
    layers: Vec<LayerFile>,
}

impl ImageSource for DockerImage<'_> {
    type Error = crate::Error;

    async fn manifest(&mut self) -> Result<(String, Vec<u8>), crate::Error> {
        let config_file = self
            .staged
            .named(&self.entry.config, Error::MissingConfig)?;
        self.config = read_small(config_file, "image config", &self.entry.config)?;
        let mut descs = Vec::new();
        for name in &self.entry.layers {
            let file = self.staged.named(name, Error::MissingLayer)?;
            let digest = format!("sha256:{}", file.sha256);
            let media_type = if is_gzip(&file.path)? {
                MT_OCI_LAYER_GZIP
            } else {
                MT_OCI_LAYER_TAR
            };
            descs.push(serde_json::json!({
                "mediaType": media_type, "digest": digest, "size": file.size,
            }));
            let path = file.path.clone();
            self.layers.push(LayerFile { digest, path });
        }
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MT_OCI_MANIFEST,
            "config": {
                "mediaType": MT_OCI_CONFIG,
                "digest": format!("sha256:{}", digest::sha256_hex(&self.config)),
                "size": self.config.len(),
            },
            "layers": descs,
        }))
        .map_err(invalid_json)?;
        Ok((
            format!("sha256:{}", digest::sha256_hex(&manifest)),
            manifest,
        ))
    }

    async fn config(&mut self, _desc: &Descriptor) -> Result<Vec<u8>, crate::Error> {
        Ok(self.config.clone()) // the manifest was made for it
    }

    async fn layers(&mut self, docs: &Documents) -> Result<Vec<LayerFile>, crate::Error> {
        self.staged.check_diff_ids(docs, &self.layers)?;
        Ok(std::mem::take(&mut self.layers))
    }
}

fn is_gzip(path: &Path) -> Result<bool, crate::Error> {
    let mut magic = [0u8; 2];
    let mut f = File::open(path).map_err(crate::Error::io(path))?;
    let n = f.read(&mut magic).map_err(crate::Error::io(path))?;
    Ok(n == 2 && magic == [0x1f, 0x8b])
}
