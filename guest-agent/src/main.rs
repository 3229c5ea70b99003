//! hull-agent: PID 1 inside every hull microVM.
//!
//! Boots the guest's userspace (mounts, root switch), opens the channel to
//! the host (virtio-serial under QEMU, vsock under hull-vmm), then serves
//! the host's requests until it asks for a shutdown or goes away. Whatever
//! happens, the VM powers off at the end: a PID 1 that exits panics the
//! kernel.

/// Logs a step to the console when `hull.debug=1` is on the kernel command
/// line (the console ends up in the sandbox's console.log).
macro_rules! debug {
    ($($arg:tt)*) => {
        if $crate::DEBUG.load(std::sync::atomic::Ordering::Relaxed) {
            eprintln!("hull-agent: {}", format_args!($($arg)*));
        }
    };
}

mod agent;
mod boot;
mod channel;
mod container;
mod export;
mod net;
mod process;
mod security;
mod stdio;
mod steps;
mod sys;
mod syscall;
#[cfg(test)]
mod test_utils;
mod wake;
mod wire;

/// Held by every test that makes child processes: a test's reaper waits
/// for any child (as PID 1 must), so it would take another test's child.
#[cfg(test)]
pub(crate) fn children_lock() -> std::sync::MutexGuard<'static, ()> {
    static CHILDREN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    CHILDREN.lock().unwrap_or_else(|p| p.into_inner())
}

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

use channel::ChannelKind;
use hull_protocol::CHANNEL_CMDLINE_KEY;

/// Whether `debug!` prints.
pub static DEBUG: AtomicBool = AtomicBool::new(false);

fn main() {
    sys::ignore_sigpipe();
    let result = run();
    if let Err(err) = &result {
        eprintln!("hull-agent: {err}");
    }
    if sys::getpid() == 1 {
        sys::power_off();
    }
    std::process::exit(if result.is_ok() { 0 } else { 1 });
}

/// Serves a container that joined the VM on its own port; when the host
/// goes away from it, the container goes too (the VM runs on).
fn serve_joined(
    port: std::fs::File,
    reaper: std::sync::Arc<process::Reaper>,
    vm: std::sync::Arc<agent::Vm>,
) {
    let reader = match port.try_clone() {
        Ok(reader) => reader,
        Err(e) => {
            eprintln!("hull-agent: join port: {e}");
            return;
        }
    };
    let session = agent::Agent::joined(wire::Wire::new(port), reaper, vm);
    if let Err(e) = session.serve(reader) {
        eprintln!("hull-agent: joined container: {e}");
    }
    session.release_container();
    session.streams.close_all();
}

fn run() -> io::Result<()> {
    if sys::getpid() == 1 {
        boot::setup_system(&syscall::LINUX)?;
    }
    let cmdline = boot::read_cmdline();
    DEBUG.store(
        boot::cmdline_value(&cmdline, "hull.debug").as_deref() == Some("1"),
        Ordering::Relaxed,
    );
    let kind =
        ChannelKind::from_cmdline(boot::cmdline_value(&cmdline, CHANNEL_CMDLINE_KEY).as_deref())?;
    let reaper = process::Reaper::start();
    let channel = channel::open(kind)?;
    let reader = channel.try_clone()?;
    let mut agent = agent::Agent::new(wire::Wire::new(channel), reaper.clone());
    if kind == ChannelKind::Serial {
        let (vm, reaper) = (agent.vm.clone(), reaper.clone());
        channel::watch_join_ports(move |port| serve_joined(port, reaper.clone(), vm.clone()))?;
    }
    let mut served = agent.serve(reader);
    // A checkpointed VM restored by hull-vmm finds its connection reset
    // too: it connects again and keeps its container, whose streams go on
    // once the new host says so (`Unpark`).
    let mut reconnects = 0;
    while kind == ChannelKind::Vsock
        && agent.parked()
        && channel::should_reconnect(kind, &served, false, reconnects)
    {
        reconnects += 1;
        debug!("agent channel reset while checkpointed; connecting again ({reconnects})");
        let channel = channel::reconnect(kind)?;
        let reader = channel.try_clone()?;
        agent.wire.replace(channel);
        served = agent.serve(reader);
    }
    // A clone restored by hull-vmm finds its connection reset: it connects
    // again and says hello to the clone's host. Nothing ran yet, so
    // nothing is lost with the old session.
    while channel::should_reconnect(kind, &served, agent.ran_a_container(), reconnects) {
        reconnects += 1;
        debug!("agent channel reset; connecting again ({reconnects})");
        agent.streams.close_all();
        let channel = channel::reconnect(kind)?;
        let reader = channel.try_clone()?;
        agent = agent::Agent::new(wire::Wire::new(channel), reaper.clone());
        served = agent.serve(reader);
    }
    // The host is gone or broke the protocol: nothing may outlive it.
    agent.kill_all();
    agent.streams.close_all();
    served
}
