//! Shared helpers for the real-KVM tests: build the stand-in guests once
//! per test binary and run hull-vmm on them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Fails loudly when KVM is missing: these tests must not skip quietly.
pub fn require_kvm() {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm");
    assert!(f.is_ok(), "/dev/kvm is missing or not accessible ({:?}): the real-KVM tests cannot run on this machine", f.err());
}

/// Directory holding the built stand-in guests: built once per version of
/// their sources into the cargo target dir, shared by test binaries.
pub fn guests() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        require_kvm();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/standin-guests");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&src)
            .expect("tests/standin-guests is missing")
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        let mut all = Vec::new();
        for f in &files {
            all.extend_from_slice(f.file_name().unwrap().as_encoded_bytes());
            all.extend_from_slice(&std::fs::read(f).unwrap());
        }
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let out = tmp.join(format!("standin-{:08x}", fnv1a(&all)));
        if out.join("bench-idle.elf").exists() {
            return out;
        }
        let building = tmp.join(format!("standin-build-{}", std::process::id()));
        let st = Command::new("sh")
            .arg(src.join("build.sh"))
            .arg(&building)
            .status()
            .expect("cannot run tests/standin-guests/build.sh (needs sh, gcc, objcopy, python3)");
        assert!(st.success(), "building the stand-in guests failed");
        // Another test binary may have won the race; either copy is good.
        if std::fs::rename(&building, &out).is_err() {
            let _ = std::fs::remove_dir_all(&building);
        }
        out
    })
}

/// Path of a stand-in guest image.
pub fn guest(name: &str) -> PathBuf {
    guests().join(name)
}

/// The hull-vmm binary under test.
pub fn vmm() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hull-vmm"))
}

/// Runs hull-vmm with `args`, killing it after `timeout`.
pub fn run_vmm(args: &[&str], timeout: Duration) -> Output {
    require_kvm();
    let mut child = vmm()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hull-vmm");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "hull-vmm {args:?} did not exit within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

/// Stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).replace('\r', "")
}

/// Stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// FNV-1a, as the stand-in guest computes it.
pub fn fnv1a(data: &[u8]) -> u32 {
    data.iter().fold(2166136261u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(16777619)
    })
}

/// Asserts a clean exit and returns stdout.
pub fn expect_ok(o: &Output) -> String {
    let out = stdout(o);
    assert!(
        o.status.success(),
        "hull-vmm failed: {:?}\nstdout:\n{out}\nstderr:\n{}",
        o.status,
        stderr(o)
    );
    out
}
