//! Why the VM stopped, reported by whichever thread saw it first.

use std::fmt;
use std::sync::Mutex;

use vmm_sys_util::eventfd::EventFd;

/// A reason for the VMM to end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitReason {
    /// The guest reset the machine (i8042 or a KVM system event).
    Reset,
    /// The guest powered off or halted for good.
    Poweroff,
    /// The host asked us to stop (SIGTERM or SIGINT).
    Signal(i32),
    /// A vCPU triple-faulted (KVM_EXIT_SHUTDOWN).
    TripleFault {
        /// vCPU index.
        cpu: u8,
    },
    /// KVM reported an internal error.
    InternalError {
        /// vCPU index.
        cpu: u8,
        /// KVM's sub-error code.
        suberror: u32,
    },
    /// KVM could not enter the guest.
    FailEntry {
        /// vCPU index.
        cpu: u8,
        /// Hardware failure reason.
        reason: u64,
    },
    /// A vCPU exited for a reason we do not handle, or its run ioctl failed.
    VcpuError {
        /// vCPU index.
        cpu: u8,
        /// What happened.
        what: String,
    },
    /// A device failed in a way the VM cannot go on from.
    DeviceError(String),
}

impl ExitReason {
    /// The process exit status for this reason.
    pub fn exit_code(&self) -> i32 {
        match self {
            ExitReason::Reset | ExitReason::Poweroff | ExitReason::Signal(_) => 0,
            ExitReason::TripleFault { .. } => 2,
            ExitReason::InternalError { .. } | ExitReason::FailEntry { .. } => 3,
            ExitReason::VcpuError { .. } => 4,
            ExitReason::DeviceError(_) => 5,
        }
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Reset => write!(f, "guest reset"),
            ExitReason::Poweroff => write!(f, "guest powered off"),
            ExitReason::Signal(s) => write!(f, "stopped by signal {s}"),
            ExitReason::TripleFault { cpu } => write!(f, "vCPU {cpu}: guest triple fault"),
            ExitReason::InternalError { cpu, suberror } => {
                write!(f, "vCPU {cpu}: KVM internal error (suberror {suberror})")
            }
            ExitReason::FailEntry { cpu, reason } => {
                write!(
                    f,
                    "vCPU {cpu}: KVM failed to enter the guest (reason {reason:#x})"
                )
            }
            ExitReason::VcpuError { cpu, what } => write!(f, "vCPU {cpu}: {what}"),
            ExitReason::DeviceError(what) => write!(f, "device error: {what}"),
        }
    }
}

/// Where threads report that the VM must stop; the first reason wins.
pub struct ExitSignal {
    evt: EventFd,
    reason: Mutex<Option<ExitReason>>,
}

impl ExitSignal {
    /// A fresh signal.
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            evt: EventFd::new(libc::EFD_NONBLOCK)?,
            reason: Mutex::new(None),
        })
    }

    /// Records `reason` (unless one is already recorded) and wakes the
    /// event loop.
    pub fn request(&self, reason: ExitReason) {
        let mut r = crate::devices::lock(&self.reason);
        if r.is_none() {
            *r = Some(reason);
        }
        // If the eventfd counter is full the loop is already woken.
        let _ = self.evt.write(1);
    }

    /// The recorded reason, if any.
    pub fn reason(&self) -> Option<ExitReason> {
        crate::devices::lock(&self.reason).clone()
    }

    /// The eventfd the event loop waits on.
    pub fn eventfd(&self) -> &EventFd {
        &self.evt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_reason_wins_and_codes() {
        let s = ExitSignal::new().unwrap();
        s.request(ExitReason::TripleFault { cpu: 0 });
        s.request(ExitReason::Reset);
        assert_eq!(s.reason(), Some(ExitReason::TripleFault { cpu: 0 }));
        assert_eq!(s.eventfd().read().unwrap(), 2);
        assert_eq!(ExitReason::Reset.exit_code(), 0);
        assert_ne!(
            ExitReason::InternalError {
                cpu: 0,
                suberror: 1
            }
            .exit_code(),
            0
        );
        assert!(!ExitReason::DeviceError("x".into())
            .to_string()
            .contains('\n'));
    }
}
