//! hull-vmm backend: our own VMM, the default on hosts with hardware KVM.
//! Devices sit on virtio-mmio; the agent channel is vsock, whose host side
//! is unix sockets: the agent connects to host port 1024, which hull-vmm
//! turns into a connection to `<sandbox>/vsock_1024`, where we listen.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use hull_protocol::{AGENT_VSOCK_PORT, CHANNEL_CMDLINE_KEY};

use super::{find_program, Hypervisor, HypervisorError, VmLaunch, VmSpec};

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

    fn snapshots(&self) -> Option<super::SnapshotMethod> {
        None
    }

    fn launch(&self, spec: &VmSpec) -> Result<VmLaunch, HypervisorError> {
        if spec.boot != super::Boot::Cold {
            return Err(HypervisorError::NoSnapshots(self.name()));
        }
        let vsock_base = spec.sandbox_dir.join("vsock");
        let agent_socket = spec.sandbox_dir.join(format!("vsock_{AGENT_VSOCK_PORT}"));
        let console_log = spec.sandbox_dir.join("console.log");
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--kernel")
            .arg(&spec.kernel)
            .arg("--initramfs")
            .arg(&spec.initramfs)
            .args(["--memory", &spec.memory_mib.to_string()])
            .args(["--vcpus", &spec.vcpus.to_string()])
            .args(["--cmdline", &Self::kernel_cmdline()])
            .arg("--console")
            .arg(&console_log);
        for disk in &spec.disks {
            let mode = if disk.read_only { ",ro" } else { "" };
            cmd.args([
                "--block",
                &format!("{}{mode},id={}", disk.path.display(), disk.serial),
            ]);
        }
        if let Some(nic) = &spec.nic {
            cmd.args(["--net", &format!("{},mac={}", nic.tap, nic.mac)]);
        }
        cmd.args([
            "--vsock",
            &format!("cid={GUEST_CID},uds={}", vsock_base.display()),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
        Ok(VmLaunch {
            command: cmd,
            agent_socket,
            console_log,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypervisor::DiskSpec;

    #[test]
    fn command_line_names_every_part() {
        let vmm = HullVmm {
            binary: "/opt/hull-vmm".into(),
        };
        let spec = VmSpec {
            kernel: "/k/vmlinux".into(),
            initramfs: "/k/initramfs.cpio".into(),
            vcpus: 2,
            memory_mib: 256,
            disks: vec![DiskSpec {
                path: "/d/root.erofs".into(),
                read_only: true,
                serial: "hull-rootfs".into(),
            }],
            sandbox_dir: "/run/hull/abc".into(),
            nic: None,
            boot: Default::default(),
        };
        let launch = vmm.launch(&spec).unwrap();
        let args: Vec<String> = launch
            .command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let joined = args.join(" ");
        assert!(joined.contains("--memory 256 --vcpus 2"));
        assert!(joined.contains("--block /d/root.erofs,ro,id=hull-rootfs"));
        assert!(joined.contains("--vsock cid=3,uds=/run/hull/abc/vsock"));
        assert!(joined.contains("hull.channel=vsock"));
        assert_eq!(
            launch.agent_socket,
            PathBuf::from("/run/hull/abc/vsock_1024")
        );
    }
}
