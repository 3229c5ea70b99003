//! MAC and IP pinning per tap, as libvirt's `clean-traffic` filter
//! (no MAC, IP or ARP spoofing; IPv4 and ARP only) and OpenStack's port
//! security: nftables bridge rules in the network's namespace.
//!
//! ```text
//! table bridge hull
//!   map taps { ifname : verdict }          one `jump <tap>` per tap
//!   chain prerouting  (hook prerouting, policy drop)
//!     iifname vmap @taps
//!   chain <tap>
//!     ether saddr != MAC drop
//!     ip saddr IP accept
//!     arp (Ethernet/IPv4) saddr ether MAC saddr ip IP accept
//!     drop
//! ```
//!
//! Bridge prerouting sees every frame that enters the bridge from a port
//! (every port is a sandbox's tap) and none that the namespace's own
//! stack sends (the gateway, the name server), so a frame from a tap
//! passes only with the sandbox's MAC and, for IPv4, its address, or for
//! ARP, its MAC and address as sender: a gratuitous ARP or a reply for
//! the gateway or a neighbour is dropped. Everything else a tap sends is
//! dropped too, IPv6 included (the networks are IPv4 only, hull's IPAM
//! assigns every address and there is no DHCP), and so is all of a tap
//! with no entry yet (fail closed: a tap is on the bridge a moment before
//! its pin is in). The bridge learns addresses after this hook, so a
//! dropped frame does not teach it a spoofed MAC either.
//!
//! Each change is one `nft -f -` transaction (atomic, all or nothing),
//! written so that applying it twice is the same as once: the text
//! format is the one `nft` documents and the one a reader types to
//! look (`nft list ruleset`); a netlink crate would save a process per
//! attach but not the need for `nft` to inspect, and the JSON crates
//! call the same binary.

use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use super::{netns, NetworkError};

const TABLE: &str = "bridge hull";

/// The table, its map and the dispatch chain, made unless there; the
/// chain's one rule is rewritten rather than added a second time.
fn base() -> String {
    format!(
        "add table {TABLE}\n\
         add map {TABLE} taps {{ type ifname : verdict ; }}\n\
         add chain {TABLE} prerouting {{ type filter hook prerouting priority filter ; policy drop ; }}\n\
         flush chain {TABLE} prerouting\n\
         add rule {TABLE} prerouting iifname vmap @taps\n"
    )
}

/// Pins `tap` to `mac` and `address` (replacing an earlier pin of it).
pub fn pin_ruleset(tap: &str, mac: &str, address: Ipv4Addr) -> String {
    debug_assert!(tap.bytes().all(|b| b.is_ascii_alphanumeric()), "{tap}");
    format!(
        "{base}\
         add chain {TABLE} {tap}\n\
         flush chain {TABLE} {tap}\n\
         add rule {TABLE} {tap} ether saddr != {mac} drop\n\
         add rule {TABLE} {tap} ether type ip ip saddr {address} accept\n\
         add rule {TABLE} {tap} ether type arp arp htype 1 arp ptype ip arp hlen 6 arp plen 4 \
         arp saddr ether {mac} arp saddr ip {address} accept\n\
         add rule {TABLE} {tap} drop\n\
         add element {TABLE} taps {{ \"{tap}\" : jump {tap} }}\n",
        base = base()
    )
}

/// Takes `tap`'s pin out, whether it is there or not (the element and
/// chain are made first so that deleting them cannot fail).
pub fn unpin_ruleset(tap: &str) -> String {
    debug_assert!(tap.bytes().all(|b| b.is_ascii_alphanumeric()), "{tap}");
    format!(
        "add table {TABLE}\n\
         add map {TABLE} taps {{ type ifname : verdict ; }}\n\
         add chain {TABLE} {tap}\n\
         add element {TABLE} taps {{ \"{tap}\" : jump {tap} }}\n\
         delete element {TABLE} taps {{ \"{tap}\" }}\n\
         flush chain {TABLE} {tap}\n\
         delete chain {TABLE} {tap}\n"
    )
}

/// Pins `tap` in `namespace`.
pub fn pin(namespace: &str, tap: &str, mac: &str, address: Ipv4Addr) -> Result<(), NetworkError> {
    apply(namespace, &pin_ruleset(tap, mac, address))
}

/// Unpins `tap` in `namespace`, if the namespace is there.
pub fn unpin(namespace: &str, tap: &str) -> Result<(), NetworkError> {
    if !netns::path(namespace).exists() {
        return Ok(());
    }
    apply(namespace, &unpin_ruleset(tap))
}

/// Runs `nft -f -` with `ruleset` inside `namespace`.
fn apply(namespace: &str, ruleset: &str) -> Result<(), NetworkError> {
    let path = netns::path(namespace);
    let ns = std::fs::File::open(&path).map_err(|source| NetworkError::Io {
        what: format!("open {}", path.display()),
        source,
    })?;
    let fd = ns.as_raw_fd();
    let mut command = Command::new("nft");
    command
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: between fork and exec only setns, async-signal-safe, on a
    // descriptor that stays open in the parent (`ns`) until after spawn.
    unsafe {
        command.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => NetworkError::NoNft(source),
        _ => NetworkError::Io {
            what: format!("run nft in {namespace}"),
            source,
        },
    })?;
    drop(ns);
    let written = child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(ruleset.as_bytes());
    let out = child
        .wait_with_output()
        .map_err(|source| NetworkError::Io {
            what: "wait for nft".into(),
            source,
        })?;
    if out.status.success() {
        return Ok(());
    }
    let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if let (true, Err(e)) = (stderr.is_empty(), written) {
        stderr = format!("could not take the ruleset: {e}");
    }
    Err(NetworkError::Nft {
        namespace: namespace.into(),
        stderr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_names_the_tap_its_mac_and_address_and_is_safe_to_repeat() {
        let rules = pin_ruleset(
            "tap0123456789ab",
            "02:42:0a:59:00:02",
            [10, 89, 0, 2].into(),
        );
        assert!(
            rules.contains("ether saddr != 02:42:0a:59:00:02 drop"),
            "{rules}"
        );
        assert!(rules.contains("ip saddr 10.89.0.2 accept"), "{rules}");
        assert!(
            rules.contains("arp saddr ether 02:42:0a:59:00:02 arp saddr ip 10.89.0.2 accept"),
            "{rules}"
        );
        assert!(rules.contains("\"tap0123456789ab\" : jump tap0123456789ab"));
        // Every rule is added after a flush of its chain: no duplicate on
        // a second apply.
        for line in rules.lines().filter(|l| l.starts_with("add rule")) {
            let chain = line.split_whitespace().nth(4).unwrap();
            assert!(
                rules.contains(&format!("flush chain {TABLE} {chain}\n")),
                "{chain}"
            );
        }
        // The chain ends in a drop, and the dispatch defaults to one.
        let tap_rules: Vec<&str> = rules
            .lines()
            .filter(|l| l.starts_with("add rule bridge hull tap"))
            .collect();
        assert_eq!(
            tap_rules.last(),
            Some(&"add rule bridge hull tap0123456789ab drop")
        );
        assert!(rules.contains("policy drop"));
    }

    #[test]
    fn an_unpin_makes_before_it_deletes() {
        let rules = unpin_ruleset("tapx");
        let add = rules.find("add element").unwrap();
        let delete = rules.find("delete element").unwrap();
        assert!(add < delete, "{rules}");
        assert!(
            rules.ends_with("delete chain bridge hull tapx\n"),
            "{rules}"
        );
    }
}
