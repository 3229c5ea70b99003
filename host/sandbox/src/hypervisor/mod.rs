//! The boundary between sandboxes and whatever runs their VMs.
//!
//! A backend turns a [`VmSpec`] (kernel, initramfs, sizes, disks, where the
//! sandbox keeps its sockets) into a process launch; the runtime starts and
//! watches that process the same way for every backend, and always listens
//! for the agent on the unix socket the backend names.

pub mod hotplug;
pub mod hull_vmm;
pub mod jail;
pub mod migration;
pub mod qemu;
pub mod qmp;
pub mod vmm_snapshot;

use std::path::{Path, PathBuf};
use std::process::Command;

use thiserror::Error;

pub use hull_vmm::HullVmm;
pub use qemu::Qemu;

/// One VM to boot.
#[derive(Debug, Clone)]
pub struct VmSpec {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub vcpus: u32,
    pub memory_mib: u32,
    pub disks: Vec<DiskSpec>,
    /// Private directory of the sandbox: sockets and logs go here.
    pub sandbox_dir: PathBuf,
    /// The network card, if the VM has one.
    pub nic: Option<NicSpec>,
    /// A fresh boot, a template's boot or a clone's restore.
    pub boot: Boot,
}

/// How a VM comes up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Boot {
    /// The kernel boots with the spec's devices.
    #[default]
    Cold,
    /// The kernel boots for a template: the spec's disks are left out (a
    /// clone brings its own; hull-vmm boots with empty [`CLONE_DISK_SLOTS`]
    /// for them) and, with `nic`, a network card without a backend is
    /// there for clones to use. QEMU's guest RAM is the shared file
    /// `memory`; hull-vmm writes its memory file when it saves.
    Template { memory: PathBuf, nic: bool },
    /// A clone of a template restores instead of booting from `snapshot`,
    /// the template's directory (its [`SNAPSHOT_STATE`] and
    /// [`SNAPSHOT_MEMORY`]): the same devices as the template's, its RAM
    /// mapped privately (copy-on-write) from the template's memory file.
    /// QEMU loads the device state after the launch and adds the spec's
    /// disks once it runs; hull-vmm restores at launch, the spec's disks
    /// filling the template's disk slots ([`CLONE_DISK_SLOTS`]).
    Clone { snapshot: PathBuf },
}

/// The saved device and CPU state in a template's directory.
pub const SNAPSHOT_STATE: &str = "state";
/// Guest RAM in a template's directory.
pub const SNAPSHOT_MEMORY: &str = "memory";

/// The serial of the container image's disk in a VM of the container's own.
pub const ROOTFS_SERIAL: &str = "hull-rootfs";

/// A disk a template VM is booted with, empty, for its clones to fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSlot {
    pub serial: &'static str,
    pub read_only: bool,
}

/// The disks every container's own VM has: its image, read-only, and its
/// writable layer. A backend that cannot add disks to a running VM
/// (hull-vmm: virtio-mmio has no hotplug) boots a template with an empty
/// slot for each, and a clone fills them.
pub const CLONE_DISK_SLOTS: [DiskSlot; 2] = [
    DiskSlot {
        serial: ROOTFS_SERIAL,
        read_only: true,
    },
    DiskSlot {
        serial: crate::scratch::SCRATCH_SERIAL,
        read_only: false,
    },
];

/// The MAC address of a template's network card. A clone's card keeps it
/// (the device's state comes from the template) until the agent sets the
/// clone's own.
pub const TEMPLATE_MAC: &str = "02:00:00:00:00:01";

/// How a backend saves a running VM and restores one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SnapshotMethod {
    /// QEMU's migration over QMP, guest RAM left in its shared file; a
    /// clone loads the state over QMP after its launch, then gets its
    /// disks hot-added, and its agent carries on the template's session.
    QemuMigration,
    /// hull-vmm's own snapshot (`snapshot DIR` on its API socket writes
    /// `state` and `memory`); a clone restores at launch (`--restore`)
    /// with its disks in the template's slots, and its agent, whose vsock
    /// connection the restore reset, connects again and says hello.
    HullVmm,
}

/// Why a template VM could not be saved.
#[derive(Debug, Error)]
pub enum SaveError {
    #[error(transparent)]
    Migration(#[from] migration::MigrationError),
    #[error(transparent)]
    Vmm(#[from] vmm_snapshot::VmmSnapshotError),
}

impl SnapshotMethod {
    /// Whether the template VM's RAM is a file made before it boots
    /// (QEMU's shared memory backend); otherwise the save writes it.
    pub fn ram_file_before_boot(self) -> bool {
        match self {
            Self::QemuMigration => true,
            Self::HullVmm => false,
        }
    }

    /// The size of the memory file of a template of `memory_mib` MiB.
    pub fn memory_file_len(self, memory_mib: u32) -> u64 {
        let guest = u64::from(memory_mib) << 20;
        match self {
            Self::QemuMigration => guest,
            // A 4 KiB header page, then guest RAM (vmm/README.md).
            Self::HullVmm => vmm_snapshot::MEMORY_HEADER_BYTES + guest,
        }
    }

    /// Saves the running template VM whose sandbox directory is `vm_dir`
    /// into `snapshot` (which exists): [`SNAPSHOT_STATE`] there, and for
    /// hull-vmm [`SNAPSHOT_MEMORY`] too. The VM is left stopped.
    pub async fn save(self, vm_dir: &Path, snapshot: &Path) -> Result<(), SaveError> {
        match self {
            Self::QemuMigration => migration::save(vm_dir, &snapshot.join(SNAPSHOT_STATE)).await?,
            Self::HullVmm => vmm_snapshot::save(vm_dir, snapshot).await?,
        }
        Ok(())
    }
}

/// A virtio-net card backed by a tap device. The tap lives in a network
/// namespace of hull's; the hypervisor process is started inside it.
#[derive(Debug, Clone)]
pub struct NicSpec {
    pub tap: String,
    pub mac: String,
    /// `/run/netns/NAME` of the namespace holding the tap.
    pub netns: PathBuf,
}

/// A virtio-blk disk; the guest finds it by `serial`.
#[derive(Debug, Clone)]
pub struct DiskSpec {
    pub path: PathBuf,
    pub read_only: bool,
    pub serial: String,
}

/// The descriptor a hypervisor writes the guest's serial console to (the
/// write end of a capped log's pipe, see [`crate::capped_log`]).
pub const CONSOLE_FD: i32 = 3;

/// The hypervisor's stderr, in the sandbox directory.
pub const HYPERVISOR_LOG: &str = "hypervisor.log";
/// The guest's serial console, in the sandbox directory.
pub const CONSOLE_LOG: &str = "console.log";

/// [`CONSOLE_FD`] as a path the hypervisor opens.
pub fn console_path() -> String {
    format!("/proc/self/fd/{CONSOLE_FD}")
}

/// How to start a VM, as a backend decided.
#[derive(Debug)]
pub struct VmLaunch {
    pub command: Command,
    /// Where the runtime must listen, before starting the command, for the
    /// agent's connection.
    pub agent_socket: PathBuf,
    /// Where the guest's serial console ends up on the host (the
    /// hypervisor writes it to [`CONSOLE_FD`]).
    pub console_log: PathBuf,
    /// The jail the hypervisor puts itself in; its id's lock goes to the
    /// process ([`jail::LOCK_FD`]).
    pub jail: Option<jail::Jail>,
}

impl VmLaunch {
    /// The hypervisor's arguments, as text.
    pub fn args(&self) -> Vec<String> {
        self.command
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect()
    }
}

#[derive(Debug, Error)]
pub enum HypervisorError {
    #[error(
        "{program} not found: install it (apt-get install {package}) or pick another --hypervisor"
    )]
    ProgramMissing {
        program: String,
        package: &'static str,
    },
    #[error("unknown hypervisor {0:?} (known: auto, qemu, hull-vmm)")]
    Unknown(String),
    #[error("{0}: a path given to the hypervisor may not contain a comma or a quote")]
    UnquotablePath(PathBuf),
    #[error("disk {0:?} has no slot in the template VM")]
    NoDiskSlot(String),
    #[error(transparent)]
    Jail(#[from] jail::JailError),
}

/// A way to run VMs.
pub trait Hypervisor: Send + Sync {
    fn name(&self) -> &'static str;
    /// Whether the VM runs with hardware virtualization.
    fn accelerated(&self) -> bool;
    fn launch(&self, spec: &VmSpec) -> Result<VmLaunch, HypervisorError>;
    /// Puts the VM about to be launched from `sandbox_dir` in its jail
    /// (see [`jail`]); apart from [`Self::launch`], whose command line
    /// names a template and so must not change from VM to VM.
    fn jail(&self, _launch: &mut VmLaunch, _sandbox_dir: &Path) -> Result<(), HypervisorError> {
        Ok(())
    }
    /// The program the backend runs (a template made by another one is
    /// not used).
    fn program(&self) -> &Path;
    /// How the backend saves and restores VMs; `None`: it cannot (yet),
    /// and its VMs boot cold.
    fn snapshots(&self) -> Option<SnapshotMethod>;
}

/// Whether this host's KVM has hardware virtualization behind it (not
/// merely a `/dev/kvm`: on hosts like our CI, `kvm_pvm` provides one
/// without VT-x/AMD-V).
pub fn hardware_kvm() -> bool {
    let cpu_flags = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let has_flag = cpu_flags
        .lines()
        .filter(|line| line.starts_with("flags"))
        .any(|line| {
            line.split_whitespace()
                .any(|flag| flag == "vmx" || flag == "svm")
        });
    has_flag && Path::new("/dev/kvm").exists()
}

/// Picks a backend. `auto`: hull-vmm on hardware KVM, QEMU with KVM if
/// hull-vmm is not installed, QEMU's TCG emulator without hardware support.
pub fn select(name: &str) -> Result<Box<dyn Hypervisor>, HypervisorError> {
    match name {
        "auto" if hardware_kvm() => match HullVmm::locate() {
            Ok(vmm) => Ok(Box::new(vmm)),
            Err(_) => Ok(Box::new(Qemu::new(true)?)),
        },
        "auto" | "qemu" => Ok(Box::new(Qemu::new(hardware_kvm())?)),
        "hull-vmm" => Ok(Box::new(HullVmm::locate()?)),
        other => Err(HypervisorError::Unknown(other.to_string())),
    }
}

/// The host CPU's clock in kHz, for `tsc_early_khz=` (without it, TCG
/// guests sometimes fail early TSC calibration).
pub fn host_cpu_khz() -> Option<u64> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz: f64 = cpuinfo
        .lines()
        .find(|line| line.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    Some((mhz * 1000.0) as u64)
}

/// Looks a program up on `$PATH`.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_hypervisor_is_named() {
        let err = select("xen").err().unwrap();
        assert_eq!(
            err.to_string(),
            "unknown hypervisor \"xen\" (known: auto, qemu, hull-vmm)"
        );
    }
}
