//! The one planner: what a container will be ([`ContainerConfig`]), from a
//! docker-shaped run request ([`ContainerConfig::from_run`], used by the
//! `hull` CLI and, later, the Engine API) or from an OCI bundle
//! ([`ContainerConfig::from_bundle`], used by `hull-runc` and the shim).
//! Front doors parse their own syntax into a [`RunRequest`]; every rule
//! about images, VM sizing, networks and pods lives here, once.

use std::path::{Path, PathBuf};

use hull_image::ImageStore;
use hull_net::forward::PortMapping;
use hull_net::{Networks, NO_NETWORK};
use hull_sandbox::assets::GuestAssets;
use hull_sandbox::process::now_nanos;
use hull_sandbox::{hypervisor, scratch, template, timings};
use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::bundle::{self, Bundle};
use crate::error::{io_error, Error};
use crate::oci::limits::Limits;
use crate::oci::{build_spec, ContainerOptions, SeccompChoice};
use crate::record::{random_name, validate_name, Container, ContainerConfig, Containers};
use crate::spec::{plan_process, ImageDefaults, RunOverrides};

/// VM memory when the container has no memory limit.
pub const DEFAULT_VM_MEMORY_MIB: u64 = 512;

/// What the guest kernel and agent need on top of the container's memory
/// limit (kernel ≈ 30 MiB with its page tables and caches, agent ≈ 2 MiB,
/// plus headroom so the container's limit, not the VM, is what bites).
pub const GUEST_OVERHEAD_MIB: u64 = 96;

/// The smallest memory limit accepted (Docker's minimum is 6 MiB).
pub const MIN_MEMORY_BYTES: u64 = 6 << 20;

/// `--network container:NAME`: run in NAME's VM.
pub const CONTAINER_NETWORK: &str = "container:";

/// The rootfs disk's file in a bundle container's record.
const ROOTFS_DISK: &str = "rootfs.erofs";
/// Where a bundle came from, for `state`.
const BUNDLE_FILE: &str = "bundle.json";
/// The annotations CRI (containerd's, CRI-O's) puts on a pod's containers.
const CRI_CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
const CRI_SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";

/// Where hull keeps its state: images and writable layers under `root`,
/// container records under `run_dir`.
#[derive(Debug, Clone, Copy)]
pub struct Paths<'a> {
    pub root: &'a Path,
    pub run_dir: &'a Path,
}

/// A docker-shaped request for a new container, as a front door parsed it.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    pub image: String,
    pub name: Option<String>,
    pub hostname: Option<String>,
    /// Entrypoint, command, env, workdir and user over the image's.
    pub process: RunOverrides,
    pub tty: bool,
    /// The terminal's (rows, columns) when `tty`.
    pub terminal_size: Option<(u16, u16)>,
    pub open_stdin: bool,
    pub auto_remove: bool,
    pub memory_bytes: Option<u64>,
    pub cpus: Option<f64>,
    pub pids_limit: Option<i64>,
    pub read_only: bool,
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// Docker's `--security-opt` values.
    pub security_opt: Vec<String>,
    pub limits: Limits,
    /// A network's name, `none`, or `container:NAME`.
    pub network: String,
    pub ports: Vec<PortMapping>,
    pub aliases: Vec<String>,
    /// `auto`, `qemu` or `hull-vmm`.
    pub hypervisor: String,
    pub kernel: Option<PathBuf>,
    pub initramfs: Option<PathBuf>,
    /// Boot the VM cold rather than clone it from a template.
    pub no_template: bool,
    /// Which set of templates the VM clones (see [`TEMPLATE_SCOPE_ENV`]);
    /// `None`: the environment's, or the host's.
    pub template_scope: Option<String>,
    /// `-v`, `--mount` and `--tmpfs`, in the order given.
    pub mounts: Vec<crate::volume::MountRequest>,
    /// Docker's labels, kept in the record.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Keep the VM after the main process exits, for
    /// [`crate::changes::export`] (see `ContainerConfig`).
    pub keep_vm_for_export: bool,
}

/// The environment variable that turns templates off (`off`) for every
/// front door.
pub const TEMPLATE_ENV: &str = "HULL_TEMPLATE";
/// Templates' directory under the hull root.
const TEMPLATES_DIR: &str = "templates";
/// The environment variable that puts templates elsewhere (installations
/// that share one set, such as a test suite's).
pub const TEMPLATES_DIR_ENV: &str = "HULL_TEMPLATES";

/// Who shares a set of templates, for front doors without a flag for it
/// (`--template-scope` on the CLI; the `io.hull.template-scope` annotation
/// of an OCI bundle comes first). Clones of one template share its pages,
/// which is a cache side channel between them: `host` (the default) shares
/// one set host-wide, a name gives those who pass it a set of their own
/// (one per tenant), `none` boots every VM cold.
pub const TEMPLATE_SCOPE_ENV: &str = "HULL_TEMPLATE_SCOPE";
/// The bundle annotation that names a container's template scope.
pub const TEMPLATE_SCOPE_ANNOTATION: &str = "io.hull.template-scope";
const HOST_SCOPE: &str = "host";
const NO_SCOPE: &str = "none";

/// Where a new container's VM finds its template, unless the caller,
/// scope `none` or `HULL_TEMPLATE=off` asks for a cold boot.
fn templates_dir(
    root: &Path,
    no_template: bool,
    scope: Option<&str>,
) -> Result<Option<PathBuf>, Error> {
    let off = std::env::var(TEMPLATE_ENV).is_ok_and(|v| v == "off" || v == "0");
    let from_env = std::env::var(TEMPLATE_SCOPE_ENV).ok();
    let scope = scope
        .or(from_env.as_deref())
        .filter(|s| !s.is_empty())
        .unwrap_or(HOST_SCOPE);
    if !valid_scope(scope) {
        return Err(invalid(
            "template scope",
            scope,
            "1 to 64 of a-z A-Z 0-9 _ . - (starting with a letter or digit)",
        ));
    }
    if no_template || off || scope == NO_SCOPE {
        return Ok(None);
    }
    let templates = templates(root);
    Ok(Some(if scope == HOST_SCOPE {
        templates.root().to_path_buf()
    } else {
        templates.scope(scope).root().to_path_buf()
    }))
}

fn valid_scope(scope: &str) -> bool {
    let mut chars = scope.chars();
    scope.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// A broken template of the shape the container's VM will clone (made by
/// another hull, kernel or backend program, or damaged) is removed here,
/// with one warning for the user; the supervisor then makes a sound one.
fn remove_broken_template(
    config: &ContainerConfig,
    backend: &dyn hypervisor::Hypervisor,
) -> Option<String> {
    let dir = config.templates.as_ref()?;
    if config.shares_vm_with.is_some() {
        return None;
    }
    let assets = GuestAssets {
        kernel: config.kernel.clone(),
        initramfs: config.initramfs.clone(),
    };
    let key = template::key(backend, &assets, config.template_shape()).ok()?;
    let templates = template::Templates::new(dir);
    // (`find` removes a broken one.)
    let template::Found::Broken(why) = templates.find(&key) else {
        return None;
    };
    Some(format!(
        "VM template {} was broken ({why}) and is removed; this VM makes a new one",
        &key[..12]
    ))
}

/// The templates of the hull root (`HULL_TEMPLATES` overrides where).
pub fn templates(root: &Path) -> hull_sandbox::template::Templates {
    let dir = std::env::var_os(TEMPLATES_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(TEMPLATES_DIR));
    hull_sandbox::template::Templates::new(dir)
}

/// What `from_run` decided, beyond the config.
pub struct RunPlan {
    pub config: ContainerConfig,
    /// The VM runs under emulation because the host has no hardware
    /// virtualization (worth telling the user once).
    pub emulated: bool,
    /// What the caller should tell the user (as Docker's create answers
    /// with warnings).
    pub warnings: Vec<String>,
}

/// What `state` reports about a bundle.
#[derive(Debug, Serialize, Deserialize)]
pub struct BundleInfo {
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// The bundle's hooks as `create` read them: the host ones run at
    /// create, start and delete (`crate::hooks`), whatever became of the
    /// bundle since.
    #[serde(default)]
    pub hooks: Option<oci_spec::runtime::Hooks>,
}

impl BundleInfo {
    pub fn read(container: &Container) -> Option<Self> {
        let bytes = std::fs::read(container.dir.join(BUNDLE_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

impl ContainerConfig {
    /// Plans a container from a run request: resolves the image and its
    /// disk, the network or the VM to join, and the OCI spec.
    pub fn from_run(
        request: &RunRequest,
        paths: Paths,
        containers: &Containers,
    ) -> Result<RunPlan, Error> {
        if request.memory_bytes.is_some_and(|b| b < MIN_MEMORY_BYTES) {
            return Err(invalid("--memory", request.memory_bytes, "at least 6m"));
        }
        if request.cpus.is_some_and(|c| !(c > 0.0 && c <= 256.0)) {
            return Err(invalid("--cpus", request.cpus, "between 0 and 256"));
        }
        let (seccomp, no_new_privileges) = parse_security_opts(&request.security_opt)?;

        let store = ImageStore::open(paths.root)?;
        let image = store.resolve(&request.image)?;
        timings::mark("image_resolved");
        let assets = GuestAssets::locate(request.kernel.as_deref(), request.initramfs.as_deref())?;
        let backend = hypervisor::select(&request.hypervisor)?;
        let emulated = request.hypervisor == "auto" && !backend.accelerated();

        let (network, shares_vm_with) = match request.network.as_str() {
            NO_NETWORK => (None, None),
            mode if mode.starts_with(CONTAINER_NETWORK) => {
                (None, Some(vm_to_join(containers, mode, request)?))
            }
            name => {
                Networks::new(paths.root, paths.run_dir).get(name)?;
                (Some(name.to_string()), None)
            }
        };
        if network.is_none() && shares_vm_with.is_none() && !request.ports.is_empty() {
            return Err(Error::Unsupported(
                "-p needs a network; the container has --network none",
            ));
        }
        for alias in &request.aliases {
            validate_name(alias)
                .map_err(|_| invalid("--network-alias", alias, "not a valid name"))?;
        }
        let id = hull_sandbox::new_id().map_err(io_error("generate a container id"))?;
        let name = match &request.name {
            Some(name) => name.clone(),
            None => random_name(&id),
        };
        let hostname = request
            .hostname
            .clone()
            .unwrap_or_else(|| id[..12].to_string());
        let defaults = ImageDefaults {
            entrypoint: image.config.entrypoint.clone(),
            cmd: image.config.cmd.clone(),
            env: image.config.env.clone(),
            working_dir: image.config.working_dir.clone(),
            user: image.config.user.clone(),
        };
        let plan = plan_process(&defaults, &request.process, &hostname, |k| {
            std::env::var(k).ok()
        })?;
        let options = ContainerOptions {
            hostname,
            privileged: request.privileged,
            cap_add: request.cap_add.clone(),
            cap_drop: request.cap_drop.clone(),
            seccomp,
            no_new_privileges,
            read_only: request.read_only,
            memory_bytes: request.memory_bytes,
            cpus: request.cpus,
            pids_limit: request.pids_limit,
            terminal: request
                .tty
                .then(|| request.terminal_size.unwrap_or((24, 80))),
            limits: request.limits.clone(),
        };
        let mut spec = build_spec(&plan, &options)?;
        let disk = store.rootfs_disk(&image)?;
        let shares =
            crate::mounts::from_requests(paths.root, &store, &image, &request.mounts, &mut spec)?;
        timings::mark("disk_ready");

        let memory_mib = request.memory_bytes.map_or(DEFAULT_VM_MEMORY_MIB, |b| {
            b.div_ceil(1 << 20) + GUEST_OVERHEAD_MIB
        });
        let scratch_dir = scratch::sandboxes_dir(paths.root).join(&id[..12]);
        let config = ContainerConfig {
            id: id.clone(),
            name,
            created: now_nanos(),
            image: request.image.clone(),
            image_id: image.id.clone(),
            spec,
            user: plan.user,
            rootfs_disk: disk.path.clone(),
            fs_type: disk.fs_type.to_string(),
            scratch_disk: scratch_dir.join(scratch::DISK_FILE),
            scratch_dir,
            vcpus: request.cpus.map_or(1, |c| c.ceil() as u32),
            memory_mib: vm_memory(memory_mib, "--memory")?,
            hypervisor: request.hypervisor.clone(),
            kernel: assets.kernel,
            initramfs: assets.initramfs,
            tty: request.tty,
            open_stdin: request.open_stdin,
            auto_remove: request.auto_remove,
            network,
            aliases: request.aliases.clone(),
            ports: request.ports.clone(),
            shares_vm_with,
            templates: templates_dir(
                paths.root,
                request.no_template,
                request.template_scope.as_deref(),
            )?,
            labels: request.labels.clone(),
            shares,
            keep_vm_for_export: request.keep_vm_for_export && !request.auto_remove,
            restored: None,
        };
        let warnings = remove_broken_template(&config, backend.as_ref())
            .into_iter()
            .collect();
        Ok(RunPlan {
            config,
            emulated,
            warnings,
        })
    }

    /// The template shape of the VM the container boots.
    pub fn template_shape(&self) -> template::Shape {
        template::Shape {
            vcpus: self.vcpus,
            memory_mib: self.memory_mib,
            nic: self.network.is_some(),
        }
    }

    /// Plans the container runc's `create` names `id` from the bundle at
    /// `bundle`: the guest's spec and where its disks will be (the record
    /// and disks are made by [`create_from_bundle`]).
    pub fn from_bundle(
        root: &Path,
        bundle: &Bundle,
        id: &str,
        containers: &Containers,
    ) -> Result<ContainerConfig, Error> {
        let assets = GuestAssets::locate(None, None)?;
        let hull_id = hull_sandbox::new_id().map_err(io_error("generate a container id"))?;
        let pod = pod_vm(containers, &bundle.spec)?;
        let (mut spec, shares) =
            bundle::guest_spec(&bundle.spec, pod.as_ref().map(|host| host.pid))?;
        bundle::name_for_guest_hooks(&mut spec, id, &bundle.dir);
        let process = spec.process().clone().unwrap_or_default();
        let memory_mib = bundle::vm_memory_mib(&spec, DEFAULT_VM_MEMORY_MIB, GUEST_OVERHEAD_MIB);
        let short = hull_id[..12].to_string();
        let scratch_dir = scratch::sandboxes_dir(root).join(&short);
        let bundle_scope = bundle
            .spec
            .annotations()
            .as_ref()
            .and_then(|a| a.get(TEMPLATE_SCOPE_ANNOTATION).cloned());
        Ok(ContainerConfig {
            shares_vm_with: pod.map(|host| host.vm_owner),
            id: hull_id.clone(),
            name: id.to_string(),
            created: now_nanos(),
            image: bundle.dir.display().to_string(),
            image_id: String::new(),
            vcpus: bundle::vcpus(&spec),
            memory_mib: vm_memory(memory_mib, "memory limit")?,
            spec,
            // Empty: the agent uses the spec's numeric uid and gid.
            user: String::new(),
            rootfs_disk: root.join(&short).join(ROOTFS_DISK),
            fs_type: "erofs".into(),
            scratch_disk: scratch_dir.join(scratch::DISK_FILE),
            scratch_dir,
            hypervisor: std::env::var("HULL_HYPERVISOR").unwrap_or_else(|_| "auto".into()),
            kernel: assets.kernel,
            initramfs: assets.initramfs,
            tty: process.terminal().unwrap_or(false),
            // The caller's stdin is always the container's (often /dev/null).
            open_stdin: true,
            auto_remove: false,
            network: None,
            aliases: Vec::new(),
            ports: Vec::new(),
            templates: templates_dir(root, false, bundle_scope.as_deref())?,
            shares,
            labels: Default::default(),
            keep_vm_for_export: false,
            restored: None,
        })
    }
}

/// Makes the record of the container runc's `create` names `id` under
/// `root` from the bundle at `bundle_dir`: the guest's spec, the rootfs
/// disk and the writable layer. Nothing is left behind if it fails.
pub fn create_from_bundle(root: &Path, bundle_dir: &Path, id: &str) -> Result<Container, Error> {
    let bundle = Bundle::load(bundle_dir)?;
    if let Some(process) = bundle.spec.process() {
        bundle::check_executable(&bundle.rootfs, process)?;
    }
    let containers = Containers::new(root);
    std::fs::create_dir_all(root).map_err(io_error(format!("create {}", root.display())))?;
    if containers.find_exact(id).is_ok() {
        return Err(Error::IdInUse(id.to_string()));
    }
    let config = ContainerConfig::from_bundle(root, &bundle, id, &containers)?;
    let container = containers.create(config)?;
    match make_bundle_disks(root, &bundle, &container) {
        Ok(()) => Ok(container),
        Err(e) => {
            containers.remove(&container);
            Err(e)
        }
    }
}

/// runc's `restore`: a container made from the bundle whose VM comes
/// back from the checkpoint in `image_path` (its disks copies of the
/// checkpoint's), its main process carrying on once started.
pub fn restore_from_bundle(
    root: &Path,
    bundle_dir: &Path,
    id: &str,
    image_path: &Path,
) -> Result<Container, Error> {
    let checkpoint = std::path::absolute(image_path)
        .map_err(io_error(format!("find {}", image_path.display())))?;
    let info = crate::checkpoint::CheckpointInfo::read(&checkpoint)?;
    let bundle = Bundle::load(bundle_dir)?;
    let containers = Containers::new(root);
    std::fs::create_dir_all(root).map_err(io_error(format!("create {}", root.display())))?;
    if containers.find_exact(id).is_ok() {
        return Err(Error::IdInUse(id.to_string()));
    }
    let mut config = ContainerConfig::from_bundle(root, &bundle, id, &containers)?;
    info.check_assets(&checkpoint, &config.kernel, &config.initramfs)?;
    if !config.shares.is_empty() {
        return Err(Error::Checkpoint {
            dir: checkpoint,
            reason: "the bundle has bind mounts, which a restored VM cannot take".into(),
        });
    }
    config.vcpus = info.vcpus;
    config.memory_mib = info.memory_mib;
    config.open_stdin = info.open_stdin;
    config.restored = Some(crate::checkpoint::Restored {
        checkpoint: checkpoint.clone(),
        info,
    });
    let container = containers.create(config)?;
    match restore_bundle_disks(root, &bundle, &container, &checkpoint) {
        Ok(()) => Ok(container),
        Err(e) => {
            containers.remove(&container);
            Err(e)
        }
    }
}

/// The record's bundle info, and its disks copied from the checkpoint.
fn restore_bundle_disks(
    root: &Path,
    bundle: &Bundle,
    container: &Container,
    checkpoint: &Path,
) -> Result<(), Error> {
    record_bundle(bundle, container)?;
    scratch::create(root, container.short_id(), &container.layer_owner())?;
    let config = &container.config;
    let copy = |name: &str, to: &Path| {
        crate::checkpoint::copy_sparse(&checkpoint.join(name), to)
            .map_err(io_error(format!("copy the checkpoint's {name}")))
    };
    copy(hull_sandbox::CHECKPOINT_ROOTFS, &config.rootfs_disk)?;
    copy(hull_sandbox::CHECKPOINT_SCRATCH, &config.scratch_disk)
}

/// `--memory` of a request and a bundle's memory limit: at most 4 TiB.
/// The pool spec of a plain `hull run IMAGE` (the default shape, on the
/// default network) with this backend and these assets, for warming a
/// pool before the first run; `None` when templates are off.
pub fn default_pool_spec(
    root: &Path,
    hypervisor: &str,
    kernel: Option<&Path>,
    initramfs: Option<&Path>,
) -> Result<Option<crate::pool::PoolSpec>, Error> {
    let Some(templates) = templates_dir(root, false, None)? else {
        return Ok(None);
    };
    let assets = GuestAssets::locate(kernel, initramfs)?;
    hypervisor::select(hypervisor)?;
    Ok(Some(crate::pool::PoolSpec {
        root: root.to_path_buf(),
        hypervisor: hypervisor.to_string(),
        kernel: assets.kernel,
        initramfs: assets.initramfs,
        templates,
        vcpus: 1,
        memory_mib: vm_memory(DEFAULT_VM_MEMORY_MIB, "--memory")?,
        nic: true,
    }))
}

fn vm_memory(mib: u64, flag: &'static str) -> Result<u32, Error> {
    u32::try_from(mib).map_err(|_| invalid(flag, mib, "too large"))
}

fn invalid(flag: &'static str, value: impl std::fmt::Debug, reason: &'static str) -> Error {
    Error::Invalid {
        flag,
        value: format!("{value:?}"),
        reason,
    }
}

/// `--network container:NAME`: hull's pods. The container runs in NAME's
/// VM, as a container of its own (its own root, namespaces and cgroup)
/// that shares the VM's network, the way Docker's containers share a
/// network namespace. Returns the id of the container owning the VM.
fn vm_to_join(containers: &Containers, mode: &str, request: &RunRequest) -> Result<String, Error> {
    let name = &mode[CONTAINER_NETWORK.len()..];
    if !request.ports.is_empty() || !request.aliases.is_empty() {
        return Err(Error::JoinWithOwnNetwork {
            mode: mode.to_string(),
            name: name.to_string(),
        });
    }
    let host = containers.find(name).map_err(|source| Error::JoinTarget {
        mode: mode.to_string(),
        source,
    })?;
    if !host.state().is_running() {
        return Err(Error::JoinTargetStopped {
            mode: mode.to_string(),
            name: name.to_string(),
        });
    }
    Ok(host.vm_owner().to_string())
}

/// The pod's sandbox container, for a container that joins its VM.
struct PodHost {
    /// The hull id of the container that owns the VM.
    vm_owner: String,
    /// The sandbox's main process, as a pid in the guest.
    pid: u32,
}

/// CRI's pod annotations: a container of type `container` runs in the VM
/// of its pod's sandbox container (the one named by `sandbox-id`), which
/// must be running; a sandbox, or a container without them, gets a VM of
/// its own.
fn pod_vm(containers: &Containers, spec: &Spec) -> Result<Option<PodHost>, Error> {
    let annotations = spec.annotations().clone().unwrap_or_default();
    let kind = annotations.get(CRI_CONTAINER_TYPE).map(String::as_str);
    let sandbox = annotations.get(CRI_SANDBOX_ID);
    let (Some("container"), Some(sandbox)) = (kind, sandbox) else {
        return Ok(None);
    };
    let host = containers
        .find(sandbox)
        .map_err(|_| Error::NoSandbox(sandbox.clone()))?;
    let state = host.state();
    let (true, Some(pid)) = (state.is_running(), state.pid) else {
        return Err(Error::SandboxStopped(sandbox.clone()));
    };
    Ok(Some(PodHost {
        vm_owner: host.vm_owner().to_string(),
        pid,
    }))
}

fn make_bundle_disks(root: &Path, bundle: &Bundle, container: &Container) -> Result<(), Error> {
    record_bundle(bundle, container)?;
    hull_image::build_erofs(&bundle.rootfs, &container.config.rootfs_disk)?;
    scratch::create(root, container.short_id(), &container.layer_owner())?;
    Ok(())
}

/// What `delete` and the hooks need of the bundle, in the record.
fn record_bundle(bundle: &Bundle, container: &Container) -> Result<(), Error> {
    let info = BundleInfo {
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        hooks: bundle.spec.hooks().clone(),
    };
    let encoded =
        serde_json::to_vec(&info).map_err(|e| io_error("encode the bundle info")(e.into()))?;
    crate::private::write_atomic(&container.dir.join(BUNDLE_FILE), &encoded)
        .map_err(io_error("record the bundle"))
}

/// Docker's `--security-opt` values: `seccomp=unconfined|FILE` and
/// `no-new-privileges[=true|false]` (Docker also accepts `:` for `=`).
fn parse_security_opts(opts: &[String]) -> Result<(SeccompChoice, bool), Error> {
    let mut seccomp = SeccompChoice::Default;
    let mut no_new_privileges = false;
    for opt in opts {
        let (key, value) = match opt.split_once(['=', ':']) {
            Some((k, v)) => (k, Some(v)),
            None => (opt.as_str(), None),
        };
        match (key, value) {
            ("seccomp", Some("unconfined")) => seccomp = SeccompChoice::Unconfined,
            ("seccomp", Some(path)) => {
                let text = std::fs::read(path).map_err(|source| Error::SeccompFile {
                    path: path.to_string(),
                    source,
                })?;
                let profile =
                    serde_json::from_slice(&text).map_err(|source| Error::SeccompProfile {
                        path: path.to_string(),
                        source,
                    })?;
                seccomp = SeccompChoice::Profile(profile);
            }
            ("no-new-privileges", None | Some("true")) => no_new_privileges = true,
            ("no-new-privileges", Some("false")) => no_new_privileges = false,
            _ => {
                return Err(invalid(
                    "--security-opt",
                    opt,
                    "use seccomp=unconfined|FILE or no-new-privileges",
                ))
            }
        }
    }
    Ok((seccomp, no_new_privileges))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn security_opts_parse_like_docker() {
        assert_eq!(
            parse_security_opts(&opts(&[])).unwrap(),
            (SeccompChoice::Default, false)
        );
        assert_eq!(
            parse_security_opts(&opts(&["seccomp=unconfined", "no-new-privileges"])).unwrap(),
            (SeccompChoice::Unconfined, true)
        );
        assert!(
            !parse_security_opts(&opts(&["no-new-privileges:false"]))
                .unwrap()
                .1
        );
        assert!(parse_security_opts(&opts(&["apparmor=x"])).is_err());
        assert!(parse_security_opts(&opts(&["seccomp=/nonexistent.json"])).is_err());
    }

    #[test]
    fn bad_sizes_are_refused_before_anything_is_touched() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths {
            root: &dir.path().join("root"),
            run_dir: &dir.path().join("run"),
        };
        let containers = Containers::new(paths.run_dir);
        let small = RunRequest {
            memory_bytes: Some(1 << 20),
            ..RunRequest::default()
        };
        let err = ContainerConfig::from_run(&small, paths, &containers)
            .err()
            .unwrap();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
        assert!(err.to_string().contains("--memory"), "{err}");
        let cpus = RunRequest {
            cpus: Some(0.0),
            ..RunRequest::default()
        };
        let err = ContainerConfig::from_run(&cpus, paths, &containers)
            .err()
            .unwrap();
        assert!(err.to_string().contains("--cpus"), "{err}");
        assert!(!paths.root.exists() && !paths.run_dir.exists());
    }

    #[test]
    fn a_missing_image_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths {
            root: dir.path(),
            run_dir: &dir.path().join("run"),
        };
        let request = RunRequest {
            image: "nope:latest".into(),
            network: NO_NETWORK.into(),
            ..RunRequest::default()
        };
        let err = ContainerConfig::from_run(&request, paths, &Containers::new(paths.run_dir))
            .err()
            .unwrap();
        assert_eq!(err.kind(), crate::ErrorKind::NotFound, "{err}");
    }
}
