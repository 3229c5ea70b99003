//! Reading image archives: an OCI image layout in a tar (what `skopeo copy
//! … oci-archive:F:NAME` writes) or a `docker save` tarball.
//!
//! The outer tar is copied entry by entry into numbered files of a staging
//! directory, hashed on the way; archive paths are only ever keys of a map,
//! never paths we create, so the outer tar cannot plant anything. Then the
//! documents are read and every blob an image needs is checked against its
//! descriptor (size, sha256) and every layer against its diff id, before
//! the store commits anything (containerd's `images/archive` importer is
//! the model). Each image of the archive is an [`ImageSource`] for the
//! shared import steps of [`super::source`]; which layout an archive has
//! is decided by [`LAYOUTS`].

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use oci_spec::image::Descriptor;

use super::digest::{self, HashingWriter};
use super::source::{self, Documents, ImageSource, Imported, LayerFile};
use super::tar_bounds::Totals;
use super::{layer, media, Limits, Reference, MAX_JSON_SIZE};

mod docker;

/// Entries an outer archive may hold.
const MAX_ENTRIES: usize = 100_000;
/// Nesting of image indexes we follow.
const MAX_INDEX_DEPTH: usize = 2;

const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// What is wrong inside an archive (the store's
/// [`CorruptArchive`](super::Error::CorruptArchive) names the archive).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Tar(io::Error),
    #[error("more than {MAX_ENTRIES} entries")]
    TooManyEntries,
    #[error("entry {0:?} escapes the archive")]
    EntryEscapes(PathBuf),
    #[error("entry {name}")]
    Entry {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("link {0} has no target")]
    NoLinkTarget(String),
    #[error("link {0} escapes the archive")]
    LinkEscapes(String),
    #[error("path {0:?} escapes the archive")]
    PathEscapes(String),
    #[error("neither index.json (OCI) nor manifest.json (docker save)")]
    NoLayout,
    #[error("missing config {0}")]
    MissingConfig(String),
    #[error("missing layer {0}")]
    MissingLayer(String),
}

/// An archive layout: the document that marks it and how its images are
/// read. Tried in order; a new layout is one more entry.
struct Layout {
    document: &'static str,
    images: fn(&mut Staged, &[u8]) -> Result<Vec<Imported>, super::Error>,
}

const LAYOUTS: &[Layout] = &[
    Layout {
        document: "index.json",
        images: oci_images,
    },
    Layout {
        document: "manifest.json",
        images: docker::images,
    },
];

/// Reads and verifies every image `archive` names, staging its files in
/// `dir` (which must exist and be empty).
/// Every layer is read to its end within `limits` (its tar headers
/// walked, see [`super::tar_bounds`]), so an image over them is refused
/// here, before the store holds any of it.
pub(crate) fn read(
    archive: &Path,
    dir: &Path,
    limits: Limits,
) -> Result<Vec<Imported>, super::Error> {
    Staged::new(archive, dir, limits)?.images()
}

/// A regular file copied out of the archive.
#[derive(Clone, Debug)]
struct StagedFile {
    path: PathBuf,
    size: u64,
    /// Hex sha256 of the content.
    sha256: String,
}

/// The archive's files, keyed by their cleaned archive path.
struct Staged {
    archive: PathBuf,
    files: HashMap<String, StagedFile>,
    /// Symlinks and hardlinks: archive path -> cleaned archive path.
    links: HashMap<String, String>,
    /// Diff ids already computed, and what the layer holds, by layer
    /// digest (images share layers).
    diff_ids: HashMap<String, (String, Totals)>,
    limits: Limits,
}

impl Staged {
    /// Copies the regular files of `archive` (plain or gzipped tar) into
    /// `dir`.
    fn new(archive: &Path, dir: &Path, limits: Limits) -> Result<Staged, super::Error> {
        let mut staged = Staged {
            archive: archive.to_path_buf(),
            files: HashMap::new(),
            links: HashMap::new(),
            diff_ids: HashMap::new(),
            limits,
        };
        let mut tar = tar::Archive::new(open(archive)?);
        let entries = tar.entries().map_err(|e| staged.corrupt(Error::Tar(e)))?;
        for (n, entry) in entries.enumerate() {
            if n >= MAX_ENTRIES {
                return Err(staged.corrupt(Error::TooManyEntries));
            }
            let entry = entry.map_err(|e| staged.corrupt(Error::Tar(e)))?;
            staged.add(entry, &dir.join(n.to_string()))?;
        }
        Ok(staged)
    }

    /// Stages one entry of the outer tar: a regular file into `path`, a
    /// link as a map entry.
    fn add<R: Read>(
        &mut self,
        mut entry: tar::Entry<'_, R>,
        path: &Path,
    ) -> Result<(), super::Error> {
        let raw = entry
            .path()
            .map_err(|e| self.corrupt(Error::Tar(e)))?
            .into_owned();
        let name = clean(&raw).ok_or_else(|| self.corrupt(Error::EntryEscapes(raw.clone())))?;
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let file = File::create(path).map_err(super::Error::io(path))?;
                let mut writer = HashingWriter::new(file);
                if let Err(source) = io::copy(&mut entry, &mut writer) {
                    return Err(self.corrupt(Error::Entry { name, source }));
                }
                let (_, sha256, size) = writer.finish();
                let path = path.to_path_buf();
                self.files.insert(name, StagedFile { path, size, sha256 });
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(|e| self.corrupt(Error::Tar(e)))?
                    .ok_or_else(|| self.corrupt(Error::NoLinkTarget(name.clone())))?;
                let target = if kind.is_symlink() {
                    let dir = Path::new(&name).parent().unwrap_or(Path::new(""));
                    dir.join(target)
                } else {
                    target.into_owned()
                };
                let target =
                    clean(&target).ok_or_else(|| self.corrupt(Error::LinkEscapes(name.clone())))?;
                self.links.insert(name, target);
            }
            _ => {} // directories and the rest carry nothing we read
        }
        Ok(())
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

    fn corrupt(&self, source: Error) -> super::Error {
        super::Error::CorruptArchive {
            archive: self.archive.clone(),
            source,
        }
    }

    /// The staged file of a path named inside a document, cleaned like
    /// the tar's paths; `missing` says what is wrong without it.
    fn named(&self, name: &str, missing: fn(String) -> Error) -> Result<&StagedFile, super::Error> {
        let key = clean(Path::new(name))
            .ok_or_else(|| self.corrupt(Error::PathEscapes(name.to_string())))?;
        self.get(&key)
            .ok_or_else(|| self.corrupt(missing(name.to_string())))
    }

    /// Reads a small file named by the archive itself (index.json, …).
    fn read_doc(&self, name: &str) -> Result<Option<Vec<u8>>, super::Error> {
        let Some(f) = self.get(name) else {
            return Ok(None);
        };
        read_small(f, "document", name).map(Some)
    }

    /// The verified blob a descriptor points at.
    fn blob(&self, digest: &str, size: u64) -> Result<&StagedFile, super::Error> {
        let hex = digest::parse(digest)?;
        let f =
            self.get(&format!("blobs/sha256/{hex}"))
                .ok_or_else(|| super::Error::MissingBlob {
                    digest: digest.to_string(),
                })?;
        verify(f, digest, hex, size)?;
        Ok(f)
    }

    /// Reads and verifies a JSON blob of at most [`MAX_JSON_SIZE`] bytes.
    fn json_blob(&self, what: &'static str, desc: &Descriptor) -> Result<Vec<u8>, super::Error> {
        source::check_json_size(what, desc)?;
        let f = self.blob(desc.digest().as_ref(), desc.size())?;
        fs::read(&f.path).map_err(super::Error::io(&f.path))
    }

    /// Reads every image the archive names, verifying all it needs.
    fn images(mut self) -> Result<Vec<Imported>, super::Error> {
        for layout in LAYOUTS {
            if let Some(doc) = self.read_doc(layout.document)? {
                let images = (layout.images)(&mut self, &doc)?;
                if images.is_empty() {
                    return Err(super::Error::NoImages {
                        archive: self.archive.clone(),
                    });
                }
                return Ok(images);
            }
        }
        Err(self.corrupt(Error::NoLayout))
    }

    /// Checks each layer's uncompressed digest against the config's
    /// `rootfs.diff_ids` (whose count [`source::documents`] matched), and
    /// the image's layers together against the image bounds.
    fn check_diff_ids(
        &mut self,
        docs: &Documents,
        layers: &[LayerFile],
    ) -> Result<(), super::Error> {
        let mut used = Totals::default();
        for (layer, expected) in layers.iter().zip(&docs.diff_ids) {
            let expected_hex = digest::parse(expected)?;
            let (actual, totals) = self.diff_id(layer, used)?;
            used = used.add(totals);
            if actual != expected_hex {
                return Err(super::Error::DiffIdMismatch {
                    digest: layer.digest.clone(),
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        Ok(())
    }

    /// The diff id of a staged layer and what it holds, computed once
    /// per digest; the layers below it in its image hold `used`.
    fn diff_id(
        &mut self,
        layer: &LayerFile,
        used: Totals,
    ) -> Result<(String, Totals), super::Error> {
        if let Some((id, totals)) = self.diff_ids.get(&layer.digest) {
            let image = used.add(*totals);
            let limits = &self.limits;
            if image.entries <= limits.max_image_entries && image.bytes <= limits.max_image_size {
                return Ok((id.clone(), *totals));
            }
            // Over the image's bound in this image: read it again to name
            // the entry that crosses it.
        }
        let found = layer::scan(&layer.digest, &layer.path, self.limits.budget(used))?;
        self.diff_ids.insert(layer.digest.clone(), found.clone());
        Ok(found)
    }
}

/// Opens an archive, plain or gzipped, as its tar stream.
fn open(archive: &Path) -> Result<Box<dyn Read>, super::Error> {
    let read_err = |source| super::Error::ReadArchive {
        archive: archive.to_path_buf(),
        source,
    };
    let mut input = BufReader::new(File::open(archive).map_err(read_err)?);
    let gzipped = input
        .fill_buf()
        .map_err(read_err)?
        .starts_with(&[0x1f, 0x8b]);
    Ok(if gzipped {
        Box::new(flate2::bufread::MultiGzDecoder::new(input))
    } else {
        Box::new(input)
    })
}

/// Reads a staged file of at most [`MAX_JSON_SIZE`] bytes; `name` is what
/// the error calls it.
fn read_small(f: &StagedFile, what: &'static str, name: &str) -> Result<Vec<u8>, super::Error> {
    if f.size > MAX_JSON_SIZE {
        return Err(super::Error::TooLarge {
            what,
            digest: name.to_string(),
            limit: MAX_JSON_SIZE,
        });
    }
    fs::read(&f.path).map_err(super::Error::io(&f.path))
}

/// The images of an OCI layout's `index.json`.
fn oci_images(staged: &mut Staged, index_bytes: &[u8]) -> Result<Vec<Imported>, super::Error> {
    let index = media::parse_index("index.json", index_bytes)?;
    let mut out = Vec::new();
    for desc in index.manifests() {
        if desc
            .platform()
            .as_ref()
            .is_some_and(|p| !media::is_linux_amd64(p))
        {
            continue;
        }
        let names = names_of(desc)?;
        let mut image = OciImage { staged, desc };
        out.push(source::import_now(&mut image, names)?);
    }
    Ok(out)
}

/// One image of an OCI layout, from its descriptor in `index.json`.
struct OciImage<'a> {
    staged: &'a mut Staged,
    desc: &'a Descriptor,
}

impl ImageSource for OciImage<'_> {
    type Error = super::Error;

    async fn manifest(&mut self) -> Result<(String, Vec<u8>), super::Error> {
        resolve_manifest(self.staged, self.desc.clone(), 0)
    }

    async fn config(&mut self, desc: &Descriptor) -> Result<Vec<u8>, super::Error> {
        self.staged.json_blob("image config", desc)
    }

    async fn layers(&mut self, docs: &Documents) -> Result<Vec<LayerFile>, super::Error> {
        let mut layers = Vec::new();
        for desc in docs.manifest.layers() {
            let digest = desc.digest().to_string();
            let path = self.staged.blob(&digest, desc.size())?.path.clone();
            layers.push(LayerFile { digest, path });
        }
        self.staged.check_diff_ids(docs, &layers)?;
        Ok(layers)
    }
}

/// Follows a descriptor (through indexes, picking linux/amd64) to an
/// image manifest: returns its digest and bytes.
fn resolve_manifest(
    staged: &Staged,
    desc: Descriptor,
    depth: usize,
) -> Result<(String, Vec<u8>), super::Error> {
    let digest = desc.digest().to_string();
    let media_type = desc.media_type().to_string();
    if media::is_manifest(&media_type) {
        return Ok((digest, staged.json_blob("image manifest", &desc)?));
    }
    if media::is_index_type(&media_type) && depth < MAX_INDEX_DEPTH {
        let bytes = staged.json_blob("image index", &desc)?;
        let chosen = media::platform_manifest(&digest, &bytes)?;
        return resolve_manifest(staged, chosen, depth + 1);
    }
    Err(super::Error::UnsupportedMediaType {
        what: "manifest",
        media_type,
        digest,
    })
}

fn verify(f: &StagedFile, digest: &str, hex: &str, size: u64) -> Result<(), super::Error> {
    if f.size != size {
        return Err(super::Error::SizeMismatch {
            digest: digest.to_string(),
            expected: size,
            actual: f.size,
        });
    }
    if f.sha256 != hex {
        return Err(super::Error::DigestMismatch {
            digest: digest.to_string(),
            actual: f.sha256.clone(),
        });
    }
    Ok(())
}

/// The image names a top-level index entry carries.
fn names_of(desc: &Descriptor) -> Result<Vec<String>, super::Error> {
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

/// Whether `bytes` is a `docker save` manifest.json hull would import
/// (the `image_documents` fuzz target's entry).
pub(crate) fn fuzz_docker_manifest(bytes: &[u8]) -> bool {
    docker::entries(bytes).is_ok()
}

fn normalize_name(name: &str) -> Result<String, super::Error> {
    Reference::parse(name)?
        .tagged_name()
        .ok_or_else(|| super::Error::InvalidReference {
            reference: name.to_string(),
            reason: "an image in an archive must be named by a tag, not a digest",
        })
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
    use crate::media::MT_OCI_INDEX;
    use crate::test_utils::{docker_save, LayerBuilder, OciArchive, TestImage};
    use crate::Error;

    fn stage(bytes: &[u8]) -> (tempfile::TempDir, Result<Vec<Imported>, Error>) {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("a.tar");
        fs::write(&archive, bytes).unwrap();
        let staging = dir.path().join("staging");
        fs::create_dir(&staging).unwrap();
        let result = read(&archive, &staging, Limits::default());
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
        assert_eq!(images[0].docs.manifest_digest, a.digests[0].0);
        assert_eq!(images[0].docs.config_digest, a.digests[0].1);
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
        assert_eq!(images[0].docs.manifest_digest, a.digests[0].0);
    }

    #[test]
    fn reads_docker_save() {
        let (bytes, config_digest) =
            docker_save(&[layer(), layer()], &["docker.io/library/busybox:1.36"]);
        let (_d, r) = stage(&bytes);
        let images = r.unwrap();
        assert_eq!(images[0].names, vec!["busybox:1.36"]);
        assert_eq!(images[0].docs.config_digest, config_digest);
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
