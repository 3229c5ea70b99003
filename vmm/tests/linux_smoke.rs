//! The real guest kernel's first steps through hull-vmm: PVH entry, e820,
//! MP table, command line with the virtio-mmio announcements. On this
//! host's kvm_pvm a full Linux never reaches userspace, so the test stops
//! the VM (SIGTERM) once the kernel has printed what it read from us
//! (e820, command line, MP table; SMP bring-up is proven in the nested
//! test host).
//! The kernel comes from `HULL_KERNEL` or `~/.cache/hull/kernel/guest-*/`
//! (built by `make kernel`); without one the test says so and passes.

mod common;

use std::io::Read;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

fn guest_kernel() -> Option<PathBuf> {
    if let Some(k) = std::env::var_os("HULL_KERNEL") {
        let k = PathBuf::from(k);
        assert!(k.is_file(), "HULL_KERNEL={} does not exist", k.display());
        return Some(k);
    }
    let cache = PathBuf::from(std::env::var_os("HOME")?).join(".cache/hull/kernel");
    std::fs::read_dir(cache)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("vmlinux"))
        .find(|p| p.is_file())
}

#[test]
fn linux_reads_our_boot_information() {
    require_kvm();
    let Some(kernel) = guest_kernel() else {
        eprintln!("linux_smoke: no guest kernel built (make kernel); nothing to boot");
        return;
    };
    let disk = tempfile::NamedTempFile::new().unwrap();
    disk.as_file().set_len(1 << 20).unwrap();
    let mut child = vmm()
        .args([
            "--kernel",
            kernel.to_str().unwrap(),
            "--memory",
            "256",
            "--vcpus",
            "2",
            "--block",
            disk.path().to_str().unwrap(),
            "--cmdline",
            "console=ttyS0 earlycon=uart8250,io,0x3f8 reboot=k panic=1 pci=off tsc_early_khz=2000",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut log = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            log.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&log);
            // The MP table is found after e820 and the command line
            // (earlycon prints them as they come; the rest is slow here).
            if text.contains("found SMP MP-table at [mem 0x0009fc00-0x0009fc0f]\r\n") {
                break;
            }
        }
        String::from_utf8_lossy(&log).replace('\r', "")
    });
    let start = Instant::now();
    while !reader.is_finished() && start.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let log = reader.join().unwrap();
    assert!(log.contains("Linux version"), "{log}");
    assert!(
        log.contains("BIOS-e820: [mem 0x0000000000100000-0x000000000fffffff] usable"),
        "{log}"
    );
    assert!(
        log.contains("found SMP MP-table at [mem 0x0009fc00-0x0009fc0f]"),
        "{log}"
    );
    assert!(
        log.contains("Command line: console=ttyS0 earlycon=uart8250,io,0x3f8 reboot=k panic=1 pci=off tsc_early_khz=2000 virtio_mmio.device=4K@0xd0000000:5\n"),
        "{log}"
    );
    // Stopped by us (0), or ended on its own: a KVM internal error (3) is
    // how kvm_pvm's emulator gives up on a full kernel.
    assert!(matches!(status.code(), Some(0) | Some(3)), "{status:?}");
}
