//! PID 1 must reap every child. One thread waits for all of them and keeps
//! each exit status until whoever spawned that child collects it, so a
//! child that exits before its spawner even knows its pid (an exec'd
//! process, which a middle child clones as ours) loses nothing.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::sys::{self, WaitStatus};

#[derive(Default)]
pub struct Reaper {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// Children spawned and not yet reaped.
    live: usize,
    exited: HashMap<i32, WaitStatus>,
}

impl Reaper {
    /// Starts the reaping thread.
    pub fn start() -> Arc<Self> {
        let reaper = Arc::new(Self::default());
        let worker = reaper.clone();
        std::thread::Builder::new()
            .name("reaper".into())
            .spawn(move || worker.run())
            .expect("spawning the reaper thread");
        reaper
    }

    /// Tells the reaper a child now exists (call after clone succeeded).
    pub fn child_spawned(&self) {
        self.lock().live += 1;
        self.changed.notify_all();
    }

    /// Blocks until `pid` has exited and returns how.
    pub fn wait_for(&self, pid: i32) -> WaitStatus {
        let mut state = self.lock();
        loop {
            if let Some(status) = state.exited.remove(&pid) {
                return status;
            }
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn run(&self) {
        loop {
            {
                let mut state = self.lock();
                while state.live == 0 {
                    state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
                }
            }
            match sys::wait_any() {
                Ok(Some((pid, status))) => {
                    let mut state = self.lock();
                    state.live = state.live.saturating_sub(1);
                    state.exited.insert(pid, status);
                    self.changed.notify_all();
                }
                // No children although we counted some: a count we can
                // trust again from zero.
                Ok(None) => self.lock().live = 0,
                Err(err) => {
                    eprintln!("hull-agent: waitpid: {err}");
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}
