//! Reading image archives: an OCI image layout in a tar (what `skopeo copy
//! … oci-archive:F:NAME` writes) or a `docker save` tarball.
//!
//! The outer tar is copied entry by entry into numbered files of a staging
//! directory, hashed on the way; archive paths are only ever keys of a map,
//! never paths we create, so the outer tar cannot plant anything. Then the
//! documents are read and every blob an image needs is checked against its
//! descriptor (size, sha256) and every layer against its diff id, before
//! the store commits anything (containerd's `images/archive` importer is
//! the model).

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};
use serde::Deserialize;

use super::digest::{self, HashingWriter};
use super::{layer, Error, Reference, MAX_JSON_SIZE};

/// Entries an outer archive may hold.
const MAX_ENTRIES: usize = 100_000;
/// Nesting of image indexes we follow.
const MAX_INDEX_DEPTH: usize = 2;

pub(crate) const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub(crate) const MT_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub(crate) const MT_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const MT_OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const MT_OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// A regular file copied out of the archive.
#[derive(Clone, Debug)]
pub(crate) struct StagedFile {
    pub(crate) path: PathBuf,
    pub(crate) size: u64,
    /// Hex sha256 of the content.
    pub(crate) sha256: String,
}

/// The archive's files, keyed by their cleaned archive path.
pub(crate) struct Staged {
    archive: PathBuf,
    files: HashMap<String, StagedFile>,
    /// Symlinks and hardlinks: archive path -> cleaned archive path.
    links: HashMap<String, String>,
    /// Diff ids already computed, by layer digest (images share layers).
    diff_ids: RefCell<HashMap<String, String>>,
}

/// A layer an image needs, verified.
#[derive(Clone, Debug)]
pub(crate) struct LayerBlob {
    pub(crate) digest: String,
    pub(crate) file: StagedFile,
}

/// One verified image read from an archive.
#[derive(Debug)]
pub(crate) struct ImportedImage {
    /// Normalized names (`repo:tag`); empty for an unnamed image.
    pub(crate) names: Vec<String>,
    pub(crate) manifest_digest: String,
    pub(crate) manifest: Vec<u8>,
    pub(crate) config_digest: String,
    pub(crate) config: Vec<u8>,
    pub(crate) layers: Vec<LayerBlob>,
}

impl Staged {
    /// Copies the regular files of `archive` (plain or gzipped tar) into
    /// `dir`, which must exist and be empty.
    pub(crate) fn new(archive: &Path, dir: &Path) -> Result<Staged, Error> {
        let read_err = |source| Error::ReadArchive {
            archive: archive.to_path_buf(),
            source,
        };
        let corrupt = |reason: String| Error::CorruptArchive {
            archive: archive.to_path_buf(),
            reason,
        };
        let mut input = BufReader::new(File::open(archive).map_err(read_err)?);
        let gzipped = input
            .fill_buf()
            .map_err(read_err)?
            .starts_with(&[0x1f, 0x8b]);
        let stream: Box<dyn Read> = if gzipped {
            Box::new(flate2::bufread::MultiGzDecoder::new(input))
        } else {
            Box::new(input)
        };
        let mut tar = tar::Archive::new(stream);
        let mut staged = Staged {
            archive: archive.to_path_buf(),
            files: HashMap::new(),
            links: HashMap::new(),
            diff_ids: RefCell::new(HashMap::new()),
        };
        let entries = tar.entries().map_err(|e| corrupt(e.to_string()))?;
        for (n, entry) in entries.enumerate() {
            if n >= MAX_ENTRIES {
                return Err(corrupt(format!("more than {MAX_ENTRIES} entries")));
            }
            let mut entry = entry.map_err(|e| corrupt(e.to_string()))?;
            let raw = entry
                .path()
                .map_err(|e| corrupt(e.to_string()))?
                .into_owned();
            let Some(name) = clean(&raw) else {
                return Err(corrupt(format!("entry {raw:?} escapes the archive")));
            };
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let path = dir.join(n.to_string());
                    let file = File::create(&path).map_err(Error::io(&path))?;
                    let mut writer = HashingWriter::new(file);
                    io::copy(&mut entry, &mut writer)
                        .map_err(|e| corrupt(format!("entry {name}: {e}")))?;
                    let (_, sha256, size) = writer.finish();
                    staged.files.insert(name, StagedFile { path, size, sha256 });
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let is_symlink = entry.header().entry_type().is_symlink();
                    let target = entry
                        .link_name()
                        .map_err(|e| corrupt(e.to_string()))?
                        .ok_or_else(|| corrupt(format!("link {name} has no target")))?;
                    let target = if is_symlink {
                        Path::new(&name)
                            .parent()
                            .unwrap_or(Path::new(""))
                            .join(target)
                    } else {
                        target.into_owned()
                    };
                    let target = clean(&target)
                        .ok_or_else(|| corrupt(format!("link {name} escapes the archive")))?;
                    staged.links.insert(name, target);
                }
                _ => {} // directories and the rest carry nothing we read
            }
        }
        Ok(staged)
    }

    fn get(&self, name: &str) -> Option<&StagedFile> {
        let mut name = name;
        for _ in 0..8 {
            if let Some(f) = self.files.get(name) {
                return Some(f);
            }
            name = self.links.get(name)?;
        }
        None
    }

    fn corrupt(&self, reason: impl Into<String>) -> Error {
        Error::CorruptArchive {
            archive: self.archive.clone(),
            reason: reason.into(),
        }
    }

    /// A path named inside manifest.json, cleaned like the tar's paths.
    fn clean_name(&self, name: &str) -> Result<String, Error> {
        clean(Path::new(name))
            .ok_or_else(|| self.corrupt(format!("path {name:?} escapes the archive")))
    }

    /// Reads a small file named by the archive itself (index.json, …).
    fn read_doc(&self, name: &str) -> Result<Option<Vec<u8>>, Error> {
        let Some(f) = self.get(name) else {
            return Ok(None);
        };
        if f.size > MAX_JSON_SIZE {
            return Err(Error::TooLarge {
                what: "document",
                digest: name.to_string(),
                limit: MAX_JSON_SIZE,
            });
        }
        fs::read(&f.path).map(Some).map_err(Error::io(&f.path))
    }

    /// The verified blob a descriptor points at.
    fn blob(&self, digest: &str, size: u64) -> Result<&StagedFile, Error> {
        let hex = digest::parse(digest)?;
        let f = self
            .get(&format!("blobs/sha256/{hex}"))
            .ok_or_else(|| Error::MissingBlob {
                digest: digest.to_string(),
            })?;
        verify(f, digest, hex, size)?;
        Ok(f)
    }

    /// Reads and verifies a JSON blob of at most [`MAX_JSON_SIZE`] bytes.
    fn json_blob(&self, what: &'static str, desc: &Descriptor) -> Result<Vec<u8>, Error> {
        let digest = desc.digest().to_string();
        if desc.size() > MAX_JSON_SIZE {
            return Err(Error::TooLarge {
                what,
                digest,
                limit: MAX_JSON_SIZE,
            });
        }
        let f = self.blob(&digest, desc.size())?;
        fs::read(&f.path).map_err(Error::io(&f.path))
    }

    /// Reads every image the archive names, verifying all it needs.
    pub(crate) fn images(&self) -> Result<Vec<ImportedImage>, Error> {
        let images = if let Some(index) = self.read_doc("index.json")? {
            self.oci_images(&index)?
        } else if let Some(manifest) = self.read_doc("manifest.json")? {
            self.docker_images(&manifest)?
        } else {
            return Err(self.corrupt("neither index.json (OCI) nor manifest.json (docker save)"));
        };
        if images.is_empty() {
            return Err(Error::NoImages {
                archive: self.archive.clone(),
            });
        }
        Ok(images)
    }

    fn oci_images(&self, index_bytes: &[u8]) -> Result<Vec<ImportedImage>, Error> {
        let index: ImageIndex =
            serde_json::from_slice(index_bytes).map_err(|source| Error::InvalidJson {
                what: "image index",
                digest: "index.json".to_string(),
                source,
            })?;
        check_index_media_type(&index, "index.json")?;
        let mut out = Vec::new();
        for desc in index.manifests() {
            if desc.platform().as_ref().is_some_and(|p| !is_linux_amd64(p)) {
                continue;
            }
            let names = names_of(desc)?;
            let (manifest_digest, manifest) = self.resolve_manifest(desc, 0)?;
            out.push(self.verify_image(names, manifest_digest, manifest)?);
        }
        Ok(out)
    }

    /// Follows a descriptor (through indexes, picking linux/amd64) to an
    /// image manifest: returns its digest and bytes.
    fn resolve_manifest(
        &self,
        desc: &Descriptor,
        depth: usize,
    ) -> Result<(String, Vec<u8>), Error> {
        let digest = desc.digest().to_string();
        let media_type = desc.media_type().to_string();
        match media_type.as_str() {
            MT_OCI_MANIFEST | MT_DOCKER_MANIFEST => {
                Ok((digest, self.json_blob("image manifest", desc)?))
            }
            MT_OCI_INDEX | MT_DOCKER_LIST if depth < MAX_INDEX_DEPTH => {
                let bytes = self.json_blob("image index", desc)?;
                let index: ImageIndex =
                    serde_json::from_slice(&bytes).map_err(|source| Error::InvalidJson {
                        what: "image index",
                        digest: digest.clone(),
                        source,
                    })?;
                check_index_media_type(&index, &digest)?;
                let chosen = index
                    .manifests()
                    .iter()
                    .find(|d| d.platform().as_ref().is_some_and(is_linux_amd64))
                    .ok_or(Error::NoMatchingPlatform { digest })?;
                self.resolve_manifest(chosen, depth + 1)
            }
            _ => Err(Error::UnsupportedMediaType {
                what: "manifest",
                media_type,
                digest,
            }),
        }
    }

    /// Checks a manifest's config and layers and returns the image.
    fn verify_image(
        &self,
        names: Vec<String>,
        manifest_digest: String,
        manifest_bytes: Vec<u8>,
    ) -> Result<ImportedImage, Error> {
        let manifest: ImageManifest =
            serde_json::from_slice(&manifest_bytes).map_err(|source| Error::InvalidJson {
                what: "image manifest",
                digest: manifest_digest.clone(),
                source,
            })?;
        check_manifest(&manifest, &manifest_digest)?;
        let config_desc = manifest.config();
        let config_digest = config_desc.digest().to_string();
        let config = self.json_blob("image config", config_desc)?;
        let mut layers = Vec::new();
        for desc in manifest.layers() {
            let digest = desc.digest().to_string();
            let file = self.blob(&digest, desc.size())?.clone();
            layers.push(LayerBlob { digest, file });
        }
        self.check_diff_ids(&manifest_digest, &config_digest, &config, &layers)?;
        Ok(ImportedImage {
            names,
            manifest_digest,
            manifest: manifest_bytes,
            config_digest,
            config,
            layers,
        })
    }

    /// `docker save`'s manifest.json: turn each entry into an OCI manifest
    /// of our own over the same config and layer files.
    fn docker_images(&self, manifest_bytes: &[u8]) -> Result<Vec<ImportedImage>, Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Entry {
            config: String,
            #[serde(default)]
            repo_tags: Option<Vec<String>>,
            layers: Vec<String>,
        }
        let entries: Vec<Entry> =
            serde_json::from_slice(manifest_bytes).map_err(|source| Error::InvalidJson {
                what: "docker manifest",
                digest: "manifest.json".to_string(),
                source,
            })?;
        let mut out = Vec::new();
        for entry in entries {
            let config_file = self
                .get(&self.clean_name(&entry.config)?)
                .ok_or_else(|| self.corrupt(format!("missing config {}", entry.config)))?;
            if config_file.size > MAX_JSON_SIZE {
                return Err(Error::TooLarge {
                    what: "image config",
                    digest: entry.config,
                    limit: MAX_JSON_SIZE,
                });
            }
            let config = fs::read(&config_file.path).map_err(Error::io(&config_file.path))?;
            let config_digest = format!("sha256:{}", digest::sha256_hex(&config));
            let mut layers = Vec::new();
            let mut layer_descs = Vec::new();
            for name in &entry.layers {
                let file = self
                    .get(&self.clean_name(name)?)
                    .ok_or_else(|| self.corrupt(format!("missing layer {name}")))?
                    .clone();
                let digest = format!("sha256:{}", file.sha256);
                let media_type = if is_gzip(&file.path)? {
                    MT_OCI_LAYER_GZIP
                } else {
                    MT_OCI_LAYER_TAR
                };
                layer_descs.push(serde_json::json!({
                    "mediaType": media_type, "digest": digest, "size": file.size,
                }));
                layers.push(LayerBlob { digest, file });
            }
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": MT_OCI_MANIFEST,
                "config": {
                    "mediaType": MT_OCI_CONFIG,
                    "digest": config_digest,
                    "size": config.len(),
                },
                "layers": layer_descs,
            });
            let manifest = serde_json::to_vec(&manifest).map_err(|source| Error::InvalidJson {
                what: "docker manifest",
                digest: "manifest.json".to_string(),
                source,
            })?;
            let manifest_digest = format!("sha256:{}", digest::sha256_hex(&manifest));
            self.check_diff_ids(&manifest_digest, &config_digest, &config, &layers)?;
            let names = entry
                .repo_tags
                .unwrap_or_default()
                .iter()
                .map(|t| normalize_name(t))
                .collect::<Result<Vec<_>, _>>()?;
            out.push(ImportedImage {
                names,
                manifest_digest,
                manifest,
                config_digest,
                config,
                layers,
            });
        }
        Ok(out)
    }

    /// Parses a config and checks each layer's uncompressed digest against
    /// `rootfs.diff_ids`.
    fn check_diff_ids(
        &self,
        manifest_digest: &str,
        config_digest: &str,
        config: &[u8],
        layers: &[LayerBlob],
    ) -> Result<(), Error> {
        let parsed: ImageConfiguration =
            serde_json::from_slice(config).map_err(|source| Error::InvalidJson {
                what: "image config",
                digest: config_digest.to_string(),
                source,
            })?;
        let diff_ids = parsed.rootfs().diff_ids();
        if diff_ids.len() != layers.len() {
            return Err(Error::LayerCountMismatch {
                digest: manifest_digest.to_string(),
                layers: layers.len(),
                diff_ids: diff_ids.len(),
            });
        }
        for (layer, expected) in layers.iter().zip(diff_ids) {
            let expected_hex = digest::parse(expected)?;
            let known = self.diff_ids.borrow().get(&layer.digest).cloned();
            let actual = match known {
                Some(id) => id,
                None => {
                    let id =
                        layer::diff_id(&layer.file.path).map_err(|source| Error::ReadLayer {
                            digest: layer.digest.clone(),
                            source,
                        })?;
                    self.diff_ids
                        .borrow_mut()
                        .insert(layer.digest.clone(), id.clone());
                    id
                }
            };
            if actual != expected_hex {
                return Err(Error::DiffIdMismatch {
                    digest: layer.digest.clone(),
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        Ok(())
    }
}

/// Checks the media types of a manifest, its config and its layers.
pub(crate) fn check_manifest(manifest: &ImageManifest, manifest_digest: &str) -> Result<(), Error> {
    if let Some(mt) = manifest.media_type() {
        let mt = mt.to_string();
        if mt != MT_OCI_MANIFEST && mt != MT_DOCKER_MANIFEST {
            return Err(Error::UnsupportedMediaType {
                what: "manifest",
                media_type: mt,
                digest: manifest_digest.to_string(),
            });
        }
    }
    let config_desc = manifest.config();
    let config_mt = config_desc.media_type().to_string();
    if config_mt != MT_OCI_CONFIG && config_mt != MT_DOCKER_CONFIG {
        return Err(Error::UnsupportedMediaType {
            what: "config",
            media_type: config_mt,
            digest: config_desc.digest().to_string(),
        });
    }
    for desc in manifest.layers() {
        let mt = desc.media_type().to_string();
        if !layer::supported_media_type(&mt) {
            return Err(Error::UnsupportedMediaType {
                what: "layer",
                media_type: mt,
                digest: desc.digest().to_string(),
            });
        }
    }
    Ok(())
}

fn verify(f: &StagedFile, digest: &str, hex: &str, size: u64) -> Result<(), Error> {
    if f.size != size {
        return Err(Error::SizeMismatch {
            digest: digest.to_string(),
            expected: size,
            actual: f.size,
        });
    }
    if f.sha256 != hex {
        return Err(Error::DigestMismatch {
            digest: digest.to_string(),
            actual: f.sha256.clone(),
        });
    }
    Ok(())
}

pub(crate) fn check_index_media_type(index: &ImageIndex, digest: &str) -> Result<(), Error> {
    if let Some(mt) = index.media_type() {
        let mt = mt.to_string();
        if mt != MT_OCI_INDEX && mt != MT_DOCKER_LIST {
            return Err(Error::UnsupportedMediaType {
                what: "image index",
                media_type: mt,
                digest: digest.to_string(),
            });
        }
    }
    Ok(())
}

pub(crate) fn is_linux_amd64(p: &oci_spec::image::Platform) -> bool {
    p.os().to_string() == "linux" && p.architecture().to_string() == "amd64"
}

/// The image names a top-level index entry carries.
fn names_of(desc: &Descriptor) -> Result<Vec<String>, Error> {
    let Some(ann) = desc.annotations() else {
        return Ok(Vec::new());
    };
    let name = ann
        .get(ANNOTATION_CONTAINERD_NAME)
        .or_else(|| ann.get(ANNOTATION_REF_NAME));
    match name {
        // `skopeo copy … oci:DIR:latest` writes only a tag: a name without
        // a repository, so the image is reachable by id only.
        Some(n) if !n.contains(['/', ':']) && ann.get(ANNOTATION_CONTAINERD_NAME).is_none() => {
            Ok(Vec::new())
        }
        Some(n) => Ok(vec![normalize_name(n)?]),
        None => Ok(Vec::new()),
    }
}

fn normalize_name(name: &str) -> Result<String, Error> {
    Reference::parse(name)?
        .tagged_name()
        .ok_or_else(|| Error::InvalidReference {
            reference: name.to_string(),
            reason: "an image in an archive must be named by a tag, not a digest",
        })
}

fn is_gzip(path: &Path) -> Result<bool, Error> {
    let mut magic = [0u8; 2];
    let mut f = File::open(path).map_err(Error::io(path))?;
    let n = f.read(&mut magic).map_err(Error::io(path))?;
    Ok(n == 2 && magic == [0x1f, 0x8b])
}

/// An archive path as a map key: no `/` or `.` prefix, `..` refused.
fn clean(path: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str()?),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_utils::{docker_save, LayerBuilder, OciArchive, TestImage};

    fn stage(bytes: &[u8]) -> (tempfile::TempDir, Result<Vec<ImportedImage>, Error>) {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("a.tar");
        fs::write(&archive, bytes).unwrap();
        let staging = dir.path().join("staging");
        fs::create_dir(&staging).unwrap();
        let result = Staged::new(&archive, &staging).and_then(|s| s.images());
        (dir, result)
    }

    fn layer() -> Vec<u8> {
        LayerBuilder::new().file("etc/hello", b"hi", 0o644).build()
    }

    #[test]
    fn reads_an_oci_archive() {
        let a = OciArchive::new(vec![TestImage::new(vec![layer(), layer()])]);
        let (_d, images) = stage(&a.to_tar());
        let images = images.unwrap();
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].names, vec!["hull-test/img:latest"]);
        assert_eq!(images[0].manifest_digest, a.digests[0].0);
        assert_eq!(images[0].config_digest, a.digests[0].1);
        assert_eq!(images[0].layers.len(), 2);
    }

    #[test]
    fn gzipped_outer_archive_is_fine() {
        let a = OciArchive::new(vec![TestImage::new(vec![layer()])]);
        let (_d, images) = stage(&crate::test_utils::gzip(&a.to_tar()));
        assert_eq!(images.unwrap().len(), 1);
    }

    #[test]
    fn blob_digest_and_size_mismatch() {
        let mut a = OciArchive::new(vec![TestImage::new(vec![layer()])]);
        let layer_digest = a.digests[0].2[0].clone();
        let mut bytes = a.blob(&layer_digest);
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        a.replace_blob(&layer_digest, bytes);
        let (_d, r) = stage(&a.to_tar());
        let err = r.unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
        assert!(err
            .to_string()
            .starts_with(&format!("blob {layer_digest} does not match")));

        let mut a = OciArchive::new(vec![TestImage::new(vec![layer()])]);
        let mut bytes = a.blob(&layer_digest);
        bytes.push(0);
        a.replace_blob(&layer_digest, bytes);
        let (_d, r) = stage(&a.to_tar());
        assert!(matches!(r, Err(Error::SizeMismatch { .. })));
    }

    #[test]
    fn missing_blob() {
        let mut a = OciArchive::new(vec![TestImage::new(vec![layer()])]);
        let config = a.digests[0].1.clone();
        a.remove_blob(&config);
        let (_d, r) = stage(&a.to_tar());
        let err = r.unwrap_err();
        assert_eq!(err.to_string(), format!("blob {config} is missing"));
    }

    #[test]
    fn diff_id_mismatch() {
        let mut img = TestImage::new(vec![layer()]);
        img.config["rootfs"]["diff_ids"] = serde_json::json!(["x"]);
        // OciArchive overwrites diff_ids; tamper through a custom config.
        let mut a = OciArchive::new(vec![img]);
        let (m, c, layers) = a.digests[0].clone();
        let mut config: serde_json::Value = serde_json::from_slice(&a.blob(&c)).unwrap();
        config["rootfs"]["diff_ids"] = serde_json::json!([format!("sha256:{}", "0".repeat(64))]);
        let config = serde_json::to_vec(&config).unwrap();
        let new_c = a.add_blob(config.clone());
        let mut manifest: serde_json::Value = serde_json::from_slice(&a.blob(&m)).unwrap();
        manifest["config"]["digest"] = serde_json::json!(new_c);
        manifest["config"]["size"] = serde_json::json!(config.len());
        let manifest = serde_json::to_vec(&manifest).unwrap();
        let new_m = a.add_blob(manifest.clone());
        a.index["manifests"][0]["digest"] = serde_json::json!(new_m);
        a.index["manifests"][0]["size"] = serde_json::json!(manifest.len());
        let (_d, r) = stage(&a.to_tar());
        let err = r.unwrap_err();
        assert!(matches!(err, Error::DiffIdMismatch { .. }), "{err}");
        assert!(err
            .to_string()
            .starts_with(&format!("layer {} diff id mismatch", layers[0])));
    }

    #[test]
    fn corrupt_tar() {
        let a = OciArchive::new(vec![TestImage::new(vec![layer()])]);
        let mut bytes = a.to_tar();
        bytes.truncate(700);
        let (_d, r) = stage(&bytes);
        let err = r.unwrap_err();
        assert!(matches!(err, Error::CorruptArchive { .. }), "{err}");
        let (_d, r) = stage(b"this is not a tar file at all, just some text that is long enough");
        assert!(
            matches!(r, Err(Error::CorruptArchive { .. })),
            "{:?}",
            r.err()
        );
    }

    #[test]
    fn unexpected_media_types() {
        let mut a = OciArchive::new(vec![TestImage::new(vec![layer()])]);
        a.index["manifests"][0]["mediaType"] = serde_json::json!("application/vnd.example+json");
        let (_d, r) = stage(&a.to_tar());
        let err = r.unwrap_err();
        assert!(
            err.to_string()
                .starts_with("unsupported media type application/vnd.example+json for manifest"),
            "{err}"
        );

        let mut a = OciArchive::new(vec![TestImage::new(vec![layer()])]);
        a.index["mediaType"] = serde_json::json!("application/vnd.oci.image.manifest.v1+json");
        let (_d, r) = stage(&a.to_tar());
        assert!(matches!(r, Err(Error::UnsupportedMediaType { .. })));
    }

    #[test]
    fn oversized_documents() {
        let mut a = OciArchive::new(vec![TestImage::new(vec![layer()])]);
        a.index["manifests"][0]["size"] = serde_json::json!(MAX_JSON_SIZE + 1);
        let (_d, r) = stage(&a.to_tar());
        assert!(matches!(r, Err(Error::TooLarge { .. })));
    }

    #[test]
    fn picks_linux_amd64_from_a_nested_index() {
        let mut a = OciArchive::new(vec![TestImage::new(vec![layer()]).named(None)]);
        let amd64 = a.index["manifests"][0].clone();
        let mut arm64 = amd64.clone();
        arm64["digest"] = serde_json::json!(format!("sha256:{}", "1".repeat(64)));
        arm64["platform"] = serde_json::json!({"architecture": "arm64", "os": "linux"});
        let mut amd64 = amd64;
        amd64["platform"] = serde_json::json!({"architecture": "amd64", "os": "linux"});
        let nested = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MT_OCI_INDEX,
            "manifests": [arm64, amd64],
        });
        let nested = serde_json::to_vec(&nested).unwrap();
        let nested_digest = a.add_blob(nested.clone());
        a.index = serde_json::json!({"schemaVersion": 2, "manifests": [{
            "mediaType": MT_OCI_INDEX, "digest": nested_digest, "size": nested.len(),
            "annotations": {ANNOTATION_REF_NAME: "multi/arch:1"},
        }]});
        let (_d, r) = stage(&a.to_tar());
        let images = r.unwrap();
        assert_eq!(images[0].names, vec!["multi/arch:1"]);
        assert_eq!(images[0].manifest_digest, a.digests[0].0);
    }

    #[test]
    fn reads_docker_save() {
        let (bytes, config_digest) =
            docker_save(&[layer(), layer()], &["docker.io/library/busybox:1.36"]);
        let (_d, r) = stage(&bytes);
        let images = r.unwrap();
        assert_eq!(images[0].names, vec!["busybox:1.36"]);
        assert_eq!(images[0].config_digest, config_digest);
        assert_eq!(images[0].layers.len(), 2);
    }

    #[test]
    fn outer_paths_are_only_keys() {
        assert_eq!(
            clean(Path::new("./blobs/sha256/x")).as_deref(),
            Some("blobs/sha256/x")
        );
        assert_eq!(
            clean(Path::new("/index.json")).as_deref(),
            Some("index.json")
        );
        assert_eq!(clean(Path::new("a/../b")).as_deref(), Some("b"));
        assert_eq!(clean(Path::new("../b")), None);
    }
}
