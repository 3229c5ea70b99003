//! Real-KVM test: a stand-in guest sends an ARP request through hull-vmm's
//! virtio-net to a tap inside a network namespace this test creates, and
//! the namespace's kernel answers. Nothing leaves the namespace.

mod common;

use std::process::Command;

use common::*;

/// A network namespace with a tap, deleted on drop.
struct NetNs(String);

fn ip(args: &[&str]) {
    let st = Command::new("ip")
        .args(args)
        .status()
        .expect("cannot run ip(8) (iproute2 is needed)");
    assert!(
        st.success(),
        "ip {args:?} failed (the tap test needs root and iproute2)"
    );
}

impl NetNs {
    fn new(name: &str) -> Self {
        let _ = Command::new("ip")
            .args(["netns", "del", name])
            .stderr(std::process::Stdio::null())
            .status();
        ip(&["netns", "add", name]);
        let ns = NetNs(name.to_string());
        ip(&[
            "netns", "exec", name, "ip", "tuntap", "add", "dev", "hulltap0", "mode", "tap",
        ]);
        ip(&["-n", name, "link", "set", "hulltap0", "up"]);
        ip(&["-n", name, "addr", "add", "10.99.0.1/24", "dev", "hulltap0"]);
        ns
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn guest_arp_through_a_tap_in_a_netns() {
    require_kvm();
    let k = guest("standin64.elf");
    let ns = NetNs::new(&format!("hull-vmm-t{}", std::process::id()));
    let o = run_vmm_in_ns(
        &ns.0,
        &[
            "--kernel",
            k.to_str().unwrap(),
            "--memory",
            "64",
            "--cmdline",
            "console=ttyS0 standin=net",
            "--net",
            "hulltap0,mac=02:00:00:00:00:02",
        ],
    );
    let out = expect_ok(&o);
    assert!(out.contains("net: mac 02:00:00:00:00:02"), "{out}");
    assert!(out.contains("net: arp reply from "), "{out}");
    assert!(out.contains(" for 10.99.0.1"), "{out}");
    assert!(out.contains("net: ok"), "{out}");
    // The frame really went out through the tap.
    let stats = Command::new("ip")
        .args(["-n", &ns.0, "-s", "link", "show", "hulltap0"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&stats.stdout);
    assert!(text.contains("RX:"), "{text}");
}

fn run_vmm_in_ns(ns: &str, args: &[&str]) -> std::process::Output {
    let vmm = env!("CARGO_BIN_EXE_hull-vmm");
    let mut full = vec!["netns", "exec", ns, vmm];
    full.extend_from_slice(args);
    let child = Command::new("timeout")
        .arg("60")
        .arg("ip")
        .args(&full)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    child.wait_with_output().unwrap()
}
