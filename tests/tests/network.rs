//! Container networks end to end with real guests: a busybox httpd
//! reached by name and by address from its network, not from another one,
//! through a published port from the host, nothing with `--network none`,
//! and nothing left after `rm` and `network rm`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use hull_tests::{assert_one_line_error, eventually, ok, stdout, Hull};
use sha2::{Digest, Sha256};

const IMAGE: &str = "hull-demo/busybox";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET `path` from 127.0.0.1:`port` with a plain HTTP/1.0 request; the body.
fn http_get(port: u16, path: &str) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply)?;
    let split = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no HTTP header end"))?;
    if !reply.starts_with(b"HTTP/1.0 200") && !reply.starts_with(b"HTTP/1.1 200") {
        return Err(std::io::Error::other(
            String::from_utf8_lossy(&reply[..split]).into_owned(),
        ));
    }
    Ok(reply[split + 4..].to_vec())
}

fn namespaces_of(hull: &Hull) -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    let inspect = hull.hull(&["network", "inspect", "bridge"]);
    let ns: serde_json::Value = serde_json::from_str(&stdout(&inspect)).unwrap_or_default();
    let ours = ns[0]["Namespace"].as_str().unwrap_or("?").to_string();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(&ours))
        .map(str::to_string)
        .collect()
}

/// A 20 MB file served by busybox httpd; prints its sha256.
const SERVER: &str = "mkdir -p /www && dd if=/dev/urandom of=/www/big bs=1048576 count=20 2>/dev/null && \
                      echo hello > /www/small && sha256sum /www/big | cut -c1-64 && exec httpd -f -p 80 -h /www";

#[test]
fn containers_reach_each_other_by_name_and_address_and_the_host_through_a_published_port() {
    let hull = Hull::with_busybox();
    let port = free_port();
    let publish = format!("{port}:80");
    ok(&hull.hull(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network-alias",
        "www",
        "-p",
        &publish,
        IMAGE,
        "sh",
        "-c",
        SERVER,
    ]));
    let logs = || ok(&hull.hull(&["logs", "web"]));
    eventually(90, "the server's checksum", || logs().trim().len() == 64);
    let expected = logs().trim().to_string();
    let info: serde_json::Value =
        serde_json::from_str(&ok(&hull.hull(&["inspect", "web"]))).unwrap();
    let ip = info[0]["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(ip.starts_with("10.89."), "{info}");
    assert_eq!(
        ok(&hull.hull(&["port", "web"])).trim(),
        format!("80/tcp -> 127.0.0.1:{port}")
    );

    // From the host, through the published port: 20 MB intact.
    let mut body = Err(std::io::Error::other("not tried"));
    eventually(60, "httpd through the published port", || {
        body = http_get(port, "/big");
        body.is_ok()
    });
    let body = body.unwrap();
    assert_eq!(body.len(), 20 << 20);
    assert_eq!(hex::encode(Sha256::digest(&body)), expected);
    // The host's curl, as a user would.
    let curl = std::process::Command::new("curl")
        .args(["-sf", &format!("http://127.0.0.1:{port}/small")])
        .output()
        .unwrap();
    assert_eq!(stdout(&curl), "hello\n");

    // From a second container on the same network: by name, alias and address.
    let fetch = "for u in http://web/big http://www/small http://$IP/small; do \
                 wget -q -O - $u | sha256sum | cut -c1-16; done";
    let out = ok(&hull.hull(&[
        "run",
        "--rm",
        "-e",
        &format!("IP={ip}"),
        IMAGE,
        "sh",
        "-c",
        fetch,
    ]));
    let sums: Vec<&str> = out.lines().collect();
    assert_eq!(sums.len(), 3, "{out}");
    assert_eq!(sums[0], &expected[..16]);
    let small = hex::encode(Sha256::digest(b"hello\n"));
    assert_eq!(sums[1], &small[..16]);
    assert_eq!(sums[2], &small[..16]);

    // A container started later is found by name from an earlier one,
    // through the network's name server.
    ok(&hull.hull(&["run", "-d", "--name", "later", IMAGE, "sleep", "600"]));
    let resolved = ok(&hull.hull(&[
        "exec",
        "web",
        "sh",
        "-c",
        "ping -c1 -W5 later >/dev/null && echo found",
    ]));
    assert_eq!(resolved.trim(), "found");
    let missing = hull.hull(&["exec", "web", "ping", "-c1", "-W2", "nobody-here"]);
    assert!(!missing.status.success());
    ok(&hull.hull(&["rm", "-f", "later"]));

    // From another network: no way through.
    ok(&hull.hull(&["network", "create", "other"]));
    let nets = ok(&hull.hull(&["network", "ls"]));
    assert!(nets.contains("other") && nets.contains("bridge"), "{nets}");
    let out = hull.hull(&[
        "run",
        "--rm",
        "--network",
        "other",
        IMAGE,
        "sh",
        "-c",
        &format!(
            "wget -q -T 3 -O - http://{ip}/small && echo reached || echo unreachable; \
                  wget -q -T 3 -O - http://web/small || echo no-name"
        ),
    ]);
    let text = ok(&out);
    assert!(
        text.contains("unreachable") && text.contains("no-name"),
        "{text}"
    );

    // A network in use cannot go; the default one never.
    assert_one_line_error(
        &hull.hull(&["network", "rm", "bridge"]),
        1,
        "cannot be removed",
    );
    ok(&hull.hull(&["rm", "-f", "web"]));
    ok(&hull.hull(&["network", "rm", "other"]));
    assert!(
        namespaces_of(&hull).is_empty(),
        "{:?}",
        namespaces_of(&hull)
    );
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the published port is closed"
    );
    hull.assert_no_sandbox_left();
}

#[test]
fn network_none_has_only_loopback() {
    let hull = Hull::with_busybox();
    let out = ok(&hull.hull(&[
        "run", "--rm", "--network", "none", IMAGE, "sh", "-c",
        "ls /sys/class/net | grep -v sit; echo routes=$(ip route | wc -l); ping -c1 -W1 127.0.0.1 >/dev/null && echo lo-ok",
    ]));
    assert_eq!(out, "lo\nroutes=0\nlo-ok\n");
    assert_one_line_error(
        &hull.hull(&[
            "run",
            "--rm",
            "--network",
            "none",
            "-p",
            "8080:80",
            IMAGE,
            "true",
        ]),
        125,
        "needs a network",
    );
    hull.assert_no_sandbox_left();
}

#[test]
fn network_commands_refuse_what_cannot_be() {
    let hull = Hull::with_busybox();
    assert_one_line_error(
        &hull.hull(&["run", "--rm", "--network", "nope", IMAGE, "true"]),
        125,
        "network nope not found",
    );
    assert_one_line_error(
        &hull.hull(&["network", "create", "--subnet", "10.0.0.1/8", "x"]),
        125,
        "invalid subnet",
    );
    ok(&hull.hull(&["network", "create", "--subnet", "10.91.0.0/24", "x"]));
    assert_one_line_error(
        &hull.hull(&["network", "create", "x"]),
        125,
        "already exists",
    );
    ok(&hull.hull(&[
        "run",
        "-d",
        "--name",
        "c",
        "--network",
        "x",
        IMAGE,
        "sleep",
        "600",
    ]));
    let info: serde_json::Value =
        serde_json::from_str(&ok(&hull.hull(&["network", "inspect", "x"]))).unwrap();
    assert_eq!(info[0]["Containers"][0]["Name"], "c", "{info}");
    assert_eq!(
        info[0]["Containers"][0]["IPv4Address"], "10.91.0.2",
        "{info}"
    );
    assert_one_line_error(&hull.hull(&["network", "rm", "x"]), 1, "in use");
    assert_one_line_error(
        &hull.hull(&["run", "--rm", "-p", "bad", IMAGE, "true"]),
        125,
        "invalid -p",
    );
    ok(&hull.hull(&["rm", "-f", "c"]));
    ok(&hull.hull(&["network", "rm", "x"]));
    hull.assert_no_sandbox_left();
}
