//! `events [--stats] [--interval 5s] ID`: the container's cgroup stats as
//! runc prints them, one JSON line `{"type":"stats","id":ID,"data":{…}}`
//! in runc's `types.Stats` shape (its `types/events.go`, filled from
//! cgroup v2 files as runc's fs2 driver fills it). `--stats` prints one
//! and exits; otherwise one every interval until the container stops
//! (exit 0), and an `{"type":"oom","id":ID}` line for each OOM kill the
//! guest counted between two samples (memory.events `oom_kill`).

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use anyhow::{anyhow, Result};
use serde::Serialize;

use super::args::{EventsArgs, RuncArgs};
use super::find;
use hull_container::record::Status;
use hull_container::supervisor::control::{
    self, AgentReply, AgentRequest, ControlReply, ControlRequest,
};
use hull_container::Container;
use hull_protocol::{ContainerStats, NO_LIMIT};

pub async fn events(args: &RuncArgs, events: &EventsArgs) -> Result<i32> {
    let interval = parse_duration(&events.interval)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            anyhow!(
                "invalid --interval {:?}: a duration greater than 0 (5s, 500ms)",
                events.interval
            )
        })?;
    let container = find(args, &events.id)?;
    let not_running = || anyhow!("container with id {} is not running", events.id);
    if !running(&container) {
        return Err(not_running());
    }
    let mut out = std::io::stdout().lock();
    if events.stats {
        let stats = sample(&container).await?.ok_or_else(not_running)?;
        print(&mut out, &Event::stats(&events.id, &stats))?;
        return Ok(0);
    }
    let mut oom_kills = None;
    loop {
        let Some(stats) = sample(&container).await? else {
            return Ok(0);
        };
        let before = oom_kills.unwrap_or(stats.oom_kills);
        for _ in before..stats.oom_kills {
            print(&mut out, &Event::oom(&events.id))?;
        }
        oom_kills = Some(stats.oom_kills);
        print(&mut out, &Event::stats(&events.id, &stats))?;
        tokio::time::sleep(interval).await;
    }
}

fn running(container: &Container) -> bool {
    container.live_supervisor().is_some() && container.recorded_state().status() == Status::Running
}

/// The container's stats now; `None` once it has stopped.
async fn sample(container: &Container) -> Result<Option<ContainerStats>> {
    let request = ControlRequest::Agent {
        request: AgentRequest::Stats {
            container_id: container.config.id.clone(),
        },
    };
    let reply = control::call(&container.socket_path(), &request).await;
    match reply {
        Ok(ControlReply::Agent {
            answer: AgentReply::Stats(stats),
        }) => Ok(Some(stats)),
        _ if !running(container) => Ok(None),
        Ok(ControlReply::Error { message, .. }) => Err(anyhow!("{message}")),
        Ok(other) => Err(anyhow!("the supervisor answered {other:?} to stats")),
        Err(e) => Err(anyhow!(
            "container {}: its supervisor did not answer: {e}",
            container.config.name
        )),
    }
}

fn print(out: &mut impl Write, event: &Event) -> Result<()> {
    let mut line = serde_json::to_vec(event)?;
    line.push(b'\n');
    out.write_all(&line)?;
    out.flush()?;
    Ok(())
}

/// A Go duration (`time.ParseDuration`): one or more decimal numbers, each
/// with a unit of ns, us (µs), ms, s, m or h: `5s`, `1.5s`, `1m30s`.
fn parse_duration(text: &str) -> Option<Duration> {
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = text;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let end = rest.find(|c: char| !c.is_ascii_digit() && c != '.')?;
        let (number, tail) = rest.split_at(end);
        let value: f64 = number.parse().ok()?;
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let seconds = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * seconds;
        rest = tail;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// runc's `types.Event`.
#[derive(Debug, Serialize)]
struct Event<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Stats>,
}

impl<'a> Event<'a> {
    fn stats(id: &'a str, stats: &ContainerStats) -> Self {
        Self {
            kind: "stats",
            id,
            data: Some(Stats::from(stats)),
        }
    }

    fn oom(id: &'a str) -> Self {
        Self {
            kind: "oom",
            id,
            data: None,
        }
    }
}

fn zero(n: &u64) -> bool {
    *n == 0
}

/// runc's `types.Stats`; what a cgroup v2 guest has no numbers for stays
/// zero or empty, as in runc on cgroup v2.
#[derive(Debug, Default, Serialize)]
struct Stats {
    cpu: Cpu,
    cpuset: CpuSet,
    memory: Memory,
    pids: Pids,
    blkio: Blkio,
    hugetlb: BTreeMap<String, Hugetlb>,
    intel_rdt: IntelRdt,
    network_interfaces: Option<Vec<()>>,
}

#[derive(Debug, Default, Serialize)]
struct Cpu {
    usage: CpuUsage,
    #[serde(skip_serializing_if = "Throttling::is_zero")]
    throttling: Throttling,
}

/// Nanoseconds.
#[derive(Debug, Default, Serialize)]
struct CpuUsage {
    #[serde(skip_serializing_if = "zero")]
    total: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    percpu: Vec<u64>,
    kernel: u64,
    user: u64,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct Throttling {
    #[serde(skip_serializing_if = "zero")]
    periods: u64,
    #[serde(skip_serializing_if = "zero")]
    throttled_periods: u64,
    /// Nanoseconds.
    #[serde(skip_serializing_if = "zero")]
    throttled_time: u64,
}

impl Throttling {
    fn is_zero(&self) -> bool {
        self.periods == 0 && self.throttled_periods == 0 && self.throttled_time == 0
    }
}

#[derive(Debug, Default, Serialize)]
struct CpuSet {
    cpu_exclusive: u64,
    mem_hardwall: u64,
    mem_exclusive: u64,
    memory_migrate: u64,
    memory_spread_page: u64,
    memory_spread_slab: u64,
    memory_pressure: u64,
    sched_load_balance: u64,
    sched_relax_domain_level: i64,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct Memory {
    #[serde(skip_serializing_if = "zero")]
    cache: u64,
    usage: MemoryEntry,
    swap: MemoryEntry,
    #[serde(skip_serializing_if = "MemoryEntry::is_zero")]
    kernel: MemoryEntry,
    #[serde(rename = "kernelTCP", skip_serializing_if = "MemoryEntry::is_zero")]
    kernel_tcp: MemoryEntry,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    raw: BTreeMap<String, u64>,
}

#[derive(Debug, Default, Serialize)]
struct MemoryEntry {
    limit: u64,
    #[serde(skip_serializing_if = "zero")]
    usage: u64,
    #[serde(skip_serializing_if = "zero")]
    max: u64,
    failcnt: u64,
}

impl MemoryEntry {
    fn is_zero(&self) -> bool {
        self.limit == 0 && self.usage == 0 && self.max == 0 && self.failcnt == 0
    }
}

#[derive(Debug, Default, Serialize)]
struct Pids {
    #[serde(skip_serializing_if = "zero")]
    current: u64,
    #[serde(skip_serializing_if = "zero")]
    limit: u64,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct Blkio {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    io_serviced_recursive: Vec<BlkioEntry>,
}

#[derive(Debug, Serialize)]
struct BlkioEntry {
    #[serde(skip_serializing_if = "zero")]
    major: u64,
    #[serde(skip_serializing_if = "zero")]
    minor: u64,
    op: &'static str,
    #[serde(skip_serializing_if = "zero")]
    value: u64,
}

#[derive(Debug, Default, Serialize)]
struct Hugetlb {
    #[serde(skip_serializing_if = "zero")]
    usage: u64,
    #[serde(skip_serializing_if = "zero")]
    max: u64,
    failcnt: u64,
}

#[derive(Debug, Default, Serialize)]
struct IntelRdt {}

impl From<&ContainerStats> for Stats {
    fn from(s: &ContainerStats) -> Self {
        let usage = MemoryEntry {
            limit: s.memory_max,
            usage: s.memory_bytes,
            max: s.memory_peak,
            failcnt: s.memory_max_events,
        };
        // runc reports cgroup v1's memory+swap on v2 as well.
        let swap = MemoryEntry {
            limit: match s.swap_max {
                NO_LIMIT => NO_LIMIT,
                swap => swap.saturating_add(s.memory_max),
            },
            usage: s.swap_bytes.saturating_add(s.memory_bytes),
            max: 0,
            failcnt: 0,
        };
        let entries = |read: fn(&hull_protocol::IoDeviceStats) -> u64,
                       write: fn(&hull_protocol::IoDeviceStats) -> u64| {
            s.io_devices
                .iter()
                .flat_map(|d| {
                    [("Read", read(d)), ("Write", write(d))].map(|(op, value)| BlkioEntry {
                        major: d.major,
                        minor: d.minor,
                        op,
                        value,
                    })
                })
                .collect()
        };
        Stats {
            cpu: Cpu {
                usage: CpuUsage {
                    total: s.cpu_usage_usec.saturating_mul(1000),
                    percpu: Vec::new(),
                    kernel: s.cpu_system_usec.saturating_mul(1000),
                    user: s.cpu_user_usec.saturating_mul(1000),
                },
                throttling: Throttling {
                    periods: s.cpu_periods,
                    throttled_periods: s.cpu_throttled_periods,
                    throttled_time: s.cpu_throttled_usec.saturating_mul(1000),
                },
            },
            memory: Memory {
                cache: s.memory_stat.get("file").copied().unwrap_or(0),
                usage,
                swap,
                raw: s.memory_stat.clone(),
                ..Default::default()
            },
            pids: Pids {
                current: s.pids,
                limit: s.pids_limit,
            },
            blkio: Blkio {
                io_service_bytes_recursive: entries(|d| d.rbytes, |d| d.wbytes),
                io_serviced_recursive: entries(|d| d.rios, |d| d.wios),
            },
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hull_protocol::IoDeviceStats;

    #[test]
    fn durations_parse_as_go_reads_them() {
        for (text, millis) in [
            ("5s", 5000),
            ("1s", 1000),
            ("500ms", 500),
            ("1.5s", 1500),
            ("1m30s", 90_000),
            ("2h", 7_200_000),
            ("0", 0),
        ] {
            assert_eq!(
                parse_duration(text),
                Some(Duration::from_millis(millis)),
                "{text}"
            );
        }
        for text in ["", "5", "s", "5x", "-1s", "1s5"] {
            assert_eq!(parse_duration(text), None, "{text}");
        }
    }

    #[test]
    fn stats_take_runcs_shape() {
        let stats = ContainerStats {
            cpu_usage_usec: 1500,
            cpu_user_usec: 1000,
            cpu_system_usec: 500,
            cpu_periods: 10,
            cpu_throttled_periods: 2,
            cpu_throttled_usec: 7,
            memory_bytes: 4096,
            memory_max: 64 << 20,
            memory_peak: 8192,
            memory_max_events: 3,
            swap_max: 0,
            memory_stat: [("file".to_string(), 1024), ("anon".to_string(), 2048)].into(),
            pids: 2,
            pids_limit: 20,
            io_devices: vec![IoDeviceStats {
                major: 254,
                minor: 0,
                rbytes: 4096,
                wbytes: 0,
                rios: 1,
                wios: 0,
            }],
            ..Default::default()
        };
        let json = serde_json::to_value(Event::stats("c1", &stats)).unwrap();
        assert_eq!(json["type"], "stats");
        assert_eq!(json["id"], "c1");
        let data = &json["data"];
        assert_eq!(
            data["cpu"],
            serde_json::json!({
                "usage": {"total": 1_500_000, "kernel": 500_000, "user": 1_000_000},
                "throttling": {"periods": 10, "throttledPeriods": 2, "throttledTime": 7000},
            })
        );
        assert_eq!(
            data["memory"]["usage"],
            serde_json::json!({"limit": 64 << 20, "usage": 4096, "max": 8192, "failcnt": 3})
        );
        assert_eq!(
            data["memory"]["swap"],
            serde_json::json!({"limit": 64 << 20, "usage": 4096, "failcnt": 0})
        );
        assert_eq!(data["memory"]["cache"], 1024);
        assert_eq!(data["memory"]["raw"]["anon"], 2048);
        assert!(data["memory"].get("kernel").is_none());
        assert_eq!(data["pids"], serde_json::json!({"current": 2, "limit": 20}));
        assert_eq!(
            data["blkio"]["ioServiceBytesRecursive"],
            serde_json::json!([
                {"major": 254, "op": "Read", "value": 4096},
                {"major": 254, "op": "Write"},
            ])
        );
        assert_eq!(data["hugetlb"], serde_json::json!({}));
        assert_eq!(data["cpuset"]["cpu_exclusive"], 0);

        let unlimited = ContainerStats {
            memory_max: NO_LIMIT,
            swap_max: NO_LIMIT,
            ..Default::default()
        };
        let json = serde_json::to_value(Event::stats("c1", &unlimited)).unwrap();
        assert_eq!(json["data"]["memory"]["usage"]["limit"], NO_LIMIT);
        assert_eq!(json["data"]["memory"]["swap"]["limit"], NO_LIMIT);
        assert!(json["data"]["cpu"].get("throttling").is_none());
        assert!(json["data"]["pids"].as_object().unwrap().is_empty());
    }

    #[test]
    fn an_oom_event_has_no_data() {
        assert_eq!(
            serde_json::to_string(&Event::oom("c1")).unwrap(),
            r#"{"type":"oom","id":"c1"}"#
        );
    }
}
