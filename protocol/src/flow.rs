//! Credit-based flow control for data streams.
//!
//! Each data stream starts with [`INITIAL_WINDOW`] bytes of credit for its
//! sender. The sender may only put that many bytes on the wire; the receiver
//! returns credit with `Window` frames as it hands bytes on (to a pipe, to a
//! terminal). A slow consumer therefore bounds only its own stream, and the
//! receiving side can always keep reading the connection, so control
//! messages and other streams keep flowing.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Credit every data stream starts with, in bytes.
pub const INITIAL_WINDOW: u32 = 256 * 1024;

/// A sender's credit for one stream, shared between the thread that sends
/// data and the thread that reads `Window` frames.
#[derive(Debug)]
pub struct Credit {
    state: Mutex<CreditState>,
    changed: Condvar,
}

#[derive(Debug)]
struct CreditState {
    available: u64,
    closed: bool,
}

impl Default for Credit {
    fn default() -> Self {
        Self::new(INITIAL_WINDOW)
    }
}

impl Credit {
    pub fn new(initial: u32) -> Self {
        Self {
            state: Mutex::new(CreditState {
                available: initial.into(),
                closed: false,
            }),
            changed: Condvar::new(),
        }
    }

    /// Adds credit granted by the peer. Credit is capped so a hostile peer
    /// cannot overflow the counter.
    pub fn grant(&self, credit: u32) {
        let mut state = self.lock();
        state.available = (state.available + u64::from(credit)).min(u64::from(u32::MAX));
        self.changed.notify_all();
    }

    /// Starts over with `initial` bytes of credit: the peer's end of the
    /// stream was made anew (a VM restored on a new connection).
    pub fn reset(&self, initial: u32) {
        self.lock().available = initial.into();
        self.changed.notify_all();
    }

    /// Wakes every waiter for good (the connection is gone).
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    /// Waits until some credit is available and takes up to `want` bytes of
    /// it. Returns `None` once closed.
    pub fn take(&self, want: usize) -> Option<usize> {
        let mut state = self.lock();
        loop {
            if state.closed {
                return None;
            }
            if state.available > 0 {
                let n = (want as u64).min(state.available);
                state.available -= n;
                return Some(n as usize);
            }
            state = self
                .changed
                .wait_timeout(state, Duration::from_secs(1))
                .map(|(guard, _)| guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        }
    }

    /// Credit currently available.
    pub fn available(&self) -> u64 {
        self.lock().available
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CreditState> {
        // Credit state stays consistent even if a holder panicked.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn take_is_bounded_by_credit() {
        let credit = Credit::new(10);
        assert_eq!(credit.take(4), Some(4));
        assert_eq!(credit.take(100), Some(6));
        assert_eq!(credit.available(), 0);
    }

    #[test]
    fn take_waits_for_a_grant() {
        let credit = Arc::new(Credit::new(0));
        let waiter = {
            let credit = credit.clone();
            std::thread::spawn(move || credit.take(8))
        };
        std::thread::sleep(Duration::from_millis(20));
        credit.grant(5);
        assert_eq!(waiter.join().unwrap(), Some(5));
    }

    #[test]
    fn close_releases_waiters() {
        let credit = Arc::new(Credit::new(0));
        let waiter = {
            let credit = credit.clone();
            std::thread::spawn(move || credit.take(8))
        };
        credit.close();
        assert_eq!(waiter.join().unwrap(), None);
    }

    #[test]
    fn hostile_grants_saturate() {
        let credit = Credit::new(u32::MAX);
        credit.grant(u32::MAX);
        assert_eq!(credit.available(), u64::from(u32::MAX));
    }
}
