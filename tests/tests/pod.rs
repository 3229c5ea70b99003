//! Pods end to end with real guests: containers that join another
//! container's VM (`--network container:NAME`) get their own root,
//! namespaces and cgroup inside it, share its network, leave without a
//! trace, and end when the VM does.

use hull_tests::{assert_one_line_error, eventually, ok, stdout, Hull};

const IMAGE: &str = "hull-demo/busybox";

/// A busybox httpd on the VM's port 8080 serving "pod-hello".
const SERVER: &str =
    "mkdir -p /www && echo pod-hello > /www/index.html && exec httpd -f -p 8080 -h /www";

/// Fetches the server's page from inside a container, retrying while
/// httpd starts.
const FETCH: &str = "for i in $(seq 1 40); do wget -qO- http://127.0.0.1:8080/ 2>/dev/null && exit 0; sleep 0.5; done; exit 1";

fn inspect(hull: &Hull, name: &str) -> serde_json::Value {
    let out = ok(&hull.hull(&["inspect", name]));
    let all: serde_json::Value = serde_json::from_str(&out).expect("inspect prints JSON");
    all[0].clone()
}

/// The block devices of the VM, as a container in it sees them.
fn vm_disks(hull: &Hull, container: &str) -> Vec<String> {
    ok(&hull.hull(&["exec", container, "ls", "/sys/block"]))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn containers_in_one_vm_share_its_network_but_not_their_processes() {
    let hull = Hull::with_busybox();
    ok(&hull.hull(&["run", "-d", "--name", "web", IMAGE, "sh", "-c", SERVER]));
    let disks_before = vm_disks(&hull, "web");

    // An attached member: reaches the server on the VM's loopback, sees
    // only its own processes, has its own hostname and root.
    let script = format!(
        "({FETCH}); echo pid1=$(tr '\\0' ' ' < /proc/1/cmdline); \
         echo httpds=$(ps -o comm | grep -c httpd); echo host=$(hostname); \
         test -e /www && echo shared-root || echo own-root"
    );
    let out = ok(&hull.hull(&[
        "run",
        "--rm",
        "--network",
        "container:web",
        "--hostname",
        "member",
        IMAGE,
        "sh",
        "-c",
        &script,
    ]));
    assert!(out.starts_with("pod-hello\n"), "{out}");
    assert!(out.contains("\npid1=sh -c "), "{out}");
    assert!(out.contains("\nhttpds=0\n"), "{out}");
    assert!(out.contains("\nhost=member\n"), "{out}");
    assert!(out.contains("\nown-root\n"), "{out}");
    assert_eq!(
        vm_disks(&hull, "web"),
        disks_before,
        "the member's disks left the VM with it"
    );

    // A detached member: same address, exec into it, `ps` in each shows
    // only its own; `rm -f` takes it out and the VM runs on.
    ok(&hull.hull(&[
        "run",
        "-d",
        "--name",
        "side",
        "--network",
        "container:web",
        IMAGE,
        "sleep",
        "600",
    ]));
    let (web, side) = (inspect(&hull, "web"), inspect(&hull, "side"));
    let web_ip = web["NetworkSettings"]["IPAddress"].as_str().unwrap_or("");
    assert!(!web_ip.is_empty(), "{web}");
    assert_eq!(side["NetworkSettings"]["IPAddress"].as_str(), Some(web_ip));
    assert_eq!(
        side["HostConfig"]["NetworkMode"].as_str(),
        Some(format!("container:{}", web["Id"].as_str().unwrap()).as_str())
    );
    assert_eq!(
        ok(&hull.hull(&["exec", "side", "sh", "-c", FETCH])),
        "pod-hello\n"
    );
    assert!(vm_disks(&hull, "web").len() > disks_before.len());
    let side_ps = ok(&hull.hull(&["exec", "side", "ps", "-o", "args"]));
    let web_ps = ok(&hull.hull(&["exec", "web", "ps", "-o", "args"]));
    assert!(
        side_ps.contains("sleep 600") && !side_ps.contains("httpd"),
        "{side_ps}"
    );
    assert!(
        web_ps.contains("httpd") && !web_ps.contains("sleep 600"),
        "{web_ps}"
    );
    ok(&hull.hull(&["rm", "-f", "side"]));
    assert_eq!(vm_disks(&hull, "web"), disks_before);
    assert_eq!(
        ok(&hull.hull(&["exec", "web", "wget", "-qO-", "http://127.0.0.1:8080/"])),
        "pod-hello\n"
    );

    // The VM's first container ends the VM, and its members with it.
    ok(&hull.hull(&[
        "run",
        "-d",
        "--name",
        "last",
        "--network",
        "container:web",
        IMAGE,
        "sleep",
        "600",
    ]));
    ok(&hull.hull(&["stop", "-t", "1", "web"]));
    eventually(60, "the member to end with the VM", || {
        inspect(&hull, "last")["State"]["Status"] == "exited"
    });
    let last = inspect(&hull, "last");
    assert_ne!(last["State"]["ExitCode"], 0, "{last}");
    assert!(
        !last["State"]["Error"].as_str().unwrap_or("").is_empty(),
        "{last}"
    );
    ok(&hull.hull(&["rm", "last", "web"]));
    hull.assert_no_sandbox_left();
}

#[test]
fn joining_what_cannot_be_joined_is_refused() {
    let hull = Hull::with_busybox();
    assert_one_line_error(
        &hull.hull(&["run", "--rm", "--network", "container:nope", IMAGE, "true"]),
        125,
        "container:nope",
    );
    ok(&hull.hull(&["run", "--name", "idle", IMAGE, "true"]));
    assert_one_line_error(
        &hull.hull(&["run", "--rm", "--network", "container:idle", IMAGE, "true"]),
        125,
        "not running",
    );
    ok(&hull.hull(&["run", "-d", "--name", "web", IMAGE, "sleep", "600"]));
    assert_one_line_error(
        &hull.hull(&[
            "run",
            "--rm",
            "--network",
            "container:web",
            "-p",
            "8080:80",
            IMAGE,
            "true",
        ]),
        125,
        "publish ports",
    );
    // A failed join leaves no record behind.
    let ids = stdout(&hull.hull(&["ps", "-a", "-q"]));
    assert_eq!(ids.lines().count(), 2, "{ids}");
    ok(&hull.hull(&["rm", "-f", "web", "idle"]));
    hull.assert_no_sandbox_left();
}
