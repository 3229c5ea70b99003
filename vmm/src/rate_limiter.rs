//! Token buckets for device I/O (after Firecracker's `rate_limiter`
//! crate, trimmed): a device may have a bucket of bytes and a bucket of
//! operations, each refilled at a steady rate up to one second's worth.
//! A request that finds either bucket short takes nothing; the device
//! leaves it on its queue and stops, and a timerfd armed for when the
//! tokens will be back wakes it through the event loop.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use vmm_sys_util::timerfd::TimerFd;

const NANOS: u128 = 1_000_000_000;

/// One bucket: `rate` tokens a second, holding at most `capacity`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: u64,
    capacity: u64,
    tokens: u64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket refilled at `rate` tokens a second, holding one
    /// second's worth (`rate` > 0).
    pub fn new(rate: u64, now: Instant) -> Self {
        let rate = rate.max(1);
        Self {
            rate,
            capacity: rate,
            tokens: rate,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_nanos();
        let add = elapsed * u128::from(self.rate) / NANOS;
        if add == 0 {
            return;
        }
        let room = u128::from(self.capacity - self.tokens);
        if add >= room {
            self.tokens = self.capacity;
            self.last = now;
        } else {
            self.tokens += add as u64;
            // Keep the fraction of a token already earned.
            let used = add * NANOS / u128::from(self.rate);
            self.last += Duration::from_nanos(used as u64);
        }
    }

    /// What a request of `n` costs: a request larger than the bucket
    /// takes a full bucket (it would never fit otherwise).
    fn cost(&self, n: u64) -> u64 {
        n.min(self.capacity)
    }

    /// Whether `n` tokens are there now.
    fn has(&mut self, n: u64, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.cost(n)
    }

    fn take(&mut self, n: u64) {
        self.tokens -= self.cost(n);
    }

    /// How long until `n` tokens are there (zero if they are).
    fn wait_for(&mut self, n: u64, now: Instant) -> Duration {
        self.refill(now);
        let missing = self.cost(n).saturating_sub(self.tokens);
        let nanos = (u128::from(missing) * NANOS).div_ceil(u128::from(self.rate));
        let since = now.saturating_duration_since(self.last).as_nanos();
        Duration::from_nanos(nanos.saturating_sub(since).max(1) as u64)
    }
}

/// A device's limits: bytes a second and operations a second, either
/// optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimit {
    /// Bytes a second.
    pub bytes: Option<u64>,
    /// Operations (requests, frames) a second.
    pub ops: Option<u64>,
}

impl RateLimit {
    /// Whether anything is limited.
    pub fn is_some(&self) -> bool {
        self.bytes.is_some() || self.ops.is_some()
    }
}

/// The buckets of one device direction, and the timer that ends a wait.
pub struct RateLimiter {
    bytes: Option<TokenBucket>,
    ops: Option<TokenBucket>,
    timer: Option<TimerFd>,
    blocked: bool,
    /// How many times a request had to wait.
    pub throttled: u64,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::unlimited()
    }
}

impl RateLimiter {
    /// A limiter that never waits.
    pub fn unlimited() -> Self {
        Self {
            bytes: None,
            ops: None,
            timer: None,
            blocked: false,
            throttled: 0,
        }
    }

    /// A limiter for `limit` (with its timerfd: made now, before the
    /// event loop's filter forbids `timerfd_create`).
    pub fn new(limit: RateLimit) -> io::Result<Self> {
        if !limit.is_some() {
            return Ok(Self::unlimited());
        }
        let now = Instant::now();
        Ok(Self {
            bytes: limit.bytes.map(|r| TokenBucket::new(r, now)),
            ops: limit.ops.map(|r| TokenBucket::new(r, now)),
            timer: Some(TimerFd::new().map_err(io::Error::from)?),
            blocked: false,
            throttled: 0,
        })
    }

    /// Takes `bytes` and one operation if both buckets have them; else
    /// takes nothing, arms the timer and stays blocked until it fires.
    pub fn consume(&mut self, bytes: u64) -> bool {
        self.consume_at(bytes, Instant::now())
    }

    fn consume_at(&mut self, bytes: u64, now: Instant) -> bool {
        if self.blocked {
            return false;
        }
        let ok_bytes = self.bytes.as_mut().is_none_or(|b| b.has(bytes, now));
        let ok_ops = self.ops.as_mut().is_none_or(|b| b.has(1, now));
        if ok_bytes && ok_ops {
            if let Some(b) = &mut self.bytes {
                b.take(bytes);
            }
            if let Some(b) = &mut self.ops {
                b.take(1);
            }
            return true;
        }
        let wait = [
            self.bytes.as_mut().map(|b| b.wait_for(bytes, now)),
            self.ops.as_mut().map(|b| b.wait_for(1, now)),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(Duration::from_millis(1));
        self.throttled += 1;
        self.blocked = true;
        if let Some(t) = &mut self.timer {
            if t.reset(wait, None).is_err() {
                // Without a timer nothing would wake us: do not block.
                self.blocked = false;
            }
        }
        false
    }

    /// Whether a request is waiting for the timer.
    pub fn is_blocked(&self) -> bool {
        self.blocked
    }

    /// The timer's fd, for the event loop (None when unlimited).
    pub fn timer_fd(&self) -> Option<RawFd> {
        self.timer.as_ref().map(|t| t.as_raw_fd())
    }

    /// Called when the timer's fd is readable: the wait is over.
    pub fn on_timer(&mut self) {
        if let Some(t) = &mut self.timer {
            let _ = t.wait();
        }
        self.blocked = false;
    }
}

/// Parses a rate such as `1000`, `64K`, `10M`, `1G` (powers of 1024).
pub fn parse_rate(v: &str) -> Option<u64> {
    let (num, mult) = match v.char_indices().last()? {
        (i, 'k' | 'K') => (&v[..i], 1u64 << 10),
        (i, 'm' | 'M') => (&v[..i], 1 << 20),
        (i, 'g' | 'G') => (&v[..i], 1 << 30),
        _ => (v, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|n| *n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_refills_at_its_rate_and_keeps_fractions() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000, t0);
        assert!(b.has(1000, t0));
        b.take(1000);
        assert!(!b.has(1, t0));
        // 1.5 ms: one token, half of the next kept.
        let t1 = t0 + Duration::from_micros(1500);
        assert!(b.has(1, t1));
        assert!(!b.has(2, t1));
        let t2 = t0 + Duration::from_millis(2);
        assert!(b.has(2, t2));
        // Never more than one second's worth.
        let t3 = t0 + Duration::from_secs(10);
        assert!(b.has(1000, t3) && b.tokens == 1000);
        // A request larger than the bucket takes all of it.
        b.take(5000);
        assert_eq!(b.tokens, 0);
        assert_eq!(b.wait_for(5000, t3), Duration::from_secs(1));
        assert_eq!(b.wait_for(10, t3), Duration::from_millis(10));
    }

    #[test]
    fn a_limiter_takes_both_or_neither_and_blocks_until_its_timer() {
        let mut l = RateLimiter::new(RateLimit {
            bytes: Some(1000),
            ops: Some(2),
        })
        .unwrap();
        let t0 = Instant::now();
        assert!(l.consume_at(400, t0));
        assert!(l.consume_at(400, t0));
        // Bytes are left, operations are not: nothing is taken.
        assert!(!l.consume_at(100, t0));
        assert!(l.is_blocked() && l.throttled == 1);
        assert_eq!(l.bytes.as_ref().unwrap().tokens, 200);
        // Blocked until the timer says so, whatever the clock.
        assert!(!l.consume_at(1, t0 + Duration::from_secs(5)));
        let fd = l.timer_fd().unwrap();
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: polls one valid pollfd for at most 2 s.
        assert_eq!(unsafe { libc::poll(&mut p, 1, 2000) }, 1, "the timer fires");
        l.on_timer();
        assert!(l.consume(100));
    }

    #[test]
    fn unlimited_never_waits_and_has_no_timer() {
        let mut l = RateLimiter::new(RateLimit::default()).unwrap();
        assert!(l.timer_fd().is_none());
        assert!((0..10_000).all(|_| l.consume(u64::MAX)));
    }

    #[test]
    fn a_limited_stream_gets_its_rate() {
        // 64 KiB/s in 4 KiB requests for 0.5 s: about 32 KiB beyond the
        // initial full bucket of 64 KiB.
        let mut l = RateLimiter::new(RateLimit {
            bytes: Some(64 << 10),
            ops: None,
        })
        .unwrap();
        let start = Instant::now();
        let mut moved = 0u64;
        while start.elapsed() < Duration::from_millis(500) {
            if l.consume(4096) {
                moved += 4096;
            } else {
                l.on_timer(); // blocks in read until the timer fires
            }
        }
        let secs = start.elapsed().as_secs_f64();
        let want = (64u64 << 10) as f64 * (1.0 + secs);
        assert!(
            (moved as f64) <= want + 4096.0 && (moved as f64) >= want * 0.8,
            "moved {moved} bytes in {secs:.3} s, want about {want:.0}"
        );
    }

    #[test]
    fn rates_parse_with_suffixes() {
        assert_eq!(parse_rate("1000"), Some(1000));
        assert_eq!(parse_rate("64K"), Some(65536));
        assert_eq!(parse_rate("10m"), Some(10 << 20));
        assert_eq!(parse_rate("1G"), Some(1 << 30));
        for bad in ["", "0", "K", "-1", "1T", "99999999999G"] {
            assert_eq!(parse_rate(bad), None, "{bad}");
        }
    }
}
