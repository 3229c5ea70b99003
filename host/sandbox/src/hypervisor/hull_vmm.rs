//! hull-vmm backend: our own VMM, the default on hosts with hardware KVM.
//! Devices sit on virtio-mmio; the agent channel is vsock, whose host side
//! is unix sockets: the agent connects to host port 1024, which hull-vmm
//! turns into a connection to `<sandbox>/vsock_1024`, where we listen.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use hull_protocol::{AGENT_VSOCK_PORT, CHANNEL_CMDLINE_KEY};

use super::{
    find_program, vmm_snapshot, Boot, DiskSpec, Hypervisor, HypervisorError, SnapshotMethod,
    VmLaunch, VmSpec, CLONE_DISK_SLOTS, TEMPLATE_MAC,
};

/// The guest's vsock context id (any value ≥ 3; each VM has its own device).
const GUEST_CID: u32 = 3;

pub struct HullVmm {
    binary: PathBuf,
}

impl HullVmm {
    /// Finds `hull-vmm`: `HULL_VMM`, next to the `hull` binary, or on PATH.
    pub fn locate() -> Result<Self, HypervisorError> {
        let beside_hull = std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.join("hull-vmm")));
        std::env::var_os("HULL_VMM")
            .map(PathBuf::from)
            .or(beside_hull.filter(|p| p.is_file()))
            .or_else(|| find_program("hull-vmm"))
            .filter(|p| p.is_file())
            .map(|binary| Self { binary })
            .ok_or(HypervisorError::ProgramMissing {
                program: "hull-vmm".into(),
                package: "hull (make hull)",
            })
    }

    pub fn kernel_cmdline() -> String {
        [
            "console=ttyS0",
            // The agent's restart becomes an i8042 reset, which ends hull-vmm.
            "reboot=k",
            "panic=-1",
            "pci=off",
            "quiet",
            "i8042.noaux",
            "i8042.nomux",
            "i8042.dumbkbd",
            &format!("{CHANNEL_CMDLINE_KEY}=vsock"),
        ]
        .join(" ")
    }
}

impl Hypervisor for HullVmm {
    fn name(&self) -> &'static str {
        "hull-vmm"
    }

    fn accelerated(&self) -> bool {
        true
    }

    fn program(&self) -> &std::path::Path {
        &self.binary
    }

    fn snapshots(&self) -> Option<SnapshotMethod> {
        Some(SnapshotMethod::HullVmm)
    }

    fn launch(&self, spec: &VmSpec) -> Result<VmLaunch, HypervisorError> {
        let vsock_base = spec.sandbox_dir.join("vsock");
        let agent_socket = spec.sandbox_dir.join(format!("vsock_{AGENT_VSOCK_PORT}"));
        let console_log = spec.sandbox_dir.join(super::CONSOLE_LOG);
        let mut cmd = Command::new(&self.binary);
        match &spec.boot {
            Boot::Cold => {
                self.boot_args(&mut cmd, spec);
                for disk in &spec.disks {
                    cmd.args(["--block", &block_arg(disk)?]);
                }
            }
            // Empty slots for what clones bring (virtio-mmio has no
            // hotplug); the snapshot is asked for over the API socket.
            Boot::Template { nic, .. } => {
                self.boot_args(&mut cmd, spec);
                for slot in CLONE_DISK_SLOTS {
                    let mode = if slot.read_only { ",ro" } else { "" };
                    cmd.args(["--block", &format!("placeholder{mode},id={}", slot.serial)]);
                }
                if *nic {
                    cmd.args(["--net", &format!("placeholder,mac={TEMPLATE_MAC}")]);
                }
                cmd.arg("--api-socket")
                    .arg(spec.sandbox_dir.join(vmm_snapshot::API_SOCKET));
            }
            // Memory, vCPUs, kernel and command line come from the
            // snapshot; the flags give each saved slot this clone's
            // backing, in slot order.
            // The API socket lets a clone wait paused, and take its disks
            // later (the warm pool).
            Boot::Clone { snapshot } => {
                cmd.arg("--restore").arg(snapshot);
                for slot in clone_disks(&spec.disks)? {
                    cmd.args(["--block", &slot]);
                }
                cmd.arg("--api-socket")
                    .arg(spec.sandbox_dir.join(vmm_snapshot::API_SOCKET));
            }
        }
        // A template's NIC slot is there exactly when its clones have a
        // NIC (the shape, part of the template's key, says so).
        if let (Boot::Cold | Boot::Clone { .. }, Some(nic)) = (&spec.boot, &spec.nic) {
            cmd.args(["--net", &format!("{},mac={}", nic.tap, nic.mac)]);
        }
        cmd.arg("--console").arg(super::console_path());
        // A clone keeps the template's guest CID (the snapshot's).
        let vsock = match spec.boot {
            Boot::Clone { .. } => format!("uds={}", vsock_base.display()),
            _ => format!("cid={GUEST_CID},uds={}", vsock_base.display()),
        };
        cmd.args(["--vsock", &vsock])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        Ok(VmLaunch {
            command: cmd,
            agent_socket,
            console_log,
            // hull-vmm has no jail yet (its own seccomp filters only).
            jail: None,
        })
    }
}

impl HullVmm {
    /// What a booting VM (cold or template) is made of.
    fn boot_args(&self, cmd: &mut Command, spec: &VmSpec) {
        cmd.arg("--kernel")
            .arg(&spec.kernel)
            .arg("--initramfs")
            .arg(&spec.initramfs)
            .args(["--memory", &spec.memory_mib.to_string()])
            .args(["--vcpus", &spec.vcpus.to_string()])
            .args(["--cmdline", &Self::kernel_cmdline()]);
    }
}

/// `PATH[,ro],id=SERIAL`: hull-vmm splits the value at commas.
fn block_arg(disk: &DiskSpec) -> Result<String, HypervisorError> {
    let path = disk
        .path
        .to_str()
        .filter(|p| !p.contains(','))
        .ok_or_else(|| HypervisorError::UnquotablePath(disk.path.clone()))?;
    let mode = if disk.read_only { ",ro" } else { "" };
    Ok(format!("{path}{mode},id={}", disk.serial))
}

/// A clone's `--block` values, one per template slot in slot order: the
/// disk with the slot's serial, or the slot left empty. A disk without a
/// slot cannot be given to a clone.
fn clone_disks(disks: &[DiskSpec]) -> Result<Vec<String>, HypervisorError> {
    if let Some(stray) = disks
        .iter()
        .find(|d| !CLONE_DISK_SLOTS.iter().any(|s| s.serial == d.serial))
    {
        return Err(HypervisorError::NoDiskSlot(stray.serial.clone()));
    }
    CLONE_DISK_SLOTS
        .iter()
        .map(
            |slot| match disks.iter().find(|d| d.serial == slot.serial) {
                // The slot keeps its mode: the disk's must match (hull-vmm
                // refuses the clone otherwise).
                Some(disk) if disk.read_only == slot.read_only => block_arg(disk),
                Some(disk) => Err(HypervisorError::NoDiskSlot(disk.serial.clone())),
                None => {
                    let mode = if slot.read_only { ",ro" } else { "" };
                    Ok(format!("placeholder{mode},id={}", slot.serial))
                }
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypervisor::{NicSpec, ROOTFS_SERIAL};
    use crate::scratch::SCRATCH_SERIAL;

    fn vmm() -> HullVmm {
        HullVmm {
            binary: "/opt/hull-vmm".into(),
        }
    }

    fn disk(path: &str, read_only: bool, serial: &str) -> DiskSpec {
        DiskSpec {
            path: path.into(),
            read_only,
            serial: serial.into(),
        }
    }

    fn spec(boot: Boot) -> VmSpec {
        VmSpec {
            kernel: "/k/vmlinux".into(),
            initramfs: "/k/initramfs.cpio".into(),
            vcpus: 2,
            memory_mib: 256,
            disks: vec![
                disk("/d/root.erofs", true, ROOTFS_SERIAL),
                disk("/c/scratch.ext4", false, SCRATCH_SERIAL),
            ],
            sandbox_dir: "/run/hull/abc".into(),
            nic: Some(NicSpec {
                tap: "tapabc".into(),
                mac: "02:42:0a:59:00:02".into(),
                netns: "/run/netns/x".into(),
            }),
            boot,
        }
    }

    fn args(spec: &VmSpec) -> String {
        vmm().launch(spec).unwrap().args().join(" ")
    }

    #[test]
    fn command_line_names_every_part() {
        let mut spec = spec(Boot::Cold);
        spec.disks.truncate(1);
        spec.nic = None;
        let launch = vmm().launch(&spec).unwrap();
        let joined = args(&spec);
        assert!(joined.contains("--memory 256 --vcpus 2"));
        assert!(joined.contains("--block /d/root.erofs,ro,id=hull-rootfs"));
        assert!(joined.contains("--vsock cid=3,uds=/run/hull/abc/vsock"));
        assert!(joined.contains("hull.channel=vsock"));
        assert!(!joined.contains("--api-socket"), "{joined}");
        assert_eq!(
            launch.agent_socket,
            PathBuf::from("/run/hull/abc/vsock_1024")
        );
    }

    #[test]
    fn a_template_boots_with_empty_slots_and_the_api_socket() {
        let template = Boot::Template {
            memory: "/t/memory".into(),
            nic: true,
        };
        let joined = args(&spec(template));
        assert!(joined.contains("--kernel /k/vmlinux --initramfs /k/initramfs.cpio"));
        assert!(joined.contains("--memory 256 --vcpus 2"));
        // The spec's own disks and tap are not the template's.
        assert!(
            joined.contains(
                "--block placeholder,ro,id=hull-rootfs --block placeholder,id=hull-scratch"
            ),
            "{joined}"
        );
        assert!(!joined.contains("root.erofs") && !joined.contains("tapabc"));
        assert!(joined.contains("--net placeholder,mac=02:00:00:00:00:01"));
        assert!(joined.contains("--api-socket /run/hull/abc/api.sock"));
        assert!(joined.contains("--vsock cid=3,uds=/run/hull/abc/vsock"));
        let no_nic = Boot::Template {
            memory: "/t/memory".into(),
            nic: false,
        };
        assert!(!args(&spec(no_nic)).contains("--net"));
    }

    #[test]
    fn a_clone_restores_with_its_disks_in_the_slots_and_its_own_sockets() {
        let mut clone = spec(Boot::Clone {
            snapshot: "/t/templates/k".into(),
        });
        // Given in the other order: the slots' order wins.
        clone.disks.reverse();
        let joined = args(&clone);
        assert!(joined.starts_with("--restore /t/templates/k "), "{joined}");
        assert!(
            joined.contains(
                "--block /d/root.erofs,ro,id=hull-rootfs --block /c/scratch.ext4,id=hull-scratch"
            ),
            "{joined}"
        );
        assert!(joined.contains("--net tapabc,mac=02:42:0a:59:00:02"));
        assert!(joined.contains("--console /proc/self/fd/3"));
        // The CID is the snapshot's; the socket the clone's.
        assert!(
            joined.contains("--vsock uds=/run/hull/abc/vsock"),
            "{joined}"
        );
        for from_the_snapshot in [
            "--kernel",
            "--initramfs",
            "--memory",
            "--vcpus",
            "--cmdline",
        ] {
            assert!(!joined.contains(from_the_snapshot), "{joined}");
        }
        // A slot without a disk stays empty.
        clone.disks.retain(|d| d.serial == ROOTFS_SERIAL);
        assert!(args(&clone).contains("--block placeholder,id=hull-scratch"));
    }

    #[test]
    fn a_clone_refuses_disks_the_template_has_no_slot_for() {
        let mut clone = spec(Boot::Clone {
            snapshot: "/t/k".into(),
        });
        clone
            .disks
            .push(disk("/v/data.img", false, "hull-volume-1"));
        let err = vmm().launch(&clone).unwrap_err();
        assert_eq!(
            err.to_string(),
            "disk \"hull-volume-1\" has no slot in the template VM"
        );
        let mut writable_image = spec(Boot::Clone {
            snapshot: "/t/k".into(),
        });
        writable_image.disks[0].read_only = false;
        assert!(matches!(
            vmm().launch(&writable_image),
            Err(HypervisorError::NoDiskSlot(_))
        ));
    }

    #[test]
    fn a_disk_path_with_a_comma_is_refused() {
        let mut cold = spec(Boot::Cold);
        cold.disks[0].path = "/d/a,ro".into();
        assert!(matches!(
            vmm().launch(&cold),
            Err(HypervisorError::UnquotablePath(_))
        ));
    }

    #[test]
    fn hull_vmm_saves_its_own_memory_file() {
        let method = vmm().snapshots().unwrap();
        assert_eq!(method, SnapshotMethod::HullVmm);
        assert!(!method.ram_file_before_boot());
        assert_eq!(method.memory_file_len(256), 4096 + (256 << 20));
        let qemu = SnapshotMethod::QemuMigration;
        assert!(qemu.ram_file_before_boot());
        assert_eq!(qemu.memory_file_len(256), 256 << 20);
    }
}
