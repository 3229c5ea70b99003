//! The network's name server, as Docker's embedded DNS: one small process
//! per network (`hull __netdns`), inside the network's namespace on the
//! gateway address, answering A queries for the names and aliases of the
//! containers on the network from its allocation file, read at each
//! query, so a container started later is found by one started earlier.
//! Any other name is NXDOMAIN: the network has no way out anyway.

use std::net::{Ipv4Addr, UdpSocket};
use std::path::Path;

/// The hidden subcommand that runs a network's name server.
pub const COMMAND: &str = "__netdns";

/// The name server process: enters `netns`, binds `listen`:53 and serves
/// from `allocations` until killed.
pub fn run(netns: &Path, listen: Ipv4Addr, allocations: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let ns = std::fs::File::open(netns)?;
    // SAFETY: setns on a namespace file we opened; it moves this thread,
    // the one that binds and serves.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let socket = UdpSocket::bind((listen, 53))?;
    serve(&socket, |name| lookup_in(allocations, name));
    Ok(())
}

/// DNS header flags: a response, recursion desired/available echoed.
const QR: u16 = 0x8000;
const RD: u16 = 0x0100;
const RA: u16 = 0x0080;
const RCODE_FORMERR: u16 = 1;
const RCODE_NXDOMAIN: u16 = 3;
const RCODE_NOTIMP: u16 = 4;
const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;
/// Answers may change with every container start: never cache long.
const TTL_SECS: u32 = 5;

/// Serves queries on `socket` forever, resolving through `lookup`.
pub fn serve(socket: &UdpSocket, lookup: impl Fn(&str) -> Option<Ipv4Addr>) {
    let mut buf = [0u8; 512];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf) else {
            continue;
        };
        if let Some(reply) = answer(&buf[..n], &lookup) {
            let _ = socket.send_to(&reply, peer);
        }
    }
}

/// Looks `name` up in a network's allocation file.
pub fn lookup_in(allocations: &Path, name: &str) -> Option<Ipv4Addr> {
    let text = std::fs::read(allocations).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&text).ok()?;
    let wanted = name.trim_end_matches('.').to_ascii_lowercase();
    value["by_ip"].as_object()?.iter().find_map(|(ip, member)| {
        let names = member["names"].as_array()?;
        names
            .iter()
            .filter_map(|n| n.as_str())
            .any(|n| n.eq_ignore_ascii_case(&wanted))
            .then(|| ip.parse().ok())
            .flatten()
    })
}

/// The reply to one query, or `None` for what is not worth an answer
/// (too short to carry an id, or itself a response).
fn answer(query: &[u8], lookup: &impl Fn(&str) -> Option<Ipv4Addr>) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    let flags = u16::from_be_bytes([query[2], query[3]]);
    if flags & QR != 0 {
        return None;
    }
    let reply = |rcode: u16, question: &[u8], answer: Option<Ipv4Addr>| {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&query[..2]);
        out.extend_from_slice(&(QR | (flags & RD) | RA | rcode).to_be_bytes());
        let qd = u16::from(!question.is_empty());
        out.extend_from_slice(&qd.to_be_bytes());
        out.extend_from_slice(&u16::from(answer.is_some()).to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(question);
        if let Some(ip) = answer {
            // The name as a pointer to the question's (offset 12).
            out.extend_from_slice(&[0xc0, 12]);
            out.extend_from_slice(&TYPE_A.to_be_bytes());
            out.extend_from_slice(&CLASS_IN.to_be_bytes());
            out.extend_from_slice(&TTL_SECS.to_be_bytes());
            out.extend_from_slice(&4u16.to_be_bytes());
            out.extend_from_slice(&ip.octets());
        }
        out
    };
    let opcode = (flags >> 11) & 0xf;
    let qdcount = u16::from_be_bytes([query[4], query[5]]);
    if opcode != 0 {
        return Some(reply(RCODE_NOTIMP, &[], None));
    }
    if qdcount != 1 {
        return Some(reply(RCODE_FORMERR, &[], None));
    }
    let Some((name, end)) = parse_name(query, 12) else {
        return Some(reply(RCODE_FORMERR, &[], None));
    };
    if query.len() < end + 4 {
        return Some(reply(RCODE_FORMERR, &[], None));
    }
    let qtype = u16::from_be_bytes([query[end], query[end + 1]]);
    let qclass = u16::from_be_bytes([query[end + 2], query[end + 3]]);
    let question = &query[12..end + 4];
    match lookup(&name) {
        // A known name: its address for A, "no data" for other types.
        Some(ip) if qtype == TYPE_A && qclass == CLASS_IN => Some(reply(0, question, Some(ip))),
        Some(_) => Some(reply(0, question, None)),
        None => Some(reply(RCODE_NXDOMAIN, question, None)),
    }
}

/// The dotted name at `start` (no compression in questions) and where it
/// ends.
fn parse_name(msg: &[u8], start: usize) -> Option<(String, usize)> {
    let mut labels = Vec::new();
    let mut at = start;
    loop {
        let len = usize::from(*msg.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        if len > 63 || labels.len() > 127 {
            return None;
        }
        let label = msg.get(at..at + len)?;
        labels.push(String::from_utf8_lossy(label).into_owned());
        at += len;
    }
    Some((labels.join("."), at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&CLASS_IN.to_be_bytes());
        q
    }

    fn table(name: &str) -> Option<Ipv4Addr> {
        (name == "web").then(|| Ipv4Addr::new(10, 89, 0, 2))
    }

    #[test]
    fn known_names_get_their_address_and_others_nxdomain() {
        let r = answer(&query("web", TYPE_A), &table).unwrap();
        assert_eq!(&r[..2], &[0x12, 0x34]);
        assert_eq!(r[3] & 0xf, 0, "NOERROR");
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 1, "one answer");
        assert_eq!(&r[r.len() - 4..], &[10, 89, 0, 2]);
        let r = answer(&query("db", TYPE_A), &table).unwrap();
        assert_eq!(r[3] & 0xf, 3, "NXDOMAIN");
        let r = answer(&query("web", 28), &table).unwrap();
        assert_eq!((r[3] & 0xf, r[7]), (0, 0), "AAAA: no data");
    }

    #[test]
    fn hostile_queries_get_errors_not_panics() {
        assert!(answer(&[1, 2, 3], &table).is_none());
        let mut looping = query("web", TYPE_A);
        looping[12] = 0xc0; // a pointer where a label belongs
        assert!(answer(&looping, &table).is_some());
        let truncated = &query("web", TYPE_A)[..15];
        assert!(answer(truncated, &table).is_some());
        for len in 0..40 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 % 256) as u8).collect();
            let _ = answer(&junk, &table);
        }
    }

    #[test]
    fn the_allocation_file_is_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.json");
        std::fs::write(
            &path,
            r#"{"by_ip":{"10.89.0.2":{"container_id":"x","names":["web","www"]}}}"#,
        )
        .unwrap();
        assert_eq!(lookup_in(&path, "WWW."), Some(Ipv4Addr::new(10, 89, 0, 2)));
        assert_eq!(lookup_in(&path, "db"), None);
    }
}
