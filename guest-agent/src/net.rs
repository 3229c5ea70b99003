//! The VM's network, which its containers share (the VM, not a network
//! namespace, is the isolation boundary): loopback always; with a
//! [`GuestNetwork`], the virtio-net interface with the host's MAC gets its
//! address, MTU and default route, set with ioctls (no DHCP, no netlink).

use std::fs;
use std::net::Ipv4Addr;

use hull_protocol::GuestNetwork;

use crate::sys;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("invalid network address {0:?} (want a.b.c.d/len)")]
    BadAddress(String),
    #[error("no network interface with MAC {0}")]
    NoInterface(String),
    #[error("configure {what}: {source}")]
    Configure {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// Brings up loopback (and the interface, when the VM has one).
pub fn configure(network: Option<&GuestNetwork>) -> Result<(), NetError> {
    let step = |what: &str| {
        let what = what.to_string();
        move |source| NetError::Configure { what, source }
    };
    sys::interface_up("lo").map_err(step("lo"))?;
    let Some(net) = network else {
        return Ok(());
    };
    let (addr, prefix) = parse_cidr(&net.address)?;
    let name = interface_with_mac(&net.mac)?;
    if net.mtu > 0 {
        sys::set_interface_mtu(&name, net.mtu).map_err(step(&format!("{name} mtu")))?;
    }
    sys::set_interface_address(&name, addr, netmask(prefix))
        .map_err(step(&format!("{name} address")))?;
    sys::interface_up(&name).map_err(step(&name))?;
    if let Some(gateway) = &net.gateway {
        let gateway: Ipv4Addr = gateway
            .parse()
            .map_err(|_| NetError::BadAddress(gateway.clone()))?;
        sys::add_default_route(gateway).map_err(step("default route"))?;
    }
    Ok(())
}

fn parse_cidr(cidr: &str) -> Result<(Ipv4Addr, u8), NetError> {
    let bad = || NetError::BadAddress(cidr.to_string());
    let (addr, prefix) = cidr.split_once('/').ok_or_else(bad)?;
    let addr = addr.parse().map_err(|_| bad())?;
    let prefix: u8 = prefix.parse().map_err(|_| bad())?;
    if prefix > 32 {
        return Err(bad());
    }
    Ok((addr, prefix))
}

fn netmask(prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0))
}

/// The interface whose MAC is `mac` (the device may still be probing).
fn interface_with_mac(mac: &str) -> Result<String, NetError> {
    let wanted = mac.to_ascii_lowercase();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        for entry in fs::read_dir("/sys/class/net")
            .into_iter()
            .flatten()
            .flatten()
        {
            let address = fs::read_to_string(entry.path().join("address")).unwrap_or_default();
            if address.trim() == wanted {
                return Ok(entry.file_name().to_string_lossy().into_owned());
            }
        }
        if std::time::Instant::now() >= deadline {
            return Err(NetError::NoInterface(mac.to_string()));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// `/etc/hosts` as Docker writes it, with the container's own name and
/// the other containers of its network.
pub fn hosts_file(hostname: &str, network: Option<&GuestNetwork>) -> String {
    let mut hosts =
        String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    match network.and_then(|n| n.address.split_once('/')) {
        Some((own, _)) => hosts.push_str(&format!("{own}\t{hostname}\n")),
        None => hosts.push_str(&format!("127.0.1.1\t{hostname}\n")),
    }
    for entry in network.map(|n| n.hosts.as_slice()).unwrap_or_default() {
        let names: Vec<&str> = entry
            .names
            .iter()
            .map(String::as_str)
            .filter(|n| is_host_name(n))
            .collect();
        if entry.ip.parse::<Ipv4Addr>().is_ok() && !names.is_empty() {
            hosts.push_str(&format!("{}\t{}\n", entry.ip, names.join(" ")));
        }
    }
    hosts
}

/// `/etc/resolv.conf` for the network's nameservers, if it names any.
pub fn resolv_conf(network: Option<&GuestNetwork>) -> Option<String> {
    let servers: Vec<&String> = network?
        .dns
        .iter()
        .filter(|s| s.parse::<Ipv4Addr>().is_ok())
        .collect();
    if servers.is_empty() {
        return None;
    }
    Some(
        servers
            .iter()
            .map(|s| format!("nameserver {s}\n"))
            .collect(),
    )
}

/// A name that is safe to write into `/etc/hosts`.
fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hull_protocol::HostEntry;

    fn net() -> GuestNetwork {
        GuestNetwork {
            mac: "52:54:00:12:34:56".into(),
            address: "10.89.0.5/24".into(),
            gateway: Some("10.89.0.1".into()),
            mtu: 1500,
            hosts: vec![
                HostEntry {
                    ip: "10.89.0.2".into(),
                    names: vec!["web".into(), "www".into()],
                },
                HostEntry {
                    ip: "10.89.0.3".into(),
                    names: vec!["bad name\n1.2.3.4 evil".into()],
                },
            ],
            dns: vec!["10.89.0.1".into(), "not-an-ip".into()],
        }
    }

    #[test]
    fn cidrs_and_masks() {
        assert_eq!(
            parse_cidr("10.89.0.5/24").unwrap(),
            ("10.89.0.5".parse().unwrap(), 24)
        );
        assert!(parse_cidr("10.89.0.5").is_err());
        assert!(parse_cidr("10.89.0.5/33").is_err());
        assert_eq!(netmask(24), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(netmask(0), Ipv4Addr::UNSPECIFIED);
        assert_eq!(netmask(32), Ipv4Addr::BROADCAST);
    }

    #[test]
    fn hosts_list_the_network_and_drop_hostile_names() {
        let n = net();
        let hosts = hosts_file("c1", Some(&n));
        assert!(hosts.contains("10.89.0.5\tc1\n"), "{hosts}");
        assert!(hosts.contains("10.89.0.2\tweb www\n"), "{hosts}");
        assert!(!hosts.contains("evil"), "{hosts}");
        assert!(hosts_file("c1", None).contains("127.0.1.1\tc1\n"));
        assert_eq!(resolv_conf(Some(&n)).unwrap(), "nameserver 10.89.0.1\n");
        assert!(resolv_conf(None).is_none());
    }
}

/// How long a power-off waits for TCP data the container already wrote.
const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Waits (bounded) until no TCP socket holds unsent data or an unsent or
/// unacknowledged FIN: a process that wrote to a socket and exited expects
/// its peer to get everything, as it would if the host kept running.
pub fn drain_tcp() {
    let deadline = std::time::Instant::now() + DRAIN_LIMIT;
    while std::time::Instant::now() < deadline {
        let pending = ["/proc/net/tcp", "/proc/net/tcp6"]
            .iter()
            .filter_map(|p| fs::read_to_string(p).ok())
            .any(|table| table.lines().skip(1).any(socket_pending));
        if !pending {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// One `/proc/net/tcp` row: data still queued to send, or a close in
/// progress (FIN_WAIT1 04, CLOSING 0B, LAST_ACK 09).
fn socket_pending(row: &str) -> bool {
    let fields: Vec<&str> = row.split_whitespace().collect();
    let (Some(state), Some(queues)) = (fields.get(3), fields.get(4)) else {
        return false;
    };
    let tx_queued = queues
        .split(':')
        .next()
        .is_some_and(|tx| u64::from_str_radix(tx, 16).is_ok_and(|n| n > 0));
    tx_queued || matches!(*state, "04" | "0B" | "09")
}

#[cfg(test)]
mod drain_tests {
    use super::*;

    #[test]
    fn rows_with_queued_data_or_a_closing_state_are_pending() {
        let idle = "0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1";
        let queued =
            "1: 0200590A:C350 0300590A:1388 01 00010000:00000000 01:00000014 00000000 0 0 2";
        let closing =
            "2: 0200590A:C350 0300590A:1388 04 00000000:00000000 01:00000014 00000000 0 0 3";
        assert!(!socket_pending(idle));
        assert!(socket_pending(queued));
        assert!(socket_pending(closing));
        assert!(!socket_pending("garbage"));
    }
}
