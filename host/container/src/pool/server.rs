//! The pool server: keeps up to `size` ready clones per spec it was asked
//! for (by `hull pool start`, or by the first take that found none),
//! bounded by the host memory they may hold, refilled one at a time in
//! the background (two cores: a clone being restored competes with the
//! containers that run), and emptied with nothing left behind on `stop`.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{de::DeserializeOwned, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::process::Child;
use tokio::sync::Notify;

use super::{
    decode, encode, socket_path, PoolEntry, PoolReply, PoolRequest, PoolSpec, PoolStatus,
    SlotMessage, DIR, MAX_LINE, POOLED_COMMAND, POOLED_FD,
};

/// How long a clone may take to be ready: the first of a spec may make
/// its template (a cold boot under TCG on a loaded machine).
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a pooled supervisor may take to confirm it took a container.
const ASSIGN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a ready clone may take to clean up when the pool stops.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(15);
/// The guess for a clone's memory before one was measured.
const FIRST_CLONE_GUESS: u64 = 64 << 20;
/// How often the filler looks again without being told (backoffs end,
/// ready clones may have died).
const TICK: Duration = Duration::from_millis(250);
/// How long after a take the pool waits before it makes a clone again:
/// restoring one competes for the CPU with the container that just took
/// one (two cores, TCG), and runs tend to come in bursts.
const QUIET_AFTER_TAKE: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

pub struct PoolOptions {
    /// The binary to run pooled supervisors with.
    pub hull: PathBuf,
    pub run_dir: PathBuf,
    pub size: usize,
    pub max_memory_bytes: u64,
    /// Specs to keep clones of from the start.
    pub warm: Vec<PoolSpec>,
}

/// A ready clone: its supervisor, and the line to it.
struct Slot {
    name: String,
    child: Child,
    channel: UnixStream,
    vm_pid: u32,
}

impl Slot {
    fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// Its processes' private memory.
    fn memory(&self) -> u64 {
        private_memory(self.pid()) + private_memory(self.vm_pid)
    }
}

#[derive(Default)]
struct Pool {
    ready: VecDeque<Slot>,
    filling: usize,
    taken: u64,
    failures: u32,
    retry_at: Option<Instant>,
    error: Option<String>,
}

struct Server {
    options: PoolOptions,
    pools: Mutex<HashMap<PoolSpec, Pool>>,
    /// Supervisors being prepared (killed if the pool stops meanwhile).
    preparing: Mutex<Vec<u32>>,
    changed: Notify,
    last_take: Mutex<Option<Instant>>,
    stopping: std::sync::atomic::AtomicBool,
    stopped: Notify,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Serves `pool.sock` in the run directory until asked to stop (or
/// SIGTERM/SIGINT).
pub async fn serve(options: PoolOptions) -> io::Result<()> {
    let socket = socket_path(&options.run_dir);
    if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("a pool server already serves {}", socket.display()),
        ));
    }
    let _ = std::fs::remove_file(&socket);
    // What a server that was killed left.
    remove_leftovers(&options.run_dir);
    crate::private::ensure_dir(&options.run_dir.join(DIR))?;
    let listener = UnixListener::bind(&socket)?;
    std::fs::set_permissions(&socket, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let pools = options
        .warm
        .iter()
        .map(|spec| (spec.clone(), Pool::default()))
        .collect();
    let server = Arc::new(Server {
        options,
        pools: Mutex::new(pools),
        preparing: Mutex::new(Vec::new()),
        changed: Notify::new(),
        last_take: Mutex::new(None),
        stopping: false.into(),
        stopped: Notify::new(),
    });
    tracing::info!("pool: serving {}", socket.display());
    let filler = tokio::spawn(fill(server.clone()));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => { tokio::spawn(answer(server.clone(), stream)); }
                Err(e) => {
                    tracing::warn!("pool: accept: {e}");
                    tokio::time::sleep(TICK).await;
                }
            },
            _ = server.stopped.notified() => break,
            _ = term.recv() => { server.stop().await; break; }
            _ = tokio::signal::ctrl_c() => { server.stop().await; break; }
        }
    }
    filler.abort();
    let _ = std::fs::remove_file(&socket);
    Ok(())
}

/// Removes the pool's directories and taps.
fn remove_leftovers(run_dir: &Path) {
    let _ = std::fs::remove_dir_all(run_dir.join(DIR));
    networks(run_dir).remove_pool_namespace();
}

/// The run directory's networks, for the pool's namespace (whose name is
/// the run directory's: which root does not matter).
fn networks(run_dir: &Path) -> hull_net::Networks {
    hull_net::Networks::new(Path::new("/nonexistent"), run_dir)
}

async fn answer(server: Arc<Server>, stream: UnixStream) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let reply = match receive::<PoolRequest>(&mut read).await {
        Ok(Some(request)) => server.handle(request).await,
        Ok(None) => return,
        Err(e) => PoolReply::Error {
            message: format!("bad request: {e}"),
        },
    };
    let _ = send(&mut write, &reply).await;
    if matches!(reply, PoolReply::Done) && server.stopping.load(std::sync::atomic::Ordering::SeqCst)
    {
        server.stopped.notify_one();
    }
}

impl Server {
    async fn handle(&self, request: PoolRequest) -> PoolReply {
        if self.stopping.load(std::sync::atomic::Ordering::SeqCst) {
            return PoolReply::Error {
                message: "the pool is stopping".into(),
            };
        }
        match request {
            PoolRequest::Take {
                spec,
                container,
                wait_attach,
                timings,
            } => self.take(spec, container, wait_attach, timings).await,
            PoolRequest::Warm { spec } => {
                self.learn(spec);
                PoolReply::Done
            }
            PoolRequest::Status => PoolReply::Status(self.status()),
            PoolRequest::Stop => {
                self.stop().await;
                PoolReply::Done
            }
        }
    }

    /// Keeps clones of `spec` ready from now on.
    fn learn(&self, spec: PoolSpec) {
        lock(&self.pools).entry(spec).or_default();
        self.changed.notify_one();
    }

    async fn take(
        &self,
        spec: PoolSpec,
        container: String,
        wait_attach: bool,
        timings: Option<PathBuf>,
    ) -> PoolReply {
        // Before the filler hears of the spec: no restore right now.
        *lock(&self.last_take) = Some(Instant::now());
        self.learn(spec.clone());
        loop {
            let slot = lock(&self.pools)
                .get_mut(&spec)
                .and_then(|pool| pool.ready.pop_front());
            let Some(mut slot) = slot else {
                return PoolReply::Empty;
            };
            self.changed.notify_one();
            let assign = SlotMessage::Assign {
                container: container.clone(),
                wait_attach,
                timings: timings.clone(),
            };
            let handed = tokio::time::timeout(ASSIGN_TIMEOUT, async {
                let (read, mut write) = slot.channel.split();
                send(&mut write, &assign).await?;
                receive::<SlotMessage>(&mut BufReader::new(read)).await
            })
            .await;
            match handed {
                Ok(Ok(Some(SlotMessage::Taken))) => {
                    let pid = slot.pid();
                    if let Some(pool) = lock(&self.pools).get_mut(&spec) {
                        pool.taken += 1;
                    }
                    // Its parent reaps it when the container's boot ends.
                    tokio::spawn(async move {
                        let _ = slot.child.wait().await;
                    });
                    return PoolReply::Taken { pid };
                }
                other => {
                    tracing::warn!(
                        "pool: clone {} did not take its container: {other:?}",
                        slot.name
                    );
                    let _ = slot.child.kill().await;
                }
            }
        }
    }

    fn status(&self) -> PoolStatus {
        let pools = lock(&self.pools);
        PoolStatus {
            pid: std::process::id(),
            namespace: networks(&self.options.run_dir).pool_namespace(),
            size: self.options.size,
            max_memory_bytes: self.options.max_memory_bytes,
            memory_bytes: memory_of(&pools),
            pools: pools
                .iter()
                .map(|(spec, pool)| PoolEntry {
                    key: spec.key(),
                    spec: spec.clone(),
                    ready: pool.ready.len(),
                    filling: pool.filling,
                    taken: pool.taken,
                    error: pool.error.clone(),
                })
                .collect(),
        }
    }

    /// Ends every ready clone and every one being made, then removes what
    /// the pool kept on the host.
    async fn stop(&self) {
        if self
            .stopping
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        for pid in lock(&self.preparing).iter() {
            // SAFETY: a pid of our own child, not reaped yet (the fill
            // task that reaps it removes it from the list first).
            unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
        }
        let slots: Vec<Slot> = lock(&self.pools)
            .values_mut()
            .flat_map(|pool| pool.ready.drain(..))
            .collect();
        for mut slot in slots {
            // The end of its line: it kills its VM and removes its tap.
            drop(slot.channel);
            if tokio::time::timeout(LEAVE_TIMEOUT, slot.child.wait())
                .await
                .is_err()
            {
                let _ = slot.child.kill().await;
            }
        }
        // The fill tasks reap what they started.
        let deadline = Instant::now() + LEAVE_TIMEOUT;
        while !lock(&self.preparing).is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        remove_leftovers(&self.options.run_dir);
        tracing::info!("pool: stopped");
    }

    /// The next spec to make a clone for, if any may be made now.
    fn next_to_fill(&self) -> Option<PoolSpec> {
        let taken_lately = lock(&self.last_take).is_some_and(|t| t.elapsed() < QUIET_AFTER_TAKE);
        let mut pools = lock(&self.pools);
        if taken_lately || pools.values().any(|p| p.filling > 0) {
            return None;
        }
        let held = memory_of(&pools);
        let clones: usize = pools.values().map(|p| p.ready.len()).sum();
        let next = match clones {
            0 => FIRST_CLONE_GUESS,
            n => held / n as u64,
        };
        if held + next > self.options.max_memory_bytes {
            return None;
        }
        let now = Instant::now();
        let (spec, pool) = pools
            .iter_mut()
            .filter(|(_, p)| p.ready.len() < self.options.size)
            .filter(|(_, p)| p.retry_at.is_none_or(|t| t <= now))
            .min_by_key(|(_, p)| p.ready.len())?;
        pool.filling += 1;
        Some(spec.clone())
    }

    /// Drops ready clones whose supervisor died.
    fn forget_dead(&self) {
        let mut pools = lock(&self.pools);
        for pool in pools.values_mut() {
            pool.ready
                .retain_mut(|slot| matches!(slot.child.try_wait(), Ok(None)));
        }
    }

    fn filled(&self, spec: &PoolSpec, made: Result<Slot, String>) {
        let mut pools = lock(&self.pools);
        let pool = pools.entry(spec.clone()).or_default();
        pool.filling -= 1;
        match made {
            Ok(slot) => {
                pool.failures = 0;
                pool.retry_at = None;
                pool.error = None;
                pool.ready.push_back(slot);
            }
            Err(why) => {
                tracing::warn!("pool: no clone for {}: {why}", spec.key());
                pool.failures += 1;
                let backoff = Duration::from_secs(2u64 << pool.failures.min(8)).min(MAX_BACKOFF);
                pool.retry_at = Some(Instant::now() + backoff);
                pool.error = Some(why);
            }
        }
        drop(pools);
        self.changed.notify_one();
    }
}

fn memory_of(pools: &HashMap<PoolSpec, Pool>) -> u64 {
    pools
        .values()
        .flat_map(|p| p.ready.iter())
        .map(Slot::memory)
        .sum()
}

/// Makes clones while some pool is short of them.
async fn fill(server: Arc<Server>) {
    loop {
        server.forget_dead();
        if server.stopping.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        if let Some(spec) = server.next_to_fill() {
            let server = server.clone();
            tokio::spawn(async move {
                let made = make_slot(&server, &spec).await;
                if server.stopping.load(std::sync::atomic::Ordering::SeqCst) {
                    if let Ok(mut slot) = made {
                        drop(slot.channel);
                        let _ = tokio::time::timeout(LEAVE_TIMEOUT, slot.child.wait()).await;
                    }
                    return;
                }
                server.filled(&spec, made);
            });
            continue;
        }
        tokio::select! {
            _ = server.changed.notified() => {}
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

/// Starts a pooled supervisor for `spec` and waits until its clone is
/// ready.
async fn make_slot(server: &Server, spec: &PoolSpec) -> Result<Slot, String> {
    let name = slot_name().map_err(|e| format!("name a slot: {e}"))?;
    let log_path = server.options.run_dir.join(DIR).join(format!("{name}.log"));
    let (mut child, channel) = spawn_pooled(&server.options, spec, &log_path)
        .map_err(|e| format!("start a pooled supervisor: {e}"))?;
    let pid = child.id().unwrap_or(0);
    lock(&server.preparing).push(pid);
    let ready = tokio::time::timeout(READY_TIMEOUT, async {
        let mut channel = channel;
        let prepare = SlotMessage::Prepare {
            spec: spec.clone(),
            slot: name.clone(),
        };
        let (read, mut write) = channel.split();
        send(&mut write, &prepare).await?;
        let ready = receive::<SlotMessage>(&mut BufReader::new(read)).await?;
        Ok::<_, io::Error>((ready, channel))
    });
    let made = tokio::select! {
        ready = ready => ready,
        status = child.wait() => Ok(Err(io::Error::other(format!("it exited with {}", status.map_or("?".into(), |s| s.to_string()))))),
    };
    let result = match made {
        Ok(Ok((Some(SlotMessage::Ready { vm_pid }), channel))) => Ok(Slot {
            name,
            child,
            channel,
            vm_pid,
        }),
        other => {
            let _ = child.kill().await;
            let why = hull_sandbox::vm::last_line(&log_path, |l| !l.contains(" INFO "))
                .map(|line| strip_log_prefix(&line))
                .unwrap_or_else(|| match other {
                    Err(_) => format!("not ready within {READY_TIMEOUT:?}"),
                    Ok(Err(e)) => e.to_string(),
                    Ok(Ok((message, _))) => format!("it said {message:?}"),
                });
            Err(why)
        }
    };
    lock(&server.preparing).retain(|p| *p != pid);
    if result.is_err() {
        let _ = std::fs::remove_file(&log_path);
    }
    result
}

/// A tracing line's message, without its time and level.
fn strip_log_prefix(line: &str) -> String {
    for level in [" ERROR ", " WARN "] {
        if let Some((_, rest)) = line.split_once(level) {
            return rest.trim().to_string();
        }
    }
    line.to_string()
}

fn slot_name() -> io::Result<String> {
    Ok(hull_sandbox::new_id()?[..8].to_string())
}

/// `hull __pooled` in a session of its own, its line to us on fd 3.
fn spawn_pooled(
    options: &PoolOptions,
    spec: &PoolSpec,
    log: &Path,
) -> io::Result<(Child, UnixStream)> {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    let log = crate::private::create_file(log)?;
    let mut command = std::process::Command::new(&options.hull);
    command
        .arg0("hull")
        .arg("--root")
        .arg(&spec.root)
        .arg("--run-dir")
        .arg(&options.run_dir)
        .arg(POOLED_COMMAND)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log));
    let fd = std::os::fd::AsRawFd::as_raw_fd(&theirs);
    hull_sandbox::process::in_new_session(&mut command);
    // SAFETY: dup2 is async-signal-safe; `fd` stays open in the parent
    // until the spawn returned.
    unsafe {
        command.pre_exec(move || {
            if libc::dup2(fd, POOLED_FD) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = tokio::process::Command::from(command).spawn()?;
    drop(theirs);
    ours.set_nonblocking(true)?;
    Ok((child, UnixStream::from_std(ours)?))
}

/// A process's private memory (what it alone holds), from smaps_rollup.
fn private_memory(pid: u32) -> u64 {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else {
        return 0;
    };
    text.lines()
        .filter(|l| l.starts_with("Private_Clean:") || l.starts_with("Private_Dirty:"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum::<u64>()
        * 1024
}

async fn send<T: Serialize>(
    writer: &mut (impl AsyncWriteExt + Unpin),
    message: &T,
) -> io::Result<()> {
    writer.write_all(&encode(message)?).await?;
    writer.flush().await
}

async fn receive<T: DeserializeOwned>(
    reader: &mut (impl AsyncBufReadExt + Unpin),
) -> io::Result<Option<T>> {
    let mut line = Vec::new();
    (&mut *reader)
        .take(MAX_LINE)
        .read_until(b'\n', &mut line)
        .await?;
    decode(&line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_clone_says_why_without_the_log_prefix() {
        assert_eq!(
            strip_log_prefix("2026-12-03T17:00:00Z ERROR hull: no VM template (x)"),
            "hull: no VM template (x)"
        );
        assert_eq!(strip_log_prefix("plain"), "plain");
    }

    #[test]
    fn our_own_private_memory_is_counted() {
        assert!(private_memory(std::process::id()) > 0);
        assert_eq!(private_memory(u32::MAX), 0);
    }
}
