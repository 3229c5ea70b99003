//! The nested AMD-V test host: a QEMU TCG VM (`-M q35 -accel tcg -cpu max`)
//! whose kernel (`kernel-config/testhost.config`) has KVM and KVM_AMD built
//! in. TCG emulates SVM with nested paging, so inside it `/dev/kvm` runs
//! hull-vmm (and QEMU `-enable-kvm`) with our real guest kernel, which the
//! development hosts' `kvm_pvm` cannot.
//!
//! One call runs one shell script there: [`run_script`] boots a fresh test
//! host with a payload initramfs (our release binaries, the guest kernel and
//! initramfs, the test images, busybox, `mkfs.erofs`, `ip`, optionally QEMU
//! with its libraries and firmware, and the script), the test host's
//! `/init` (`tests/testhost/init`) runs the script under `sh -e` and prints
//! a marker line with its exit status on the serial console, and the
//! harness returns that status, the script's output and the whole console.
//! Every boot has a timeout, after which QEMU is killed and the run fails.
//! `HULL_TESTHOST_SHOW=1` prints every console; `HULL_TESTHOST_TIMEOUT`
//! (seconds) changes the default timeout.
//!
//! Inside the test host the script finds: `hull` and `hull-vmm` on PATH
//! (`/hull/bin`), the images under `$HULL_IMAGES`, `HULL_ROOT`,
//! `HULL_RUN_DIR`, `HULL_KERNEL`, `HULL_INITRAMFS`, `HULL_VMM` set, and the
//! working directory `/tmp`.
//!
//! The payload's fixed part is assembled once per set of inputs and cached
//! under `$HULL_TESTHOST_CACHE` (default `<tmp>/hull-testhost`); a run
//! appends the script as a second cpio archive (the kernel unpacks
//! concatenated archives in order).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::artifact;

/// Bump when the payload's layout changes, to invalidate cached payloads.
const PAYLOAD_VERSION: &str = "hull-testhost-payload-1";

/// The test host's `/init`.
const INIT: &str = include_str!("../testhost/init");

/// What to boot and how long to wait.
#[derive(Clone, Debug)]
pub struct Options {
    /// Kill the test host and fail after this long (boot included).
    pub timeout: Duration,
    /// Test host memory, MiB.
    pub memory_mib: u32,
    /// Test host vCPUs (TCG threads).
    pub cpus: u32,
    /// Ship QEMU (with its libraries and firmware) for use inside the test
    /// host; costs ≈50 MB of initramfs, so only tests that need it ask.
    pub with_qemu: bool,
    /// Extra files for the test host: (absolute path inside, contents).
    pub files: Vec<(String, Vec<u8>)>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(
                std::env::var("HULL_TESTHOST_TIMEOUT")
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(180),
            ),
            memory_mib: 2048,
            cpus: 1,
            with_qemu: false,
            files: Vec::new(),
        }
    }
}

/// How one test host run ended.
#[derive(Debug)]
pub struct Outcome {
    /// The script's exit status, from the marker line; `None` when the test
    /// host never printed it (timeout, kernel panic, QEMU failure).
    pub status: Option<i32>,
    /// What the script printed (stdout and stderr), `\r` removed.
    pub output: String,
    /// The whole serial console.
    pub console: String,
    /// QEMU launch → QEMU exit (or kill).
    pub elapsed: Duration,
    /// The test host's uptime when its `/init` was ready to run the script.
    pub boot_seconds: Option<f64>,
    /// The run was killed at the timeout.
    pub timed_out: bool,
    /// How QEMU itself ended.
    pub qemu_status: String,
}

impl Outcome {
    /// The script ran and exited 0.
    pub fn passed(&self) -> bool {
        self.status == Some(0)
    }

    /// Panics with the reason and the console's tail unless the script
    /// exited 0.
    #[track_caller]
    pub fn assert_passed(&self) -> &Self {
        if !self.passed() {
            panic!("{}", self.describe());
        }
        self
    }

    /// One paragraph saying how the run ended, then the console's tail.
    pub fn describe(&self) -> String {
        let verdict = match (self.status, self.timed_out) {
            (Some(0), _) => "test host script PASSED".to_string(),
            (Some(97), _) => "test host FAILED: its CPU has no svm/npt (see console)".to_string(),
            (Some(98), _) => "test host FAILED: no /dev/kvm inside it (see console)".to_string(),
            (Some(n), _) => format!("test host script FAILED with exit status {n}"),
            (None, true) => format!(
                "test host TIMED OUT after {:.1}s (killed; no exit marker)",
                self.elapsed.as_secs_f64()
            ),
            (None, false) => format!(
                "test host ended without an exit marker (QEMU: {})",
                self.qemu_status
            ),
        };
        let lines: Vec<&str> = self.console.lines().collect();
        let tail = lines[lines.len().saturating_sub(120)..].join("\n");
        format!(
            "{verdict}; elapsed {:.2}s, test host boot {}\n--- console (last {} lines) ---\n{tail}\n--- end of console ---",
            self.elapsed.as_secs_f64(),
            self.boot_seconds
                .map(|s| format!("{s:.2}s"))
                .unwrap_or_else(|| "n/a".into()),
            lines.len().min(120),
        )
    }

    /// The value of the last `key=value` line the script printed.
    pub fn value(&self, key: &str) -> Option<&str> {
        let prefix = format!("{key}=");
        self.output
            .lines()
            .rev()
            .find_map(|line| line.strip_prefix(prefix.as_str()))
    }
}

/// Runs `script` in a fresh test host with default [`Options`].
pub fn run_script(script: &str) -> Outcome {
    run(script, &Options::default())
}

/// Runs `script` in a fresh test host.
pub fn run(script: &str, opts: &Options) -> Outcome {
    let kernel = artifact("HULL_TESTHOST_KERNEL");
    let qemu = test_host_qemu();
    let base = base_payload(opts.with_qemu);
    let dir = tempfile::Builder::new()
        .prefix("hull-testhost")
        .tempdir()
        .expect("temp dir");

    // Per-run initramfs: the cached base, then the script (and any extra
    // files) as a second archive.
    let initrd = dir.path().join("initrd.cpio");
    std::fs::copy(&base, &initrd).expect("copy the test host payload");
    {
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&initrd)
            .expect("open initrd");
        let mut cpio = Cpio::new(BufWriter::new(file));
        cpio.file("hull/script.sh", 0o755, script.as_bytes());
        for (path, data) in &opts.files {
            let path = path.trim_start_matches('/');
            if let Some(parent) = Path::new(path).parent() {
                cpio.dirs(parent);
            }
            cpio.file(path, 0o755, data);
        }
        cpio.finish();
    }

    let nonce = nonce();
    let console_path = dir.path().join("console.log");
    let qemu_err_path = dir.path().join("qemu.err");
    let mut append =
        format!("console=ttyS0 quiet panic=-1 reboot=t rdinit=/init hull.nonce={nonce}");
    if let Some(khz) = host_cpu_khz() {
        // Without it, some boots hang in the first KVM_RUN (FACTS).
        append.push_str(&format!(" tsc_early_khz={khz}"));
    }
    let mut cmd = Command::new(&qemu);
    cmd.args(["-M", "q35", "-accel", "tcg", "-cpu", "max"])
        .args(["-smp", &opts.cpus.to_string()])
        .args(["-m", &opts.memory_mib.to_string()])
        .args(["-nodefaults", "-no-user-config", "-display", "none"])
        .arg("-no-reboot")
        .arg("-kernel")
        .arg(&kernel)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", &append])
        .arg("-serial")
        .arg(format!("file:{}", console_path.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&qemu_err_path).expect("create QEMU's stderr file"));

    let started = Instant::now();
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", qemu.display()));
    let mut guard = KillOnDrop(child);
    let mut timed_out = false;
    let exit = loop {
        if let Some(status) = guard.0.try_wait().expect("wait for QEMU") {
            break Some(status);
        }
        if started.elapsed() >= opts.timeout {
            timed_out = true;
            let _ = guard.0.kill();
            let _ = guard.0.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = started.elapsed();
    let qemu_err = std::fs::read_to_string(&qemu_err_path).unwrap_or_default();
    let qemu_status = match exit {
        Some(status) if qemu_err.trim().is_empty() => status.to_string(),
        Some(status) => format!("{status}; stderr: {}", qemu_err.trim()),
        None => "killed at timeout".into(),
    };

    let console = String::from_utf8_lossy(&std::fs::read(&console_path).unwrap_or_default())
        .replace('\r', "");
    let outcome = parse_console(&console, &nonce, elapsed, timed_out, qemu_status);
    if std::env::var_os("HULL_TESTHOST_SHOW").is_some() {
        eprintln!("--- test host console ---\n{console}--- end ---");
    }
    eprintln!(
        "testhost: status {:?}, boot {:?}s, round trip {:.2}s",
        outcome.status,
        outcome.boot_seconds,
        outcome.elapsed.as_secs_f64()
    );
    outcome
}

fn parse_console(
    console: &str,
    nonce: &str,
    elapsed: Duration,
    timed_out: bool,
    qemu_status: String,
) -> Outcome {
    let ready = format!("HULL-TESTHOST-READY-{nonce} uptime=");
    let exit = format!("HULL-TESTHOST-EXIT-{nonce}=");
    let mut boot_seconds = None;
    let mut status = None;
    let mut output = String::new();
    let mut in_script = false;
    for line in console.lines() {
        if let Some(rest) = line.strip_prefix(ready.as_str()) {
            boot_seconds = rest.trim().parse().ok();
            in_script = true;
        } else if let Some(rest) = line.strip_prefix(exit.as_str()) {
            status = rest.trim().parse().ok();
            in_script = false;
        } else if in_script {
            output.push_str(line);
            output.push('\n');
        }
    }
    // Failures before READY (no svm, no /dev/kvm) print their reason
    // outside the script's span; keep it visible in `output` too.
    if boot_seconds.is_none() {
        output = console.to_string();
    }
    Outcome {
        status,
        output,
        console: console.to_string(),
        elapsed,
        boot_seconds,
        timed_out,
        qemu_status,
    }
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn nonce() -> String {
    let mut bytes = [0u8; 8];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("read /dev/urandom");
    hex::encode(bytes)
}

/// The QEMU that runs the test host: `HULL_TESTHOST_QEMU` or PATH.
fn test_host_qemu() -> PathBuf {
    if let Some(path) = std::env::var_os("HULL_TESTHOST_QEMU") {
        return PathBuf::from(path);
    }
    find_program("qemu-system-x86_64").expect(
        "qemu-system-x86_64 is needed to boot the test host (apt-get install qemu-system-x86)",
    )
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The host CPU's clock in kHz, for the test host's `tsc_early_khz=`.
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

/// A guest initramfs for driving hull-vmm without the agent: static
/// busybox as `/bin/busybox` and `init_script` as `/init` (run by busybox
/// sh; it should start with `/bin/busybox --install -s /bin` and mount what
/// it needs). Ship it with [`Options::files`].
pub fn busybox_initramfs(init_script: &str) -> Vec<u8> {
    let busybox = find_program("busybox").expect("busybox (busybox-static) is needed");
    let data = std::fs::read(&busybox).expect("read busybox");
    let mut out = Vec::new();
    let mut cpio = Cpio::new(&mut out);
    for dir in ["bin", "dev", "proc", "sys", "tmp"] {
        cpio.dir(dir);
    }
    cpio.char_dev("dev/console", 0o600, 5, 1);
    cpio.file("bin/busybox", 0o755, &data);
    cpio.file(
        "init",
        0o755,
        format!("#!/bin/busybox sh\n{init_script}").as_bytes(),
    );
    cpio.finish();
    out
}

// ---------------------------------------------------------------------------
// Payload

/// Where one file of the payload comes from.
enum Source {
    Dir,
    /// `/dev/console` (char 5:1): the kernel opens it for init's stdio
    /// before devtmpfs is mounted.
    Console,
    Host(PathBuf),
    Bytes(Vec<u8>),
    Symlink(String),
}

struct Entry {
    mode: u32,
    source: Source,
}

/// The fixed part of the payload as a cached cpio file.
fn base_payload(with_qemu: bool) -> PathBuf {
    static BUILT: OnceLock<Mutex<BTreeMap<bool, PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(|| Mutex::new(BTreeMap::new()));
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.get(&with_qemu) {
        return path.clone();
    }
    let entries = payload_entries(with_qemu);
    let mut key = Sha256::new();
    key.update(PAYLOAD_VERSION);
    for (path, entry) in &entries {
        key.update(path);
        key.update(entry.mode.to_le_bytes());
        match &entry.source {
            Source::Host(src) => {
                let meta = std::fs::metadata(src)
                    .unwrap_or_else(|e| panic!("payload file {}: {e}", src.display()));
                key.update(src.as_os_str().as_encoded_bytes());
                key.update(meta.len().to_le_bytes());
                let mtime = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .unwrap_or_default();
                key.update(mtime.as_nanos().to_le_bytes());
            }
            Source::Bytes(data) => key.update(data),
            Source::Symlink(target) => key.update(target),
            Source::Dir | Source::Console => {}
        }
    }
    let key = hex::encode(&key.finalize()[..8]);
    let cache = std::env::var_os("HULL_TESTHOST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("hull-testhost"));
    std::fs::create_dir_all(&cache).expect("test host payload cache dir");
    let flavor = if with_qemu { "qemu" } else { "base" };
    let out = cache.join(format!("payload-{flavor}-{key}.cpio"));
    if !out.exists() {
        let tmp = cache.join(format!(".payload-{flavor}-{key}.{}", std::process::id()));
        let mut cpio = Cpio::new(BufWriter::new(File::create(&tmp).expect("create payload")));
        for (path, entry) in &entries {
            match &entry.source {
                Source::Dir => cpio.dir(path),
                Source::Console => cpio.char_dev(path, 0o600, 5, 1),
                Source::Host(src) => {
                    let data = std::fs::read(src)
                        .unwrap_or_else(|e| panic!("payload file {}: {e}", src.display()));
                    cpio.file(path, entry.mode, &data);
                }
                Source::Bytes(data) => cpio.file(path, entry.mode, data),
                Source::Symlink(target) => cpio.symlink(path, target),
            }
        }
        cpio.finish();
        std::fs::rename(&tmp, &out).expect("install payload");
        // Older payloads of this flavor are stale.
        if let Ok(dir) = std::fs::read_dir(&cache) {
            for e in dir.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(&format!("payload-{flavor}-")) && e.path() != out {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
    built.insert(with_qemu, out.clone());
    out
}

/// Every path of the payload (relative, sorted so parents come first).
fn payload_entries(with_qemu: bool) -> BTreeMap<String, Entry> {
    let mut p = Payload::default();
    for dir in [
        "bin",
        "sbin",
        "dev",
        "etc",
        "proc",
        "sys",
        "tmp",
        "run",
        "root",
        "var/lib",
        "usr/bin",
        "usr/sbin",
        "usr/lib/x86_64-linux-gnu",
        "usr/lib64",
        "hull/bin",
        "hull/share/hull",
        "hull/images",
    ] {
        p.dirs(dir);
    }
    p.add("lib", 0o120777, Source::Symlink("usr/lib".into()));
    p.add("lib64", 0o120777, Source::Symlink("usr/lib64".into()));
    p.add("dev/console", 0o020600, Source::Console);
    p.add("init", 0o100755, Source::Bytes(INIT.as_bytes().to_vec()));
    p.add(
        "etc/passwd",
        0o100644,
        Source::Bytes(b"root:x:0:0:root:/root:/bin/sh\n".to_vec()),
    );
    p.add(
        "etc/group",
        0o100644,
        Source::Bytes(b"root:x:0:\n".to_vec()),
    );
    p.add(
        "etc/hosts",
        0o100644,
        Source::Bytes(b"127.0.0.1 localhost\n".to_vec()),
    );

    // busybox (static) with its applets in /bin.
    let busybox = find_program("busybox").expect("busybox (busybox-static) is needed");
    p.add("bin/busybox", 0o100755, Source::Host(busybox.clone()));
    let list = Command::new(&busybox)
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim();
        if !applet.is_empty() && applet != "busybox" {
            p.add(
                &format!("bin/{applet}"),
                0o120777,
                Source::Symlink("busybox".into()),
            );
        }
    }

    p.program(
        "usr/bin/mkfs.erofs",
        &host_program("mkfs.erofs", "erofs-utils"),
    );
    // hull makes its scratch-disk template with mkfs.ext4.
    p.program(
        "usr/sbin/mkfs.ext4",
        &host_program("mkfs.ext4", "e2fsprogs"),
    );
    p.add(
        "etc/mke2fs.conf",
        0o100644,
        Source::Host("/etc/mke2fs.conf".into()),
    );
    p.program("usr/sbin/ip", &host_program("ip", "iproute2"));
    // hull-net pins every tap with nftables (host/net/src/pin.rs).
    p.program("usr/sbin/nft", &host_program("nft", "nftables"));
    p.program("hull/bin/hull", &artifact("HULL_BIN"));
    if let Some(vmm) = std::env::var_os("HULL_VMM_BIN").map(PathBuf::from) {
        if vmm.is_file() {
            p.program("hull/bin/hull-vmm", &vmm);
        }
    }
    p.add(
        "hull/share/hull/vmlinux",
        0o100644,
        Source::Host(artifact("HULL_KERNEL")),
    );
    p.add(
        "hull/share/hull/initramfs.cpio",
        0o100644,
        Source::Host(artifact("HULL_INITRAMFS")),
    );
    let images = artifact("HULL_TEST_IMAGES");
    let mut tars: Vec<PathBuf> = std::fs::read_dir(&images)
        .expect("HULL_TEST_IMAGES")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "tar"))
        .collect();
    tars.sort();
    for tar in tars {
        let name = tar.file_name().unwrap().to_string_lossy().into_owned();
        p.add(&format!("hull/images/{name}"), 0o100644, Source::Host(tar));
    }

    if with_qemu {
        p.program(
            "usr/bin/qemu-system-x86_64",
            &host_program("qemu-system-x86_64", "qemu-system-x86"),
        );
        p.dirs("usr/share/qemu");
        p.dirs("usr/share/seabios");
        for fw in ["linuxboot_dma.bin", "pvh.bin", "qboot.rom", "kvmvapic.bin"] {
            p.add(
                &format!("usr/share/qemu/{fw}"),
                0o100644,
                Source::Host(Path::new("/usr/share/qemu").join(fw)),
            );
        }
        p.add(
            "usr/share/qemu/bios-microvm.bin",
            0o120777,
            Source::Symlink("qboot.rom".into()),
        );
        p.add(
            "usr/share/seabios/bios-256k.bin",
            0o100644,
            Source::Host("/usr/share/seabios/bios-256k.bin".into()),
        );
    }
    p.entries
}

fn host_program(name: &str, package: &str) -> PathBuf {
    find_program(name).unwrap_or_else(|| {
        panic!("{name} is needed for the test host payload (apt-get install {package})")
    })
}

#[derive(Default)]
struct Payload {
    entries: BTreeMap<String, Entry>,
}

impl Payload {
    fn add(&mut self, path: &str, mode: u32, source: Source) {
        self.entries
            .insert(path.to_string(), Entry { mode, source });
    }

    fn dirs(&mut self, path: &str) {
        let mut prefix = String::new();
        for part in path.split('/') {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            self.add(&prefix, 0o040755, Source::Dir);
        }
    }

    /// A dynamically linked program plus the shared libraries `ldd` names.
    fn program(&mut self, dest: &str, src: &Path) {
        self.add(dest, 0o100755, Source::Host(src.to_path_buf()));
        let out = Command::new("ldd")
            .arg(src)
            .output()
            .unwrap_or_else(|e| panic!("ldd {}: {e}", src.display()));
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let lib = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next(),
                None => line.split_whitespace().next(),
            };
            let Some(lib) = lib.filter(|l| l.starts_with('/')) else {
                continue;
            };
            // Debian merges /lib into /usr/lib; the payload does the same.
            let inside = if let Some(rest) = lib.strip_prefix("/lib/") {
                format!("usr/lib/{rest}")
            } else if let Some(rest) = lib.strip_prefix("/lib64/") {
                format!("usr/lib64/{rest}")
            } else {
                lib.trim_start_matches('/').to_string()
            };
            if let Some(parent) = Path::new(&inside).parent() {
                self.dirs(&parent.to_string_lossy());
            }
            self.add(&inside, 0o100755, Source::Host(PathBuf::from(lib)));
        }
    }
}

// ---------------------------------------------------------------------------
// A minimal cpio "newc" writer (what the kernel's initramfs unpacker reads).

struct Cpio<W: Write> {
    out: W,
    ino: u32,
}

impl<W: Write> Cpio<W> {
    fn new(out: W) -> Self {
        Self { out, ino: 1 }
    }

    fn header(&mut self, path: &str, mode: u32, size: usize, rdev: (u32, u32)) {
        let name_len = path.len() + 1;
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino, mode, 0, 0, 1, 0, size, 0, 0, rdev.0, rdev.1, name_len, 0
        );
        self.ino += 1;
        self.write(header.as_bytes());
        self.write(path.as_bytes());
        self.write(&[0]);
        self.pad(110 + name_len);
    }

    fn write(&mut self, data: &[u8]) {
        self.out.write_all(data).expect("write cpio");
    }

    fn pad(&mut self, len: usize) {
        let pad = (4 - len % 4) % 4;
        self.write(&[0; 3][..pad]);
    }

    fn dir(&mut self, path: &str) {
        self.header(path, 0o040755, 0, (0, 0));
    }

    /// Every ancestor of `path`, then `path`, as directories.
    fn dirs(&mut self, path: &Path) {
        let mut prefix = PathBuf::new();
        for part in path.components() {
            prefix.push(part);
            let p = prefix.to_string_lossy().into_owned();
            self.dir(&p);
        }
    }

    fn file(&mut self, path: &str, mode: u32, data: &[u8]) {
        self.header(path, 0o100000 | (mode & 0o7777), data.len(), (0, 0));
        self.write(data);
        self.pad(data.len());
    }

    fn symlink(&mut self, path: &str, target: &str) {
        self.header(path, 0o120777, target.len(), (0, 0));
        self.write(target.as_bytes());
        self.pad(target.len());
    }

    fn char_dev(&mut self, path: &str, perm: u32, major: u32, minor: u32) {
        self.header(path, 0o020000 | perm, 0, (major, minor));
    }

    fn finish(mut self) {
        self.header("TRAILER!!!", 0, 0, (0, 0));
        self.out.flush().expect("flush cpio");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_parsed_and_output_is_the_scripts() {
        let console =
            "early\nHULL-TESTHOST-READY-ab uptime=1.25\nhello\nk=v\nHULL-TESTHOST-EXIT-ab=3\n";
        let o = parse_console(console, "ab", Duration::ZERO, false, "exit 0".into());
        assert_eq!(o.status, Some(3));
        assert_eq!(o.boot_seconds, Some(1.25));
        assert_eq!(o.output, "hello\nk=v\n");
        assert_eq!(o.value("k"), Some("v"));
        assert!(!o.passed());
    }

    #[test]
    fn a_marker_with_another_nonce_does_not_count() {
        let console = "HULL-TESTHOST-READY-ab uptime=1\nHULL-TESTHOST-EXIT-cd=0\n";
        let o = parse_console(console, "ab", Duration::ZERO, false, "exit 0".into());
        assert_eq!(o.status, None);
        assert!(o.describe().contains("without an exit marker"));
    }

    #[test]
    fn cpio_entries_are_aligned() {
        let mut buf = Vec::new();
        let mut c = Cpio::new(&mut buf);
        c.file("a", 0o644, b"xyz");
        c.finish();
        assert_eq!(buf.len() % 4, 0);
        assert!(buf.starts_with(b"070701"));
        assert!(buf.windows(10).any(|w| w == b"TRAILER!!!"));
    }
}
