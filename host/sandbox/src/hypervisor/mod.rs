//! The boundary between sandboxes and whatever runs their VMs.
//!
//! A backend turns a [`VmSpec`] (kernel, initramfs, sizes, disks, where the
//! sandbox keeps its sockets) into a process launch; the runtime starts and
//! watches that process the same way for every backend, and always listens
//! for the agent on the unix socket the backend names.

pub mod hotplug;
pub mod hull_vmm;
pub mod migration;
pub mod qemu;
pub mod qmp;

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
    /// The kernel boots for a template: guest RAM is the shared file
    /// `memory`, the disks are left out (a clone brings its own) and, with
    /// `nic`, a network card without a backend is there for clones to use.
    Template { memory: PathBuf, nic: bool },
    /// A clone of a template restores instead of booting: the same
    /// devices as the template's, its RAM mapped privately (copy-on-write)
    /// from the template's `memory`; the device state is loaded after the
    /// launch. The spec's disks are added once it runs.
    Clone { memory: PathBuf },
}

/// The MAC address of a template's network card. A clone's card keeps it
/// (the device's state comes from the template) until the agent sets the
/// clone's own.
pub const TEMPLATE_MAC: &str = "02:00:00:00:00:01";

/// How a backend saves a running VM and restores one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotMethod {
    /// QEMU's migration over QMP, guest RAM left in its shared file.
    QemuMigration,
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

/// How to start a VM, as a backend decided.
#[derive(Debug)]
pub struct VmLaunch {
    pub command: Command,
    /// Where the runtime must listen, before starting the command, for the
    /// agent's connection.
    pub agent_socket: PathBuf,
    /// Where the guest's serial console is written.
    pub console_log: PathBuf,
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
    #[error("{0} cannot save or restore a VM")]
    NoSnapshots(&'static str),
    #[error("{0}: a path given to the hypervisor may not contain a comma or a quote")]
    UnquotablePath(PathBuf),
}

/// A way to run VMs.
pub trait Hypervisor: Send + Sync {
    fn name(&self) -> &'static str;
    /// Whether the VM runs with hardware virtualization.
    fn accelerated(&self) -> bool;
    fn launch(&self, spec: &VmSpec) -> Result<VmLaunch, HypervisorError>;
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
