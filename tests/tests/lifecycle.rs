//! The Docker-shaped lifecycle end to end, through real QEMU guests:
//! detached containers with a supervisor each, ps, logs, exec, stop, kill,
//! start, wait, inspect, top, stats, rm, and the crash cases.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use hull_tests::{assert_one_line_error, eventually, ok, pids_mentioning, stderr, stdout, Hull};

const IMAGE: &str = "hull-demo/busybox";

fn inspect(hull: &Hull, name: &str) -> serde_json::Value {
    let out = ok(&hull.hull(&["inspect", name]));
    let all: serde_json::Value = serde_json::from_str(&out).expect("inspect prints JSON");
    all[0].clone()
}

fn status(hull: &Hull, name: &str) -> String {
    inspect(hull, name)["State"]["Status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn logs(hull: &Hull, name: &str) -> String {
    ok(&hull.hull(&["logs", name]))
}

/// A container that prints a tick a second and exits 7 on SIGTERM; it
/// says whether its writable layer already had the marker of a past boot.
const TICKER: &str = "test -f /marker && echo seen-marker; touch /marker; \
                      trap 'echo got-term; exit 7' TERM; \
                      i=0; while true; do echo tick $i; i=$((i+1)); sleep 1; done";

#[test]
fn detached_run_ps_logs_inspect_stop_start_and_rm() {
    let hull = Hull::with_busybox();
    let id = ok(&hull.hull(&["run", "-d", "--name", "web", IMAGE, "sh", "-c", TICKER]));
    let id = id.trim();
    assert_eq!(id.len(), 64, "run -d prints the full id: {id}");
    eventually(60, "a tick in the log", || {
        logs(&hull, "web").contains("tick 1")
    });

    let ps = ok(&hull.hull(&["ps"]));
    assert!(
        ps.lines()
            .any(|l| l.starts_with(&id[..12]) && l.ends_with("web")),
        "{ps}"
    );
    assert!(ps.contains("Up "), "{ps}");
    assert_eq!(ok(&hull.hull(&["ps", "-q"])).trim(), &id[..12]);
    let json: serde_json::Value =
        serde_json::from_str(ok(&hull.hull(&["ps", "--format", "json"])).trim()).unwrap();
    assert_eq!(json["State"], "running");

    let info = inspect(&hull, &id[..5]);
    assert_eq!(info["Id"], id);
    assert_eq!(info["Name"], "/web");
    assert_eq!(info["State"]["Running"], true);
    assert!(info["State"]["Pid"].as_u64().unwrap() > 0, "{info}");
    assert_eq!(info["Config"]["Cmd"][0], "sh");

    let timestamped = ok(&hull.hull(&["logs", "-t", "--tail", "1", "web"]));
    assert_eq!(timestamped.lines().count(), 1, "{timestamped}");
    assert!(
        timestamped.starts_with("20") && timestamped.contains("Z tick "),
        "{timestamped}"
    );

    let rm = hull.hull(&["rm", "web"]);
    assert_one_line_error(&rm, 1, "is running");

    assert_eq!(ok(&hull.hull(&["stop", "-t", "10", "web"])).trim(), "web");
    let info = inspect(&hull, "web");
    assert_eq!(info["State"]["Status"], "exited");
    assert_eq!(info["State"]["ExitCode"], 7);
    assert!(logs(&hull, "web").contains("got-term"));
    assert!(!logs(&hull, "web").contains("seen-marker"));
    assert!(
        ok(&hull.hull(&["ps"])).lines().count() == 1,
        "only the header"
    );
    assert!(ok(&hull.hull(&["ps", "-a"])).contains("Exited (7)"));
    assert_eq!(ok(&hull.hull(&["wait", "web"])).trim(), "7");

    // A fresh VM on the same writable layer.
    assert_eq!(ok(&hull.hull(&["start", "web"])).trim(), "web");
    assert_eq!(status(&hull, "web"), "running");
    eventually(60, "the second boot's marker", || {
        logs(&hull, "web").contains("seen-marker")
    });
    assert_eq!(ok(&hull.hull(&["rm", "-f", "web"])).trim(), "web");
    assert_one_line_error(&hull.hull(&["inspect", "web"]), 1, "no such container");
    hull.assert_no_sandbox_left();
}

#[test]
fn unknown_and_duplicate_names_and_stopped_containers_are_clear_errors() {
    let hull = Hull::with_busybox();
    for args in [
        vec!["logs", "nope"],
        vec!["stop", "nope"],
        vec!["kill", "nope"],
        vec!["rm", "nope"],
        vec!["start", "nope"],
        vec!["wait", "nope"],
        vec!["top", "nope"],
        vec!["exec", "nope", "true"],
    ] {
        let out = hull.hull(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains("no such container: nope"), "{args:?}: {err}");
    }
    ok(&hull.hull(&["run", "--name", "once", IMAGE, "true"]));
    assert_eq!(status(&hull, "once"), "exited");
    let dup = hull.hull(&["run", "--name", "once", IMAGE, "true"]);
    assert_one_line_error(&dup, 125, "already in use");
    assert_one_line_error(&hull.hull(&["exec", "once", "true"]), 125, "not running");
    assert_one_line_error(
        &hull.hull(&["run", "--name", "bad/name", IMAGE, "true"]),
        125,
        "invalid container name",
    );
    assert_eq!(ok(&hull.hull(&["ps", "-aq"])).lines().count(), 1);
    ok(&hull.hull(&["rm", "once"]));
    hull.assert_no_sandbox_left();
}

#[test]
fn logs_follow_ends_when_the_container_exits() {
    let hull = Hull::with_busybox();
    ok(&hull.hull(&[
        "run",
        "-d",
        "--name",
        "counter",
        IMAGE,
        "sh",
        "-c",
        "for i in 1 2 3 4; do echo line $i; echo warn $i >&2; sleep 1; done",
    ]));
    let mut follow = hull
        .command(&["logs", "-f", "counter"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(follow.stdout.take().unwrap());
    let lines: Vec<String> = out.lines().map(Result::unwrap).collect();
    assert_eq!(lines, ["line 1", "line 2", "line 3", "line 4"]);
    let status = follow.wait().unwrap();
    assert!(status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut follow.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("warn 4"), "stderr entries go to stderr: {err}");
    assert_eq!(ok(&hull.hull(&["wait", "counter"])).trim(), "0");
    ok(&hull.hull(&["rm", "counter"]));
    hull.assert_no_sandbox_left();
}

#[test]
fn stop_of_a_container_that_ignores_sigterm_kills_it_after_the_grace_time() {
    let hull = Hull::with_busybox();
    ok(&hull.hull(&[
        "run",
        "-d",
        "--name",
        "stubborn",
        IMAGE,
        "sh",
        "-c",
        "trap '' TERM; echo ready; while true; do sleep 1; done",
    ]));
    eventually(60, "ready", || logs(&hull, "stubborn").contains("ready"));
    let started = Instant::now();
    ok(&hull.hull(&["stop", "-t", "2", "stubborn"]));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "stop returned after {took:?}"
    );
    eprintln!("stop -t 2 took {took:?}");
    let info = inspect(&hull, "stubborn");
    assert_eq!(info["State"]["ExitCode"], 137, "{info}");
    ok(&hull.hull(&["rm", "stubborn"]));
    hull.assert_no_sandbox_left();
}

#[test]
fn pause_freezes_every_process_and_unpause_thaws_them() {
    let hull = Hull::with_busybox();
    // A main process and a child of it that both write ticks.
    let ticker = "trap 'exit 3' TERM; (while true; do echo child; sleep 0.2; done) & \
                  while true; do echo main; sleep 0.2; done";
    ok(&hull.hull(&["run", "-d", "--name", "p", IMAGE, "sh", "-c", ticker]));
    let count = |what: &str| logs(&hull, "p").matches(what).count();
    eventually(60, "ticks", || count("main") > 0 && count("child") > 0);
    ok(&hull.hull(&["pause", "p"]));
    let p = inspect(&hull, "p");
    assert_eq!(p["State"]["Status"], "paused", "{p}");
    assert_eq!(p["State"]["Paused"], true, "{p}");
    assert!(ok(&hull.hull(&["ps"])).contains("(Paused)"));
    let frozen = (count("main"), count("child"));
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(
        (count("main"), count("child")),
        frozen,
        "nothing ran while paused"
    );
    assert_one_line_error(&hull.hull(&["pause", "p"]), 1, "already paused");
    assert_one_line_error(&hull.hull(&["exec", "p", "true"]), 125, "is paused");
    ok(&hull.hull(&["unpause", "p"]));
    assert_eq!(status(&hull, "p"), "running");
    eventually(60, "ticks after the thaw", || {
        count("main") > frozen.0 && count("child") > frozen.1
    });
    assert_one_line_error(&hull.hull(&["unpause", "p"]), 1, "not paused");
    // A paused container stops on SIGTERM: it is thawed to act on it.
    ok(&hull.hull(&["pause", "p"]));
    ok(&hull.hull(&["stop", "-t", "30", "p"]));
    let p = inspect(&hull, "p");
    assert_eq!(p["State"]["ExitCode"], 3, "{p}");
    assert_eq!(p["State"]["Paused"], false, "{p}");
    ok(&hull.hull(&["rm", "p"]));
    hull.assert_no_sandbox_left();
}

#[test]
fn kill_sends_the_signal_and_wait_reports_the_exit_code() {
    let hull = Hull::with_busybox();
    ok(&hull.hull(&[
        "run",
        "-d",
        "--name",
        "sig",
        IMAGE,
        "sh",
        "-c",
        "trap 'echo got-usr1; exit 42' USR1; echo ready; while true; do sleep 1; done",
    ]));
    eventually(60, "ready", || logs(&hull, "sig").contains("ready"));
    assert_one_line_error(
        &hull.hull(&["kill", "-s", "NOPE", "sig"]),
        125,
        "invalid signal",
    );
    ok(&hull.hull(&["kill", "-s", "USR1", "sig"]));
    assert_eq!(ok(&hull.hull(&["wait", "sig"])).trim(), "42");
    assert!(logs(&hull, "sig").contains("got-usr1"));
    assert_one_line_error(&hull.hull(&["kill", "sig"]), 1, "not running");
    // system prune removes stopped containers.
    let pruned = ok(&hull.hull(&["system", "prune", "-f"]));
    assert!(pruned.contains("Deleted container"), "{pruned}");
    assert_eq!(ok(&hull.hull(&["ps", "-aq"])), "");
    hull.assert_no_sandbox_left();
}

#[test]
fn detached_rm_removes_the_container_when_it_exits() {
    let hull = Hull::with_busybox();
    ok(&hull.hull(&[
        "run", "-d", "--rm", "--name", "brief", IMAGE, "sh", "-c", "sleep 1",
    ]));
    eventually(60, "the container to remove itself", || {
        ok(&hull.hull(&["ps", "-aq"])).is_empty()
    });
    eventually(20, "its supervisor to exit", || {
        pids_mentioning(hull.root.path().to_str().unwrap()).is_empty()
    });
    hull.assert_no_sandbox_left();
}

#[test]
fn kill_9_of_the_supervisor_or_the_vmm_shows_the_container_exited_with_an_error() {
    let hull = Hull::with_busybox();
    for (name, victim) in [("sup", "SupervisorPid"), ("vmm", "HypervisorPid")] {
        ok(&hull.hull(&[
            "run",
            "-d",
            "--name",
            name,
            IMAGE,
            "sh",
            "-c",
            "echo up; sleep 600",
        ]));
        eventually(60, "up", || logs(&hull, name).contains("up"));
        let pid = inspect(&hull, name)["Hull"][victim]
            .as_u64()
            .unwrap_or_else(|| panic!("inspect has {victim}"));
        // SAFETY-free: signal through the kill command.
        assert!(std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap()
            .success());
        eventually(30, "the container to show as exited", || {
            status(&hull, name) == "exited"
        });
        let info = inspect(&hull, name);
        assert!(
            !info["State"]["Error"]
                .as_str()
                .unwrap_or_default()
                .is_empty(),
            "{info}"
        );
        assert_ne!(info["State"]["ExitCode"], 0);
        assert!(ok(&hull.hull(&["ps", "-a"])).contains("Exited"));
        ok(&hull.hull(&["rm", name]));
    }
    eventually(20, "no process of this installation", || {
        pids_mentioning(hull.root.path().to_str().unwrap()).is_empty()
    });
    hull.assert_no_sandbox_left();
}

#[test]
fn exec_joins_the_running_container() {
    let hull = Hull::with_busybox();
    ok(&hull.hull(&[
        "run",
        "-d",
        "--name",
        "box",
        "-e",
        "FROM_RUN=1",
        IMAGE,
        "sh",
        "-c",
        "echo ready; exec sleep 600",
    ]));
    eventually(60, "ready", || logs(&hull, "box").contains("ready"));
    let out = ok(&hull.hull(&["exec", "box", "cat", "/proc/1/cmdline"]));
    assert_eq!(out.replace('\0', " ").trim(), "sleep 600");
    let out = ok(&hull.hull(&[
        "exec",
        "-e",
        "EXTRA=2",
        "-w",
        "/tmp",
        "-u",
        "1000:1000",
        "box",
        "sh",
        "-c",
        "echo $FROM_RUN $EXTRA $(pwd) $(id -u):$(id -g) $(hostname)",
    ]));
    let hostname = &inspect(&hull, "box")["Id"].as_str().unwrap()[..12].to_string();
    assert_eq!(out.trim(), format!("1 2 /tmp 1000:1000 {hostname}"));
    let code = hull.hull(&["exec", "box", "sh", "-c", "echo to-err >&2; exit 3"]);
    assert_eq!(code.status.code(), Some(3));
    assert_eq!(stderr(&code).trim(), "to-err");
    let piped = hull.hull_with_stdin(&["exec", "-i", "box", "wc", "-c"], &[b'x'; 100_000]);
    assert_eq!(stdout(&piped).trim(), "100000");
    let missing = hull.hull(&["exec", "box", "/no/such/command"]);
    assert_eq!(missing.status.code(), Some(127), "{}", stderr(&missing));

    let top = ok(&hull.hull(&["top", "box"]));
    assert!(top.lines().any(|l| l.ends_with("sleep 600")), "{top}");
    let stats = ok(&hull.hull(&["stats", "--no-stream", "box"]));
    assert!(stats.lines().any(|l| l.contains("box")), "{stats}");
    ok(&hull.hull(&["rm", "-f", "box"]));
    hull.assert_no_sandbox_left();
}

#[test]
fn twenty_sandboxes_started_in_parallel_all_run_and_are_all_removed() {
    let hull = Hull::with_busybox();
    let children: Vec<_> = (0..20)
        .map(|i| {
            hull.command(&[
                "run",
                "-d",
                "-m",
                "32m",
                "--name",
                &format!("p{i}"),
                IMAGE,
                "sleep",
                "600",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    for child in children {
        ok(&child.wait_with_output().unwrap());
    }
    let running = ok(&hull.hull(&["ps", "-q"]));
    assert_eq!(running.lines().count(), 20, "{running}");
    let names: Vec<String> = (0..20).map(|i| format!("p{i}")).collect();
    let mut rm = vec!["rm", "-f"];
    rm.extend(names.iter().map(String::as_str));
    assert_eq!(ok(&hull.hull(&rm)).lines().count(), 20);
    assert_eq!(ok(&hull.hull(&["ps", "-aq"])), "");
    hull.assert_no_sandbox_left();
}

#[test]
fn after_a_simulated_host_reboot_no_container_claims_to_run() {
    let hull = Hull::with_busybox();
    for name in ["r1", "r2"] {
        ok(&hull.hull(&["run", "-d", "--name", name, IMAGE, "sleep", "600"]));
    }
    assert_eq!(ok(&hull.hull(&["ps", "-q"])).lines().count(), 2);
    // A reboot takes every process with it: supervisors, VMs, name servers.
    let root = hull.root.path().to_str().unwrap().to_string();
    for pid in pids_mentioning(&root) {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }
    eventually(20, "every process of this installation to go", || {
        pids_mentioning(&root).is_empty()
    });
    assert_eq!(ok(&hull.hull(&["ps", "-q"])), "", "nothing claims to run");
    let all = ok(&hull.hull(&["ps", "-a"]));
    assert_eq!(all.matches("Exited (255)").count(), 2, "{all}");
    ok(&hull.hull(&["rm", "r1", "r2"]));
    hull.assert_no_sandbox_left();
}
