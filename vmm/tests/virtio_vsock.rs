//! Real-KVM test: a stand-in guest talks to host unix sockets through
//! hull-vmm's hybrid vsock, in both directions (guest → `<uds>_1024`, and
//! host `CONNECT 5001` on `<uds>`), plus refused and hostile packets.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use common::*;

#[test]
fn guest_and_host_connect_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("v.sock");
    let agent = UnixListener::bind(format!("{}_1024", uds.display())).unwrap();
    let uds2 = uds.clone();
    let host = std::thread::spawn(move || {
        // Guest-initiated: the "agent" port.
        let (mut s, _) = agent.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut buf = [0u8; 16];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping from guest\n");
        s.write_all(b"pong from host\n").unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap(); // EOF once the guest shuts down
        assert!(rest.is_empty());

        // Host-initiated.
        let start = Instant::now();
        let mut c = loop {
            match UnixStream::connect(&uds2) {
                Ok(c) => break c,
                Err(e) => {
                    assert!(start.elapsed() < Duration::from_secs(30), "{e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        };
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        c.write_all(b"CONNECT 5001\n").unwrap();
        let mut r = BufReader::new(c.try_clone().unwrap());
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert!(line.starts_with("OK "), "{line:?}");
        let port: u32 = line[3..].trim().parse().unwrap();
        c.write_all(b"hello guest\n").unwrap();
        let mut echo = String::new();
        r.read_line(&mut echo).unwrap();
        assert_eq!(echo, "echo: hello guest\n");
        drop(r);
        drop(c);
        port
    });
    let k = guest("standin64.elf");
    let o = run_vmm(
        &[
            "--kernel",
            k.to_str().unwrap(),
            "--memory",
            "64",
            "--cmdline",
            "console=ttyS0 standin=vsock",
            "--vsock",
            &format!("cid=42,uds={}", uds.display()),
        ],
        Duration::from_secs(60),
    );
    let out = expect_ok(&o);
    let port = host.join().expect("host side failed");
    let expect = [
        "vsock: cid 42".to_string(),
        "vsock: connect reply op 2 from 2:1024 to 5000".into(),
        "vsock: got op 5 from 2:1024 to 5000 data pong from host".into(),
        "vsock: close reply op 3 from 2:1024 to 5000".into(),
        format!("vsock: incoming op 1 from 2:{port} to 5001"),
        format!("vsock: host data op 5 from 2:{port} to 5001 data hello guest"),
        format!("vsock: host end op 4 from 2:{port} to 5001"),
        "vsock: no listener op 3 from 2:9999 to 5002".into(),
        "vsock: stray data op 3 from 2:1024 to 5003".into(),
        "vsock: wrong cid op 3 from 2:1024 to 5004".into(),
        "vsock: ok".into(),
    ];
    for line in &expect {
        assert!(
            out.lines().any(|l| l == line),
            "missing {line:?} in:\n{out}"
        );
    }
    // The device removes its socket when the VMM ends.
    assert!(!uds.exists());
}
