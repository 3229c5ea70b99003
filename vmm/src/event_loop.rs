//! The device event loop: one epoll set on one thread (the main thread)
//! serving every device's host-side I/O (queue notifications, tap, unix
//! sockets), the VM exit eventfd and SIGTERM/SIGINT through a signalfd.
//! A trimmed-down take on rust-vmm `event-manager`'s subscriber model, with
//! fds that subscribers add and remove as they go (vsock connections).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

use crate::vstate::exit::{ExitReason, ExitSignal};

/// A device's host-side event handling.
pub trait Subscriber: Send {
    /// Registers the subscriber's initial fds.
    fn init(&mut self, ops: &mut EventOps<'_>);
    /// Handles readiness `events` on `fd`.
    fn process(&mut self, fd: RawFd, events: EventSet, ops: &mut EventOps<'_>);
}

/// What a subscriber may do to the epoll set while it runs.
pub struct EventOps<'a> {
    epoll: &'a Epoll,
    id: u32,
}

impl EventOps<'_> {
    fn key(&self, fd: RawFd) -> u64 {
        (u64::from(self.id) << 32) | u64::from(fd as u32)
    }

    /// Watches `fd` for `events`.
    pub fn add(&mut self, fd: RawFd, events: EventSet) -> io::Result<()> {
        self.epoll.ctl(
            ControlOperation::Add,
            fd,
            EpollEvent::new(events, self.key(fd)),
        )
    }

    /// Changes the events watched on `fd`.
    pub fn modify(&mut self, fd: RawFd, events: EventSet) -> io::Result<()> {
        self.epoll.ctl(
            ControlOperation::Modify,
            fd,
            EpollEvent::new(events, self.key(fd)),
        )
    }

    /// Stops watching `fd`.
    pub fn remove(&mut self, fd: RawFd) -> io::Result<()> {
        self.epoll
            .ctl(ControlOperation::Delete, fd, EpollEvent::default())
    }
}

/// Runs `f` with `EventOps` on a scratch epoll set (device unit tests).
#[cfg(test)]
pub fn with_test_ops<R>(f: impl FnOnce(&mut EventOps<'_>) -> R) -> R {
    let epoll = Epoll::new().expect("epoll");
    f(&mut EventOps {
        epoll: &epoll,
        id: 0,
    })
}

/// Errors of the event loop.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// epoll could not be created or used.
    #[error("epoll failed")]
    Epoll(#[source] io::Error),
    /// The signalfd could not be created.
    #[error("cannot set up the signal fd")]
    Signal(#[source] io::Error),
}

const CONTROL_ID: u32 = u32::MAX;
const EXIT_KEY: u64 = (CONTROL_ID as u64) << 32;
const SIGNAL_KEY: u64 = EXIT_KEY | 1;

/// Blocks SIGTERM and SIGINT in the calling thread (and so in every thread
/// it spawns afterwards) and returns a signalfd that receives them.
pub fn block_stop_signals() -> Result<OwnedFd, Error> {
    // SAFETY: `set` is a plain C struct, initialised by sigemptyset before
    // use; the calls only read and write that local.
    let fd = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(Error::Signal(io::Error::last_os_error()));
        }
        libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK)
    };
    if fd < 0 {
        return Err(Error::Signal(io::Error::last_os_error()));
    }
    // SAFETY: `fd` was just returned by signalfd and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn read_signal(fd: &OwnedFd) -> Option<i32> {
    let mut info = std::mem::MaybeUninit::<libc::signalfd_siginfo>::uninit();
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: reads at most `size` bytes into `info`, which has that size.
    let n = unsafe { libc::read(fd.as_raw_fd(), info.as_mut_ptr().cast(), size) };
    if n as usize != size {
        return None;
    }
    // SAFETY: the kernel wrote a whole signalfd_siginfo.
    Some(unsafe { info.assume_init() }.ssi_signo as i32)
}

/// The loop and its subscribers.
pub struct EventLoop {
    epoll: Epoll,
    subscribers: Vec<Box<dyn Subscriber>>,
}

impl EventLoop {
    /// An empty loop.
    pub fn new() -> Result<Self, Error> {
        Ok(Self {
            epoll: Epoll::new().map_err(Error::Epoll)?,
            subscribers: Vec::new(),
        })
    }

    /// Adds `sub` and lets it register its fds.
    pub fn add_subscriber(&mut self, mut sub: Box<dyn Subscriber>) {
        let id = self.subscribers.len() as u32;
        sub.init(&mut EventOps {
            epoll: &self.epoll,
            id,
        });
        self.subscribers.push(sub);
    }

    /// Runs until `exit` fires or a stop signal arrives on `signals`.
    pub fn run(&mut self, exit: &ExitSignal, signals: &OwnedFd) -> Result<ExitReason, Error> {
        self.epoll
            .ctl(
                ControlOperation::Add,
                exit.eventfd().as_raw_fd(),
                EpollEvent::new(EventSet::IN, EXIT_KEY),
            )
            .map_err(Error::Epoll)?;
        self.epoll
            .ctl(
                ControlOperation::Add,
                signals.as_raw_fd(),
                EpollEvent::new(EventSet::IN, SIGNAL_KEY),
            )
            .map_err(Error::Epoll)?;
        let mut events = vec![EpollEvent::default(); 64];
        loop {
            let n = match self.epoll.wait(-1, &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Epoll(e)),
            };
            for ev in &events[..n] {
                let key = ev.data();
                if key == EXIT_KEY {
                    if let Some(r) = exit.reason() {
                        return Ok(r);
                    }
                    continue;
                }
                if key == SIGNAL_KEY {
                    if let Some(sig) = read_signal(signals) {
                        return Ok(ExitReason::Signal(sig));
                    }
                    continue;
                }
                let id = (key >> 32) as u32;
                let fd = (key & 0xffff_ffff) as u32 as RawFd;
                if let Some(sub) = self.subscribers.get_mut(id as usize) {
                    sub.process(
                        fd,
                        ev.event_set(),
                        &mut EventOps {
                            epoll: &self.epoll,
                            id,
                        },
                    );
                }
            }
            // A subscriber may have requested an exit (device error).
            if let Some(r) = exit.reason() {
                return Ok(r);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use vmm_sys_util::eventfd::EventFd;

    struct Counter {
        evt: EventFd,
        seen: Arc<AtomicUsize>,
        exit: Arc<ExitSignal>,
    }
    impl Subscriber for Counter {
        fn init(&mut self, ops: &mut EventOps<'_>) {
            ops.add(self.evt.as_raw_fd(), EventSet::IN).unwrap();
        }
        fn process(&mut self, fd: RawFd, _e: EventSet, _ops: &mut EventOps<'_>) {
            assert_eq!(fd, self.evt.as_raw_fd());
            let _ = self.evt.read();
            if self.seen.fetch_add(1, Ordering::SeqCst) == 0 {
                self.exit.request(ExitReason::Reset);
            }
        }
    }

    #[test]
    fn dispatches_to_subscribers_and_stops_on_exit() {
        let exit = Arc::new(ExitSignal::new().unwrap());
        let seen = Arc::new(AtomicUsize::new(0));
        let evt = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        evt.write(1).unwrap();
        let mut el = EventLoop::new().unwrap();
        el.add_subscriber(Box::new(Counter {
            evt,
            seen: seen.clone(),
            exit: exit.clone(),
        }));
        // A signalfd for nothing in particular: an eventfd stands in.
        let quiet = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        // SAFETY: dup gives us a new fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(libc::dup(quiet.as_raw_fd())) };
        let r = el.run(&exit, &fd).unwrap();
        assert_eq!(r, ExitReason::Reset);
        assert_eq!(seen.load(Ordering::SeqCst), 1);
    }
}
