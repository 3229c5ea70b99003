//! VM templates: a VM booted once to "agent ready, no container" and
//! saved, so that sandboxes restore a clone of it instead of booting a
//! kernel (Kata's VM factory on QEMU; Firecracker's snapshots).
//!
//! A template is made for one [`Shape`] on one backend with one kernel,
//! initramfs (the agent is in it) and hull; its [`key`] is a digest of all
//! of that, down to the hypervisor's command line, so a template made by
//! anything else is never used. It lives in `templates/<key>/`:
//! `template.json` (what it was made from, and checksums), `state` (the
//! backend's saved device and CPU state) and `memory` (guest RAM, which
//! clones map copy-on-write: QEMU's is the RAM file itself, made before
//! the template boots; hull-vmm writes its own, a header page and then
//! RAM, with `state` when it saves). A template that fails its checks is removed
//! and the sandbox boots cold.

mod make;

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::assets::GuestAssets;
use crate::hypervisor::{
    Boot, Hypervisor, HypervisorError, SnapshotMethod, VmSpec, SNAPSHOT_MEMORY, SNAPSHOT_STATE,
};

pub use make::{make, MakeError};

/// Bumped whenever what a template holds, or how it is restored, changes.
const FORMAT: u32 = 2;
const META_FILE: &str = "template.json";
const STATE_FILE: &str = SNAPSHOT_STATE;
const MEMORY_FILE: &str = SNAPSHOT_MEMORY;
/// How long VMs of a shape whose template failed boot cold.
pub const FAILURE_BACKOFF: std::time::Duration = std::time::Duration::from_secs(600);
/// Marks a template that failed (a scratch name: not listed, pruned).
const FAILED_PREFIX: &str = ".failed-";
/// Scopes' sets of templates are `@NAME/` beside the host's.
const SCOPE_PREFIX: char = '@';

/// What a template is made for, besides the backend and the assets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    pub vcpus: u32,
    pub memory_mib: u32,
    /// Whether the VM has a network card.
    pub nic: bool,
}

/// A file as found when a template is made: a file replaced or changed
/// since does not match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FileIdentity {
    path: PathBuf,
    len: u64,
    modified_nanos: i128,
    inode: u64,
}

impl FileIdentity {
    fn of(path: &Path) -> io::Result<Self> {
        let meta = fs::metadata(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            len: meta.len(),
            modified_nanos: i128::from(meta.mtime()) * 1_000_000_000
                + i128::from(meta.mtime_nsec()),
            inode: meta.ino(),
        })
    }
}

/// Everything a template depends on; its digest is the template's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct KeyInputs {
    format: u32,
    hull: String,
    hypervisor: String,
    /// How the backend saved it, and so how clones restore it.
    method: SnapshotMethod,
    program: FileIdentity,
    kernel: FileIdentity,
    initramfs: FileIdentity,
    shape: Shape,
    /// The template VM's command line, with its directories as
    /// placeholders: a change in devices or options is a new template.
    command_line: Vec<String>,
}

/// The key of the template for `shape` on `hypervisor` with `assets`.
pub fn key(
    hypervisor: &dyn Hypervisor,
    assets: &GuestAssets,
    shape: Shape,
) -> Result<String, KeyError> {
    key_inputs(hypervisor, assets, shape).map(|inputs| digest_of(&inputs))
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0} cannot save or restore VMs")]
    NoSnapshots(&'static str),
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Hypervisor(#[from] HypervisorError),
}

fn key_inputs(
    hypervisor: &dyn Hypervisor,
    assets: &GuestAssets,
    shape: Shape,
) -> Result<KeyInputs, KeyError> {
    let method = hypervisor
        .snapshots()
        .ok_or(KeyError::NoSnapshots(hypervisor.name()))?;
    let identity = |path: &Path| {
        FileIdentity::of(path).map_err(|source| KeyError::File {
            path: path.to_path_buf(),
            source,
        })
    };
    let spec = template_spec(
        assets,
        shape,
        Path::new("/SANDBOX"),
        Path::new("/TEMPLATE/memory"),
    );
    let launch = hypervisor.launch(&spec)?;
    let command_line = launch.args();
    Ok(KeyInputs {
        format: FORMAT,
        hull: env!("CARGO_PKG_VERSION").to_string(),
        hypervisor: hypervisor.name().to_string(),
        method,
        program: identity(hypervisor.program())?,
        kernel: identity(&assets.kernel)?,
        initramfs: identity(&assets.initramfs)?,
        shape,
        command_line,
    })
}

/// The VM a template is booted as.
fn template_spec(assets: &GuestAssets, shape: Shape, dir: &Path, memory: &Path) -> VmSpec {
    VmSpec {
        kernel: assets.kernel.clone(),
        initramfs: assets.initramfs.clone(),
        vcpus: shape.vcpus,
        memory_mib: shape.memory_mib,
        disks: Vec::new(),
        sandbox_dir: dir.to_path_buf(),
        nic: None,
        boot: Boot::Template {
            memory: memory.to_path_buf(),
            nic: shape.nic,
        },
    }
}

fn digest_of(inputs: &KeyInputs) -> String {
    let json = serde_json::to_vec(inputs).expect("key inputs serialize");
    hex(&Sha256::digest(&json)[..16])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `template.json`: what a template was made from, and what its files
/// must still be.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    key: String,
    inputs: KeyInputs,
    /// Unix time, nanoseconds.
    created: u64,
    state_sha256: String,
    state_len: u64,
    memory: FileIdentity,
}

/// A template that passed its checks.
#[derive(Debug, Clone)]
pub struct Template {
    pub key: String,
    pub dir: PathBuf,
    pub shape: Shape,
    pub hypervisor: String,
    /// How clones restore it.
    pub method: SnapshotMethod,
    /// Unix time, nanoseconds.
    pub created: u64,
    /// Made by another hull, or from files that have changed since: no
    /// sandbox will use it again.
    pub stale: bool,
}

impl Template {
    pub fn memory(&self) -> PathBuf {
        self.dir.join(MEMORY_FILE)
    }

    pub fn state(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// What a clone restores from: the directory, holding `state` and
    /// `memory` under the names every backend uses.
    pub fn snapshot(&self) -> &Path {
        &self.dir
    }

    /// Bytes the template takes on disk (its RAM file is sparse).
    pub fn disk_usage(&self) -> u64 {
        [META_FILE, STATE_FILE, MEMORY_FILE]
            .iter()
            .filter_map(|f| fs::metadata(self.dir.join(f)).ok())
            .map(|m| m.blocks() * 512)
            .sum()
    }
}

/// What a lookup found.
#[derive(Debug)]
pub enum Found {
    Ready(Template),
    Missing,
    /// There was one, but it failed its checks (and is now removed).
    Broken(String),
}

/// The templates under one directory (`HULL_ROOT/templates`).
#[derive(Debug, Clone)]
pub struct Templates {
    root: PathBuf,
}

impl Templates {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Records that the template `key` could not be made or restored:
    /// for [`FAILURE_BACKOFF`] VMs of its shape boot cold rather than
    /// make (and fail) it again on every start. `prune` clears it.
    pub fn mark_failed(&self, key: &str) {
        let _ = fs::create_dir_all(&self.root);
        let _ = fs::write(self.root.join(format!("{FAILED_PREFIX}{key}")), b"");
    }

    /// Whether the template `key` failed within [`FAILURE_BACKOFF`].
    pub fn recently_failed(&self, key: &str) -> bool {
        fs::metadata(self.root.join(format!("{FAILED_PREFIX}{key}")))
            .and_then(|m| m.modified())
            .is_ok_and(|at| at.elapsed().map_or(true, |age| age < FAILURE_BACKOFF))
    }

    /// The set of templates of scope `name` (only its own VMs clone them).
    pub fn scope(&self, name: &str) -> Templates {
        Templates::new(self.root.join(format!("{SCOPE_PREFIX}{name}")))
    }

    /// The scopes that have a set here, by name.
    pub fn scopes(&self) -> Vec<(String, Templates)> {
        let mut scopes: Vec<_> = fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|entry| is_scope(&entry.file_name()) && entry.path().is_dir())
            .map(|entry| {
                let name = entry.file_name().to_string_lossy()[1..].to_string();
                (name, Templates::new(entry.path()))
            })
            .collect();
        scopes.sort_by(|a, b| a.0.cmp(&b.0));
        scopes
    }

    /// The template with `key`, checked; a broken one is removed.
    pub fn find(&self, key: &str) -> Found {
        let dir = self.root.join(key);
        if !dir.exists() {
            return Found::Missing;
        }
        match check(&dir, Some(key)) {
            Ok(template) => Found::Ready(template),
            Err(why) => {
                let _ = fs::remove_dir_all(&dir);
                Found::Broken(why)
            }
        }
    }

    /// Every template, with why a broken one is broken (nothing removed).
    pub fn list(&self) -> Vec<Result<Template, (String, String)>> {
        let mut found: Vec<_> = fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|entry| {
                let name = entry.file_name();
                entry.path().is_dir() && !is_scratch(&name) && !is_scope(&name)
            })
            .map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                check(&entry.path(), Some(&name)).map_err(|why| (name, why))
            })
            .collect();
        found.sort_by_key(|t| match t {
            Ok(t) => t.key.clone(),
            Err((name, _)) => name.clone(),
        });
        found
    }

    /// Removes the templates whose key starts with `prefix` (at least 4
    /// characters, and exactly one match); returns the key.
    pub fn remove(&self, prefix: &str) -> Result<String, RemoveError> {
        if prefix.len() < 4 || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(RemoveError::BadPrefix(prefix.to_string()));
        }
        let matches: Vec<String> = fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(prefix))
            .collect();
        match matches.as_slice() {
            [key] => {
                fs::remove_dir_all(self.root.join(key))
                    .map_err(|e| RemoveError::Io(key.clone(), e))?;
                Ok(key.clone())
            }
            [] => Err(RemoveError::NoSuchTemplate(prefix.to_string())),
            _ => Err(RemoveError::Ambiguous(prefix.to_string(), matches.len())),
        }
    }

    /// Removes broken templates, leftovers of interrupted makes and stale
    /// templates (made by another hull, or from a kernel, initramfs or
    /// hypervisor that has changed since); with `all`, every template.
    /// Returns the names removed.
    pub fn prune(&self, all: bool) -> io::Result<Vec<String>> {
        let mut removed = Vec::new();
        for entry in fs::read_dir(&self.root).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_scope(&entry.file_name()) {
                continue;
            }
            let keep = if is_scratch(&entry.file_name()) {
                // A template being made now is not a leftover, `--all` or not.
                being_made(&entry.path(), &name)
            } else {
                !all && check(&entry.path(), Some(&name)).is_ok_and(|t| !t.stale)
            };
            if !keep {
                remove_any(&entry.path())?;
                removed.push(name);
            }
        }
        removed.sort();
        Ok(removed)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RemoveError {
    #[error("{0:?} is not a template key (at least 4 hex digits)")]
    BadPrefix(String),
    #[error("no such template: {0}")]
    NoSuchTemplate(String),
    #[error("{0} names {1} templates: give more of the key")]
    Ambiguous(String, usize),
    #[error("remove template {0}: {1}")]
    Io(String, #[source] io::Error),
}

fn remove_any(path: &Path) -> io::Result<()> {
    if path.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}

/// A template being made (`.make-*`) or its lock (`.lock-*`).
fn is_scratch(name: &std::ffi::OsStr) -> bool {
    name.to_string_lossy().starts_with('.')
}

/// The directory of a scope's own set (`@NAME`), not a template.
fn is_scope(name: &std::ffi::OsStr) -> bool {
    name.to_string_lossy().starts_with(SCOPE_PREFIX)
}

/// Whether the scratch entry `name` belongs to a make that is running: a
/// lock someone holds, or the directory of a live process.
fn being_made(path: &Path, name: &str) -> bool {
    use std::os::fd::AsRawFd;
    if name.starts_with(".lock-") {
        let Ok(file) = fs::File::open(path) else {
            return false;
        };
        // SAFETY: flock on a descriptor owned here; released when it closes.
        let free = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        return !free;
    }
    let pid = name.rsplit('-').next().and_then(|p| p.parse::<u32>().ok());
    pid.is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
}

/// Checks a template directory: its meta, its key, its state's checksum
/// and its RAM file's size and identity.
fn check(dir: &Path, key: Option<&str>) -> Result<Template, String> {
    let meta_path = dir.join(META_FILE);
    let meta: Meta = fs::read(&meta_path)
        .map_err(|e| format!("{META_FILE}: {e}"))
        .and_then(|bytes| {
            serde_json::from_slice(&bytes).map_err(|e| format!("{META_FILE}: {e}"))
        })?;
    if key.is_some_and(|key| key != meta.key) || digest_of(&meta.inputs) != meta.key {
        return Err("its key does not match what it was made from".into());
    }
    let state = dir.join(STATE_FILE);
    let (len, sha256) = sha256_of(&state).map_err(|e| format!("{STATE_FILE}: {e}"))?;
    if len != meta.state_len || sha256 != meta.state_sha256 {
        return Err(format!("{STATE_FILE} is corrupt (checksum mismatch)"));
    }
    let memory = dir.join(MEMORY_FILE);
    let found = FileIdentity::of(&memory).map_err(|e| format!("{MEMORY_FILE}: {e}"))?;
    let expected_len = meta
        .inputs
        .method
        .memory_file_len(meta.inputs.shape.memory_mib);
    if found.len != expected_len {
        return Err(format!(
            "{MEMORY_FILE} is {} bytes, not {expected_len}",
            found.len
        ));
    }
    let renamed = FileIdentity {
        path: meta.memory.path.clone(),
        ..found
    };
    if renamed != meta.memory {
        return Err(format!("{MEMORY_FILE} changed since the template was made"));
    }
    let inputs = &meta.inputs;
    let unchanged = |file: &FileIdentity| FileIdentity::of(&file.path).is_ok_and(|f| f == *file);
    let stale = inputs.format != FORMAT
        || inputs.hull != env!("CARGO_PKG_VERSION")
        || ![&inputs.program, &inputs.kernel, &inputs.initramfs]
            .into_iter()
            .all(unchanged);
    Ok(Template {
        key: meta.key,
        dir: dir.to_path_buf(),
        shape: meta.inputs.shape,
        hypervisor: meta.inputs.hypervisor,
        method: meta.inputs.method,
        created: meta.created,
        stale,
    })
}

fn sha256_of(path: &Path) -> io::Result<(u64, String)> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        len += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((len, hex(&hasher.finalize())))
}

#[cfg(test)]
mod tests;
