//! `hull-runc update` and `hull-runc events` end to end: one long-running
//! container in a real QEMU guest gets new limits (flags, then an OCI
//! resources file), seen from inside its cgroup and enforced (a fork loop
//! stops at pids.max); `events` prints runc's stats JSON once, then as a
//! stream that ends when the container does. The Bundle and Runc helpers
//! are `hull_tests::runc`'s.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use hull_tests::ecosystem::reap;
use hull_tests::runc::{Bundle, Runc};
use hull_tests::{assert_one_line_error, eventually, ok, stderr};

/// The container's cgroup directory as its processes see it.
const CGROUP: &str = "d=/sys/fs/cgroup$(cut -d: -f3 /proc/self/cgroup)";

#[test]
fn runc_update_changes_limits_and_events_reports_them() {
    let runc = Runc::new();
    let bundle = Bundle::new(&["sleep", "1000"]);
    let pid = runc.create(&bundle, "u1");
    ok(&runc.run(&["start", "u1"]));

    // Flags: a memory size with a unit and a pids limit, seen inside.
    ok(&runc.run(&["update", "--memory", "64m", "--pids-limit", "20", "u1"]));
    let out = ok(&runc.sh(
        "u1",
        &format!("{CGROUP}; echo $d; cat $d/memory.max $d/pids.max"),
    ));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[1..], ["67108864", "20"], "cgroup {}", lines[0]);

    // The pids limit bites: a fork loop in a subshell stops short of 40
    // (the subshell dies on "can't fork"); only builtins run after it.
    let out = runc.sh(
        "u1",
        &format!(
            "{CGROUP}; \
             ( i=0; while [ $i -lt 40 ]; do sleep 5 & i=$((i+1)); echo $i > /tmp/n; done; \
               echo all-forked ); echo rc=$?; \
             read n < /tmp/n; echo forked=$n; \
             while read k v; do echo pids.$k=$v; done < $d/pids.events"
        ),
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!text.contains("all-forked"), "{text}");
    assert!(!text.contains("rc=0"), "{text}");
    let forked: u32 = text
        .lines()
        .find_map(|l| l.strip_prefix("forked="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {text:?}; stderr {}", stderr(&out)));
    assert!((1..20).contains(&forked), "forked {forked}: {text}");
    let refused: u32 = text
        .lines()
        .find_map(|l| l.strip_prefix("pids.max="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(refused > 0, "pids.events: {text}");
    // The sleeps end; until then an exec may find no pid free.
    eventually(30, "the fork loop's sleeps to end", || {
        runc.sh("u1", &format!("{CGROUP}; cat $d/pids.current"))
            .status
            .success()
    });

    // A resources file (OCI linux.resources): a CPU quota.
    let resources = runc.root.path().join("resources.json");
    std::fs::write(
        &resources,
        r#"{"cpu":{"quota":25000,"period":100000},"memory":{"limit":0}}"#,
    )
    .unwrap();
    ok(&runc.run(&["update", "-r", resources.to_str().unwrap(), "u1"]));
    let out = ok(&runc.sh("u1", &format!("{CGROUP}; cat $d/cpu.max $d/memory.max")));
    assert_eq!(out, "25000 100000\n67108864\n");
    // A bad value names its flag, on one line.
    let out = runc.run(&["update", "--memory", "lots", "u1"]);
    assert_one_line_error(&out, 1, "--memory");

    // events --stats: one line of runc's stats JSON.
    let out = ok(&runc.run(&["events", "--stats", "u1"]));
    assert_eq!(out.lines().count(), 1, "{out}");
    let event: serde_json::Value = serde_json::from_str(&out).expect("events prints JSON");
    assert_eq!(event["type"], "stats");
    assert_eq!(event["id"], "u1");
    let data = &event["data"];
    assert_eq!(data["memory"]["usage"]["limit"], 64u64 << 20, "{data}");
    assert!(
        data["memory"]["usage"]["usage"].as_u64().unwrap() > 0,
        "{data}"
    );
    assert_eq!(data["pids"]["limit"], 20, "{data}");
    assert!(data["pids"]["current"].as_u64().unwrap() >= 1, "{data}");
    assert!(
        data["cpu"]["usage"]["total"].as_u64().unwrap() > 0,
        "{data}"
    );

    // events --interval 1s: a stream, until the container stops.
    let mut events = runc
        .command(&["events", "--interval", "1s", "u1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(events.stdout.take().unwrap()).lines();
    for _ in 0..2 {
        let line = lines.next().expect("an event line").unwrap();
        let event: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
        assert_eq!(event["type"], "stats", "{line}");
        assert_eq!(event["data"]["pids"]["limit"], 20, "{line}");
    }
    ok(&runc.run(&["kill", "u1", "KILL"]));
    assert_eq!(reap(pid, 30), 137);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = events.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "events did not end with the container"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "events exited {status}");
    for line in lines {
        let line = line.unwrap();
        let event: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
        assert_eq!(event["type"], "stats", "{line}");
    }

    // Errors: a stopped container, an unknown id.
    let out = runc.run(&["update", "--memory", "32m", "u1"]);
    assert_one_line_error(&out, 1, "not running");
    let out = runc.run(&["events", "--stats", "u1"]);
    assert_one_line_error(&out, 1, "not running");
    let out = runc.run(&["update", "--pids-limit", "5", "nope"]);
    assert_one_line_error(&out, 1, "nope");

    ok(&runc.run(&["delete", "u1"]));
    runc.assert_nothing_left();
}
