//! The warm pool on QEMU under TCG: `hull pool start` restores clones of
//! the default shape ahead of time, `hull run` takes one (its tap moved
//! onto the container's network, its disks added, its agent woken as a
//! clone of its own), the pool refills, clones are not twins, and `hull
//! pool stop` leaves nothing: no process, tap, namespace or file. Twenty
//! runs at once share the pool with the runs it cannot serve.

use std::process::{Output, Stdio};

use hull_tests::{assert_one_line_error, ok, stderr, Hull};

const IMAGE: &str = "hull-demo/busybox";
/// How long a pool may take to fill: its first clone of a shape may make
/// the shape's template (a cold boot under TCG).
const FILL_SECS: &str = "240";

fn status(hull: &Hull) -> serde_json::Value {
    let out = ok(&hull.hull(&["pool", "status", "--format", "json"]));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("pool status {out:?}: {e}"))
}

/// Clones handed out, over every shape.
fn taken(hull: &Hull) -> u64 {
    status(hull)["pools"]
        .as_array()
        .expect("pools")
        .iter()
        .map(|p| p["taken"].as_u64().expect("taken"))
        .sum()
}

fn wait_full(hull: &Hull) {
    ok(&hull.hull(&["pool", "status", "--wait", FILL_SECS]));
}

/// Whether the network namespace `name` exists.
fn namespace_exists(name: &str) -> bool {
    std::path::Path::new("/run/netns").join(name).exists()
}

/// Stops the pool and checks that it took everything with it.
fn stop_and_check(hull: &Hull) {
    let namespace = status(hull)["namespace"].as_str().unwrap().to_string();
    assert!(namespace.contains("@pool"), "{namespace}");
    assert_eq!(ok(&hull.hull(&["pool", "stop"])), "pool stopped\n");
    assert!(!hull.run_dir().join("pool.sock").exists());
    assert!(!hull.run_dir().join("pool").exists());
    assert!(!namespace_exists(&namespace), "the pool's namespace stayed");
    hull.assert_no_sandbox_left();
}

#[test]
fn a_run_takes_a_ready_clone_on_its_network_and_the_pool_refills_and_stops_clean() {
    let hull = Hull::with_busybox();
    let started = ok(&hull.hull(&["pool", "start", "--size", "2"]));
    assert!(started.starts_with("pool started (pid "), "{started}");
    wait_full(&hull);
    let before = status(&hull);
    assert_eq!(before["pools"].as_array().unwrap().len(), 1, "{before}");
    assert_eq!(before["pools"][0]["ready"], 2, "{before}");
    assert!(before["memory_bytes"].as_u64().unwrap() > 0, "{before}");

    // On the default network, through the tap the clone opened in the
    // pool's namespace, with the container's own disks.
    let script = "cat /proc/sys/kernel/random/uuid; head -c 16 /dev/urandom | od -x | head -1; \
                  gw=$(ip route | awk '/default/ {print $3}'); \
                  ping -c1 -W5 $gw >/dev/null && echo reached $gw; cat /etc/hostname; date +%s";
    let mut outputs = Vec::new();
    for _ in 0..2 {
        let out = ok(&hull.hull(&["run", "--rm", IMAGE, "sh", "-c", script]));
        outputs.push(out);
    }
    assert_eq!(taken(&hull), 2, "both runs took a clone");
    let lines: Vec<Vec<&str>> = outputs.iter().map(|o| o.lines().collect()).collect();
    for l in &lines {
        assert_eq!(l.len(), 5, "{l:?}");
        assert!(l[2].starts_with("reached "), "the network works: {l:?}");
        let guest_time: i64 = l[4].parse().unwrap();
        let host_time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!(
            (host_time - guest_time).abs() < 30,
            "the clone has the host's time: {l:?}"
        );
    }
    assert_ne!(
        lines[0][0], lines[1][0],
        "two pooled clones share a random uuid"
    );
    assert_ne!(lines[0][1], lines[1][1], "two pooled clones share urandom");
    assert_ne!(
        lines[0][3], lines[1][3],
        "two pooled clones share a hostname"
    );

    // Used once, never returned: the pool makes new ones.
    wait_full(&hull);
    assert_eq!(status(&hull)["pools"][0]["ready"], 2);
    stop_and_check(&hull);
}

#[test]
fn a_detached_pooled_container_stops_execs_and_is_removed_like_any_other() {
    let hull = Hull::with_busybox();
    ok(&hull.hull(&["pool", "start", "--size", "1"]));
    wait_full(&hull);
    // Its bind mount is hot-added to the clone like its disks.
    let host = tempfile::tempdir().unwrap();
    let bind = format!("{}:/data", host.path().display());
    let id = ok(&hull.hull(&[
        "run", "-d", "--name", "pooled", "-v", &bind, IMAGE, "sleep", "600",
    ]));
    assert_eq!(id.trim().len(), 64, "{id}");
    assert_eq!(taken(&hull), 1);
    assert_eq!(ok(&hull.hull(&["exec", "pooled", "echo", "in"])), "in\n");
    ok(&hull.hull(&["exec", "pooled", "sh", "-c", "echo pooled > /data/f"]));
    assert_eq!(
        std::fs::read_to_string(host.path().join("f")).unwrap(),
        "pooled\n"
    );
    let ps = ok(&hull.hull(&["ps"]));
    assert!(ps.contains("pooled"), "{ps}");
    // The pool stops; the container it gave away runs on.
    let namespace = status(&hull)["namespace"].as_str().unwrap().to_string();
    ok(&hull.hull(&["pool", "stop"]));
    assert!(!namespace_exists(&namespace));
    assert_eq!(
        ok(&hull.hull(&["exec", "pooled", "echo", "still"])),
        "still\n"
    );
    ok(&hull.hull(&["stop", "-t", "1", "pooled"]));
    ok(&hull.hull(&["rm", "pooled"]));
    hull.assert_no_sandbox_left();
}

#[test]
fn twenty_concurrent_runs_share_the_pool_and_leave_nothing_behind() {
    let hull = Hull::with_busybox();
    ok(&hull.hull(&["pool", "start", "--size", "2"]));
    wait_full(&hull);
    let runs: Vec<_> = (0..20)
        .map(|i| {
            hull.command(&["run", "--rm", IMAGE, "echo", &format!("run-{i}")])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn hull run")
        })
        .collect();
    let outputs: Vec<Output> = runs
        .into_iter()
        .map(|r| r.wait_with_output().expect("wait for hull run"))
        .collect();
    for (i, out) in outputs.iter().enumerate() {
        assert_eq!(ok(out), format!("run-{i}\n"), "run {i}: {}", stderr(out));
    }
    let given = taken(&hull);
    assert!((1..=20).contains(&given), "the pool gave {given} clones");
    stop_and_check(&hull);
}

#[test]
fn runs_the_pool_cannot_serve_start_their_own_vm_and_bad_requests_are_one_line_errors() {
    let hull = Hull::with_busybox();
    let none = hull.hull(&["pool", "stop"]);
    assert_one_line_error(&none, 125, "no warm pool runs");
    ok(&hull.hull(&["pool", "start", "--size", "1"]));
    wait_full(&hull);
    // A cold boot, and a container that joins another's VM, take no clone.
    let out = hull.hull(&["run", "--rm", "--no-template", IMAGE, "echo", "cold"]);
    assert_eq!(ok(&out), "cold\n");
    assert_eq!(taken(&hull), 0);
    let again = ok(&hull.hull(&["pool", "start"]));
    assert!(again.contains("a pool already runs"), "{again}");
    let bad = hull.hull(&["pool", "status", "--format", "xml"]);
    assert_one_line_error(&bad, 125, "unknown --format");
    stop_and_check(&hull);
}

#[test]
fn a_pool_whose_clones_cannot_be_made_says_why_backs_off_and_runs_still_start() {
    let hull = Hull::with_busybox();
    // A pool in the foreground (as a service runs it) whose shape's guest
    // cannot boot: the initramfs is junk.
    let junk = hull.root.path().join("junk.cpio");
    std::fs::write(&junk, b"not an initramfs").unwrap();
    let mut server = hull
        .command(&["pool", "start", "--foreground", "--size", "1"])
        .env("HULL_INITRAMFS", &junk)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the pool server");
    hull_tests::eventually(120, "the pool reports why it has no clone", || {
        let out = hull.hull(&["pool", "status", "--format", "json"]);
        out.status.success()
            && serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .ok()
                .and_then(|s| s["pools"][0]["error"].as_str().map(str::to_string))
                .is_some_and(|e| !e.is_empty())
    });
    let status = status(&hull);
    assert_eq!(status["pools"][0]["ready"], 0, "{status}");
    assert_eq!(status["memory_bytes"], 0, "{status}");
    // A run with a guest that boots is another shape: it starts as ever.
    assert_eq!(
        ok(&hull.hull(&["run", "--rm", IMAGE, "echo", "fine"])),
        "fine\n"
    );
    stop_and_check(&hull);
    let exit = server.wait().expect("wait for the pool server");
    assert!(exit.success(), "the foreground server ended with {exit}");
}
