//! A clone's first steps: every clone of one template wakes with the
//! template's RNG state, wall clock and MAC address, so before it runs
//! anything it takes its own from the host ([`Wake`]).

use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;

use hull_protocol::{Wake, WAKE_MIN_ENTROPY};

use crate::sys;

#[derive(Debug, thiserror::Error)]
pub enum WakeError {
    #[error("a wake carries at least {WAKE_MIN_ENTROPY} bytes of entropy, this one {0}")]
    TooLittleEntropy(usize),
    #[error("bad MAC address {0:?}")]
    BadMac(String),
    #[error("the VM has {0} network interfaces, a clone takes one")]
    Interfaces(usize),
    #[error("{what}: {source}")]
    Step {
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

fn step(what: &'static str) -> impl FnOnce(io::Error) -> WakeError {
    move |source| WakeError::Step { what, source }
}

/// Reseeds the RNG, sets the clock, takes the MAC address.
pub fn wake(wake: &Wake) -> Result<(), WakeError> {
    if wake.entropy.len() < WAKE_MIN_ENTROPY {
        return Err(WakeError::TooLittleEntropy(wake.entropy.len()));
    }
    // Checked before anything changes: a bad wake changes nothing.
    let mac = wake.mac.as_deref().map(parse_mac).transpose()?;
    reseed(&wake.entropy).map_err(step("reseed the kernel's RNG"))?;
    set_clock(wake.realtime_nanos).map_err(step("set the clock"))?;
    if let Some(mac) = mac {
        let interface = the_interface()?;
        sys::set_interface_mac(&interface, mac).map_err(step("set the MAC address"))?;
    }
    Ok(())
}

/// Credits `entropy` to the input pool and makes the kernel reseed its
/// CRNG from it now (not at its next periodic reseed): the next
/// `getrandom`, `/dev/urandom` read and AT_RANDOM differ between clones.
fn reseed(entropy: &[u8]) -> io::Result<()> {
    // struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
    let mut info = Vec::with_capacity(8 + entropy.len());
    info.extend_from_slice(&((entropy.len() * 8) as i32).to_ne_bytes());
    info.extend_from_slice(&(entropy.len() as i32).to_ne_bytes());
    info.extend_from_slice(entropy);
    // The kernel reads whole u32 words of buf.
    info.resize(8 + entropy.len().div_ceil(4) * 4, 0);
    let words: Vec<u32> = info
        .chunks_exact(4)
        .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let random = File::options().write(true).open("/dev/urandom")?;
    // SAFETY: `words` holds a rand_pool_info whose buf_size matches the
    // bytes after its header; the kernel only reads it.
    sys::check(unsafe { libc::ioctl(random.as_raw_fd(), RNDADDENTROPY, words.as_ptr()) })?;
    // SAFETY: RNDRESEEDCRNG takes no argument.
    sys::check(unsafe { libc::ioctl(random.as_raw_fd(), RNDRESEEDCRNG) })?;
    Ok(())
}

/// `_IOW('R', 0x03, int[2])` and `_IO('R', 0x07)` from linux/random.h.
const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;
const RNDRESEEDCRNG: libc::c_ulong = 0x0000_5207;

fn set_clock(realtime_nanos: u64) -> io::Result<()> {
    let time = libc::timespec {
        tv_sec: (realtime_nanos / 1_000_000_000) as libc::time_t,
        tv_nsec: (realtime_nanos % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: `time` is a valid timespec.
    sys::check(unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &time) }).map(|_| ())
}

/// The VM's one network card (an interface with a device behind it, not
/// loopback or a tunnel the kernel made).
fn the_interface() -> Result<String, WakeError> {
    let names: Vec<String> = fs::read_dir("/sys/class/net")
        .map_err(step("list network interfaces"))?
        .flatten()
        .filter(|entry| entry.path().join("device").exists())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    match <[String; 1]>::try_from(names) {
        Ok([name]) => Ok(name),
        Err(names) => Err(WakeError::Interfaces(names.len())),
    }
}

fn parse_mac(text: &str) -> Result<[u8; 6], WakeError> {
    let bad = || WakeError::BadMac(text.to_string());
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next().ok_or_else(bad)?;
        if part.len() != 2 {
            return Err(bad());
        }
        *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() || mac[0] & 1 == 1 {
        // Six bytes exactly, and not a multicast address.
        return Err(bad());
    }
    Ok(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse_and_bad_ones_are_named() {
        assert_eq!(
            parse_mac("02:42:0a:59:00:02").unwrap(),
            [0x02, 0x42, 0x0a, 0x59, 0x00, 0x02]
        );
        for bad in [
            "",
            "02:42:0a:59:00",
            "02:42:0a:59:00:02:03",
            "0:42:0a:59:00:02",
            "zz:42:0a:59:00:02",
            "01:00:5e:00:00:01",
        ] {
            assert!(
                matches!(parse_mac(bad), Err(WakeError::BadMac(_))),
                "{bad:?} was taken"
            );
        }
    }

    #[test]
    fn a_wake_without_enough_entropy_changes_nothing() {
        let wake = Wake {
            entropy: vec![7; WAKE_MIN_ENTROPY - 1],
            realtime_nanos: 0,
            mac: None,
        };
        let err = super::wake(&wake).unwrap_err();
        assert!(matches!(err, WakeError::TooLittleEntropy(31)), "{err}");
    }

    #[test]
    fn a_bad_mac_is_refused_before_the_rng_or_clock_change() {
        let wake = Wake {
            entropy: vec![7; WAKE_MIN_ENTROPY],
            // Were the clock set, this test's host would be in 1970.
            realtime_nanos: 0,
            mac: Some("nope".into()),
        };
        assert!(matches!(super::wake(&wake), Err(WakeError::BadMac(_))));
    }

    #[test]
    fn the_ioctl_numbers_are_linuxs() {
        // _IOC(dir=write 1, type 'R', nr, size): dir<<30 | size<<16 | type<<8 | nr
        assert_eq!(RNDADDENTROPY, (1 << 30) | (8 << 16) | (0x52 << 8) | 0x03);
        assert_eq!(RNDRESEEDCRNG, (0x52 << 8) | 0x07);
    }
}
