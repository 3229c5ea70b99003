//! One container's record: its config, its state, and the lookups that
//! find it by id, id prefix or name.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use hull_sandbox::process::{now_nanos, ProcessRef};
use hull_sandbox::scratch::Owner;

use super::names;

const CONFIG_FILE: &str = "config.json";
const STATE_FILE: &str = "state.json";
const LOCK_FILE: &str = "lock";
/// Prefix of a record being assembled.
const NEW_PREFIX: &str = ".new-";

/// What a container is; fixed when it is created.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerConfig {
    pub id: String,
    pub name: String,
    /// Unix time in nanoseconds.
    pub created: u64,
    /// The image as the user named it, and its id.
    pub image: String,
    pub image_id: String,
    /// The OCI runtime spec the agent gets.
    pub spec: oci_spec::runtime::Spec,
    /// The image-style user, resolved in the guest.
    pub user: String,
    pub rootfs_disk: PathBuf,
    pub fs_type: String,
    /// The writable layer's directory and disk under the hull root.
    pub scratch_dir: PathBuf,
    pub scratch_disk: PathBuf,
    pub vcpus: u32,
    pub memory_mib: u32,
    pub hypervisor: String,
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub tty: bool,
    pub open_stdin: bool,
    pub auto_remove: bool,
    /// The network it joins; `None`: loopback only.
    #[serde(default)]
    pub network: Option<String>,
    /// More names it is known by on its network.
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub ports: Vec<hull_net::forward::PortMapping>,
    /// The id of the container whose VM this one runs in (a pod,
    /// `--network container:NAME`), sharing its network; `None`: a VM of
    /// its own.
    #[serde(default)]
    pub shares_vm_with: Option<String>,
    /// Where the VM templates are (`HULL_ROOT/templates`): its VM is a
    /// clone of one (made the first time). `None`: it boots cold
    /// (`--no-template`, `HULL_TEMPLATE=off`).
    #[serde(default)]
    pub templates: Option<PathBuf>,
    /// Host files and directories its VM serves it (bind mounts and
    /// volumes): share `n` is the spec's mount source `hull-share:<n>`.
    #[serde(default)]
    pub shares: Vec<Share>,
    /// Docker's labels (`--label`, the Engine API's `Labels`): what
    /// compose and `ps --filter label=` find containers by.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Its VM stays up after the main process exits, until `stop` or
    /// `rm`, so its changes can still be exported (a build's `RUN` step,
    /// `hull commit` of an exited container): no second boot.
    #[serde(default)]
    pub keep_vm_for_export: bool,
    /// Set when it is restored from a checkpoint: its VM comes back from
    /// there, its main process carries on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored: Option<crate::checkpoint::Restored>,
}

impl ContainerConfig {
    /// The container's id as its VM's agent knows it: its own, or, for a
    /// restored one, that of the container that was checkpointed.
    pub fn agent_id(&self) -> &str {
        match &self.restored {
            Some(restored) => &restored.info.guest_id,
            None => &self.id,
        }
    }
}

/// One host file or directory a container's VM serves it over 9P.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    /// The host path (a volume's `_data` directory for a volume).
    pub source: PathBuf,
    pub read_only: bool,
    /// The volume it is, if it is one (in use while the record exists).
    #[serde(default)]
    pub volume: Option<String>,
    /// An anonymous volume (`-v /path`): removed with the container by
    /// `--rm` and `rm -v`.
    #[serde(default)]
    pub anonymous: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    Exited,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Running => "running",
            Self::Exited => "exited",
        }
    }
}

/// Where a container is in its life.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ContainerState {
    pub status: Option<Status>,
    /// The supervisor that owns the VM, while one does.
    pub supervisor: Option<ProcessRef>,
    /// The hypervisor process.
    pub vm_pid: Option<i32>,
    /// The main process's pid inside the guest.
    pub pid: Option<u32>,
    pub started_at: Option<u64>,
    pub finished_at: Option<u64>,
    pub exit_code: Option<i32>,
    pub oom_killed: bool,
    /// Why the container stopped other than by its main process exiting.
    pub error: Option<String>,
    /// How many times it was started.
    pub starts: u32,
    /// Its address on its network, while it runs.
    #[serde(default)]
    pub ip_address: Option<String>,
    /// Its processes are frozen (`hull pause`), while it runs.
    #[serde(default)]
    pub paused: bool,
}

impl ContainerState {
    pub fn status(&self) -> Status {
        self.status.unwrap_or(Status::Created)
    }

    pub fn is_running(&self) -> bool {
        self.status() == Status::Running
    }

    /// "created", "running", "paused" or "exited", as Docker names them.
    pub fn status_name(&self) -> &'static str {
        match self.status() {
            Status::Running if self.paused => "paused",
            status => status.as_str(),
        }
    }

    /// Whether a supervisor owns the container now (starting, running, or
    /// shutting down).
    pub fn has_live_supervisor(&self) -> bool {
        self.supervisor.is_some_and(|s| s.is_alive())
    }
}

/// Unix nanoseconds as RFC 3339, as Docker prints times.
pub fn format_time(nanos: u64) -> String {
    crate::logs::rfc3339_nano(UNIX_EPOCH + std::time::Duration::from_nanos(nanos))
}

#[derive(Debug, Error)]
pub enum LookupError {
    #[error("no such container: {0}")]
    NotFound(String),
    /// runc's words, which podman and containerd look for.
    #[error("container {0} does not exist")]
    NoSuchId(String),
    #[error("container reference {0:?} matches more than one container; give more of the id")]
    Ambiguous(String),
    #[error("the name {name:?} is already in use by container {id}")]
    NameInUse { name: String, id: String },
    #[error("invalid container name {0:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*")]
    InvalidName(String),
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> LookupError {
    let what = what.into();
    move |source| LookupError::Io { what, source }
}

/// All containers under one run dir.
pub struct Containers {
    run_dir: PathBuf,
}

/// One container's record.
#[derive(Debug, Clone)]
pub struct Container {
    pub dir: PathBuf,
    pub config: ContainerConfig,
}

impl Containers {
    pub fn new(run_dir: &Path) -> Self {
        Self {
            run_dir: run_dir.to_path_buf(),
        }
    }

    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    fn names_dir(&self) -> PathBuf {
        self.run_dir.join("names")
    }

    /// Records a new container: reserves its name, then writes config and
    /// state and moves the record into place in one rename.
    pub fn create(&self, config: ContainerConfig) -> Result<Container, LookupError> {
        names::validate(&config.name)?;
        crate::private::ensure_dir(&self.run_dir)
            .map_err(io_err(format!("create {}", self.run_dir.display())))?;
        crate::private::ensure_dir(&self.names_dir())
            .map_err(io_err(format!("create {}", self.names_dir().display())))?;
        let name_file = self.names_dir().join(&config.name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&name_file)
        {
            Ok(mut f) => f
                .write_all(config.id.as_bytes())
                .map_err(io_err(format!("write {}", name_file.display())))?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let id = fs::read_to_string(&name_file).unwrap_or_default();
                return Err(LookupError::NameInUse {
                    name: config.name,
                    id: id.chars().take(12).collect(),
                });
            }
            Err(e) => return Err(io_err(format!("create {}", name_file.display()))(e)),
        }
        let short = &config.id[..12];
        let staging = self.run_dir.join(format!("{NEW_PREFIX}{short}"));
        let dir = self.run_dir.join(short);
        let result = (|| {
            crate::private::create_dir(&staging)
                .map_err(io_err(format!("create {}", staging.display())))?;
            write_json(&staging.join(CONFIG_FILE), &config)?;
            write_json(
                &staging.join(STATE_FILE),
                &ContainerState {
                    status: Some(Status::Created),
                    ..Default::default()
                },
            )?;
            crate::private::create_file(&staging.join(LOCK_FILE))
                .map_err(io_err(format!("create {}", staging.display())))?;
            fs::rename(&staging, &dir).map_err(io_err(format!("create {}", dir.display())))
        })();
        if let Err(e) = result {
            let _ = fs::remove_dir_all(&staging);
            let _ = fs::remove_file(&name_file);
            return Err(e);
        }
        Ok(Container { dir, config })
    }

    /// Every container, oldest first. Records that cannot be read (being
    /// removed right now) are skipped.
    pub fn list(&self) -> Vec<Container> {
        let mut all: Vec<Container> = fs::read_dir(&self.run_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| is_short_id(&e.file_name().to_string_lossy()))
            .filter_map(|e| Container::load(&e.path()).ok())
            .collect();
        all.sort_by_key(|c| c.config.created);
        all
    }

    /// Finds a container by full id, name, or unique id prefix.
    /// The container named exactly `name`, neither an id nor a prefix
    /// (runc's ids are hull names).
    pub fn find_exact(&self, name: &str) -> Result<Container, LookupError> {
        match self.find(name) {
            Ok(c) if c.config.name == name => Ok(c),
            _ => Err(LookupError::NoSuchId(name.to_string())),
        }
    }

    pub fn find(&self, reference: &str) -> Result<Container, LookupError> {
        let not_found = || LookupError::NotFound(reference.to_string());
        if reference.is_empty() {
            return Err(not_found());
        }
        if names::validate(reference).is_ok() {
            if let Ok(id) = fs::read_to_string(self.names_dir().join(reference)) {
                if let Some(c) = id
                    .get(..12)
                    .and_then(|short| Container::load(&self.run_dir.join(short)).ok())
                {
                    return Ok(c);
                }
            }
        }
        let lower = reference.to_ascii_lowercase();
        if !lower.chars().all(|c| c.is_ascii_hexdigit()) || lower.len() > 64 {
            return Err(not_found());
        }
        let mut matches = self
            .list()
            .into_iter()
            .filter(|c| c.config.id.starts_with(&lower));
        match (matches.next(), matches.next()) {
            (Some(c), None) => Ok(c),
            (Some(_), Some(_)) => Err(LookupError::Ambiguous(reference.to_string())),
            (None, _) => Err(not_found()),
        }
    }

    /// Deletes everything of a container: its record, name, logs and
    /// writable layer. The caller has made sure nothing runs.
    pub fn remove(&self, container: &Container) {
        let _ = fs::remove_dir_all(&container.config.scratch_dir);
        if let Some(network) = &container.config.network {
            hull_net::release(&self.run_dir, network, &container.config.id);
        }
        let name_file = self.names_dir().join(&container.config.name);
        if fs::read_to_string(&name_file).is_ok_and(|id| id == container.config.id) {
            let _ = fs::remove_file(&name_file);
        }
        // Rename first so no reader sees a half-deleted record.
        let doomed = self
            .run_dir
            .join(format!(".rm-{}", &container.config.id[..12]));
        let target = if fs::rename(&container.dir, &doomed).is_ok() {
            doomed
        } else {
            container.dir.clone()
        };
        let _ = fs::remove_dir_all(target);
        if fs::read_dir(self.names_dir()).is_ok_and(|mut d| d.next().is_none()) {
            let _ = fs::remove_dir(self.names_dir());
        }
    }

    /// Removes leftovers of interrupted commands: records that were being
    /// assembled or removed, and writable layers of this run directory
    /// without a record. Layers of another run directory on the same root
    /// stay (its own sweep looks after them) unless that run directory is
    /// gone; so do layers made before the machine last booted, whose
    /// records a tmpfs run directory lost, unless `earlier_boots` (an
    /// explicit prune) says to take them too. A layer whose owner cannot
    /// be read is never taken.
    pub fn sweep(&self, root: &Path, earlier_boots: bool) {
        for entry in fs::read_dir(&self.run_dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let stale = name.starts_with(".rm-")
                || (name.starts_with(NEW_PREFIX)
                    && entry
                        .metadata()
                        .and_then(|m| m.modified())
                        .is_ok_and(|t| t.elapsed().is_ok_and(|age| age.as_secs() > 60)));
            if stale {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        let sandboxes = hull_sandbox::scratch::sandboxes_dir(root);
        let this_run_dir = Owner::current(&self.run_dir).run_dir;
        for entry in fs::read_dir(&sandboxes).into_iter().flatten().flatten() {
            let Some(owner) = Owner::of(&entry.path()) else {
                continue;
            };
            let orphan = if owner.run_dir == this_run_dir {
                let name = entry.file_name();
                let has_record = self.run_dir.join(&name).exists()
                    || self
                        .run_dir
                        .join(format!("{NEW_PREFIX}{}", name.to_string_lossy()))
                        .exists();
                !has_record && (owner.this_boot() || earlier_boots)
            } else {
                !owner.run_dir.exists()
            };
            if orphan {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
}

fn is_short_id(name: &str) -> bool {
    name.len() == 12 && name.chars().all(|c| c.is_ascii_hexdigit())
}

impl Container {
    /// Whose its writable layer is: the run directory holding its record.
    pub fn layer_owner(&self) -> Owner {
        Owner::current(self.dir.parent().unwrap_or(&self.dir))
    }

    pub fn load(dir: &Path) -> Result<Self, LookupError> {
        let path = dir.join(CONFIG_FILE);
        let bytes = fs::read(&path).map_err(io_err(format!("read {}", path.display())))?;
        let config = serde_json::from_slice(&bytes).map_err(|e| LookupError::Io {
            what: format!("parse {}", path.display()),
            source: io::Error::other(e),
        })?;
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
        })
    }

    /// The container whose VM this one runs in: itself, or in a pod the
    /// container it joined.
    pub fn vm_owner(&self) -> &str {
        self.config
            .shares_vm_with
            .as_deref()
            .unwrap_or(&self.config.id)
    }

    /// Its supervisor, while that is alive.
    pub fn live_supervisor(&self) -> Option<ProcessRef> {
        self.recorded_state()
            .supervisor
            .filter(ProcessRef::is_alive)
    }

    pub fn short_id(&self) -> &str {
        &self.config.id[..12]
    }

    pub fn socket_path(&self) -> PathBuf {
        self.dir.join("supervisor.sock")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("container.log")
    }

    pub fn vm_dir(&self) -> PathBuf {
        self.dir.join("vm")
    }

    /// The recorded state, corrected by what is alive: a container whose
    /// supervisor died reads as exited with an error.
    pub fn state(&self) -> ContainerState {
        let mut state = self.recorded_state();
        if state.status() != Status::Exited
            && state.supervisor.is_some()
            && !state.has_live_supervisor()
        {
            mark_lost(&mut state);
        }
        state
    }

    /// `state.json` as written, without checking the supervisor.
    pub fn recorded_state(&self) -> ContainerState {
        fs::read(self.dir.join(STATE_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Read-modify-write of the state under the container's lock.
    pub fn update<T>(&self, change: impl FnOnce(&mut ContainerState) -> T) -> io::Result<T> {
        let lock = File::open(self.dir.join(LOCK_FILE))?;
        rustix::fs::flock(lock.as_fd(), rustix::fs::FlockOperation::LockExclusive)?;
        let mut state = self.recorded_state();
        let out = change(&mut state);
        write_json(&self.dir.join(STATE_FILE), &state).map_err(|e| match e {
            LookupError::Io { source, .. } => source,
            other => io::Error::other(other.to_string()),
        })?;
        Ok(out)
    }

    /// Writes down that the supervisor is gone, if it is, so later readers
    /// agree. Returns the corrected state.
    pub fn settle(&self) -> ContainerState {
        let state = self.state();
        let recorded = self.recorded_state();
        if state.status() != recorded.status() {
            let _ = self.update(|s| {
                if s.status() != Status::Exited && !s.has_live_supervisor() {
                    mark_lost(s);
                }
            });
        }
        state
    }
}

fn mark_lost(state: &mut ContainerState) {
    state.status = Some(Status::Exited);
    state.exit_code.get_or_insert(255);
    state.finished_at.get_or_insert_with(now_nanos);
    state
        .error
        .get_or_insert_with(|| "the container's supervisor died".to_string());
    state.pid = None;
    state.vm_pid = None;
    state.ip_address = None;
}

/// Writes `value` as JSON to `path`, owner-only, whole or not at all.
fn write_json(path: &Path, value: &impl Serialize) -> Result<(), LookupError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| LookupError::Io {
        what: format!("encode {}", path.display()),
        source: io::Error::other(e),
    })?;
    crate::private::write_atomic(path, &bytes).map_err(io_err(format!("write {}", path.display())))
}

/// A container's configuration for unit tests (nothing of it exists).
#[cfg(test)]
pub(crate) fn config(id: &str, name: &str) -> ContainerConfig {
    ContainerConfig {
        id: id.into(),
        name: name.into(),
        created: now_nanos(),
        image: "busybox".into(),
        image_id: "sha256:00".into(),
        spec: oci_spec::runtime::Spec::default(),
        user: String::new(),
        rootfs_disk: "/d".into(),
        fs_type: "erofs".into(),
        scratch_dir: "/nonexistent-scratch".into(),
        scratch_disk: "/nonexistent-scratch/s".into(),
        vcpus: 1,
        memory_mib: 128,
        hypervisor: "auto".into(),
        kernel: "/k".into(),
        initramfs: "/i".into(),
        templates: None,
        shares: Vec::new(),
        tty: false,
        open_stdin: false,
        auto_remove: false,
        network: None,
        aliases: Vec::new(),
        ports: Vec::new(),
        shares_vm_with: None,
        labels: Default::default(),
        keep_vm_for_export: false,
        restored: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(prefix: &str) -> String {
        format!("{prefix:0<64}")
    }

    /// A layer dir as `scratch::create` leaves it, without the disk.
    fn layer(root: &Path, name: &str, owner: Option<(&Path, &str)>) -> PathBuf {
        let dir = hull_sandbox::scratch::sandboxes_dir(root).join(name);
        fs::create_dir_all(&dir).unwrap();
        if let Some((run_dir, boot)) = owner {
            let text = format!("{}\n{boot}\n", run_dir.display());
            fs::write(dir.join(hull_sandbox::scratch::OWNER_FILE), text).unwrap();
        }
        dir
    }

    #[test]
    fn a_sweep_takes_only_its_own_orphans() {
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("root");
        let (ours, theirs) = (base.path().join("run-a"), base.path().join("run-b"));
        let all = Containers::new(&ours);
        let kept = all.create(config(&id("aaa1"), "kept")).unwrap();
        let boot = Owner::current(&ours).boot;
        let with_record = layer(&root, kept.short_id(), Some((&ours, &boot)));
        let orphan = layer(&root, "orphan000001", Some((&ours, &boot)));
        // A live container of another run dir on the same root.
        fs::create_dir_all(&theirs).unwrap();
        let other = layer(&root, "other0000001", Some((&theirs, &boot)));
        let gone_run_dir = layer(
            &root,
            "gone00000001",
            Some((&base.path().join("run-c"), &boot)),
        );
        let earlier_boot = layer(&root, "before000001", Some((&ours, "another-boot")));
        let unknown = layer(&root, "unknown00001", None);

        all.sweep(&root, false);
        assert!(with_record.exists());
        assert!(!orphan.exists(), "this run dir's, no record");
        assert!(other.exists(), "another run dir's");
        assert!(!gone_run_dir.exists(), "its run dir is gone");
        assert!(
            earlier_boot.exists(),
            "made before the last boot: only a prune takes it"
        );
        assert!(unknown.exists(), "no owner: never taken");

        all.sweep(&root, true);
        assert!(!earlier_boot.exists());
        assert!(with_record.exists() && other.exists() && unknown.exists());
    }

    #[test]
    fn records_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let base = tempfile::tempdir().unwrap();
        let run = base.path().join("run");
        let all = Containers::new(&run);
        let c = all.create(config(&id("bbb1"), "secret")).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&run), 0o700);
        assert_eq!(mode(&c.dir), 0o700);
        assert_eq!(mode(&c.dir.join(CONFIG_FILE)), 0o600);
        assert_eq!(mode(&c.dir.join(STATE_FILE)), 0o600);
    }

    #[test]
    fn create_find_by_name_prefix_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let all = Containers::new(dir.path());
        let a = all.create(config(&id("abc1"), "web")).unwrap();
        all.create(config(&id("abc2"), "db")).unwrap();
        assert_eq!(all.find("web").unwrap().config.id, a.config.id);
        assert_eq!(all.find("abc1").unwrap().config.id, a.config.id);
        assert_eq!(all.find(&a.config.id).unwrap().config.name, "web");
        assert!(matches!(all.find("abc"), Err(LookupError::Ambiguous(_))));
        assert!(matches!(all.find("nope"), Err(LookupError::NotFound(_))));
        assert!(matches!(
            all.create(config(&id("abc3"), "web")),
            Err(LookupError::NameInUse { .. })
        ));
        assert_eq!(all.list().len(), 2);
        all.remove(&a);
        assert!(all.find("web").is_err());
        assert_eq!(all.list().len(), 1);
        // The name is free again.
        all.create(config(&id("abc4"), "web")).unwrap();
    }

    #[test]
    fn a_dead_supervisor_means_exited_with_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let all = Containers::new(dir.path());
        let c = all.create(config(&id("def"), "x")).unwrap();
        assert_eq!(c.state().status(), Status::Created);
        c.update(|s| {
            s.status = Some(Status::Running);
            s.supervisor = Some(ProcessRef::of_self());
        })
        .unwrap();
        assert_eq!(c.state().status(), Status::Running);
        c.update(|s| {
            s.supervisor = Some(ProcessRef {
                pid: std::process::id() as i32,
                start_time: 1,
            })
        })
        .unwrap();
        let state = c.settle();
        assert_eq!(state.status(), Status::Exited);
        assert!(state.error.is_some());
        assert_eq!(c.recorded_state().status(), Status::Exited);
    }
}
