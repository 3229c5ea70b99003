//! `hull run`'s resource and identity flags that Docker and podman spell
//! the same way — `--ulimit`, `--blkio-weight`, `--device-{read,write}-
//! {bps,iops}`, `--uidmap`/`--gidmap`/`--userns` — parsed and checked here,
//! then written into the OCI spec (`process.rlimits`,
//! `linux.resources.blockIO`, `linux.uidMappings`/`gidMappings` and a user
//! namespace).
//!
//! DEVICE in the throttle flags: a container's I/O goes to its VM's disks,
//! so a host device path means nothing. DEVICE names the container's own
//! disks instead: `image` (the read-only image disk, the overlay's lower
//! layer), `writable` (the writable-layer disk, its upper layer) or
//! `rootfs` (both). The agent finds their major:minor in the guest (see
//! `hull_protocol::blockio`).

use hull_protocol::blockio::{CONTAINER_DISK_MAJOR, IMAGE_DISK_MINOR, WRITABLE_DISK_MINOR};
use serde_json::{json, Map, Value};
use thiserror::Error;

use crate::units::parse_bytes;

/// Docker's `--ulimit` names and the OCI rlimit each sets.
const ULIMIT_NAMES: &[(&str, &str)] = &[
    ("core", "RLIMIT_CORE"),
    ("cpu", "RLIMIT_CPU"),
    ("data", "RLIMIT_DATA"),
    ("fsize", "RLIMIT_FSIZE"),
    ("locks", "RLIMIT_LOCKS"),
    ("memlock", "RLIMIT_MEMLOCK"),
    ("msgqueue", "RLIMIT_MSGQUEUE"),
    ("nice", "RLIMIT_NICE"),
    ("nofile", "RLIMIT_NOFILE"),
    ("nproc", "RLIMIT_NPROC"),
    ("rss", "RLIMIT_RSS"),
    ("rtprio", "RLIMIT_RTPRIO"),
    ("rttime", "RLIMIT_RTTIME"),
    ("sigpending", "RLIMIT_SIGPENDING"),
    ("stack", "RLIMIT_STACK"),
];

/// RLIM_INFINITY, for `unlimited` and -1.
const UNLIMITED: u64 = u64::MAX;

/// Docker's `--blkio-weight` range (0 means "not set").
const BLKIO_WEIGHT_RANGE: std::ops::RangeInclusive<u16> = 10..=1000;

/// The kernel takes at most this many lines in uid_map and gid_map.
const MAX_ID_MAP_LINES: usize = 340;

/// The parsed flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// (OCI rlimit type, soft, hard), in the order given, one per type.
    pub rlimits: Vec<(&'static str, u64, u64)>,
    pub block_io: BlockIo,
    /// The user namespace's maps; `None`: the VM's user namespace (`--userns=host`).
    pub id_maps: Option<IdMaps>,
}

/// `--blkio-weight` and the throttles, per disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockIo {
    pub weight: Option<u16>,
    pub read_bps: Vec<(Disk, u64)>,
    pub write_bps: Vec<(Disk, u64)>,
    pub read_iops: Vec<(Disk, u64)>,
    pub write_iops: Vec<(Disk, u64)>,
}

/// One of the container's disks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disk {
    Image,
    Writable,
}

/// One line of a uid_map or gid_map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMapping {
    pub container_id: u32,
    pub host_id: u32,
    pub size: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdMaps {
    pub uid: Vec<IdMapping>,
    pub gid: Vec<IdMapping>,
}

/// The flags as given on the command line.
#[derive(Debug, Clone, Default)]
pub struct LimitFlags<'a> {
    pub ulimit: &'a [String],
    pub blkio_weight: Option<u16>,
    pub device_read_bps: &'a [String],
    pub device_write_bps: &'a [String],
    pub device_read_iops: &'a [String],
    pub device_write_iops: &'a [String],
    pub uidmap: &'a [String],
    pub gidmap: &'a [String],
    pub userns: Option<&'a str>,
}

/// A flag's value that cannot be used; the message names flag and value.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid {flag} {value:?}: {reason}")]
pub struct LimitError {
    flag: &'static str,
    value: String,
    reason: String,
}

fn bad(flag: &'static str, value: &str, reason: impl Into<String>) -> LimitError {
    LimitError {
        flag,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Parses and checks every flag.
pub fn parse(flags: &LimitFlags) -> Result<Limits, LimitError> {
    let mut rlimits: Vec<(&'static str, u64, u64)> = Vec::new();
    for item in flags.ulimit {
        let (typ, soft, hard) = parse_ulimit(item)?;
        // As Docker: a name given again replaces the earlier value.
        rlimits.retain(|(t, _, _)| *t != typ);
        rlimits.push((typ, soft, hard));
    }
    let weight = match flags.blkio_weight {
        None | Some(0) => None,
        Some(w) if BLKIO_WEIGHT_RANGE.contains(&w) => Some(w),
        Some(w) => {
            return Err(bad(
                "--blkio-weight",
                &w.to_string(),
                "the range is 10 to 1000",
            ))
        }
    };
    let throttles = |flag: &'static str, items: &[String], iops: bool| {
        let mut out = Vec::new();
        for item in items {
            for (disk, rate) in parse_throttle(flag, item, iops)? {
                out.retain(|(d, _)| *d != disk);
                out.push((disk, rate));
            }
        }
        Ok::<_, LimitError>(out)
    };
    let block_io = BlockIo {
        weight,
        read_bps: throttles("--device-read-bps", flags.device_read_bps, false)?,
        write_bps: throttles("--device-write-bps", flags.device_write_bps, false)?,
        read_iops: throttles("--device-read-iops", flags.device_read_iops, true)?,
        write_iops: throttles("--device-write-iops", flags.device_write_iops, true)?,
    };
    let id_maps = parse_userns(flags)?;
    Ok(Limits {
        rlimits,
        block_io,
        id_maps,
    })
}

/// `name=soft[:hard]`; a missing hard limit equals the soft one; `-1` or
/// `unlimited` is no limit.
fn parse_ulimit(item: &str) -> Result<(&'static str, u64, u64), LimitError> {
    let flag = "--ulimit";
    let (name, values) = item
        .split_once('=')
        .ok_or_else(|| bad(flag, item, "expected NAME=SOFT[:HARD]"))?;
    let typ = ULIMIT_NAMES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            let names: Vec<&str> = ULIMIT_NAMES.iter().map(|(n, _)| *n).collect();
            bad(
                flag,
                item,
                format!("unknown limit {name:?} (known: {})", names.join(", ")),
            )
        })?;
    let number = |text: &str| -> Result<u64, LimitError> {
        match text {
            "-1" | "unlimited" => Ok(UNLIMITED),
            _ => text
                .parse::<u64>()
                .map_err(|_| bad(flag, item, format!("{text:?} is not a number"))),
        }
    };
    let (soft, hard) = match values.split_once(':') {
        Some((soft, hard)) => (number(soft)?, number(hard)?),
        None => {
            let value = number(values)?;
            (value, value)
        }
    };
    if soft > hard {
        return Err(bad(flag, item, "the soft limit is above the hard limit"));
    }
    Ok((typ, soft, hard))
}

/// `DEVICE:RATE`, DEVICE one of the container's disks; RATE a size (`1mb`)
/// for bps, a number for iops.
fn parse_throttle(
    flag: &'static str,
    item: &str,
    iops: bool,
) -> Result<Vec<(Disk, u64)>, LimitError> {
    let (device, rate) = item
        .rsplit_once(':')
        .ok_or_else(|| bad(flag, item, "expected DEVICE:RATE"))?;
    let disks = match device {
        "rootfs" => vec![Disk::Image, Disk::Writable],
        "image" => vec![Disk::Image],
        "writable" => vec![Disk::Writable],
        _ => {
            return Err(bad(
                flag,
                item,
                "DEVICE must be rootfs, image or writable: the container's disks in its VM, \
                 not a host device",
            ))
        }
    };
    let rate = if iops {
        rate.parse::<u64>()
            .ok()
            .filter(|r| *r > 0)
            .ok_or_else(|| bad(flag, item, "RATE must be a positive number of operations"))?
    } else {
        parse_bytes(rate).map_err(|_| bad(flag, item, "RATE must be a size such as 1mb"))?
    };
    Ok(disks.into_iter().map(|d| (d, rate)).collect())
}

/// `--userns`, `--uidmap`, `--gidmap` as podman takes them; a gid map
/// defaults to the uid map.
fn parse_userns(flags: &LimitFlags) -> Result<Option<IdMaps>, LimitError> {
    match flags.userns {
        None | Some("") | Some("host") => {}
        Some(other) => {
            return Err(bad(
                "--userns",
                other,
                "hull supports host (the default); give --uidmap/--gidmap for a user namespace",
            ))
        }
    }
    if flags.uidmap.is_empty() && flags.gidmap.is_empty() {
        return Ok(None);
    }
    if flags.userns == Some("host") {
        return Err(bad(
            "--userns",
            "host",
            "conflicts with --uidmap and --gidmap",
        ));
    }
    let uid = parse_id_map("--uidmap", flags.uidmap)?;
    let gid = parse_id_map("--gidmap", flags.gidmap)?;
    Ok(Some(match (uid.is_empty(), gid.is_empty()) {
        (false, true) => IdMaps {
            gid: uid.clone(),
            uid,
        },
        (true, false) => IdMaps {
            uid: gid.clone(),
            gid,
        },
        _ => IdMaps { uid, gid },
    }))
}

/// `CONTAINER_ID:HOST_ID:SIZE` lines; ranges may not overlap on either
/// side nor run past 2^32 (the kernel refuses both).
fn parse_id_map(flag: &'static str, items: &[String]) -> Result<Vec<IdMapping>, LimitError> {
    if items.len() > MAX_ID_MAP_LINES {
        return Err(bad(
            flag,
            &items.len().to_string(),
            format!("at most {MAX_ID_MAP_LINES} mappings"),
        ));
    }
    let mut map: Vec<IdMapping> = Vec::new();
    for item in items {
        let fields: Vec<&str> = item.split(':').collect();
        let [container, host, size] = fields[..] else {
            return Err(bad(flag, item, "expected CONTAINER_ID:HOST_ID:SIZE"));
        };
        let number = |text: &str| {
            text.parse::<u32>()
                .map_err(|_| bad(flag, item, format!("{text:?} is not an id")))
        };
        let mapping = IdMapping {
            container_id: number(container)?,
            host_id: number(host)?,
            size: number(size)?,
        };
        let end = |start: u32| u64::from(start) + u64::from(mapping.size);
        if mapping.size == 0
            || end(mapping.container_id) > 1 << 32
            || end(mapping.host_id) > 1 << 32
        {
            return Err(bad(
                flag,
                item,
                "SIZE must be positive and the range end below 2^32",
            ));
        }
        let overlaps = |a: u32, b: u32, b_size: u32| {
            u64::from(a) < u64::from(b) + u64::from(b_size)
                && u64::from(b) < u64::from(a) + u64::from(mapping.size)
        };
        if map.iter().any(|m| {
            overlaps(mapping.container_id, m.container_id, m.size)
                || overlaps(mapping.host_id, m.host_id, m.size)
        }) {
            return Err(bad(flag, item, "overlaps an earlier mapping"));
        }
        map.push(mapping);
    }
    if !map.is_empty() && !map.iter().any(|m| m.container_id == 0) {
        return Err(bad(
            flag,
            &items.join(" "),
            "the map must include id 0 of the container (its root)",
        ));
    }
    Ok(map)
}

/// The rlimits of `process.rlimits`: hull's default (nofile 1048576, as
/// containerd gives) unless `--ulimit nofile` says otherwise, plus every
/// `--ulimit`.
pub fn rlimits(limits: &Limits) -> Value {
    let mut out = Vec::new();
    if !limits.rlimits.iter().any(|(t, _, _)| *t == "RLIMIT_NOFILE") {
        out.push(json!({"type": "RLIMIT_NOFILE", "hard": 1_048_576u64, "soft": 1_048_576u64}));
    }
    for (typ, soft, hard) in &limits.rlimits {
        out.push(json!({"type": typ, "soft": soft, "hard": hard}));
    }
    Value::Array(out)
}

/// `linux.resources.blockIO`, or `None` when no flag asked for one.
pub fn block_io(block_io: &BlockIo) -> Option<Value> {
    let devices = |entries: &[(Disk, u64)]| -> Value {
        entries
            .iter()
            .map(|(disk, rate)| {
                let minor = match disk {
                    Disk::Image => IMAGE_DISK_MINOR,
                    Disk::Writable => WRITABLE_DISK_MINOR,
                };
                json!({"major": CONTAINER_DISK_MAJOR, "minor": minor, "rate": rate})
            })
            .collect()
    };
    let mut out = Map::new();
    if let Some(weight) = block_io.weight {
        out.insert("weight".into(), json!(weight));
    }
    for (key, entries) in [
        ("throttleReadBpsDevice", &block_io.read_bps),
        ("throttleWriteBpsDevice", &block_io.write_bps),
        ("throttleReadIOPSDevice", &block_io.read_iops),
        ("throttleWriteIOPSDevice", &block_io.write_iops),
    ] {
        if !entries.is_empty() {
            out.insert(key.into(), devices(entries));
        }
    }
    (!out.is_empty()).then_some(Value::Object(out))
}

/// Adds the user namespace and its maps to `linux`.
pub fn user_namespace(linux: &mut Value, id_maps: &IdMaps) {
    let lines = |map: &[IdMapping]| -> Value {
        map.iter()
            .map(|m| json!({"containerID": m.container_id, "hostID": m.host_id, "size": m.size}))
            .collect()
    };
    if let Some(namespaces) = linux["namespaces"].as_array_mut() {
        namespaces.insert(0, json!({"type": "user"}));
    }
    linux["uidMappings"] = lines(&id_maps.uid);
    linux["gidMappings"] = lines(&id_maps.gid);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ulimits_parse_like_docker() {
        let items = strings(&[
            "nofile=1024:2048",
            "nproc=64",
            "core=unlimited",
            "nofile=10:20",
        ]);
        let limits = parse(&LimitFlags {
            ulimit: &items,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            limits.rlimits,
            vec![
                ("RLIMIT_NPROC", 64, 64),
                ("RLIMIT_CORE", UNLIMITED, UNLIMITED),
                ("RLIMIT_NOFILE", 10, 20),
            ]
        );
        let spec = rlimits(&limits);
        assert_eq!(spec.as_array().unwrap().len(), 3, "no default nofile");
        assert_eq!(spec[2]["soft"], 10);
        for bad_item in [
            "nofile",
            "files=1",
            "nofile=2:1",
            "nofile=x",
            "nofile=1:",
            "=1",
        ] {
            let items = strings(&[bad_item]);
            let err = parse(&LimitFlags {
                ulimit: &items,
                ..Default::default()
            })
            .unwrap_err();
            assert!(err.to_string().starts_with("invalid --ulimit"), "{err}");
            assert!(err.to_string().contains(bad_item), "{err}");
        }
    }

    #[test]
    fn the_default_nofile_stays_without_ulimit() {
        let spec = rlimits(&Limits::default());
        assert_eq!(spec[0]["type"], "RLIMIT_NOFILE");
        assert_eq!(spec[0]["hard"], 1_048_576u64);
    }

    #[test]
    fn throttles_name_the_containers_disks() {
        let read = strings(&["rootfs:1mb"]);
        let write_iops = strings(&["writable:100", "writable:200"]);
        let limits = parse(&LimitFlags {
            blkio_weight: Some(500),
            device_read_bps: &read,
            device_write_iops: &write_iops,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            limits.block_io.read_bps,
            vec![(Disk::Image, 1 << 20), (Disk::Writable, 1 << 20)]
        );
        assert_eq!(limits.block_io.write_iops, vec![(Disk::Writable, 200)]);
        let spec = block_io(&limits.block_io).unwrap();
        assert_eq!(spec["weight"], 500);
        assert_eq!(
            spec["throttleReadBpsDevice"][1],
            json!({"major": -1, "minor": 1, "rate": 1048576})
        );
        assert_eq!(spec["throttleWriteIOPSDevice"].as_array().unwrap().len(), 1);
        // It deserializes as OCI blockIO.
        let parsed: oci_spec::runtime::LinuxBlockIo = serde_json::from_value(spec).unwrap();
        assert_eq!(parsed.weight(), Some(500));
        assert!(block_io(&BlockIo::default()).is_none());
    }

    #[test]
    fn bad_block_io_values_are_named() {
        let cases: &[(&str, &[&str], bool)] = &[
            ("--device-read-bps", &["/dev/sda:1mb"], false),
            ("--device-read-bps", &["rootfs"], false),
            ("--device-read-bps", &["rootfs:fast"], false),
            ("--device-read-iops", &["image:1mb"], true),
            ("--device-read-iops", &["image:0"], true),
        ];
        for (flag, items, iops) in cases {
            let items = strings(items);
            let flags = if *iops {
                LimitFlags {
                    device_read_iops: &items,
                    ..Default::default()
                }
            } else {
                LimitFlags {
                    device_read_bps: &items,
                    ..Default::default()
                }
            };
            let err = parse(&flags).unwrap_err().to_string();
            assert!(err.starts_with(&format!("invalid {flag}")), "{err}");
        }
        for weight in [5, 1001] {
            let err = parse(&LimitFlags {
                blkio_weight: Some(weight),
                ..Default::default()
            })
            .unwrap_err();
            assert!(err.to_string().contains("10 to 1000"), "{err}");
        }
    }

    #[test]
    fn id_maps_parse_like_podman() {
        let uid = strings(&["0:100000:65536"]);
        let limits = parse(&LimitFlags {
            uidmap: &uid,
            ..Default::default()
        })
        .unwrap();
        let maps = limits.id_maps.unwrap();
        let expected = vec![IdMapping {
            container_id: 0,
            host_id: 100_000,
            size: 65_536,
        }];
        assert_eq!(maps.uid, expected);
        assert_eq!(maps.gid, expected, "the gid map follows the uid map");
        let mut linux = json!({"namespaces": [{"type": "pid"}]});
        user_namespace(&mut linux, &maps);
        assert_eq!(linux["namespaces"][0]["type"], "user");
        let parsed: oci_spec::runtime::Linux = serde_json::from_value(linux).unwrap();
        assert_eq!(
            parsed.uid_mappings().as_ref().unwrap()[0].host_id(),
            100_000
        );

        assert_eq!(
            parse(&LimitFlags {
                userns: Some("host"),
                ..Default::default()
            })
            .unwrap()
            .id_maps,
            None
        );
        let bad_maps: &[&[&str]] = &[
            &["0:100000"],
            &["0:100000:0"],
            &["a:1:1"],
            &["0:4294967295:2"],
            &["0:1000:10", "5:2000:10"],
            &["0:1000:10", "20:1005:10"],
            &["1000:1000:1"],
        ];
        for items in bad_maps {
            let items = strings(items);
            let err = parse(&LimitFlags {
                uidmap: &items,
                ..Default::default()
            })
            .unwrap_err();
            assert!(err.to_string().starts_with("invalid --uidmap"), "{err}");
        }
        let err = parse(&LimitFlags {
            uidmap: &uid,
            userns: Some("host"),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("conflicts"), "{err}");
        assert!(parse(&LimitFlags {
            userns: Some("keep-id"),
            ..Default::default()
        })
        .is_err());
    }
}
