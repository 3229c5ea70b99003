//! MAC and IP pinning on a hull network, with real guests: root in a
//! `--privileged` container ARP-spoofs the gateway, then a neighbour by
//! its address and by its MAC, and gets nothing: the neighbour's ARP
//! entries, its name server and its connections to the victim stay
//! right, the attacker receives nothing, and the victim's published port
//! still works. The attacker, once it stops, works normally again; the
//! taps' rules go with their containers.

use std::io::Read;
use std::net::TcpStream;
use std::time::Duration;

use hull_tests::registry::free_port;
use hull_tests::{ok, stdout, Hull};

const IMAGE: &str = "hull-demo/busybox";

/// The first answer from whoever serves 127.0.0.1:`port` (the victim's
/// server takes one connection at a time: a try between two is refused).
fn published(port: u16) -> String {
    let mut text = String::new();
    for _ in 0..20 {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let _ = s.read_to_string(&mut text);
        }
        if !text.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    text
}

/// `sh -c script` in container `name`; its stdout.
fn exec(hull: &Hull, name: &str, script: &str) -> String {
    ok(&hull.hull(&["exec", name, "sh", "-c", script]))
}

/// The MAC `name` has in its ARP table for `ip` (empty if none).
fn neighbour_mac(hull: &Hull, name: &str, ip: &str) -> String {
    let out = exec(hull, name, &format!("ip neigh show {ip}"));
    out.split_whitespace()
        .skip_while(|w| *w != "lladdr")
        .nth(1)
        .unwrap_or("")
        .to_string()
}

/// The network namespace's nftables bridge table, as `nft` lists it.
fn pin_table(namespace: &str) -> String {
    let out = std::process::Command::new("ip")
        .args([
            "netns", "exec", namespace, "nft", "list", "table", "bridge", "hull",
        ])
        .output()
        .unwrap();
    stdout(&out)
}

#[test]
fn a_root_guest_cannot_spoof_the_gateway_or_a_neighbour_and_its_pin_goes_with_it() {
    let hull = Hull::with_busybox();
    let port = free_port();
    let publish = format!("{port}:8080");
    // The victim serves on 8080, one connection at a time.
    ok(&hull.hull(&[
        "run",
        "-d",
        "--name",
        "victim",
        "-p",
        &publish,
        IMAGE,
        "sh",
        "-c",
        "while true; do echo victim | nc -l -p 8080; done",
    ]));
    // The neighbour watches its ARP table (flushing it needs NET_ADMIN).
    for name in ["neighbour", "attacker"] {
        ok(&hull.hull(&[
            "run",
            "-d",
            "--privileged",
            "--name",
            name,
            IMAGE,
            "sleep",
            "900",
        ]));
    }
    let ip = |name: &str| {
        hull.inspect(name)["NetworkSettings"]["IPAddress"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (victim, attacker) = (ip("victim"), ip("attacker"));
    let gateway = exec(&hull, "neighbour", "ip route | awk '/default/ {print $3}'")
        .trim()
        .to_string();
    let victim_mac = neighbour_mac_of(&victim);
    let attacker_mac = neighbour_mac_of(&attacker);

    // Every tap has its pin.
    let net: serde_json::Value =
        serde_json::from_str(&ok(&hull.hull(&["network", "inspect", "bridge"]))).unwrap();
    let namespace = net[0]["Namespace"].as_str().unwrap().to_string();
    let tap_of = |name: &str| {
        let id = hull.inspect(name)["Id"].as_str().unwrap().to_string();
        format!("tap{}", &id[..12])
    };
    let table = pin_table(&namespace);
    for name in ["victim", "neighbour", "attacker"] {
        assert!(
            table.contains(&format!("chain {} {{", tap_of(name))),
            "{table}"
        );
    }
    assert!(
        table.contains(&format!("ip saddr {attacker} accept")),
        "{table}"
    );

    // Before: the neighbour knows the gateway and the victim; the
    // published port answers.
    // The first answer from whoever serves port 8080 at `to`.
    let fetch_from = |to: &str| {
        format!(
            "for i in 1 2 3 4 5; do r=$(echo hi | nc -w 5 {to} 8080); \
             [ -n \"$r\" ] && break; sleep 1; done; echo $r"
        )
    };
    let fetch = fetch_from(&victim);
    assert_eq!(exec(&hull, "neighbour", &fetch), "victim\n");
    assert_eq!(
        exec(
            &hull,
            "neighbour",
            &format!("ping -c1 -W5 {gateway} >/dev/null && echo up")
        ),
        "up\n"
    );
    let gateway_mac = neighbour_mac(&hull, "neighbour", &gateway);
    assert!(gateway_mac.len() == 17, "{gateway_mac:?}");
    assert_eq!(neighbour_mac(&hull, "neighbour", &victim), victim_mac);
    assert_eq!(published(port), "victim\n");

    // (a) The attacker claims the gateway's address: gratuitous ARP,
    // unsolicited replies, and answers to the neighbour's fresh request.
    exec(
        &hull,
        "attacker",
        &format!(
            "ip addr add {gateway}/32 dev eth0 && \
             arping -c2 -U -I eth0 -s {gateway} {gateway}; \
             arping -c2 -A -I eth0 -s {gateway} {gateway}; true"
        ),
    );
    assert_eq!(neighbour_mac(&hull, "neighbour", &gateway), gateway_mac);
    let fresh = exec(
        &hull,
        "neighbour",
        &format!(
            "ip neigh flush dev eth0; ping -c3 -W5 {gateway} >/dev/null; ip neigh show {gateway}"
        ),
    );
    assert!(
        fresh.contains(&gateway_mac) && !fresh.contains(&attacker_mac),
        "{fresh}"
    );
    // The network's name server, at the gateway, still answers.
    assert_eq!(
        exec(
            &hull,
            "neighbour",
            "ping -c1 -W5 victim >/dev/null && echo found"
        ),
        "found\n"
    );

    // (b) The attacker claims the victim's address, then its MAC too, and
    // listens on the victim's port.
    let steal = format!(
        "ip addr del {gateway}/32 dev eth0; ip addr add {victim}/32 dev eth0 && \
         (setsid sh -c 'echo attacker | nc -l -p 8080 > /tmp/got' </dev/null >/dev/null 2>&1 &) && \
         arping -c2 -U -I eth0 -s {victim} {victim}; \
         arping -c2 -A -I eth0 -s {victim} {victim}; true"
    );
    exec(&hull, "attacker", &steal);
    assert_eq!(neighbour_mac(&hull, "neighbour", &victim), victim_mac);
    assert_eq!(exec(&hull, "neighbour", &fetch), "victim\n");
    exec(
        &hull,
        "attacker",
        &format!(
            "ip link set eth0 address {victim_mac} && \
             arping -c2 -U -I eth0 -s {victim} {victim}; \
             arping -c2 -A -I eth0 -s {victim} {victim}; \
             ping -c2 -W1 {gateway} >/dev/null; true"
        ),
    );
    assert_eq!(exec(&hull, "neighbour", &fetch), "victim\n");
    assert_eq!(published(port), "victim\n");
    assert_eq!(
        exec(
            &hull,
            "attacker",
            "pidof nc >/dev/null && echo listening; cat /tmp/got"
        ),
        "listening\n",
        "the attacker got traffic"
    );

    // (c) The attacker, back to its own addresses, works as any container.
    let back = format!(
        "kill $(pidof nc); ip addr del {victim}/32 dev eth0; ip link set eth0 address {attacker_mac}; \
         ping -c1 -W5 {gateway} >/dev/null && echo gateway; {}",
        fetch_from("victim")
    );
    assert_eq!(exec(&hull, "attacker", &back), "gateway\nvictim\n");

    // The attacker's pin goes with it while the network lives on.
    let tap = tap_of("attacker");
    ok(&hull.hull(&["rm", "-f", "attacker"]));
    let table = pin_table(&namespace);
    assert!(!table.contains(&tap), "{tap} left in\n{table}");
    assert!(table.contains(&tap_of("victim")), "{table}");
    ok(&hull.hull(&["rm", "-f", "victim", "neighbour"]));
    assert!(!std::path::Path::new("/run/netns").join(&namespace).exists());
    hull.assert_no_sandbox_left();
}

/// The MAC hull gives the container at `ip` (`02:42` and the address).
fn neighbour_mac_of(ip: &str) -> String {
    let o: Vec<u8> = ip.split('.').map(|p| p.parse().unwrap()).collect();
    format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

/// Where `tool` is on this test's PATH.
fn which(tool: &str) -> std::path::PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{tool} is not on PATH"))
}

#[test]
fn without_nft_a_run_on_a_network_is_one_line_error_and_leaves_nothing() {
    let hull = Hull::with_busybox();
    // Said once per store: not what this test reads.
    std::fs::write(hull.store_dir().join(".tcg-notice-shown"), "").unwrap();
    // Every program hull runs, but nft.
    let bin = tempfile::tempdir().unwrap();
    for tool in [
        "ip",
        "mkfs.ext4",
        "mkfs.erofs",
        "fsck.erofs",
        "debugfs",
        "qemu-system-x86_64",
    ] {
        std::os::unix::fs::symlink(which(tool), bin.path().join(tool)).unwrap();
    }
    let out = hull
        .command(&["run", "--rm", IMAGE, "true"])
        .env("PATH", bin.path())
        .output()
        .unwrap();
    hull_tests::assert_one_line_error(&out, 125, "install nftables");
    // With the network's namespace, tap and name server gone too.
    let namespaces = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    // hull-net names this installation's namespaces by its run dir.
    let runtime = hull.run_dir().join("networks");
    let digest = <sha2::Sha256 as sha2::Digest>::digest(runtime.as_os_str().as_encoded_bytes());
    let ours = format!("hull-net-{}-", hex::encode(&digest[..3]));
    assert!(
        !stdout(&namespaces).contains(&ours),
        "{}",
        stdout(&namespaces)
    );
    hull.assert_no_sandbox_left();
}
