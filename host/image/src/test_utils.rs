//! Fixtures for the image store's tests: layer tarballs written byte by
//! byte (so they can hold the hostile paths a real tar tool refuses), and
//! OCI / `docker save` archives built from them, with hooks to corrupt
//! each part.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use serde_json::{json, Value};

use super::digest::sha256_hex;
use super::ImageStore;

/// An empty image store in a temp dir, which also takes the tests' files.
pub(crate) struct StoreFixture {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) store: ImageStore,
}

pub(crate) fn store_fixture() -> StoreFixture {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&dir.path().join("store")).unwrap();
    StoreFixture { dir, store }
}

impl StoreFixture {
    /// Writes `archive` as `file` and loads its first image.
    pub(crate) fn load_first(&self, archive: &OciArchive, file: &str) -> super::Image {
        let path = archive.write(self.dir.path(), file);
        self.store.load_archive(&path).unwrap().remove(0)
    }
}

/// Extracts an EROFS image with `fsck.erofs --extract` into `x/` of a
/// temp dir.
pub(crate) fn erofs_extract(image: &Path) -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("x");
    let status = std::process::Command::new("fsck.erofs")
        .arg(format!("--extract={}", dest.display()))
        .arg(image)
        .output()
        .expect("fsck.erofs (erofs-utils) is needed by this test");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    out
}

/// The non-directory paths of an EROFS image, sorted.
pub(crate) fn erofs_files(image: &Path) -> Vec<String> {
    let out = erofs_extract(image);
    let dest = out.path().join("x");
    let mut files = Vec::new();
    let mut stack = vec![dest.clone()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            } else {
                files.push(p.strip_prefix(&dest).unwrap().display().to_string());
            }
        }
    }
    files.sort();
    files
}

/// A temp dir holding `root/` (a canonical, empty unpack root) and
/// `outside/`, which escapes must never touch.
pub(crate) struct TempRoot {
    _dir: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

impl TempRoot {
    pub(crate) fn new() -> TempRoot {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        let root = base.join("root");
        let outside = base.join("outside");
        fs::create_dir(&root).unwrap();
        fs::create_dir(&outside).unwrap();
        TempRoot {
            _dir: dir,
            root,
            outside,
        }
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn outside(&self) -> &Path {
        &self.outside
    }
}

/// Builds an uncompressed layer tar with raw header fields.
#[derive(Default)]
pub(crate) struct LayerBuilder {
    out: Vec<u8>,
}

pub(crate) const MTIME: u64 = 1_700_000_000;

impl LayerBuilder {
    pub(crate) fn new() -> LayerBuilder {
        LayerBuilder::default()
    }

    #[allow(clippy::too_many_arguments)]
    fn entry(
        self,
        path: &str,
        kind: u8,
        mode: u32,
        uid: u64,
        gid: u64,
        link: &str,
        data: &[u8],
        dev: (u32, u32),
    ) -> Self {
        self.entry_sized(
            path,
            kind,
            mode,
            uid,
            gid,
            link,
            data.len() as u64,
            data,
            dev,
        )
    }

    /// A header whose size field says `size`, followed by `data`, padded.
    #[allow(clippy::too_many_arguments)]
    fn entry_sized(
        mut self,
        path: &str,
        kind: u8,
        mode: u32,
        uid: u64,
        gid: u64,
        link: &str,
        size: u64,
        data: &[u8],
        dev: (u32, u32),
    ) -> Self {
        let mut h = [0u8; 512];
        assert!(
            path.len() <= 100 && link.len() <= 100,
            "fixture path too long"
        );
        h[..path.len()].copy_from_slice(path.as_bytes());
        octal(&mut h[100..108], u64::from(mode));
        octal(&mut h[108..116], uid);
        octal(&mut h[116..124], gid);
        if size < 1 << 33 {
            octal(&mut h[124..136], size);
        } else {
            // Base-256, as GNU tar writes sizes of 8 GiB and more.
            h[124] = 0x80;
            h[128..136].copy_from_slice(&size.to_be_bytes());
        }
        octal(&mut h[136..148], MTIME);
        h[156] = kind;
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        octal(&mut h[329..337], u64::from(dev.0));
        octal(&mut h[337..345], u64::from(dev.1));
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        octal(&mut h[148..155], sum);
        self.out.extend_from_slice(&h);
        self.out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.out.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    pub(crate) fn dir(self, path: &str, mode: u32) -> Self {
        self.entry(path, b'5', mode, 0, 0, "", b"", (0, 0))
    }

    pub(crate) fn file(self, path: &str, data: &[u8], mode: u32) -> Self {
        self.entry(path, b'0', mode, 0, 0, "", data, (0, 0))
    }

    pub(crate) fn file_owned(self, path: &str, data: &[u8], mode: u32, uid: u64, gid: u64) -> Self {
        self.entry(path, b'0', mode, uid, gid, "", data, (0, 0))
    }

    /// A file whose path is written verbatim (`..`, absolute, …).
    pub(crate) fn raw_file(self, path: &str, data: &[u8]) -> Self {
        self.file(path, data, 0o644)
    }

    pub(crate) fn symlink(self, path: &str, target: &str) -> Self {
        self.entry(path, b'2', 0o777, 0, 0, target, b"", (0, 0))
    }

    pub(crate) fn symlink_owned(self, path: &str, target: &str, uid: u64) -> Self {
        self.entry(path, b'2', 0o777, uid, uid, target, b"", (0, 0))
    }

    pub(crate) fn hardlink(self, path: &str, target: &str) -> Self {
        self.entry(path, b'1', 0o644, 0, 0, target, b"", (0, 0))
    }

    pub(crate) fn char_dev(self, path: &str, major: u32, minor: u32) -> Self {
        self.entry(path, b'3', 0o666, 0, 0, "", b"", (major, minor))
    }

    pub(crate) fn fifo(self, path: &str) -> Self {
        self.entry(path, b'6', 0o644, 0, 0, "", b"", (0, 0))
    }

    /// An empty whiteout marker file (`dir/.wh.name` or `.wh..wh..opq`).
    pub(crate) fn whiteout(self, path: &str) -> Self {
        self.entry(path, b'0', 0, 0, 0, "", b"", (0, 0))
    }

    /// A PAX global header (`g`) with a comment, as `git archive` writes.
    pub(crate) fn global_header(self, path: &str) -> Self {
        self.entry(path, b'g', 0o644, 0, 0, "", b"18 comment=hello\n", (0, 0))
    }

    /// A file preceded by a PAX header carrying one xattr.
    pub(crate) fn xattr_file(self, path: &str, data: &[u8], key: &str, value: &[u8]) -> Self {
        let pax = pax_record(&format!("SCHILY.xattr.{key}"), value);
        self.entry("PaxHeader", b'x', 0o644, 0, 0, "", &pax, (0, 0))
            .file(path, data, 0o755)
    }

    /// A header of `kind` whose size field says `size`, with no data
    /// after it (what a hostile layer claims but never sends).
    pub(crate) fn raw_header(self, path: &str, kind: u8, size: u64) -> Self {
        self.entry_sized(path, kind, 0o644, 0, 0, "", size, b"", (0, 0))
    }

    /// A header whose size field says `size`, followed by `data` (a PAX
    /// size record before it may say otherwise).
    pub(crate) fn raw_header_with_data(self, path: &str, kind: u8, size: u64, data: &[u8]) -> Self {
        self.entry_sized(path, kind, 0o644, 0, 0, "", size, data, (0, 0))
    }

    /// A PAX extended header (`x`) with these records.
    pub(crate) fn pax_header(self, records: &[(&str, &str)]) -> Self {
        let mut body = Vec::new();
        for (key, value) in records {
            body.extend_from_slice(&pax_record(key, value.as_bytes()));
        }
        self.entry("PaxHeader", b'x', 0o644, 0, 0, "", &body, (0, 0))
    }

    pub(crate) fn build(mut self) -> Vec<u8> {
        self.out.extend(std::iter::repeat_n(0u8, 1024));
        self.out
    }
}

/// One PAX record, `"<len> <key>=<value>\n"`, its length counting itself.
pub(crate) fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let mut record = format!(" {key}=").into_bytes();
    record.extend_from_slice(value);
    record.push(b'\n');
    let mut total = record.len() + 1;
    loop {
        let t = record.len() + total.to_string().len();
        if t == total {
            break;
        }
        total = t;
    }
    let mut out = total.to_string().into_bytes();
    out.extend_from_slice(&record);
    out
}

fn octal(field: &mut [u8], value: u64) {
    let s = format!("{:0width$o}", value, width = field.len() - 1);
    field[..s.len()].copy_from_slice(s.as_bytes());
}

/// An error and its causes, as the CLI prints them: "a: b: c".
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        out = format!("{out}: {c}");
        cause = c.source();
    }
    out
}

pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// A tar (the outer archive) of `(name, bytes)` files.
pub(crate) fn tar_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = LayerBuilder::new();
    for (name, data) in files {
        b = b.file(name, data, 0o644);
    }
    b.build()
}

/// One image in an [`OciArchive`].
pub(crate) struct TestImage {
    /// Uncompressed layer tars; stored gzipped.
    pub(crate) layers: Vec<Vec<u8>>,
    pub(crate) config: Value,
    pub(crate) ref_name: Option<String>,
}

impl TestImage {
    pub(crate) fn new(layers: Vec<Vec<u8>>) -> TestImage {
        TestImage {
            layers,
            config: json!({
                "architecture": "amd64",
                "os": "linux",
                "config": {
                    "Env": ["PATH=/bin", "HULL_IMAGE_ENV=from-image"],
                    "Cmd": ["sh"],
                    "Labels": {"a": "b"},
                    "ExposedPorts": {"80/tcp": {}},
                },
                "rootfs": {"type": "layers", "diff_ids": []},
            }),
            ref_name: Some("hull-test/img:latest".to_string()),
        }
    }

    pub(crate) fn named(mut self, name: Option<&str>) -> TestImage {
        self.ref_name = name.map(str::to_string);
        self
    }
}

/// The blobs and documents of an OCI layout, editable before it is tarred.
pub(crate) struct OciArchive {
    pub(crate) blobs: Vec<(String, Vec<u8>)>,
    pub(crate) index: Value,
    /// (manifest digest, config digest, layer digests) per image.
    pub(crate) digests: Vec<(String, String, Vec<String>)>,
}

pub(crate) fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

impl OciArchive {
    pub(crate) fn new(images: Vec<TestImage>) -> OciArchive {
        let mut blobs = Vec::new();
        let mut manifests = Vec::new();
        let mut digests = Vec::new();
        for img in images {
            let mut layer_descs = Vec::new();
            let mut diff_ids = Vec::new();
            let mut layer_digests = Vec::new();
            for layer in &img.layers {
                diff_ids.push(digest_of(layer));
                let gz = gzip(layer);
                let d = digest_of(&gz);
                layer_descs.push(json!({
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": d, "size": gz.len(),
                }));
                layer_digests.push(d.clone());
                blobs.push((d, gz));
            }
            let mut config = img.config;
            config["rootfs"]["diff_ids"] = json!(diff_ids);
            let config_bytes = serde_json::to_vec(&config).unwrap();
            let config_digest = digest_of(&config_bytes);
            let manifest = json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": config_digest, "size": config_bytes.len(),
                },
                "layers": layer_descs,
            });
            let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
            let manifest_digest = digest_of(&manifest_bytes);
            let mut desc = json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest, "size": manifest_bytes.len(),
            });
            if let Some(name) = img.ref_name {
                desc["annotations"] = json!({"org.opencontainers.image.ref.name": name});
            }
            manifests.push(desc);
            blobs.push((config_digest.clone(), config_bytes));
            blobs.push((manifest_digest.clone(), manifest_bytes));
            digests.push((manifest_digest, config_digest, layer_digests));
        }
        OciArchive {
            blobs,
            index: json!({"schemaVersion": 2, "manifests": manifests}),
            digests,
        }
    }

    /// Replaces the content stored under `digest` (its name stays).
    pub(crate) fn replace_blob(&mut self, digest: &str, bytes: Vec<u8>) {
        for (d, b) in &mut self.blobs {
            if d == digest {
                *b = bytes.clone();
            }
        }
    }

    pub(crate) fn remove_blob(&mut self, digest: &str) {
        self.blobs.retain(|(d, _)| d != digest);
    }

    pub(crate) fn blob(&self, digest: &str) -> Vec<u8> {
        self.blobs
            .iter()
            .find(|(d, _)| d == digest)
            .map(|(_, b)| b.clone())
            .unwrap()
    }

    /// Adds a blob and returns its digest.
    pub(crate) fn add_blob(&mut self, bytes: Vec<u8>) -> String {
        let d = digest_of(&bytes);
        self.blobs.push((d.clone(), bytes));
        d
    }

    pub(crate) fn to_tar(&self) -> Vec<u8> {
        let mut files = vec![
            (
                "oci-layout".to_string(),
                br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
            ),
            (
                "index.json".to_string(),
                serde_json::to_vec(&self.index).unwrap(),
            ),
        ];
        for (d, b) in &self.blobs {
            files.push((format!("blobs/sha256/{}", &d[7..]), b.clone()));
        }
        tar_of(&files)
    }

    pub(crate) fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, self.to_tar()).unwrap();
        path
    }
}

/// A legacy `docker save` tarball: `manifest.json`, `<id>.json`,
/// `<layer>/layer.tar`. Returns (archive bytes, config digest).
pub(crate) fn docker_save(layers: &[Vec<u8>], repo_tags: &[&str]) -> (Vec<u8>, String) {
    let diff_ids: Vec<String> = layers.iter().map(|l| digest_of(l)).collect();
    let config = json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"], "ExposedPorts": null, "Labels": null},
        "container_config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_hex = sha256_hex(&config_bytes);
    let mut files = vec![(format!("{config_hex}.json"), config_bytes.clone())];
    let mut layer_paths = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        let dir = format!("{:064x}", i + 1);
        files.push((format!("{dir}/VERSION"), b"1.0".to_vec()));
        files.push((format!("{dir}/layer.tar"), layer.clone()));
        layer_paths.push(format!("{dir}/layer.tar"));
    }
    let manifest = json!([{
        "Config": format!("{config_hex}.json"),
        "RepoTags": repo_tags,
        "Layers": layer_paths,
    }]);
    files.push((
        "manifest.json".to_string(),
        serde_json::to_vec(&manifest).unwrap(),
    ));
    (tar_of(&files), format!("sha256:{config_hex}"))
}

/// Writes an archive made by `tests/images/make-busybox-image.sh` (runs
/// the script; it fails loudly if its tools are missing).
pub(crate) fn busybox_archive(dir: &Path, extra_args: &[&str]) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/images/make-busybox-image.sh")
        .canonicalize()
        .expect("tests/images/make-busybox-image.sh is missing");
    let out = dir.join("busybox.tar");
    let status = std::process::Command::new(&script)
        .args(extra_args)
        .arg(&out)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(status.success(), "{} failed: {status}", script.display());
    out
}
