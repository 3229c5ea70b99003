//! A container's resource usage from its cgroup v2 files, the numbers
//! `docker stats` shows (runc's `events --stats` reads the same files).
//! A file the kernel does not provide (a controller not enabled) counts as
//! zero; only a missing cgroup is an error. Limits read `max` as
//! [`NO_LIMIT`], but `pids.max`, which reads 0 then, as runc reports it.

use std::fs;
use std::io;
use std::path::Path;

use hull_protocol::{ContainerStats, IoDeviceStats, NO_LIMIT};

/// Reads the stats of the cgroup at `dir`; `mem_total` stands in for an
/// unlimited `memory.max`.
pub fn read(dir: &Path, mem_total: u64) -> io::Result<ContainerStats> {
    if !dir.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no cgroup at {}", dir.display()),
        ));
    }
    let file = |name: &str| fs::read_to_string(dir.join(name)).unwrap_or_default();
    let io_stat = file("io.stat");
    let io = parse_io_stat(&io_stat);
    let cpu = file("cpu.stat");
    let memory_max = file("memory.max");
    let memory_events = file("memory.events");
    Ok(ContainerStats {
        cpu_usage_usec: parse_keyed(&cpu, "usage_usec"),
        memory_bytes: parse_number(&file("memory.current")),
        memory_limit_bytes: parse_memory_max(&memory_max, mem_total),
        pids: parse_number(&file("pids.current")),
        io_read_bytes: io.0,
        io_write_bytes: io.1,
        cpu_user_usec: parse_keyed(&cpu, "user_usec"),
        cpu_system_usec: parse_keyed(&cpu, "system_usec"),
        cpu_periods: parse_keyed(&cpu, "nr_periods"),
        cpu_throttled_periods: parse_keyed(&cpu, "nr_throttled"),
        cpu_throttled_usec: parse_keyed(&cpu, "throttled_usec"),
        memory_max: parse_limit(&memory_max),
        memory_peak: parse_number(&file("memory.peak")),
        memory_max_events: parse_keyed(&memory_events, "max"),
        oom_kills: parse_keyed(&memory_events, "oom_kill"),
        swap_bytes: parse_number(&file("memory.swap.current")),
        swap_max: match file("memory.swap.max").trim() {
            "" => 0,
            max => parse_limit(max),
        },
        memory_stat: file("memory.stat")
            .lines()
            .filter_map(|line| line.split_once(' '))
            .filter_map(|(k, v)| Some((k.to_string(), v.trim().parse().ok()?)))
            .collect(),
        pids_limit: match parse_limit(&file("pids.max")) {
            NO_LIMIT => 0,
            n => n,
        },
        io_devices: parse_io_devices(&io_stat),
    })
}

/// A limit file: a number, or `max` ([`NO_LIMIT`]; so is a missing file,
/// a controller not enabled).
fn parse_limit(text: &str) -> u64 {
    match text.trim() {
        "" | "max" => NO_LIMIT,
        n => n.parse().unwrap_or(NO_LIMIT),
    }
}

/// `io.stat`, per device.
fn parse_io_devices(text: &str) -> Vec<IoDeviceStats> {
    let mut devices = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some((major, minor)) = fields.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) else {
            continue;
        };
        let mut device = IoDeviceStats {
            major,
            minor,
            ..Default::default()
        };
        for (key, value) in fields.filter_map(|f| f.split_once('=')) {
            let value = value.parse().unwrap_or(0);
            match key {
                "rbytes" => device.rbytes = value,
                "wbytes" => device.wbytes = value,
                "rios" => device.rios = value,
                "wios" => device.wios = value,
                _ => {}
            }
        }
        devices.push(device);
    }
    devices
}

/// The VM's memory (`MemTotal` of /proc/meminfo), in bytes.
pub fn mem_total() -> u64 {
    parse_meminfo_total(&fs::read_to_string("/proc/meminfo").unwrap_or_default())
}

/// A file holding one number ("123\n"); 0 when empty or not a number.
fn parse_number(text: &str) -> u64 {
    text.trim().parse().unwrap_or(0)
}

/// `key value` lines (cpu.stat, memory.stat): the value of `key`, or 0.
fn parse_keyed(text: &str, key: &str) -> u64 {
    text.lines()
        .filter_map(|line| line.split_once(' '))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

/// `memory.max`: a number, or "max" (no limit: the VM's memory). A missing
/// file (no memory controller) is no limit too.
fn parse_memory_max(text: &str, mem_total: u64) -> u64 {
    match text.trim() {
        "" | "max" => mem_total,
        n => n.parse().unwrap_or(mem_total),
    }
}

/// `io.stat`: one line per device, `MAJ:MIN rbytes=N wbytes=N rios=N …`;
/// (rbytes, wbytes) summed over devices.
fn parse_io_stat(text: &str) -> (u64, u64) {
    let mut sums = (0u64, 0u64);
    for field in text
        .lines()
        .flat_map(|line| line.split_whitespace().skip(1))
    {
        let Some((key, value)) = field.split_once('=') else {
            continue;
        };
        let value: u64 = value.parse().unwrap_or(0);
        match key {
            "rbytes" => sums.0 = sums.0.saturating_add(value),
            "wbytes" => sums.1 = sums.1.saturating_add(value),
            _ => {}
        }
    }
    sums
}

/// `MemTotal:  2030000 kB` → bytes.
fn parse_meminfo_total(text: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or(0, |kib| kib.saturating_mul(1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPU_STAT: &str = "usage_usec 123456\nuser_usec 100000\nsystem_usec 23456\n\
        nr_periods 0\nnr_throttled 0\nthrottled_usec 0\n";
    const IO_STAT: &str = "254:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n\
        254:16 rbytes=1000 wbytes=24 rios=3 wios=1 dbytes=0 dios=0\n";

    #[test]
    fn files_parse() {
        assert_eq!(parse_keyed(CPU_STAT, "usage_usec"), 123_456);
        assert_eq!(parse_keyed(CPU_STAT, "system_usec"), 23_456);
        assert_eq!(parse_keyed(CPU_STAT, "missing"), 0);
        assert_eq!(parse_io_stat(IO_STAT), (5096, 8216));
        assert_eq!(parse_io_stat(""), (0, 0));
        assert_eq!(
            parse_io_devices(IO_STAT),
            vec![
                IoDeviceStats {
                    major: 254,
                    minor: 0,
                    rbytes: 4096,
                    wbytes: 8192,
                    rios: 1,
                    wios: 2
                },
                IoDeviceStats {
                    major: 254,
                    minor: 16,
                    rbytes: 1000,
                    wbytes: 24,
                    rios: 3,
                    wios: 1
                },
            ]
        );
        assert_eq!(parse_limit("max\n"), NO_LIMIT);
        assert_eq!(parse_limit("20\n"), 20);
        assert_eq!(parse_number("4194304\n"), 4_194_304);
        assert_eq!(parse_number(""), 0);
        assert_eq!(parse_memory_max("67108864\n", 999), 67_108_864);
        assert_eq!(parse_memory_max("max\n", 999), 999);
        assert_eq!(parse_memory_max("", 999), 999);
        assert_eq!(
            parse_meminfo_total("MemTotal:        2030000 kB\nMemFree:  1 kB\n"),
            2_030_000 * 1024
        );
    }

    #[test]
    fn reads_a_cgroup_directory() {
        let dir = std::env::temp_dir().join(format!("hull-agent-stats-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("cpu.stat"), CPU_STAT).unwrap();
        fs::write(dir.join("memory.current"), "1048576\n").unwrap();
        fs::write(dir.join("memory.max"), "max\n").unwrap();
        fs::write(dir.join("pids.current"), "3\n").unwrap();
        // No io.stat: the io controller is not enabled.
        // No pids.max, memory.events, memory.stat, swap files either.
        let stats = read(&dir, 512 << 20).unwrap();
        assert_eq!(
            stats,
            ContainerStats {
                cpu_usage_usec: 123_456,
                memory_bytes: 1 << 20,
                memory_limit_bytes: 512 << 20,
                pids: 3,
                io_read_bytes: 0,
                io_write_bytes: 0,
                cpu_user_usec: 100_000,
                cpu_system_usec: 23_456,
                memory_max: NO_LIMIT,
                pids_limit: 0,
                ..Default::default()
            }
        );
        fs::write(dir.join("pids.max"), "20\n").unwrap();
        fs::write(
            dir.join("memory.events"),
            "low 0\nhigh 0\nmax 7\noom 1\noom_kill 1\noom_group_kill 0\n",
        )
        .unwrap();
        fs::write(dir.join("memory.stat"), "anon 4096\nfile 8192\n").unwrap();
        fs::write(dir.join("memory.swap.max"), "max\n").unwrap();
        let stats = read(&dir, 512 << 20).unwrap();
        assert_eq!(
            (
                stats.pids_limit,
                stats.memory_max_events,
                stats.oom_kills,
                stats.swap_max
            ),
            (20, 7, 1, NO_LIMIT)
        );
        assert_eq!(stats.memory_stat.get("file"), Some(&8192));
        fs::write(dir.join("io.stat"), IO_STAT).unwrap();
        fs::write(dir.join("memory.max"), "67108864\n").unwrap();
        let stats = read(&dir, 512 << 20).unwrap();
        assert_eq!(
            (
                stats.memory_limit_bytes,
                stats.memory_max,
                stats.io_read_bytes,
                stats.io_write_bytes
            ),
            (64 << 20, 64 << 20, 5096, 8216)
        );
        fs::remove_dir_all(&dir).unwrap();
        assert!(read(&dir, 0).is_err());
    }
}
