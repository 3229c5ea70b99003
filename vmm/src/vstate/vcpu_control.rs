//! Pausing and resuming vCPU threads, and saving a paused vCPU's state
//! on its own thread (Firecracker's vCPU events and kick signal).
//!
//! A vCPU is kicked out of KVM_RUN with a real-time signal whose handler
//! sets `immediate_exit` in the thread's `kvm_run`: if the signal lands
//! while the thread is in KVM_RUN, the ioctl returns EINTR; if it lands
//! while the thread is emulating an exit, its next KVM_RUN finishes the
//! pending I/O (as KVM requires before state is read) and returns EINTR at
//! once. Either way the thread then sees the pause request, parks on a
//! condition variable and serves save requests until it is resumed. The
//! controller kicks again until the thread reports in, so a lost race
//! costs one retry, not a hang.

use std::cell::Cell;
use std::os::raw::{c_int, c_void};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kvm_bindings::kvm_run;
use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};

use crate::persist::vcpu::{VcpuState, VcpuStateError};

/// How long a controller waits for a vCPU to park or to save.
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a vCPU that has not parked yet is kicked again.
const KICK_INTERVAL: Duration = Duration::from_millis(10);

/// Why a vCPU could not be paused or saved.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The thread did not park in time.
    #[error("vCPU {0} did not pause")]
    PauseTimeout(u8),
    /// The thread did not answer a save request in time.
    #[error("vCPU {0} did not save its state")]
    SaveTimeout(u8),
    /// The vCPU is not paused.
    #[error("vCPU {0} is not paused")]
    NotPaused(u8),
    /// The vCPU has stopped running (the VM is ending).
    #[error("vCPU {0} has stopped")]
    Stopped(u8),
    /// The kick signal could not be sent.
    #[error("cannot signal vCPU {0}")]
    Kick(u8, #[source] vmm_sys_util::errno::Error),
    /// KVM could not save the state.
    #[error("vCPU {0}")]
    Save(u8, #[source] VcpuStateError),
    /// The kick signal handler could not be installed.
    #[error("cannot install the vCPU kick signal handler")]
    Handler(#[source] vmm_sys_util::errno::Error),
}

thread_local! {
    /// This thread's `kvm_run`, for the kick handler; null off vCPU threads.
    static KVM_RUN: Cell<*mut kvm_run> = const { Cell::new(std::ptr::null_mut()) };
}

extern "C" fn on_kick(_: c_int, _: *mut libc::siginfo_t, _: *mut c_void) {
    let _ = KVM_RUN.try_with(|p| {
        let run = p.get();
        if !run.is_null() {
            // SAFETY: `run` is this thread's kvm_run mapping, set by
            // `bind_thread` and valid while the vCPU (never dropped before
            // the process ends) lives; a byte store is async-signal-safe.
            unsafe { std::ptr::addr_of_mut!((*run).immediate_exit).write_volatile(1) };
        }
    });
}

/// The signal that kicks vCPUs.
pub fn kick_signal() -> c_int {
    SIGRTMIN()
}

/// Installs the kick handler (once per process, before vCPU threads run).
pub fn install_kick_handler() -> Result<(), ControlError> {
    register_signal_handler(kick_signal(), on_kick).map_err(ControlError::Handler)
}

/// Makes kicks of the calling thread stop KVM_RUN through `run`.
pub fn bind_thread(run: *mut kvm_run) {
    KVM_RUN.with(|p| p.set(run));
}

#[derive(Default)]
enum Save {
    #[default]
    Idle,
    Requested,
    Done(Result<Box<VcpuState>, VcpuStateError>),
}

#[derive(Default)]
struct Shared {
    want_pause: bool,
    paused: bool,
    stopped: bool,
    save: Save,
}

/// The meeting point of one vCPU thread and the controller.
#[derive(Default)]
pub struct VcpuControl {
    shared: Mutex<Shared>,
    cond: Condvar,
}

impl VcpuControl {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        crate::devices::lock(&self.shared)
    }

    fn wait_until(
        &self,
        deadline: Instant,
        mut done: impl FnMut(&mut Shared) -> bool,
    ) -> Option<MutexGuard<'_, Shared>> {
        let mut g = self.lock();
        loop {
            if done(&mut g) {
                return Some(g);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            g = self
                .cond
                .wait_timeout(g, (deadline - now).min(KICK_INTERVAL))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    // ---- the vCPU thread's side ----

    /// Called by the vCPU thread after KVM_RUN returned EINTR: parks while
    /// a pause is wanted, running `save` for each save request.
    pub fn park_if_paused(&self, mut save: impl FnMut() -> Result<VcpuState, VcpuStateError>) {
        let mut g = self.lock();
        if !g.want_pause {
            return;
        }
        g.paused = true;
        self.cond.notify_all();
        while g.want_pause {
            if matches!(g.save, Save::Requested) {
                drop(g);
                let r = save().map(Box::new);
                g = self.lock();
                g.save = Save::Done(r);
                self.cond.notify_all();
                continue;
            }
            g = self.cond.wait(g).unwrap_or_else(|p| p.into_inner());
        }
        g.paused = false;
        self.cond.notify_all();
    }

    /// Called by the vCPU thread when it stops running for good.
    pub fn mark_stopped(&self) {
        self.lock().stopped = true;
        self.cond.notify_all();
    }

    // ---- the controller's side ----

    /// Asks the vCPU on `thread` to park and waits until it has.
    pub fn pause(&self, index: u8, thread: &impl Killable) -> Result<(), ControlError> {
        self.lock().want_pause = true;
        let deadline = Instant::now() + CONTROL_TIMEOUT;
        loop {
            thread
                .kill(kick_signal())
                .map_err(|e| ControlError::Kick(index, e))?;
            let next = (Instant::now() + KICK_INTERVAL).min(deadline);
            if self.wait_until(next, |s| s.paused || s.stopped).is_some() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ControlError::PauseTimeout(index));
            }
        }
    }

    /// Lets a parked vCPU run again.
    pub fn resume(&self) {
        self.lock().want_pause = false;
        self.cond.notify_all();
    }

    /// Has the parked vCPU save its state and returns it.
    pub fn save(&self, index: u8) -> Result<VcpuState, ControlError> {
        {
            let mut g = self.lock();
            if g.stopped {
                return Err(ControlError::Stopped(index));
            }
            if !g.paused {
                return Err(ControlError::NotPaused(index));
            }
            g.save = Save::Requested;
        }
        self.cond.notify_all();
        let deadline = Instant::now() + CONTROL_TIMEOUT;
        let mut g = self
            .wait_until(deadline, |s| matches!(s.save, Save::Done(_)) || s.stopped)
            .ok_or(ControlError::SaveTimeout(index))?;
        match std::mem::take(&mut g.save) {
            Save::Done(r) => r.map(|b| *b).map_err(|e| ControlError::Save(index, e)),
            _ => Err(ControlError::Stopped(index)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    /// A "vCPU" thread that loops as a vCPU does, treating every kick as
    /// an EINTR from KVM_RUN.
    fn fake_vcpu(ctl: Arc<VcpuControl>, end: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let mut run: kvm_run = Default::default();
            bind_thread(&mut run);
            while !end.load(Ordering::SeqCst) {
                // SAFETY: `run` lives on this thread's stack for the loop.
                let kicked = unsafe { std::ptr::addr_of!(run.immediate_exit).read_volatile() };
                if kicked == 1 {
                    run.immediate_exit = 0;
                    ctl.park_if_paused(|| Err(VcpuStateError::TooMany("test")));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            bind_thread(std::ptr::null_mut());
        })
    }

    #[test]
    fn kicks_park_and_resume_a_thread_and_saves_run_on_it() {
        install_kick_handler().unwrap();
        let ctl = Arc::new(VcpuControl::default());
        let end = Arc::new(AtomicBool::new(false));
        let t = fake_vcpu(ctl.clone(), end.clone());
        assert!(matches!(ctl.save(0), Err(ControlError::NotPaused(0))));
        ctl.pause(0, &t).unwrap();
        let e = ctl.save(0).unwrap_err().to_string();
        assert!(e.contains("vCPU 0"), "{e}");
        ctl.resume();
        assert!(ctl
            .wait_until(Instant::now() + CONTROL_TIMEOUT, |s| !s.paused)
            .is_some());
        ctl.pause(0, &t).unwrap();
        ctl.resume();
        ctl.mark_stopped();
        assert!(matches!(ctl.save(0), Err(ControlError::Stopped(0))));
        ctl.pause(0, &t).unwrap();
        end.store(true, Ordering::SeqCst);
        ctl.resume();
        t.join().unwrap();
    }
}
