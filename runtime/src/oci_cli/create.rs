//! `create`: a record, the rootfs disk and writable layer, and a
//! supervisor in runc mode that boots the VM and waits for `start`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};

use super::args::{CreateArgs, RuncArgs};
use super::bundle::{self, Bundle};
use super::{close_inherited_fds, console, containers, write_pid_file};
use crate::assets::GuestAssets;
use crate::container::{now_nanos, Container, ContainerConfig, Containers};
use crate::sandbox::{self, scratch};
use crate::supervisor::launch;

/// VM memory without a limit in the spec, and what the guest needs on top
/// of a limit (as for `hull run`).
const DEFAULT_VM_MEMORY_MIB: u64 = 512;
const GUEST_OVERHEAD_MIB: u64 = 96;
/// The rootfs disk's file in the record.
const ROOTFS_DISK: &str = "rootfs.erofs";
/// The annotations CRI (containerd's, CRI-O's) puts on a pod's containers.
const CRI_CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
const CRI_SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
/// Where the bundle came from, for `state`.
const BUNDLE_FILE: &str = "bundle.json";

/// What `state` reports about the bundle.
#[derive(Debug, Serialize, Deserialize)]
pub struct BundleInfo {
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
}

impl BundleInfo {
    pub fn read(container: &Container) -> Option<Self> {
        let bytes = std::fs::read(container.dir.join(BUNDLE_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

pub async fn create(args: &RuncArgs, create: &CreateArgs) -> Result<i32> {
    close_inherited_fds();
    let container = prepare(&args.root, &create.bundle, &create.id)?;
    let all = containers(args);
    match console_and_spawn(args, create, &container) {
        Ok(()) => Ok(0),
        Err(e) => {
            all.remove(&container);
            Err(e)
        }
    }
}

/// Makes the record of container `id` under `root` from the bundle at
/// `bundle_dir`: the guest's spec, the rootfs disk and the writable layer.
/// Nothing is left behind if it fails.
pub fn prepare(root: &Path, bundle_dir: &Path, id: &str) -> Result<Container> {
    let bundle = Bundle::load(bundle_dir)?;
    if let Some(process) = bundle.spec.process() {
        bundle::check_executable(&bundle.rootfs, process)?;
    }
    let all = Containers::new(root);
    std::fs::create_dir_all(root).with_context(|| format!("create {}", root.display()))?;
    if all.find(id).is_ok_and(|c| c.config.name == id) {
        return Err(anyhow!("container with id {id} already exists"));
    }
    let assets = GuestAssets::locate(None, None)?;
    let hull_id = sandbox::new_id().context("generate a container id")?;
    let pod = pod_vm(&all, &bundle.spec)?;
    let spec = bundle::guest_spec(&bundle.spec, pod.as_ref().map(|host| host.pid));
    let process = spec.process().clone().unwrap_or_default();
    let memory_mib = bundle::vm_memory_mib(&spec, DEFAULT_VM_MEMORY_MIB, GUEST_OVERHEAD_MIB);
    let short = hull_id[..12].to_string();
    let scratch_dir = scratch::sandboxes_dir(root).join(&short);
    let config = ContainerConfig {
        shares_vm_with: pod.map(|host| host.vm_owner),
        id: hull_id.clone(),
        name: id.to_string(),
        created: now_nanos(),
        image: bundle.dir.display().to_string(),
        image_id: String::new(),
        vcpus: bundle::vcpus(&spec),
        memory_mib: u32::try_from(memory_mib).context("the memory limit is too large")?,
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
    };
    let container = all.create(config)?;
    match make_disks(root, &bundle, &container) {
        Ok(()) => Ok(container),
        Err(e) => {
            all.remove(&container);
            Err(e)
        }
    }
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
fn pod_vm(all: &Containers, spec: &oci_spec::runtime::Spec) -> Result<Option<PodHost>> {
    let annotations = spec.annotations().clone().unwrap_or_default();
    let kind = annotations.get(CRI_CONTAINER_TYPE).map(String::as_str);
    let sandbox = annotations.get(CRI_SANDBOX_ID);
    let (Some("container"), Some(sandbox)) = (kind, sandbox) else {
        return Ok(None);
    };
    let host = all
        .find(sandbox)
        .map_err(|_| anyhow!("the pod's sandbox {sandbox} is not a hull container here"))?;
    let state = host.state();
    let (true, Some(pid)) = (state.is_running(), state.pid) else {
        return Err(anyhow!("the pod's sandbox {sandbox} is not running"));
    };
    Ok(Some(PodHost {
        vm_owner: host
            .config
            .shares_vm_with
            .clone()
            .unwrap_or_else(|| host.config.id.clone()),
        pid,
    }))
}

fn make_disks(root: &Path, bundle: &Bundle, container: &Container) -> Result<()> {
    let info = BundleInfo {
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
    };
    std::fs::write(
        container.dir.join(BUNDLE_FILE),
        serde_json::to_vec(&info).context("encode the bundle info")?,
    )
    .context("record the bundle")?;
    crate::image::build_erofs(&bundle.rootfs, &container.config.rootfs_disk)
        .with_context(|| format!("make a disk of {}", bundle.rootfs.display()))?;
    scratch::create(root, container.short_id())?;
    Ok(())
}

/// Starts the supervisor of a prepared container in runc mode with
/// `stdio` as the container's; `hull` is the binary that supervises.
pub fn spawn_supervisor(
    hull: &Path,
    root: &Path,
    container: &Container,
    stdio: [Stdio; 3],
) -> Result<std::process::Child> {
    launch::spawn_runc(hull, root, root, container, stdio)
}

fn console_and_spawn(args: &RuncArgs, create: &CreateArgs, container: &Container) -> Result<()> {
    let stdio = match &create.console_socket {
        Some(socket) => {
            let slave = console::send_pty(socket)?;
            [
                Stdio::from(slave.try_clone()?),
                Stdio::from(slave.try_clone()?),
                Stdio::from(slave),
            ]
        }
        None => [Stdio::inherit(), Stdio::inherit(), Stdio::inherit()],
    };
    let hull = std::env::current_exe().context("find the hull binary")?;
    let supervisor = spawn_supervisor(&hull, &args.root, container, stdio)?;
    if let Some(path) = &create.pid_file {
        if let Err(e) = write_pid_file(path, supervisor.id()) {
            kill_supervisor(container, supervisor);
            return Err(e);
        }
    }
    // The supervisor outlives this command: the caller's subreaper reaps it.
    drop(supervisor);
    Ok(())
}

fn kill_supervisor(container: &Container, mut supervisor: std::process::Child) {
    let _ = supervisor.kill();
    let _ = supervisor.wait();
    let _ = std::fs::remove_file(container.socket_path());
}
