//! New limits for a running container, as `runc update` takes them: its
//! flags (`--memory 64m`, `--cpu-quota`, `--pids-limit`…) or an OCI
//! `linux.resources` document (`-r FILE`), turned into the
//! [`LinuxResources`] the agent writes into the container's cgroup. Any
//! door may use it (`hull-runc update`; a `hull update` later). Model:
//! runc's `update.go`.
//!
//! Values follow runc: memory sizes are bytes or go-units' binary sizes
//! (`512k`, `64m`, `1.5g`, `1GiB`), `-1` is no limit; a field left out is
//! not changed. Kernel memory is accepted and ignored (cgroup v2 has none),
//! so are realtime CPU limits, which cgroup v2 does not have either; Intel
//! RDT schemas are refused: a VM has no resctrl.

use std::io::Read;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};
use thiserror::Error;

/// The flags as given (strings, as runc reads them, so a bad value is
/// reported with the flag's name).
#[derive(Debug, Clone, Default)]
pub struct UpdateFlags<'a> {
    pub memory: Option<&'a str>,
    pub memory_reservation: Option<&'a str>,
    pub memory_swap: Option<&'a str>,
    pub kernel_memory: Option<&'a str>,
    pub kernel_memory_tcp: Option<&'a str>,
    pub cpu_shares: Option<&'a str>,
    pub cpu_quota: Option<&'a str>,
    pub cpu_period: Option<&'a str>,
    pub cpu_rt_period: Option<&'a str>,
    pub cpu_rt_runtime: Option<&'a str>,
    pub cpuset_cpus: Option<&'a str>,
    pub cpuset_mems: Option<&'a str>,
    pub pids_limit: Option<i64>,
    pub blkio_weight: Option<u16>,
    pub l3_cache_schema: Option<&'a str>,
    pub mem_bw_schema: Option<&'a str>,
}

/// What an update asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Update {
    pub resources: LinuxResources,
    /// Settings accepted but without effect in a hull guest, one line
    /// each, for the door to warn about.
    pub ignored: Vec<&'static str>,
}

#[derive(Debug, Error)]
pub enum UpdateError {
    #[error("invalid value for --{flag}: {value:?}")]
    Invalid { flag: &'static str, value: String },
    #[error("--{0}: Intel RDT is not available in a hull VM")]
    NoRdt(&'static str),
    #[error("--blkio-weight {0}: the range is 10 to 1000")]
    BlkioWeight(u16),
    #[error("read the resources")]
    Read(#[source] std::io::Error),
    #[error("the resources are not an OCI linux.resources object")]
    Json(#[source] serde_json::Error),
}

/// A memory size as runc's `update` reads it: `-1` (no limit), or
/// go-units' `RAMInBytes` (a number, a fraction allowed, then an optional
/// binary unit k/m/g/t/p, with optional `i` and `b`, any case).
pub fn parse_memory(text: &str) -> Option<i64> {
    if text == "-1" {
        return Some(-1);
    }
    let lower = text.to_ascii_lowercase();
    let end = lower
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(end);
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return None;
    }
    let unit = unit.strip_prefix(' ').unwrap_or(unit);
    let unit = unit.strip_suffix('b').unwrap_or(unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => return None,
    };
    let bytes = if number.contains('.') {
        let value: f64 = number.parse().ok()?;
        let bytes = value * (1u64 << shift) as f64;
        if bytes >= i64::MAX as f64 {
            return None;
        }
        bytes as i64
    } else {
        let value: i64 = number.parse().ok()?;
        value.checked_mul(1i64 << shift)?
    };
    Some(bytes)
}

/// The resources the flags set (runc ignores the flags when `-r` is given:
/// see [`from_reader`]).
pub fn from_flags(flags: &UpdateFlags) -> Result<Update, UpdateError> {
    if flags.l3_cache_schema.is_some() {
        return Err(UpdateError::NoRdt("l3-cache-schema"));
    }
    if flags.mem_bw_schema.is_some() {
        return Err(UpdateError::NoRdt("mem-bw-schema"));
    }
    let memory = |flag: &'static str, value: Option<&str>| {
        value
            .map(|v| {
                parse_memory(v).ok_or_else(|| UpdateError::Invalid {
                    flag,
                    value: v.into(),
                })
            })
            .transpose()
    };
    fn number<T: std::str::FromStr>(
        flag: &'static str,
        value: Option<&str>,
    ) -> Result<Option<T>, UpdateError> {
        value
            .map(|v| {
                v.parse().map_err(|_| UpdateError::Invalid {
                    flag,
                    value: v.into(),
                })
            })
            .transpose()
    }
    let mut resources = LinuxResources::default();
    let mut ignored = Vec::new();

    let mut mem = LinuxMemory::default();
    mem.set_limit(memory("memory", flags.memory)?);
    mem.set_reservation(memory("memory-reservation", flags.memory_reservation)?);
    mem.set_swap(memory("memory-swap", flags.memory_swap)?);
    if memory("kernel-memory", flags.kernel_memory)?.is_some()
        | memory("kernel-memory-tcp", flags.kernel_memory_tcp)?.is_some()
    {
        ignored.push("kernel memory settings are ignored (cgroup v2 has none)");
    }
    if mem != LinuxMemory::default() {
        resources.set_memory(Some(mem));
    }

    let mut cpu = LinuxCpu::default();
    cpu.set_shares(number("cpu-share", flags.cpu_shares)?);
    cpu.set_quota(number("cpu-quota", flags.cpu_quota)?);
    cpu.set_period(number("cpu-period", flags.cpu_period)?);
    cpu.set_realtime_period(number("cpu-rt-period", flags.cpu_rt_period)?);
    cpu.set_realtime_runtime(number("cpu-rt-runtime", flags.cpu_rt_runtime)?);
    cpu.set_cpus(flags.cpuset_cpus.filter(|s| !s.is_empty()).map(Into::into));
    cpu.set_mems(flags.cpuset_mems.filter(|s| !s.is_empty()).map(Into::into));
    if cpu != LinuxCpu::default() {
        resources.set_cpu(Some(cpu));
    }

    if let Some(limit) = flags.pids_limit {
        let mut pids = LinuxPids::default();
        pids.set_limit(limit);
        resources.set_pids(Some(pids));
    }
    match flags.blkio_weight {
        None | Some(0) => {}
        Some(w) if !(10..=1000).contains(&w) => return Err(UpdateError::BlkioWeight(w)),
        Some(w) => {
            let mut block_io = LinuxBlockIo::default();
            block_io.set_weight(Some(w));
            resources.set_block_io(Some(block_io));
        }
    }
    Ok(finish(resources, ignored))
}

/// The resources of an OCI `linux.resources` JSON document (`-r FILE`,
/// `-r -` for stdin).
pub fn from_reader(mut input: impl Read) -> Result<Update, UpdateError> {
    let mut text = String::new();
    input.read_to_string(&mut text).map_err(UpdateError::Read)?;
    let resources: LinuxResources = serde_json::from_str(&text).map_err(UpdateError::Json)?;
    let mut ignored = Vec::new();
    if resources
        .memory()
        .is_some_and(|m| m.kernel().is_some() || m.kernel_tcp().is_some())
    {
        ignored.push("kernel memory settings are ignored (cgroup v2 has none)");
    }
    Ok(finish(resources, ignored))
}

/// runc's fix-ups, and what has no effect.
fn finish(mut resources: LinuxResources, mut ignored: Vec<&'static str>) -> Update {
    if let Some(memory) = resources.memory_mut() {
        // No memory limit and no word on swap: no swap limit either.
        if memory.limit() == Some(-1) && memory.swap().is_none() {
            memory.set_swap(Some(0));
        }
        memory.set_kernel(None);
        memory.set_kernel_tcp(None);
    }
    if resources.cpu().as_ref().is_some_and(|c| {
        c.realtime_period().unwrap_or(0) != 0 || c.realtime_runtime().unwrap_or(0) != 0
    }) {
        ignored.push("realtime CPU limits are ignored (cgroup v2 has none)");
    }
    Update { resources, ignored }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes_parse_as_runc_reads_them() {
        for (text, bytes) in [
            ("-1", -1),
            ("0", 0),
            ("1048576", 1 << 20),
            ("512k", 512 << 10),
            ("512K", 512 << 10),
            ("64m", 64 << 20),
            ("64M", 64 << 20),
            ("64mb", 64 << 20),
            ("64MiB", 64 << 20),
            ("64 MB", 64 << 20),
            ("1g", 1 << 30),
            ("1.5g", 3 << 29),
            ("2t", 2 << 40),
            ("1p", 1 << 50),
            ("10b", 10),
        ] {
            assert_eq!(parse_memory(text), Some(bytes), "{text}");
        }
        for text in [
            "",
            "m",
            "-2",
            "12x",
            "1.g",
            ".5g",
            "1..2m",
            "64  m",
            "9999999999999p",
        ] {
            assert_eq!(parse_memory(text), None, "{text}");
        }
    }

    #[test]
    fn flags_become_resources() {
        let update = from_flags(&UpdateFlags {
            memory: Some("64m"),
            memory_swap: Some("-1"),
            memory_reservation: Some("32m"),
            cpu_shares: Some("512"),
            cpu_quota: Some("50000"),
            cpu_period: Some("100000"),
            cpuset_cpus: Some("0"),
            pids_limit: Some(20),
            blkio_weight: Some(300),
            ..Default::default()
        })
        .unwrap();
        assert!(update.ignored.is_empty());
        let json = serde_json::to_value(&update.resources).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "memory": {"limit": 67108864, "reservation": 33554432, "swap": -1},
                "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0"},
                "pids": {"limit": 20},
                "blockIO": {"weight": 300},
            })
        );
    }

    #[test]
    fn no_flags_change_nothing() {
        let update = from_flags(&UpdateFlags::default()).unwrap();
        assert_eq!(update.resources, LinuxResources::default());
    }

    #[test]
    fn bad_flags_name_themselves() {
        let err = |flags: UpdateFlags| from_flags(&flags).unwrap_err().to_string();
        assert_eq!(
            err(UpdateFlags {
                memory: Some("lots"),
                ..Default::default()
            }),
            "invalid value for --memory: \"lots\""
        );
        assert_eq!(
            err(UpdateFlags {
                cpu_quota: Some("1.5"),
                ..Default::default()
            }),
            "invalid value for --cpu-quota: \"1.5\""
        );
        assert_eq!(
            err(UpdateFlags {
                cpu_period: Some("-1"),
                ..Default::default()
            }),
            "invalid value for --cpu-period: \"-1\""
        );
        assert_eq!(
            err(UpdateFlags {
                blkio_weight: Some(5),
                ..Default::default()
            }),
            "--blkio-weight 5: the range is 10 to 1000"
        );
        assert_eq!(
            err(UpdateFlags {
                l3_cache_schema: Some("L3:0=f"),
                ..Default::default()
            }),
            "--l3-cache-schema: Intel RDT is not available in a hull VM"
        );
        assert!(err(UpdateFlags {
            mem_bw_schema: Some("MB:0=70"),
            ..Default::default()
        })
        .starts_with("--mem-bw-schema"));
    }

    #[test]
    fn what_has_no_effect_is_said() {
        let update = from_flags(&UpdateFlags {
            kernel_memory: Some("16m"),
            cpu_rt_runtime: Some("950000"),
            memory: Some("-1"),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(update.ignored.len(), 2);
        let memory = update.resources.memory().unwrap();
        assert_eq!(
            (memory.limit(), memory.swap(), memory.kernel()),
            (Some(-1), Some(0), None)
        );
    }

    #[test]
    fn a_resources_file_is_read_as_oci() {
        let update = from_reader(
            br#"{"memory":{"limit":0,"reservation":0,"swap":0,"kernel":1048576,"checkBeforeUpdate":true},
                "cpu":{"shares":0,"quota":25000,"period":100000,"realtimeRuntime":0,"realtimePeriod":0,"cpus":"","mems":""},
                "blockIO":{"weight":0},"pids":{"limit":30}}"#
                .as_slice(),
        )
        .unwrap();
        assert_eq!(
            update.ignored,
            vec!["kernel memory settings are ignored (cgroup v2 has none)"]
        );
        let cpu = update.resources.cpu().as_ref().unwrap();
        assert_eq!((cpu.quota(), cpu.period()), (Some(25000), Some(100000)));
        assert_eq!(update.resources.pids().unwrap().limit(), 30);
        assert_eq!(update.resources.memory().unwrap().kernel(), None);
        let err = from_reader(b"{\"memory\": 12}".as_slice()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the resources are not an OCI linux.resources object"
        );
        assert!(from_reader(b"not json".as_slice()).is_err());
    }
}
