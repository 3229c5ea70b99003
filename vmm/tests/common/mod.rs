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

/// A hull-vmm running in the background, its stdout collected as it comes.
pub struct RunningVm {
    pub child: std::process::Child,
    out: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl RunningVm {
    /// Starts hull-vmm with `args`, stdout collected, stderr piped.
    pub fn spawn(args: &[&str]) -> Self {
        require_kvm();
        let mut child = vmm()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hull-vmm");
        let mut stdout = child.stdout.take().unwrap();
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = out.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match std::io::Read::read(&mut stdout, &mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => sink.lock().unwrap().extend_from_slice(&buf[..n]),
                }
            }
        });
        Self {
            child,
            out,
            reader: Some(reader),
        }
    }

    /// Stdout so far.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).replace('\r', "")
    }

    /// Waits until stdout satisfies `done`; panics after `timeout`.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&str) -> bool,
    ) -> String {
        let start = Instant::now();
        loop {
            let out = self.output();
            if done(&out) {
                return out;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(50));
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                panic!(
                    "hull-vmm exited ({st}) before {what}\nstdout:\n{}\nstderr:\n{err}",
                    self.output()
                );
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                panic!("no {what} within {timeout:?}\nstdout:\n{out}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the VM with SIGTERM; returns its status, stdout and stderr.
    pub fn stop(mut self) -> (std::process::ExitStatus, String, String) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.finish()
    }

    /// Waits for the VM to end by itself (killing it after `timeout`).
    pub fn wait(mut self, timeout: Duration) -> (std::process::ExitStatus, String, String) {
        let start = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                panic!(
                    "hull-vmm did not exit within {timeout:?}\nstdout:\n{}",
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.finish()
    }

    fn finish(&mut self) -> (std::process::ExitStatus, String, String) {
        let st = self.child.wait().unwrap();
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        (st, self.output(), err)
    }
}

impl Drop for RunningVm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client of hull-vmm's control API socket.
pub struct Api(std::io::BufReader<std::os::unix::net::UnixStream>);

impl Api {
    /// Connects to `path`, waiting up to 10 s for the socket to appear.
    pub fn connect(path: &Path) -> Self {
        let start = Instant::now();
        loop {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(s) => {
                    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                    return Self(std::io::BufReader::new(s));
                }
                Err(e) => {
                    assert!(
                        start.elapsed() < Duration::from_secs(10),
                        "API socket {path:?}: {e}"
                    );
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }

    /// Sends one command and returns the reply line (without newline).
    pub fn call(&mut self, cmd: &str) -> String {
        use std::io::{BufRead, Write};
        self.0
            .get_mut()
            .write_all(format!("{cmd}\n").as_bytes())
            .unwrap();
        let mut line = String::new();
        self.0.read_line(&mut line).unwrap();
        line.trim_end().to_string()
    }

    /// Sends one command that must answer `ok`.
    pub fn ok(&mut self, cmd: &str) {
        let r = self.call(cmd);
        assert_eq!(r, "ok", "{cmd}: {r}");
    }
}
