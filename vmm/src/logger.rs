//! Minimal stderr logging with a global rate limit for lines a guest can
//! trigger (after Firecracker's `logger/rate_limited.rs`): at most
//! `BURST` such lines per second, the rest counted and summarised.

use std::fmt::Arguments;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

const BURST: u64 = 10;

static WINDOW: AtomicU64 = AtomicU64::new(0);
static IN_WINDOW: AtomicU64 = AtomicU64::new(0);
static SUPPRESSED: AtomicU64 = AtomicU64::new(0);

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Decides whether a guest-triggered line may be printed now.
fn allow() -> bool {
    let now = now_secs();
    if WINDOW.swap(now, Ordering::Relaxed) != now {
        IN_WINDOW.store(0, Ordering::Relaxed);
        let dropped = SUPPRESSED.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            eprintln!("hull-vmm: {dropped} guest-triggered log lines suppressed");
        }
    }
    if IN_WINDOW.fetch_add(1, Ordering::Relaxed) < BURST {
        true
    } else {
        SUPPRESSED.fetch_add(1, Ordering::Relaxed);
        false
    }
}

/// Logs something the guest caused (a bad descriptor, an unknown port),
/// rate limited.
pub fn guest_event(args: Arguments<'_>) {
    if allow() {
        eprintln!("hull-vmm: {args}");
    }
}

/// Logs a host-side warning (not rate limited: the guest cannot cause it).
pub fn warn(args: Arguments<'_>) {
    eprintln!("hull-vmm: warning: {args}");
}

/// How many guest-triggered lines were dropped in the current window.
pub fn suppressed() -> u64 {
    SUPPRESSED.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floods_are_cut() {
        let printed = (0..1000).filter(|_| allow()).count() as u64;
        assert!(printed <= 2 * BURST, "{printed} lines let through");
    }
}
