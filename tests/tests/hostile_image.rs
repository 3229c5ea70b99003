//! A hostile image and a hostile registry against the real `hull` binary
//! (issue 21): a layer whose PAX extended header claims 1 GiB, loaded from
//! an OCI archive and pulled from a real registry, is refused in one line
//! with the hull process's peak memory far below what the header claims
//! and nothing left in the store; a registry stand-in that streams an
//! endless manifest (slowly, or fast) or an endless token reply is
//! refused in bounded time and memory.
//!
//! The layer is made by writing the tar headers ourselves into `gzip -1`
//! (1 GiB of zeros compresses to about 1 MiB), as no tar tool writes a
//! header that large.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hull_tests::registry::{Layout, Registry};
use hull_tests::{assert_one_line_error, stderr, Hull};
use sha2::Digest as _;

/// What the PAX header claims.
const PAX_SIZE: u64 = 1 << 30;
/// The hull process's peak RSS must stay under this.
const MAX_RSS_KIB: u64 = 200 << 10;
const NAME: &str = "hull-test/paxbomb:latest";

/// One 512-byte ustar header.
fn header(name: &str, kind: u8, size: u64) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let octal = |f: &mut [u8], v: u64| {
        let s = format!("{:0w$o}", v, w = f.len() - 1);
        f[..s.len()].copy_from_slice(s.as_bytes());
    };
    octal(&mut h[100..108], 0o644);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], 1_700_000_000);
    h[156] = kind;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    octal(&mut h[148..155], sum);
    h
}

/// The uncompressed layer, in three parts: a PAX header claiming
/// [`PAX_SIZE`] bytes, that many zeros as its body, then one small file
/// and the end-of-archive blocks.
fn layer_parts() -> (Vec<u8>, Vec<u8>) {
    let head = header("PaxHeaders.0/hello", b'x', PAX_SIZE).to_vec();
    let mut tail = header("hello", b'0', 6).to_vec();
    tail.extend_from_slice(b"hello\n");
    tail.resize(tail.len() + 506 + 1024, 0);
    (head, tail)
}

/// Streams the layer into `sink` (1 GiB of zeros in 1 MiB writes).
fn write_layer(sink: &mut impl Write) {
    let (head, tail) = layer_parts();
    sink.write_all(&head).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..PAX_SIZE / zeros.len() as u64 {
        sink.write_all(&zeros).unwrap();
    }
    sink.write_all(&tail).unwrap();
}

/// Writes the gzipped layer to `path`; returns its diff id, hashed by
/// `sha256sum` (this test binary is not optimized: hashing 1 GiB in it
/// would take long).
fn gzip_layer(path: &Path) -> String {
    let out = std::fs::File::create(path).unwrap();
    let mut gz = Command::new("gzip")
        .args(["-1", "-c"])
        .stdin(Stdio::piped())
        .stdout(out)
        .spawn()
        .expect("gzip");
    let mut stdin = gz.stdin.take().unwrap();
    write_layer(&mut stdin);
    drop(stdin);
    assert!(gz.wait().unwrap().success());

    let mut sum = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum");
    let mut stdin = sum.stdin.take().unwrap();
    write_layer(&mut stdin);
    drop(stdin);
    let out = sum.wait_with_output().unwrap();
    assert!(out.status.success());
    let hex = String::from_utf8(out.stdout).unwrap();
    format!("sha256:{}", hex.split_whitespace().next().unwrap())
}

/// An OCI image layout in `dir` holding one image, [`NAME`], whose only
/// layer is the PAX bomb; and the archive of it, `dir.tar`.
fn pax_bomb_image(dir: &Path) -> PathBuf {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let layer_tmp = dir.join("layer.gz");
    let diff_id = gzip_layer(&layer_tmp);
    let layer = std::fs::read(&layer_tmp).unwrap();
    std::fs::remove_file(&layer_tmp).unwrap();
    assert!(
        layer.len() < 8 << 20,
        "the layer should be small on disk: {}",
        layer.len()
    );
    let add = |bytes: &[u8]| {
        let hex = hex::encode(sha2::Sha256::digest(bytes));
        std::fs::write(blobs.join(&hex), bytes).unwrap();
        (format!("sha256:{hex}"), bytes.len())
    };
    let (layer_digest, layer_size) = add(&layer);
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    });
    let (config_digest, config_size) = add(&serde_json::to_vec(&config).unwrap());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": layer_digest,
            "size": layer_size,
        }],
    });
    let (manifest_digest, manifest_size) = add(&serde_json::to_vec(&manifest).unwrap());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_size,
            "annotations": {"org.opencontainers.image.ref.name": NAME},
        }],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let archive = dir.with_extension("tar");
    let status = Command::new("tar")
        .arg("-cf")
        .arg(&archive)
        .arg("-C")
        .arg(dir)
        .args(["oci-layout", "index.json", "blobs"])
        .status()
        .unwrap();
    assert!(status.success());
    archive
}

/// Runs `cmd` to its end; its output and the peak RSS (KiB) the kernel
/// recorded for it (`wait4`'s `ru_maxrss`: exact, no polling).
fn output_with_peak_rss(mut cmd: Command) -> (Output, u64) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hull");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        out.read_to_end(&mut v).unwrap();
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        err.read_to_end(&mut v).unwrap();
        v
    });
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: all-zero is a valid `rusage`.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our unreaped child; `status` and `usage` are valid
    // for writes. `child` is not waited on afterwards.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
    std::mem::forget(child);
    let output = Output {
        status: ExitStatus::from_raw(status),
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
    };
    (output, usage.ru_maxrss as u64)
}

/// Every file and directory of the installation, for leak checks.
fn store_contents(hull: &Hull) -> Vec<PathBuf> {
    hull.files()
}

fn assert_refused(out: &Output, rss_kib: u64, hull: &Hull, before: &[PathBuf]) {
    assert_one_line_error(
        out,
        125,
        "PAX extended header of 1073741824 bytes is over the bound of 1048576 bytes",
    );
    let line = stderr(out);
    assert!(line.contains("layer sha256:"), "names the layer: {line}");
    assert!(
        line.contains("PaxHeaders.0/hello"),
        "names the entry: {line}"
    );
    assert!(
        rss_kib < MAX_RSS_KIB,
        "hull's peak RSS was {rss_kib} KiB (bound {MAX_RSS_KIB} KiB)"
    );
    assert_eq!(
        store_contents(hull),
        before,
        "the refused image left something in the store"
    );
    let images = hull.hull(&["images"]);
    assert!(
        !String::from_utf8_lossy(&images.stdout).contains("paxbomb"),
        "the refused image is listed"
    );
}

#[test]
fn a_layer_with_a_1gib_pax_header_is_refused_on_load_and_on_pull() {
    let work = tempfile::tempdir().unwrap();
    let archive = pax_bomb_image(&work.path().join("paxbomb"));

    // `hull load` of the OCI archive.
    let hull = Hull::new();
    assert!(hull.hull(&["images"]).status.success());
    let before = store_contents(&hull);
    let cmd = hull.command(&["load", "-i", archive.to_str().unwrap()]);
    let (out, rss) = output_with_peak_rss(cmd);
    eprintln!("load: peak RSS {rss} KiB; {}", stderr(&out).trim());
    assert_refused(&out, rss, &hull, &before);

    // `hull pull` of the same image, pushed byte for byte to a real
    // registry: refused when its layer is unpacked.
    let reg = Registry::start();
    let layout = Layout {
        dir: work.path().join("paxbomb"),
    };
    reg.push_raw(&layout, "hull/paxbomb", "1");
    let hull = Hull::new();
    assert!(hull.hull(&["images"]).status.success());
    let before = store_contents(&hull);
    let cmd = hull.command(&["pull", "--plain-http", &reg.image("hull/paxbomb:1")]);
    let (out, rss) = output_with_peak_rss(cmd);
    eprintln!("pull: peak RSS {rss} KiB; {}", stderr(&out).trim());
    assert_refused(&out, rss, &hull, &before);
}

/// How the stand-in registry misbehaves.
#[derive(Clone, Copy)]
enum Misbehaviour {
    /// The manifest: an endless JSON array, a small piece every 50 ms.
    SlowManifest,
    /// The manifest: an endless JSON array, as fast as it goes.
    FastManifest,
    /// `/v2/` sends clients to a token server that answers endlessly.
    EndlessToken,
}

/// A registry stand-in on 127.0.0.1 (HTTP/1.1, one thread per
/// connection), stopped on drop.
struct HostileRegistry {
    addr: String,
    stop: Arc<AtomicBool>,
}

impl HostileRegistry {
    fn start(how: Misbehaviour) -> HostileRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (stop2, addr2) = (stop.clone(), addr.clone());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let (stop, addr) = (stop2.clone(), addr2.clone());
                        std::thread::spawn(move || serve(s, how, &addr, &stop));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        HostileRegistry { addr, stop }
    }
}

impl Drop for HostileRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(stream: TcpStream, how: Misbehaviour, addr: &str, stop: &AtomicBool) {
    stream.set_nonblocking(false).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                break;
            }
        }
        let endless = |out: &mut TcpStream, piece: &[u8], pause: Duration| {
            while !stop.load(Ordering::Relaxed) {
                if out.write_all(piece).is_err() {
                    return;
                }
                std::thread::sleep(pause);
            }
        };
        match (how, path.as_str()) {
            (Misbehaviour::EndlessToken, "/v2/") => {
                let _ = write!(
                    out,
                    "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\
                     WWW-Authenticate: Bearer realm=\"http://{addr}/token\",service=\"hostile\"\r\n\r\n"
                );
            }
            (_, "/v2/") => {
                let _ = write!(out, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{{}}");
            }
            (Misbehaviour::EndlessToken, p) if p.starts_with("/token") => {
                let _ = write!(
                    out,
                    "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{{\"token\":\""
                );
                endless(&mut out, &[b'a'; 64 << 10], Duration::ZERO);
                return;
            }
            (how, p) if p.contains("/manifests/") => {
                let _ = write!(
                    out,
                    "HTTP/1.1 200 OK\r\nConnection: close\r\n\
                     Content-Type: application/vnd.oci.image.manifest.v1+json\r\n\r\n["
                );
                match how {
                    Misbehaviour::SlowManifest => endless(
                        &mut out,
                        &[b'1', b','].repeat(256),
                        Duration::from_millis(50),
                    ),
                    _ => endless(&mut out, &[b'1', b','].repeat(32 << 10), Duration::ZERO),
                }
                return;
            }
            _ => {
                let _ = write!(out, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
            }
        }
    }
}

fn pull_from(how: Misbehaviour, deadline_secs: Option<u64>) -> (Output, u64, Duration, String) {
    let reg = HostileRegistry::start(how);
    let hull = Hull::new();
    assert!(hull.hull(&["images"]).status.success());
    let before = store_contents(&hull);
    let image = format!("{}/hull/endless:1", reg.addr);
    let mut cmd = hull.command(&["pull", "--plain-http", &image]);
    match deadline_secs {
        Some(s) => cmd.env("HULL_REGISTRY_DEADLINE", s.to_string()),
        None => cmd.env_remove("HULL_REGISTRY_DEADLINE"),
    };
    let started = Instant::now();
    let (out, rss) = output_with_peak_rss(cmd);
    let took = started.elapsed();
    eprintln!(
        "pull: {took:?}, peak RSS {rss} KiB; {}",
        stderr(&out).trim()
    );
    assert!(
        rss < MAX_RSS_KIB,
        "hull's peak RSS was {rss} KiB (bound {MAX_RSS_KIB} KiB)"
    );
    assert_eq!(store_contents(&hull), before, "the pull left something");
    (out, rss, took, reg.addr.clone())
}

#[test]
fn a_slowly_streamed_endless_manifest_is_refused_at_the_deadline() {
    let (out, _, took, addr) = pull_from(Misbehaviour::SlowManifest, Some(5));
    assert_one_line_error(
        &out,
        125,
        &format!("registry {addr} did not send the manifest of {addr}/hull/endless:1 within 5 s"),
    );
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(20),
        "refused after {took:?}"
    );
}

#[test]
fn a_fast_endless_manifest_is_refused_at_its_size_bound() {
    // The default deadline (60 s): the size bound must stop it first.
    let (out, _, took, addr) = pull_from(Misbehaviour::FastManifest, None);
    assert_one_line_error(
        &out,
        125,
        &format!(
            "the manifest of {addr}/hull/endless:1 from registry {addr} is larger than 4194304 bytes"
        ),
    );
    assert!(took < Duration::from_secs(30), "refused after {took:?}");
}

#[test]
fn an_endless_token_reply_is_refused_at_its_size_bound() {
    let (out, _, took, addr) = pull_from(Misbehaviour::EndlessToken, None);
    assert_one_line_error(
        &out,
        125,
        &format!(
            "the token reply of {addr}/hull/endless:1 from registry {addr} is larger than 1048576 bytes"
        ),
    );
    assert!(took < Duration::from_secs(30), "refused after {took:?}");
}
