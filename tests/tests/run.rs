//! `hull run` end to end: real QEMU, real guest kernel, real agent, real
//! OCI images built from Debian's busybox-static.

use hull_tests::{assert_one_line_error, processes_mentioning, stderr, stdout, Hull};
use sha2::{Digest, Sha256};

const IMAGE: &str = "hull-demo/busybox";
const APP_IMAGE: &str = "hull-demo/busybox-app";

#[test]
fn output_streams_and_exit_code_come_back() {
    let hull = Hull::with_busybox();
    let out = hull.hull(&[
        "run",
        "--rm",
        IMAGE,
        "sh",
        "-c",
        "echo to-out; echo to-err >&2; exit 3",
    ]);
    assert_eq!(stdout(&out), "to-out\n");
    assert_eq!(stderr(&out), "to-err\n");
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn sigterm_to_hull_reaches_the_container() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let hull = Hull::with_busybox();
    let script = "trap 'echo got-term; exit 42' TERM; echo ready; while :; do sleep 0.1; done";
    let mut child = hull
        .command(&["run", "--rm", IMAGE, "sh", "-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    // As a user's `kill` would.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(lines.next().unwrap().unwrap(), "got-term");
    assert_eq!(child.wait().unwrap().code(), Some(42));
}

#[test]
fn stdin_is_piped_through() {
    let hull = Hull::with_busybox();
    let out = hull.hull_with_stdin(&["run", "--rm", "-i", IMAGE, "cat"], b"hi\nthere\n");
    assert_eq!(stdout(&out), "hi\nthere\n", "stderr: {}", stderr(&out));
    assert!(out.status.success());
}

#[test]
fn without_dash_i_stdin_is_empty() {
    let hull = Hull::with_busybox();
    let out = hull.hull_with_stdin(
        &["run", "--rm", IMAGE, "sh", "-c", "cat; echo done"],
        b"ignored\n",
    );
    assert_eq!(stdout(&out), "done\n");
}

#[test]
fn large_stdin_arrives_intact() {
    let hull = Hull::with_busybox();
    let input: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let out = hull.hull_with_stdin(&["run", "--rm", "-i", IMAGE, "sha256sum"], &input);
    let expected = hex::encode(Sha256::digest(&input));
    assert!(
        stdout(&out).starts_with(&expected),
        "got {:?}, stderr {}",
        stdout(&out),
        stderr(&out)
    );
}

#[test]
fn fifty_megabytes_of_stdout_arrive_intact() {
    let hull = Hull::with_busybox();
    let script = "dd if=/dev/urandom of=/blob bs=1048576 count=50 2>/dev/null && sha256sum /blob >&2 && cat /blob";
    let out = hull.hull(&["run", "--rm", IMAGE, "sh", "-c", script]);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    assert_eq!(out.stdout.len(), 50 * 1024 * 1024);
    let guest_sum = stderr(&out)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    assert_eq!(hex::encode(Sha256::digest(&out.stdout)), guest_sum);
}

#[test]
fn image_config_sets_env_workdir_and_user() {
    let hull = Hull::with_busybox();
    // The app image's entrypoint is `/bin/sh -c`, so the command is a script.
    let out = hull.hull(&[
        "run",
        "--rm",
        APP_IMAGE,
        "echo $HULL_IMAGE_ENV; pwd; id -u; id -g; echo $HOME",
    ]);
    assert_eq!(
        stdout(&out),
        "from-image\n/home/app\n1000\n1000\n/home/app\n",
        "stderr: {}",
        stderr(&out)
    );
}

#[test]
fn flags_override_env_workdir_user_and_entrypoint() {
    let hull = Hull::with_busybox();
    let out = hull.hull(&[
        "run",
        "--rm",
        "-e",
        "HULL_IMAGE_ENV=from-flag",
        "-e",
        "EXTRA=1",
        "-w",
        "/tmp/new/dir",
        "-u",
        "0:0",
        "--entrypoint",
        "sh",
        APP_IMAGE,
        "-c",
        "echo $HULL_IMAGE_ENV $EXTRA; pwd; id -u",
    ]);
    assert_eq!(
        stdout(&out),
        "from-flag 1\n/tmp/new/dir\n0\n",
        "stderr: {}",
        stderr(&out)
    );
}

#[test]
fn image_entrypoint_and_cmd_follow_docker() {
    let hull = Hull::with_busybox();
    // Entrypoint `/bin/sh -c` with the image's Cmd `id`.
    let out = hull.hull(&["run", "--rm", APP_IMAGE]);
    assert!(
        stdout(&out).starts_with("uid=1000(app) gid=1000(app)"),
        "got {:?} {}",
        stdout(&out),
        stderr(&out)
    );
    // Arguments replace Cmd and follow the entrypoint.
    let out = hull.hull(&["run", "--rm", APP_IMAGE, "echo args: $0 $1", "x", "y"]);
    assert_eq!(stdout(&out), "args: x y\n", "stderr: {}", stderr(&out));
}

#[test]
fn container_command_is_pid_one() {
    let hull = Hull::with_busybox();
    let out = hull.hull(&["run", "--rm", IMAGE, "cat", "/proc/1/cmdline"]);
    assert_eq!(
        out.stdout,
        b"cat\0/proc/1/cmdline\0",
        "stderr: {}",
        stderr(&out)
    );
}

#[test]
fn guest_kernel_is_not_the_hosts() {
    let hull = Hull::with_busybox();
    let out = hull.hull(&["run", "--rm", IMAGE, "uname", "-r"]);
    let guest = stdout(&out).trim().to_string();
    let host = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap()
        .trim()
        .to_string();
    assert!(guest.ends_with("-hull"), "guest kernel {guest:?}");
    assert_ne!(guest, host);
}

#[test]
fn hostname_and_hosts_are_the_containers() {
    let hull = Hull::with_busybox();
    let out = hull.hull(&[
        "run",
        "--rm",
        IMAGE,
        "sh",
        "-c",
        "hostname; cat /etc/hostname; echo $HOSTNAME",
    ]);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{}", stdout(&out));
    assert_eq!(lines[0].len(), 12);
    assert!(lines.iter().all(|l| *l == lines[0]));
}

#[test]
fn rm_leaves_nothing_behind() {
    let hull = Hull::with_busybox();
    let before = hull.files();
    // First run builds the cached disk; the second must not change a thing.
    assert!(hull.hull(&["run", "--rm", IMAGE, "true"]).status.success());
    let after_first = hull.files();
    assert!(hull
        .hull(&["run", "--rm", IMAGE, "sh", "-c", "echo x > /written"])
        .status
        .success());
    assert_eq!(hull.files(), after_first);
    // The run dir itself may exist (like /run/hull); it must be empty.
    let new: Vec<_> = after_first
        .iter()
        .filter(|f| !before.contains(f) && **f != hull.run_dir())
        .collect();
    assert!(
        new.iter().all(|f| f.starts_with(hull.store_dir())),
        "files outside the store: {new:?}"
    );
    hull.assert_no_sandbox_left();
}

#[test]
fn writes_stay_inside_the_container() {
    let hull = Hull::with_busybox();
    let first = hull.hull(&[
        "run",
        "--rm",
        IMAGE,
        "sh",
        "-c",
        "echo changed > /bin/marker; cat /bin/marker",
    ]);
    assert_eq!(stdout(&first), "changed\n");
    let second = hull.hull(&[
        "run",
        "--rm",
        IMAGE,
        "sh",
        "-c",
        "test -e /bin/marker && echo leaked || echo clean",
    ]);
    assert_eq!(stdout(&second), "clean\n");
}

#[test]
fn command_not_found_exits_127() {
    let hull = Hull::with_busybox();
    let out = hull.hull(&["run", "--rm", IMAGE, "no-such-command"]);
    assert_one_line_error(&out, 127, "no-such-command");
    hull.assert_no_sandbox_left();
}

#[test]
fn unknown_image_is_a_one_line_error() {
    let hull = Hull::with_busybox();
    let before = hull.files();
    let out = hull.hull(&["run", "--rm", "no/such-image", "true"]);
    assert_one_line_error(&out, 125, "no/such-image");
    assert_eq!(hull.files(), before);
}

#[test]
fn missing_kernel_is_a_one_line_error() {
    let hull = Hull::with_busybox();
    let out = hull
        .command(&["run", "--rm", IMAGE, "true"])
        .env("HULL_KERNEL", "/nonexistent/vmlinux")
        .output()
        .unwrap();
    assert_one_line_error(&out, 125, "/nonexistent/vmlinux");
}

#[test]
fn missing_qemu_is_a_one_line_error() {
    let hull = Hull::with_busybox();
    let out = hull
        .command(&["run", "--rm", IMAGE, "true"])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert_one_line_error(&out, 125, "qemu-system-x86_64 not found");
    hull.assert_no_sandbox_left();
}

#[test]
fn a_guest_kernel_panic_is_reported_in_one_line() {
    let hull = Hull::with_busybox();
    let junk = hull.root.path().join("junk-initramfs.cpio");
    std::fs::write(&junk, vec![0x42u8; 4096]).unwrap();
    let out = hull
        .command(&["run", "--rm", IMAGE, "true"])
        .env("HULL_INITRAMFS", &junk)
        .output()
        .unwrap();
    assert_one_line_error(&out, 125, "Kernel panic");
    hull.assert_no_sandbox_left();
}

#[test]
fn kill_9_of_an_attached_hull_run_leaves_the_container_running_as_docker_does() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let hull = Hull::with_busybox();
    let mut child = hull
        .command(&[
            "run",
            "--rm",
            "--name",
            "k9",
            IMAGE,
            "sh",
            "-c",
            "echo ready; sleep 600",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    child.kill().unwrap();
    child.wait().unwrap();
    // The supervisor owns the VM, not the command that started it.
    let ps = hull.hull(&["ps", "--format", "json"]);
    assert!(stdout(&ps).contains("\"Names\":\"k9\""), "{}", stdout(&ps));
    assert!(!processes_mentioning(hull.root.path().to_str().unwrap()).is_empty());
    let rm = hull.hull(&["rm", "-f", "k9"]);
    assert!(rm.status.success(), "{}", stderr(&rm));
    hull.assert_no_sandbox_left();
}

#[test]
fn the_writable_layer_is_a_disk_not_guest_memory() {
    let hull = Hull::with_busybox();
    // 200 MB into a VM of 64 + 96 MiB: only a disk-backed layer holds it.
    let script = "dd if=/dev/urandom of=/big bs=1048576 count=200 2>/dev/null && sync && echo 3 > /proc/sys/vm/drop_caches 2>/dev/null; \
                  grep MemTotal /proc/meminfo >&2; sha256sum /big | cut -c1-64; wc -c < /big";
    let out = hull.hull(&[
        "run",
        "--rm",
        "--privileged",
        "--memory",
        "64m",
        IMAGE,
        "sh",
        "-c",
        script,
    ]);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0].len(), 64);
    assert_eq!(lines[1], "209715200");
    let after: Vec<_> = std::fs::read_dir(hull.store_dir().join("sandboxes"))
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(after.is_empty(), "writable layer left behind: {after:?}");
}
