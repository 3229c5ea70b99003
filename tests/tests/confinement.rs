//! Inside the guest, a container gets what runc would give it on a host:
//! Docker's capabilities, seccomp profile, mounts, masked paths and cgroup
//! limits. Real QEMU, kernel, agent and busybox image.

use hull_tests::{stderr, stdout, Hull};

const IMAGE: &str = "hull-demo/busybox";
const APP_IMAGE: &str = "hull-demo/busybox-app";

fn status_field(text: &str, field: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in {text}"))
        .trim()
        .to_string()
}

#[test]
fn default_capabilities_and_seccomp_match_docker() {
    let hull = Hull::with_busybox();
    let out = hull.hull(&["run", "--rm", IMAGE, "cat", "/proc/self/status"]);
    let status = stdout(&out);
    assert_eq!(
        status_field(&status, "CapEff"),
        "00000000a80425fb",
        "{}",
        stderr(&out)
    );
    assert_eq!(status_field(&status, "CapBnd"), "00000000a80425fb");
    assert_eq!(status_field(&status, "CapInh"), "0000000000000000");
    assert_eq!(status_field(&status, "Seccomp"), "2");
    assert_eq!(status_field(&status, "NoNewPrivs"), "0");
}

#[test]
fn a_non_root_user_has_no_effective_capabilities() {
    let hull = Hull::with_busybox();
    let out = hull.hull(&[
        "run",
        "--rm",
        "-u",
        "1000",
        IMAGE,
        "cat",
        "/proc/self/status",
    ]);
    assert_eq!(status_field(&stdout(&out), "CapEff"), "0000000000000000");
    assert_eq!(status_field(&stdout(&out), "Uid"), "1000\t1000\t1000\t1000");
}

#[test]
fn the_default_profile_blocks_what_docker_blocks_and_privileged_allows_it() {
    let hull = Hull::with_busybox();
    let out = hull.hull(&[
        "run",
        "--rm",
        IMAGE,
        "sh",
        "-c",
        "unshare -m true 2>&1; echo rc=$?",
    ]);
    assert!(
        stdout(&out).contains("Operation not permitted"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).ends_with("rc=1\n"));
    let out = hull.hull(&[
        "run",
        "--rm",
        "--privileged",
        IMAGE,
        "sh",
        "-c",
        "unshare -m true; echo rc=$?; grep Seccomp: /proc/self/status",
    ]);
    assert_eq!(stdout(&out), "rc=0\nSeccomp:\t0\n", "{}", stderr(&out));
}

#[test]
fn cap_add_gives_sys_admin_and_its_syscalls() {
    let hull = Hull::with_busybox();
    let out = hull.hull(&[
        "run",
        "--rm",
        "--cap-add",
        "SYS_ADMIN",
        IMAGE,
        "sh",
        "-c",
        "unshare -m true; echo rc=$?",
    ]);
    assert_eq!(stdout(&out), "rc=0\n", "{}", stderr(&out));
}

#[test]
fn cap_drop_all_leaves_only_what_is_added() {
    let hull = Hull::with_busybox();
    let out = hull.hull(&[
        "run",
        "--rm",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "KILL",
        IMAGE,
        "cat",
        "/proc/self/status",
    ]);
    assert_eq!(status_field(&stdout(&out), "CapBnd"), "0000000000000020");
    let out = hull.hull(&[
        "run",
        "--rm",
        "--cap-drop",
        "CHOWN",
        IMAGE,
        "sh",
        "-c",
        "chown 1000 /bin 2>&1; echo rc=$?",
    ]);
    assert!(stdout(&out).ends_with("rc=1\n"), "{}", stdout(&out));
}

#[test]
fn a_custom_seccomp_profile_is_enforced() {
    let hull = Hull::with_busybox();
    let profile = hull.root.path().join("no-mkdir.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", profile.display());
    let out = hull.hull(&[
        "run",
        "--rm",
        "--security-opt",
        &opt,
        IMAGE,
        "sh",
        "-c",
        "mkdir /x 2>&1; echo rc=$?",
    ]);
    assert!(
        stdout(&out).contains("Permission denied"),
        "{} {}",
        stdout(&out),
        stderr(&out)
    );
    let out = hull.hull(&[
        "run",
        "--rm",
        "--security-opt",
        "no-new-privileges",
        IMAGE,
        "grep",
        "NoNewPrivs",
        "/proc/self/status",
    ]);
    assert_eq!(stdout(&out), "NoNewPrivs:\t1\n");
}

#[test]
fn bad_security_options_are_one_line_errors() {
    let hull = Hull::with_busybox();
    let out = hull.hull(&["run", "--rm", "--cap-add", "FLY", IMAGE, "true"]);
    hull_tests::assert_one_line_error(&out, 125, "FLY");
    let bad = hull.root.path().join("bad.json");
    std::fs::write(&bad, "{not json").unwrap();
    let opt = format!("seccomp={}", bad.display());
    let out = hull.hull(&["run", "--rm", "--security-opt", &opt, IMAGE, "true"]);
    hull_tests::assert_one_line_error(&out, 125, "bad.json");
}

#[test]
fn dev_holds_only_the_standard_devices_and_proc_is_masked() {
    let hull = Hull::with_busybox();
    let out = hull.hull(&["run", "--rm", IMAGE, "sh", "-c", "ls /dev | tr '\\n' ' '; echo; wc -c < /proc/timer_list; awk '$2==\"/proc/sys\" {print substr($4,1,2)}' /proc/mounts"]);
    let text = stdout(&out);
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("core fd full mqueue null ptmx pts random shm stderr stdin stdout tty urandom zero ")
    );
    assert_eq!(lines.next(), Some("0"), "/proc/timer_list must be masked");
    assert_eq!(lines.next(), Some("ro"), "/proc/sys must be read-only");
}

#[test]
fn hostname_flag_and_read_only_root() {
    let hull = Hull::with_busybox();
    let out = hull.hull(&[
        "run",
        "--rm",
        "--hostname",
        "box1",
        "--read-only",
        IMAGE,
        "sh",
        "-c",
        "hostname; touch /x 2>&1; echo rc=$?",
    ]);
    let text = stdout(&out);
    assert!(text.starts_with("box1\n"), "{text}");
    assert!(
        text.contains("Read-only file system") && text.ends_with("rc=1\n"),
        "{text}"
    );
}

#[test]
fn memory_limit_is_the_cgroups_and_sizes_the_vm() {
    let hull = Hull::with_busybox();
    let out = hull.hull(&[
        "run",
        "--rm",
        "--memory",
        "64m",
        IMAGE,
        "sh",
        "-c",
        "cat /sys/fs/cgroup/memory.max; grep MemTotal /proc/meminfo",
    ]);
    let text = stdout(&out);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("67108864"), "{}", stderr(&out));
    let total_kb: u64 = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    // 64 MiB plus the guest's overhead, far below the 512 MiB default VM.
    assert!(
        (64 * 1024..256 * 1024).contains(&total_kb),
        "MemTotal {total_kb} kB"
    );
}

#[test]
fn exceeding_the_memory_limit_is_an_oom_kill_with_137() {
    let hull = Hull::with_busybox();
    let out = hull.hull(&[
        "run",
        "--rm",
        "--memory",
        "32m",
        IMAGE,
        "sh",
        "-c",
        "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived",
    ]);
    assert_eq!(
        out.status.code(),
        Some(137),
        "stdout {} stderr {}",
        stdout(&out),
        stderr(&out)
    );
    assert!(!stdout(&out).contains("survived"));
    assert!(stderr(&out).contains("OOM"), "{}", stderr(&out));
}

#[test]
fn pids_limit_stops_a_fork_loop() {
    let hull = Hull::with_busybox();
    let script = "cat /sys/fs/cgroup/pids.max; n=0; for i in $(seq 40); do sleep 30 & n=$((n+1)); done 2>/dev/null; echo started; kill $(jobs -p) 2>/dev/null";
    let out = hull.hull(&[
        "run",
        "--rm",
        "--pids-limit",
        "20",
        IMAGE,
        "sh",
        "-c",
        script,
    ]);
    let text = stdout(&out);
    assert!(text.starts_with("20\n"), "{text} {}", stderr(&out));
    assert!(
        !text.contains("started"),
        "40 background processes started under a limit of 20: {text}"
    );
}

#[test]
fn cpus_set_quota_and_vcpus() {
    let hull = Hull::with_busybox();
    let out = hull.hull(&[
        "run",
        "--rm",
        "--cpus",
        "1.5",
        IMAGE,
        "sh",
        "-c",
        "cat /sys/fs/cgroup/cpu.max; nproc",
    ]);
    assert_eq!(stdout(&out), "150000 100000\n2\n", "{}", stderr(&out));
}

#[test]
fn the_app_images_user_keeps_its_groups_and_home() {
    let hull = Hull::with_busybox();
    let out = hull.hull(&["run", "--rm", APP_IMAGE, "id; echo $HOME"]);
    assert_eq!(
        stdout(&out),
        "uid=1000(app) gid=1000(app) groups=1000(app)\n/home/app\n",
        "{}",
        stderr(&out)
    );
}
