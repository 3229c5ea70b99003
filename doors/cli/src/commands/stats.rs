use std::time::{Duration, Instant};

use anyhow::Result;

use super::lifecycle::{ask, containers};
use crate::cli::{Cli, StatsArgs};
use hull_container::record::Container;
use hull_container::supervisor::control::{AgentReply, AgentRequest, ControlReply, ControlRequest};

/// Live usage from the agent, sampled once a second (`--no-stream`: once).
pub async fn stats(cli: &Cli, args: &StatsArgs) -> Result<i32> {
    let all = containers(cli);
    let targets: Vec<Container> = if args.containers.is_empty() {
        all.list()
            .into_iter()
            .filter(|c| c.state().is_running())
            .collect()
    } else {
        args.containers
            .iter()
            .map(|n| all.find(n))
            .collect::<Result<_, _>>()?
    };
    let mut previous: Vec<Option<(u64, Instant)>> = vec![None; targets.len()];
    loop {
        // The first sample needs a second one to compute CPU use.
        let mut samples = Vec::new();
        for c in &targets {
            let request = ControlRequest::Agent {
                request: AgentRequest::Stats {
                    container_id: c.config.id.clone(),
                },
            };
            let sample = match ask(c, &request).await {
                Ok(ControlReply::Agent {
                    answer: AgentReply::Stats(s),
                }) => Some(s),
                _ => None,
            };
            samples.push((sample, Instant::now()));
        }
        let first = previous.iter().all(Option::is_none);
        if first {
            for (slot, (sample, at)) in previous.iter_mut().zip(&samples) {
                *slot = sample.as_ref().map(|s| (s.cpu_usage_usec, *at));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        if !args.no_stream {
            // Clear the screen and go home, as docker stats does.
            print!("\x1b[2J\x1b[H");
        }
        println!(
            "{:<14}{:<24}{:<9}{:<22}{:<8}{:<22}PIDS",
            "CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "BLOCK I/O"
        );
        for ((c, (sample, at)), prev) in targets.iter().zip(&samples).zip(previous.iter_mut()) {
            let Some(s) = sample else {
                println!("{:<14}{:<24}--", c.short_id(), c.config.name);
                continue;
            };
            let cpu = match prev {
                Some((usec, then)) => {
                    let wall = at.duration_since(*then).as_micros().max(1) as f64;
                    100.0 * s.cpu_usage_usec.saturating_sub(*usec) as f64 / wall
                }
                None => 0.0,
            };
            *prev = Some((s.cpu_usage_usec, *at));
            let mem_pct = 100.0 * s.memory_bytes as f64 / s.memory_limit_bytes.max(1) as f64;
            println!(
                "{:<14}{:<24}{:<9}{:<22}{:<8}{:<22}{}",
                c.short_id(),
                c.config.name,
                format!("{cpu:.2}%"),
                format!(
                    "{} / {}",
                    bytes(s.memory_bytes),
                    bytes(s.memory_limit_bytes)
                ),
                format!("{mem_pct:.2}%"),
                format!("{} / {}", bytes(s.io_read_bytes), bytes(s.io_write_bytes)),
                s.pids
            );
        }
        if args.no_stream {
            return Ok(0);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n}B")
    } else {
        format!("{value:.2}{}", UNITS[unit])
    }
}
