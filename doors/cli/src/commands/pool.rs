//! `hull pool start|status|stop`, and the two hidden commands the pool
//! runs: its server and its pooled supervisors.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use hull_container::plan;
use hull_container::pool::{self, client, PoolReply, PoolRequest, PoolStatus};

use super::lifecycle::containers;
use crate::cli::{Cli, PoolCommand, PoolLimits, PoolServeArgs, PoolStartArgs, PoolStatusArgs};

/// How long a new server may take to open its socket.
const START_TIMEOUT: Duration = Duration::from_secs(20);

pub async fn pool(cli: &Cli, command: &PoolCommand) -> Result<i32> {
    match command {
        PoolCommand::Start(args) if args.foreground => foreground(cli, args).await,
        PoolCommand::Start(args) => start(cli, args),
        PoolCommand::Status(args) => status(cli, args),
        PoolCommand::Stop => stop(cli),
    }
}

fn start(cli: &Cli, args: &PoolStartArgs) -> Result<i32> {
    let warm = if args.no_warm {
        None
    } else {
        plan::default_pool_spec(&cli.root, &args.hypervisor, None, None)?
    };
    let running = match ask(cli, &PoolRequest::Status) {
        Ok(PoolReply::Status(status)) => Some(status.pid),
        _ => None,
    };
    let pid = match running {
        Some(pid) => pid,
        None => spawn_server(cli, &args.limits)?,
    };
    if let Some(spec) = warm {
        ask(cli, &PoolRequest::Warm { spec })?;
    }
    match running {
        Some(pid) => println!("a pool already runs (pid {pid})"),
        None => println!("pool started (pid {pid})"),
    }
    Ok(0)
}

/// `hull pool start --foreground`: the server in this process, warming
/// the default shape from the start.
async fn foreground(cli: &Cli, args: &PoolStartArgs) -> Result<i32> {
    let warm = match args.no_warm {
        true => None,
        false => plan::default_pool_spec(&cli.root, &args.hypervisor, None, None)?,
    };
    hull_container::private::ensure_dir(&cli.run_dir)?;
    serve(cli, &args.limits, warm.into_iter().collect()).await
}

/// `hull __pool` in a session of its own, its log in the run directory.
fn spawn_server(cli: &Cli, limits: &PoolLimits) -> Result<u32> {
    hull_container::private::ensure_dir(&cli.run_dir)?;
    let log = hull_container::private::create_file(&cli.run_dir.join("pool.log"))?;
    let mut command = Command::new(std::env::current_exe()?);
    command
        .arg0("hull")
        .arg("--root")
        .arg(&cli.root)
        .arg("--run-dir")
        .arg(&cli.run_dir)
        .arg(pool::SERVE_COMMAND)
        .arg("--size")
        .arg(limits.size.to_string())
        .arg("--max-memory")
        .arg(limits.max_memory.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log));
    hull_sandbox::process::in_new_session(&mut command);
    let mut child = command.spawn()?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(PoolReply::Status(status)) = ask(cli, &PoolRequest::Status) {
            return Ok(status.pid);
        }
        if let Ok(Some(status)) = child.try_wait() {
            let why = hull_sandbox::vm::last_line(&cli.run_dir.join("pool.log"), |_| true)
                .unwrap_or_else(|| format!("it exited with {status}"));
            return Err(anyhow!("the pool server did not start: {why}"));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(anyhow!(
                "the pool server did not start within {START_TIMEOUT:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn status(cli: &Cli, args: &PoolStatusArgs) -> Result<i32> {
    let deadline = args.wait.map(|s| Instant::now() + Duration::from_secs(s));
    let status = loop {
        let status = current(cli)?;
        let full = status.pools.iter().all(|p| p.ready >= status.size);
        match deadline {
            Some(deadline) if !full && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Some(_) if !full => {
                print_status(&status, &args.format)?;
                return Err(anyhow!(
                    "the pool's clones were not ready within {}s",
                    args.wait.unwrap_or(0)
                ));
            }
            _ => break status,
        }
    };
    print_status(&status, &args.format)?;
    Ok(0)
}

fn print_status(status: &PoolStatus, format: &str) -> Result<()> {
    match format {
        "json" => println!("{}", serde_json::to_string_pretty(status)?),
        "table" => {
            let mib = |b: u64| b as f64 / f64::from(1 << 20);
            println!(
                "pool pid {}: {} ready per shape, {:.1} MiB of {:.0} MiB held",
                status.pid,
                status.size,
                mib(status.memory_bytes),
                mib(status.max_memory_bytes)
            );
            println!(
                "{:<14}{:<11}{:<7}{:<9}{:<5}{:<7}{:<9}{:<7}ERROR",
                "SHAPE", "HYPERVISOR", "VCPUS", "MEMORY", "NIC", "READY", "FILLING", "TAKEN"
            );
            for p in &status.pools {
                println!(
                    "{:<14}{:<11}{:<7}{:<9}{:<5}{:<7}{:<9}{:<7}{}",
                    p.key,
                    p.spec.hypervisor,
                    p.spec.vcpus,
                    format!("{}M", p.spec.memory_mib),
                    if p.spec.nic { "yes" } else { "no" },
                    p.ready,
                    p.filling,
                    p.taken,
                    p.error.as_deref().unwrap_or("")
                );
            }
        }
        other => return Err(anyhow!("unknown --format {other:?} (table or json)")),
    }
    Ok(())
}

fn stop(cli: &Cli) -> Result<i32> {
    let pid = current(cli)?.pid;
    match ask(cli, &PoolRequest::Stop)? {
        PoolReply::Done => {}
        PoolReply::Error { message } => return Err(anyhow!("the pool: {message}")),
        other => return Err(anyhow!("the pool answered {other:?}")),
    }
    // The server removes its socket and exits once it answered.
    let deadline = Instant::now() + START_TIMEOUT;
    while running(pid) {
        if Instant::now() > deadline {
            return Err(anyhow!("the pool server (pid {pid}) did not exit"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = std::fs::remove_file(cli.run_dir.join("pool.log"));
    println!("pool stopped");
    Ok(0)
}

/// Whether `pid` still runs (an exited one its parent has not reaped yet,
/// as a service manager's child, does not).
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

fn current(cli: &Cli) -> Result<PoolStatus> {
    match ask(cli, &PoolRequest::Status)? {
        PoolReply::Status(status) => Ok(status),
        other => Err(anyhow!("the pool answered {other:?}")),
    }
}

fn ask(cli: &Cli, request: &PoolRequest) -> Result<PoolReply> {
    client::request(&cli.run_dir, request).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            anyhow!("no warm pool runs for {}", cli.run_dir.display())
        }
        _ => anyhow!("the pool server: {e}"),
    })
}

/// The pool server (`hull __pool`).
pub async fn pool_serve(cli: &Cli, args: &PoolServeArgs) -> Result<i32> {
    serve(cli, &args.limits, Vec::new()).await
}

async fn serve(cli: &Cli, limits: &PoolLimits, warm: Vec<pool::PoolSpec>) -> Result<i32> {
    let options = pool::server::PoolOptions {
        hull: std::env::current_exe()?,
        run_dir: cli.run_dir.clone(),
        size: limits.size,
        max_memory_bytes: limits.max_memory,
        warm,
    };
    pool::server::serve(options)
        .await
        .map(|()| 0)
        .map_err(|e| anyhow!("pool server: {e}"))
}

/// A pooled clone's supervisor (`hull __pooled`).
pub async fn pooled(cli: &Cli) -> Result<i32> {
    Ok(hull_container::supervisor::pooled::serve(&cli.root, &containers(cli)).await)
}
