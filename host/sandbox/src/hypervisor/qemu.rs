//! QEMU backend: q35 with virtio-pci devices, TCG where there is no
//! hardware virtualization, KVM where there is. The agent channel is a
//! virtio-serial port whose QEMU chardev connects to the runtime's socket,
//! since hosts like ours have no vhost-vsock.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use hull_protocol::{AGENT_SERIAL_PORT_NAME, CHANNEL_CMDLINE_KEY};

use super::jail::Jail;
use super::{
    find_program, host_cpu_khz, Boot, Hypervisor, HypervisorError, SnapshotMethod, VmLaunch,
    VmSpec, SNAPSHOT_MEMORY, TEMPLATE_MAC,
};

/// TCG's translated-code cache, in MiB. QEMU's default is 1 GiB, which an
/// idle busybox sandbox fills to 41 MiB (never flushed) and which only
/// grows as guests run new code. The cache is flushed whole when full:
/// measured per `hull run --rm busybox true` (QEMU 7.2, median QEMU CPU
/// time), 16 MiB costs ~10% more CPU than 1 GiB, as do 24 and 32, while
/// 8 MiB costs ~45%; 16 is the smallest before that knee (bench/density
/// shows the resident size, bench/boot the start latency).
const TCG_TB_SIZE_MIB: u32 = 16;
/// The QEMU object id of the guest's RAM backend.
const GUEST_RAM_ID: &str = "ram";

pub struct Qemu {
    binary: PathBuf,
    kvm: bool,
}

impl Qemu {
    pub fn new(kvm: bool) -> Result<Self, HypervisorError> {
        let program = "qemu-system-x86_64";
        let binary = std::env::var_os("HULL_QEMU")
            .map(PathBuf::from)
            .or_else(|| find_program(program))
            .filter(|p| p.is_file())
            .ok_or(HypervisorError::ProgramMissing {
                program: program.into(),
                package: "qemu-system-x86",
            })?;
        Ok(Self { binary, kvm })
    }

    /// The guest kernel command line.
    pub fn kernel_cmdline(&self, vcpus: u32) -> String {
        let mut args = vec![
            "console=ttyS0".to_string(),
            // A triple-fault reboot plus -no-reboot ends QEMU at once when
            // the agent powers off or the kernel panics.
            "reboot=t".into(),
            "panic=-1".into(),
            "quiet".into(),
            "i8042.noaux".into(),
            "i8042.nomux".into(),
            "i8042.dumbkbd".into(),
            format!("{CHANNEL_CMDLINE_KEY}=serial"),
            // The SCSI bus holds only disks hot-added later, each announced
            // by the device: scanning 256 empty targets at boot is waste.
            // ("none" would refuse the announced disks too; "manual" takes
            // those at a LUN other than 0, see hotplug.rs.)
            "scsi_mod.scan=manual".into(),
        ];
        if vcpus == 1 {
            // The ACPI interpreter costs ~0.5 s of a TCG boot, and one vCPU
            // needs none of it: PCI interrupts route through the MP table.
            // With more vCPUs the guest finds its CPUs only through ACPI
            // on q35 (measured: 2 vCPUs show as 1 with acpi=off).
            args.push("acpi=off".into());
        }
        if !self.kvm {
            if let Some(khz) = host_cpu_khz() {
                args.push(format!("tsc_early_khz={khz}"));
            }
            // The kernel's IO-APIC timer check counts ticks in a busy
            // loop; a TCG vCPU starved by a loaded host misses them and
            // the kernel panics ("IO-APIC + timer doesn't work", seen
            // with 20 VMs starting at once on 2 cores). The timer works;
            // under KVM the check is quick and stays.
            args.push("no_timer_check".into());
        }
        args.join(" ")
    }
}

impl Hypervisor for Qemu {
    fn name(&self) -> &'static str {
        "qemu"
    }

    fn accelerated(&self) -> bool {
        self.kvm
    }

    fn program(&self) -> &std::path::Path {
        &self.binary
    }

    fn snapshots(&self) -> Option<SnapshotMethod> {
        Some(SnapshotMethod::QemuMigration)
    }

    fn jail(&self, launch: &mut VmLaunch, sandbox_dir: &Path) -> Result<(), HypervisorError> {
        let jail = Jail::reserve(sandbox_dir)?;
        launch.command.args(jail.qemu_args());
        launch.jail = Some(jail);
        Ok(())
    }

    fn launch(&self, spec: &VmSpec) -> Result<VmLaunch, HypervisorError> {
        let agent_socket = spec.sandbox_dir.join("agent.sock");
        let console_log = spec.sandbox_dir.join(super::CONSOLE_LOG);
        let mut cmd = Command::new(&self.binary);
        let (accel, cpu) = if self.kvm {
            ("kvm".to_string(), "host")
        } else {
            (format!("tcg,tb-size={TCG_TB_SIZE_MIB}"), "max")
        };
        let memory = format!("{}M", spec.memory_mib);
        cmd.args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ])
        // QEMU's own seccomp filter: no exec of helpers, no setuid or
        // privilege change, no obsolete calls, no scheduler or rlimit
        // changes. Migration gets its file as a descriptor (migration.rs).
        .args(["-sandbox", SANDBOX])
        .args(["-machine", &format!("q35,memory-backend={GUEST_RAM_ID}")])
        .args(["-accel", &accel])
        .args(["-cpu", cpu])
        .args(["-smp", &spec.vcpus.to_string()])
        .args(["-m", &memory])
        .args(["-object", &ram_backend(&spec.boot, &memory)?])
        .arg("-kernel")
        .arg(&spec.kernel)
        .arg("-initrd")
        .arg(&spec.initramfs)
        .args(["-append", &self.kernel_cmdline(spec.vcpus)])
        .args([
            "-chardev",
            &format!("file,id=console,path={}", super::console_path()),
        ])
        .args(["-serial", "chardev:console"]);
        if spec.boot == Boot::Cold {
            for (i, disk) in spec.disks.iter().enumerate() {
                let readonly = if disk.read_only { ",readonly=on" } else { "" };
                cmd.args([
                    "-drive",
                    &format!(
                        "file={},if=none,id=disk{i},format=raw{readonly}",
                        disk.path.display()
                    ),
                ])
                .args([
                    "-device",
                    &format!("virtio-blk-pci,drive=disk{i},serial={}", disk.serial),
                ]);
            }
        }
        // A template's card has no backend (a hub port nothing else is on)
        // and the template's MAC; a clone keeps both on the device and
        // puts its own tap (or nothing) behind it.
        let nic = match (&spec.boot, &spec.nic) {
            (Boot::Template { nic: false, .. }, _) => None,
            (Boot::Template { nic: true, .. }, _) => {
                Some(("hubport,id=net0,hubid=0".to_string(), TEMPLATE_MAC))
            }
            (Boot::Cold, Some(nic)) => Some((tap_netdev(&nic.tap), nic.mac.as_str())),
            (Boot::Clone { .. }, Some(nic)) => Some((tap_netdev(&nic.tap), TEMPLATE_MAC)),
            (_, None) => None,
        };
        if let Some((netdev, mac)) = nic {
            cmd.args(["-netdev", &netdev]).args([
                "-device",
                // No option ROM: nothing here network-boots (and hosts
                // may not ship QEMU's ROM files).
                &format!("virtio-net-pci,netdev=net0,mac={mac},romfile="),
            ]);
        }
        // Free page reporting: the guest tells QEMU which blocks of its RAM
        // it has freed (4 MiB blocks, in this kernel) and QEMU gives them
        // back to the host. The balloon is never inflated. Measured: after a
        // container writes and deletes a 48 MiB tmpfs file, guest RAM
        // resident on the host goes 84 -> 44 MiB (stays at 84 without it).
        // Not for templates and their clones: QEMU 7.2 gives freed blocks
        // back by punching holes in the RAM *file* even where the clone maps
        // it privately, which would zero the template's pages under every
        // other clone (seen: the template's file lost 2 MiB of blocks after
        // a clone freed a 32 MiB tmpfs file; fixed in QEMU 8.1). The device
        // stays, so template and clone have the same device set.
        let reporting = if spec.boot == Boot::Cold { "on" } else { "off" };
        cmd.args([
            "-device",
            &format!("virtio-balloon-pci,free-page-reporting={reporting}"),
        ]);
        // Containers that join this VM later (a pod) bring their disks to
        // this bus and their agent ports to the serial bus, through QMP.
        cmd.args(["-device", "virtio-scsi-pci,id=scsi0"])
            .arg("-qmp")
            .arg(format!(
                "unix:{},server=on,wait=off",
                spec.sandbox_dir.join(super::qmp::QMP_SOCKET).display()
            ));
        cmd.args(["-device", "virtio-serial-pci,id=vser"])
            .args([
                "-chardev",
                &format!("socket,id=agent,path={}", agent_socket.display()),
            ])
            .args([
                "-device",
                &format!("virtserialport,bus=vser.0,chardev=agent,name={AGENT_SERIAL_PORT_NAME}"),
            ]);
        if matches!(spec.boot, Boot::Clone { .. }) {
            // The device state comes over QMP (migration::restore).
            cmd.args(["-incoming", "defer"]);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null());
        Ok(VmLaunch {
            command: cmd,
            agent_socket,
            console_log,
            jail: None,
        })
    }
}

/// `-sandbox`: everything QEMU 7.2 can deny that a VM here never needs.
/// set*uid stay allowed: the filter is loaded before `-runas` drops to the
/// jail's ids, and after the drop, without capabilities and with
/// `no_new_privs`, they can gain nothing.
const SANDBOX: &str = "on,obsolete=deny,elevateprivileges=allow,spawn=deny,resourcecontrol=deny";

fn tap_netdev(tap: &str) -> String {
    format!("tap,id=net0,ifname={tap},script=no,downscript=no")
}

/// The guest RAM's backend. Cold: a memfd rather than QEMU's default
/// anonymous mapping, which QEMU marks MADV_HUGEPAGE: there every 2 MiB
/// region the guest touches is backed whole by a huge page (measured for an
/// idle busybox sandbox: 44 MiB resident that way, 40.5 MiB on a memfd, no
/// slower). Pages the guest reports free (the balloon) are punched out of
/// it. A template's RAM is a shared file, which migration then leaves out
/// of the saved state (`x-ignore-shared`); a clone maps that file
/// privately, so clones share the template's pages until they write them.
fn ram_backend(boot: &Boot, size: &str) -> Result<String, HypervisorError> {
    let file = |path: &std::path::Path, share: &str| -> Result<String, HypervisorError> {
        // QEMU's option syntax has no quoting for a comma.
        let text = path.to_str().filter(|p| !p.contains(','));
        let path = text.ok_or_else(|| HypervisorError::UnquotablePath(path.to_path_buf()))?;
        Ok(format!(
            "memory-backend-file,id={GUEST_RAM_ID},size={size},mem-path={path},share={share}"
        ))
    };
    match boot {
        Boot::Cold => Ok(format!(
            "memory-backend-memfd,id={GUEST_RAM_ID},size={size}"
        )),
        Boot::Template { memory, .. } => file(memory, "on"),
        Boot::Clone { snapshot } => file(&snapshot.join(SNAPSHOT_MEMORY), "off"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypervisor::DiskSpec;

    #[test]
    fn command_line_names_every_part() {
        let qemu = Qemu {
            binary: "/usr/bin/qemu-system-x86_64".into(),
            kvm: false,
        };
        let spec = VmSpec {
            kernel: "/k/vmlinux".into(),
            initramfs: "/k/initramfs.cpio".into(),
            vcpus: 2,
            memory_mib: 256,
            disks: vec![DiskSpec {
                path: "/d/root.erofs".into(),
                read_only: true,
                serial: "rootfs".into(),
            }],
            sandbox_dir: "/run/hull/abc".into(),
            nic: Some(crate::hypervisor::NicSpec {
                tap: "tapabc".into(),
                mac: "02:42:0a:59:00:02".into(),
                netns: "/run/netns/x".into(),
            }),
            boot: Boot::Cold,
        };
        let launch = qemu.launch(&spec).unwrap();
        let joined = launch.args().join(" ");
        assert!(joined.contains(&format!(
            "-machine q35,memory-backend=ram -accel tcg,tb-size={TCG_TB_SIZE_MIB} -cpu max -smp 2 -m 256M"
        )));
        assert!(joined.contains("-object memory-backend-memfd,id=ram,size=256M"));
        assert!(joined.contains("-device virtio-balloon-pci,free-page-reporting=on"));
        let kvm = Qemu {
            binary: qemu.binary.clone(),
            kvm: true,
        };
        let kvm_joined = kvm.launch(&spec).unwrap().args().join(" ");
        assert!(kvm_joined.contains("-accel kvm -cpu host"));
        assert!(!kvm_joined.contains("tb-size"), "a TCG option under KVM");
        assert!(joined.contains("file=/d/root.erofs,if=none,id=disk0,format=raw,readonly=on"));
        assert!(joined.contains("virtio-blk-pci,drive=disk0,serial=rootfs"));
        assert!(joined.contains("socket,id=agent,path=/run/hull/abc/agent.sock"));
        assert!(joined.contains("hull.channel=serial"));
        assert!(joined.contains("tap,id=net0,ifname=tapabc,script=no,downscript=no"));
        assert!(joined.contains(
            "-sandbox on,obsolete=deny,elevateprivileges=allow,spawn=deny,resourcecontrol=deny"
        ));
        assert!(
            !joined.contains("-runas"),
            "the key's command line has no jail"
        );
        let dir = tempfile::tempdir().unwrap();
        let mut launch = qemu.launch(&spec).unwrap();
        qemu.jail(&mut launch, dir.path()).unwrap();
        let jail = launch.jail.as_ref().unwrap();
        let jailed = launch.args().join(" ");
        assert!(jailed.ends_with(&format!(
            "-runas {}:{} -chroot {}",
            jail.uid,
            jail.gid,
            dir.path().join("jail").display()
        )));
        assert!(joined.contains("file,id=console,path=/proc/self/fd/3"));
        assert!(joined.contains("virtio-net-pci,netdev=net0,mac=02:42:0a:59:00:02,romfile="));
        assert_eq!(
            launch.agent_socket,
            PathBuf::from("/run/hull/abc/agent.sock")
        );
        assert!(
            !joined.contains("acpi=off"),
            "2 vCPUs need ACPI to be found"
        );
        assert!(qemu.kernel_cmdline(1).contains("acpi=off"));
    }

    #[test]
    fn template_and_clone_map_one_ram_file_and_never_punch_it() {
        let qemu = Qemu {
            binary: "/usr/bin/qemu-system-x86_64".into(),
            kvm: false,
        };
        let spec = |boot| VmSpec {
            kernel: "/k/vmlinux".into(),
            initramfs: "/k/initramfs.cpio".into(),
            vcpus: 1,
            memory_mib: 512,
            disks: Vec::new(),
            sandbox_dir: "/run/hull/abc".into(),
            nic: None,
            boot,
        };
        let joined = |boot| qemu.launch(&spec(boot)).unwrap().args().join(" ");
        let template = joined(Boot::Template {
            memory: "/t/k/memory".into(),
            nic: false,
        });
        let clone = joined(Boot::Clone {
            snapshot: "/t/k".into(),
        });
        assert!(
            template.contains("mem-path=/t/k/memory,share=on"),
            "{template}"
        );
        assert!(clone.contains("mem-path=/t/k/memory,share=off"), "{clone}");
        assert!(clone.contains("-incoming defer"), "{clone}");
        for line in [&template, &clone] {
            assert!(
                line.contains("virtio-balloon-pci,free-page-reporting=off"),
                "QEMU 7.2 would punch the template's file: {line}"
            );
        }
    }
}
