//! Real-KVM tests: stand-in guests boot through hull-vmm's loader and
//! report what they were handed on the serial console.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(30);

fn e820_lines(out: &str) -> Vec<&str> {
    out.lines().filter(|l| l.starts_with("e820: ")).collect()
}

#[test]
fn elf_linux64_boot_protocol() {
    let k = guest("standin64.elf");
    let o = run_vmm(
        &[
            "--kernel",
            k.to_str().unwrap(),
            "--memory",
            "64",
            "--cmdline",
            "hello=world standin=none",
        ],
        T,
    );
    let out = expect_ok(&o);
    assert!(out.contains("boot: linux64"), "{out}");
    assert!(out.contains("cmdline: hello=world standin=none\n"), "{out}");
    assert_eq!(
        e820_lines(&out),
        vec![
            "e820: 0x0 0x9fc00 1",
            "e820: 0x9fc00 0x400 2",
            "e820: 0x100000 0x3f00000 1"
        ],
        "{out}"
    );
    assert!(out.contains("mptable: cpus 1"), "{out}");
    assert!(out.contains("hull-standin: reset"), "{out}");
}

#[test]
fn pvh_entry_with_initramfs_and_smp() {
    let k = guest("standin-pvh.elf");
    let mut initrd = tempfile::NamedTempFile::new().unwrap();
    let data: Vec<u8> = (0..12345u32).map(|i| (i * 7 + 3) as u8).collect();
    initrd.write_all(&data).unwrap();
    let o = run_vmm(
        &[
            "--kernel",
            k.to_str().unwrap(),
            "--memory",
            "128",
            "--vcpus",
            "3",
            "--initramfs",
            initrd.path().to_str().unwrap(),
        ],
        T,
    );
    let out = expect_ok(&o);
    assert!(out.contains("boot: pvh magic 0x336ec578"), "{out}");
    assert!(
        out.contains("cmdline: console=ttyS0 reboot=k panic=1 pci=off"),
        "{out}"
    );
    assert_eq!(e820_lines(&out)[2], "e820: 0x100000 0x7f00000 1", "{out}");
    let want = format!("initrd: 12345 bytes fnv1a {:#x}", fnv1a(&data));
    assert!(out.contains(&want), "{out}\nwanted {want}");
    assert!(out.contains("mptable: cpus 3"), "{out}");
}

#[test]
fn bzimage_boot_protocol() {
    let k = guest("standin.bzImage");
    let o = run_vmm(
        &[
            "--kernel",
            k.to_str().unwrap(),
            "--memory",
            "32",
            "--cmdline",
            "bz=1",
        ],
        T,
    );
    let out = expect_ok(&o);
    assert!(out.contains("boot: linux64"), "{out}");
    assert!(out.contains("cmdline: bz=1\n"), "{out}");
    assert!(out.contains("e820: 0x100000 0x1f00000 1"), "{out}");
}

#[test]
fn memory_above_the_mmio_hole_is_split_in_e820() {
    let k = guest("standin64.elf");
    let o = run_vmm(&["--kernel", k.to_str().unwrap(), "--memory", "4096"], T);
    let out = expect_ok(&o);
    let e = e820_lines(&out);
    assert_eq!(e[2], "e820: 0x100000 0xcff00000 1", "{out}");
    assert_eq!(e[3], "e820: 0x100000000 0x30000000 1", "{out}");
}

#[test]
fn triple_fault_exits_nonzero_with_one_line() {
    let k = guest("standin64.elf");
    let o = run_vmm(
        &[
            "--kernel",
            k.to_str().unwrap(),
            "--memory",
            "32",
            "--cmdline",
            "standin=triple",
        ],
        T,
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("triple fault"), "{err}");
}

#[test]
fn sigterm_stops_a_running_guest_cleanly() {
    require_kvm();
    let k = guest("standin64.elf");
    let mut child = vmm()
        .args([
            "--kernel",
            k.to_str().unwrap(),
            "--memory",
            "32",
            "--cmdline",
            "standin=hang",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the guest to say it is idle.
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = String::new();
    let start = std::time::Instant::now();
    while !seen.contains("hull-standin: idle") {
        let mut buf = [0u8; 256];
        let n = std::io::Read::read(&mut stdout, &mut buf).unwrap();
        assert!(n > 0 && start.elapsed() < T, "guest never idled: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(0));
}

#[test]
fn console_to_file_and_none() {
    let k = guest("standin64.elf");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    let o = run_vmm(
        &[
            "--kernel",
            k.to_str().unwrap(),
            "--memory",
            "32",
            "--console",
            log.to_str().unwrap(),
        ],
        T,
    );
    assert!(o.status.success());
    assert!(o.stdout.is_empty());
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("hull-standin: reset"));
    let o = run_vmm(
        &[
            "--kernel",
            k.to_str().unwrap(),
            "--memory",
            "32",
            "--console",
            "none",
        ],
        T,
    );
    assert!(o.status.success());
    assert!(o.stdout.is_empty());
}

#[test]
fn config_file_boots_the_same_guest() {
    let k = guest("standin-pvh.elf");
    let mut f = tempfile::NamedTempFile::new().unwrap();
    write!(
        f,
        r#"{{"kernel": "{}", "memory_mib": 48, "vcpus": 2, "cmdline": "from=file"}}"#,
        k.display()
    )
    .unwrap();
    let o = run_vmm(&["--config", f.path().to_str().unwrap()], T);
    let out = expect_ok(&o);
    assert!(out.contains("cmdline: from=file"), "{out}");
    assert!(out.contains("mptable: cpus 2"), "{out}");
}

#[test]
fn bad_configs_fail_with_one_line() {
    let k = guest("standin64.elf");
    let ks = k.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--memory", "32"], "no kernel"),
        (&["--kernel", ks, "--memory", "0"], "memory size 0"),
        (
            &[
                "--kernel",
                ks,
                "--memory",
                "32",
                "--net",
                "hull-no-such-tap",
            ],
            "tap device hull-no-such-tap does not exist",
        ),
        (
            &["--kernel", ks, "--memory", "32", "--frobnicate"],
            "--frobnicate",
        ),
        (
            &["--kernel", "/etc/hostname", "--memory", "32"],
            "neither an ELF",
        ),
    ];
    for (args, want) in cases {
        let o = run_vmm(args, T);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let mut f = tempfile::NamedTempFile::new().unwrap();
    write!(f, r#"{{"kernel": "{ks}", "memory_mib": 32, "disks": []}}"#).unwrap();
    let o = run_vmm(&["--config", f.path().to_str().unwrap()], T);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("unknown field `disks`"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn help_lists_every_option() {
    let o = run_vmm(&["--help"], T);
    let out = expect_ok(&o);
    for f in [
        "--config",
        "--kernel",
        "--cmdline",
        "--initramfs",
        "--vcpus",
        "--memory",
        "--block",
        "--net",
        "--vsock",
        "--console",
        "--api-socket",
        "--restore",
    ] {
        assert!(out.contains(f), "{f} missing from --help");
    }
}

#[test]
fn stdin_reaches_the_guest_through_the_uart() {
    require_kvm();
    let k = guest("standin64.elf");
    let mut child = vmm()
        .args([
            "--kernel",
            k.to_str().unwrap(),
            "--memory",
            "32",
            "--cmdline",
            "standin=echo",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello uart\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    assert!(out.status.success(), "{text}");
    assert!(text.contains("serial: got hello uart\n"), "{text}");
}
