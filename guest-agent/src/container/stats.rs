//! A container's resource usage from its cgroup v2 files, the numbers
//! `docker stats` shows (runc's `events --stats` reads the same files).
//! A file the kernel does not provide (a controller not enabled) counts as
//! zero; only a missing cgroup is an error.

use std::fs;
use std::io;
use std::path::Path;

use hull_protocol::ContainerStats;

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
    let io = parse_io_stat(&file("io.stat"));
    Ok(ContainerStats {
        cpu_usage_usec: parse_keyed(&file("cpu.stat"), "usage_usec"),
        memory_bytes: parse_number(&file("memory.current")),
        memory_limit_bytes: parse_memory_max(&file("memory.max"), mem_total),
        pids: parse_number(&file("pids.current")),
        io_read_bytes: io.0,
        io_write_bytes: io.1,
    })
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
            }
        );
        fs::write(dir.join("io.stat"), IO_STAT).unwrap();
        fs::write(dir.join("memory.max"), "67108864\n").unwrap();
        let stats = read(&dir, 512 << 20).unwrap();
        assert_eq!(
            (
                stats.memory_limit_bytes,
                stats.io_read_bytes,
                stats.io_write_bytes
            ),
            (64 << 20, 5096, 8216)
        );
        fs::remove_dir_all(&dir).unwrap();
        assert!(read(&dir, 0).is_err());
    }
}
