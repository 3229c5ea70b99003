//! Network namespaces, bridges and taps, through iproute2's `ip` (the
//! tool every host has; its `netns` convention makes our namespaces
//! visible to `ip netns list`).

use std::path::PathBuf;
use std::process::Command;

use super::NetworkError;

pub fn path(namespace: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(namespace)
}

fn ip(args: &[&str]) -> Result<(), NetworkError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(NetworkError::NoIp)?;
    if out.status.success() {
        return Ok(());
    }
    Err(NetworkError::Ip {
        args: args.join(" "),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

/// Makes the namespace with its bridge (holding the gateway address) and
/// loopback up, unless it exists.
pub fn ensure(namespace: &str, bridge: &str, gateway_cidr: &str) -> Result<(), NetworkError> {
    if path(namespace).exists() {
        return Ok(());
    }
    ip(&["netns", "add", namespace])?;
    let setup = (|| {
        ip(&["-n", namespace, "link", "set", "lo", "up"])?;
        ip(&["-n", namespace, "link", "add", bridge, "type", "bridge"])?;
        ip(&["-n", namespace, "addr", "add", gateway_cidr, "dev", bridge])?;
        ip(&["-n", namespace, "link", "set", bridge, "up"])
    })();
    if setup.is_err() {
        delete(namespace);
    }
    setup
}

/// A persistent tap on the bridge, up.
pub fn add_tap(namespace: &str, tap: &str, bridge: &str) -> Result<(), NetworkError> {
    // A tap of an earlier boot whose supervisor was killed.
    delete_link(namespace, tap);
    ip(&["-n", namespace, "tuntap", "add", "dev", tap, "mode", "tap"])?;
    let setup = (|| {
        ip(&["-n", namespace, "link", "set", tap, "master", bridge])?;
        ip(&["-n", namespace, "link", "set", tap, "up"])
    })();
    if setup.is_err() {
        delete_link(namespace, tap);
    }
    setup
}

/// A bare namespace (a pool's place for taps made ahead of their
/// sandboxes), unless it exists. Safe to race.
pub fn ensure_bare(namespace: &str) -> Result<(), NetworkError> {
    if path(namespace).exists() {
        return Ok(());
    }
    match ip(&["netns", "add", namespace]) {
        Err(_) if path(namespace).exists() => Ok(()),
        other => other,
    }
}

/// A persistent tap on no bridge, down: a hypervisor may open it now and
/// [`adopt_tap`] put it on a network later.
pub fn add_loose_tap(namespace: &str, tap: &str) -> Result<(), NetworkError> {
    delete_link(namespace, tap);
    ip(&["-n", namespace, "tuntap", "add", "dev", tap, "mode", "tap"])
}

/// Moves `tap` (with whoever holds it open) from namespace `from` onto
/// the bridge of namespace `to` as `name`, up.
pub fn adopt_tap(
    from: &str,
    tap: &str,
    to: &str,
    name: &str,
    bridge: &str,
) -> Result<(), NetworkError> {
    delete_link(to, name);
    ip(&["-n", from, "link", "set", "dev", tap, "netns", to])?;
    let setup = (|| {
        ip(&["-n", to, "link", "set", "dev", tap, "name", name])?;
        ip(&["-n", to, "link", "set", name, "master", bridge])?;
        ip(&["-n", to, "link", "set", name, "up"])
    })();
    if setup.is_err() {
        delete_link(to, tap);
        delete_link(to, name);
    }
    setup
}

pub fn delete_link(namespace: &str, link: &str) {
    if path(namespace).exists() {
        let _ = ip(&["-n", namespace, "link", "del", link]);
    }
}

pub fn delete(namespace: &str) {
    if path(namespace).exists() {
        let _ = ip(&["netns", "del", namespace]);
    }
}
