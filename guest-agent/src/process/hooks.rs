//! OCI hooks that run in the guest: `createContainer` (in the container's
//! namespaces once its mounts are made, before pivot_root) and
//! `startContainer` (in the container, just before the user process is
//! exec'd), each with the container's state JSON on its stdin, as the
//! runtime spec says and runc does. In a VM the only root that has
//! programs is the container's own, so a hook's `path` is resolved
//! inside the container's root: a createContainer hook is chrooted into
//! it (the mount namespace still has the agent's root), a startContainer
//! hook finds it as its root. The child runs them (`sys::child::run_hook`)
//! from what is prepared here, without allocating.

use std::ffi::CString;
use std::time::Duration;

/// A hook as the spec gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookSpec {
    pub path: String,
    /// argv, argv[0] included (the path when empty).
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub timeout: Option<Duration>,
}

/// The container's hooks that run in the guest, and its state JSON split
/// around its pid (which the agent learns only at the clone).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerHooks {
    pub create_container: Vec<HookSpec>,
    pub start_container: Vec<HookSpec>,
    /// The state up to `"pid":` with status "creating"…
    pub creating: String,
    /// …with status "created"…
    pub created: String,
    /// …and what follows the pid.
    pub after_pid: String,
}

impl ContainerHooks {
    pub fn is_empty(&self) -> bool {
        self.create_container.is_empty() && self.start_container.is_empty()
    }
}

/// The state must fit a pipe's buffer: the child writes it before
/// starting the hook, so a hook that never reads cannot block it.
pub const MAX_STATE: usize = 60 * 1024;

/// A hook ready for the child: C strings and their pointer arrays.
#[derive(Debug)]
pub struct PreparedHook {
    pub path: CString,
    _args: Vec<CString>,
    pub argv: Vec<*const libc::c_char>,
    _env: Vec<CString>,
    pub envp: Vec<*const libc::c_char>,
    /// 0: no timeout.
    pub timeout_ms: u64,
}

impl PreparedHook {
    /// None when a string holds a NUL byte.
    pub fn new(hook: &HookSpec) -> Option<Self> {
        let c = |s: &str| CString::new(s).ok();
        let args: Vec<CString> = if hook.args.is_empty() {
            vec![c(&hook.path)?]
        } else {
            hook.args.iter().map(|a| c(a)).collect::<Option<_>>()?
        };
        let env: Vec<CString> = hook.env.iter().map(|e| c(e)).collect::<Option<_>>()?;
        let pointers = |items: &[CString]| {
            items
                .iter()
                .map(|s| s.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect()
        };
        Some(Self {
            path: c(&hook.path)?,
            argv: pointers(&args),
            envp: pointers(&env),
            _args: args,
            _env: env,
            timeout_ms: hook.timeout.map_or(0, |t| (t.as_millis() as u64).max(1)),
        })
    }
}

/// Why a hook failed, as one i32 (the errno word of the child's report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookOutcome {
    /// It exited with this status (127: its path could not be exec'd).
    Exited(i32),
    /// A signal killed it.
    Killed(i32),
    /// It ran past its timeout and was killed.
    TimedOut,
    /// It could not be started: pipe, write or clone failed with errno.
    Failed(i32),
}

impl HookOutcome {
    pub fn code(self) -> i32 {
        match self {
            Self::Exited(status) => status & 0xff,
            Self::Killed(signal) => 0x100 | (signal & 0xff),
            Self::TimedOut => 0x200,
            Self::Failed(errno) => 0x1000 | (errno & 0xfff),
        }
    }

    pub fn from_code(code: i32) -> Self {
        match code {
            0x1000.. => Self::Failed(code & 0xfff),
            0x200 => Self::TimedOut,
            0x100..=0x1ff => Self::Killed(code & 0xff),
            _ => Self::Exited(code),
        }
    }
}

impl std::fmt::Display for HookOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exited(127) => write!(f, "exited with status 127 (not found or not executable?)"),
            Self::Exited(status) => write!(f, "exited with status {status}"),
            Self::Killed(signal) => write!(f, "killed by signal {signal}"),
            Self::TimedOut => write!(f, "timed out"),
            Self::Failed(errno) => write!(
                f,
                "could not be started: {}",
                std::io::Error::from_raw_os_error(*errno)
            ),
        }
    }
}

/// The pid as decimal digits, on the stack: (buffer, length).
pub fn pid_digits(mut pid: u32) -> ([u8; 10], usize) {
    let mut reversed = [0u8; 10];
    let mut count = 0;
    loop {
        reversed[count] = b'0' + (pid % 10) as u8;
        count += 1;
        pid /= 10;
        if pid == 0 {
            break;
        }
    }
    let mut digits = [0u8; 10];
    for i in 0..count {
        digits[i] = reversed[count - 1 - i];
    }
    (digits, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_survive_their_code() {
        for outcome in [
            HookOutcome::Exited(1),
            HookOutcome::Exited(127),
            HookOutcome::Killed(9),
            HookOutcome::TimedOut,
            HookOutcome::Failed(libc::EMFILE),
        ] {
            assert_eq!(HookOutcome::from_code(outcome.code()), outcome);
        }
        assert_eq!(HookOutcome::TimedOut.to_string(), "timed out");
    }

    #[test]
    fn pids_print_as_decimal() {
        for pid in [0u32, 7, 42, 1234567, u32::MAX] {
            let (digits, len) = pid_digits(pid);
            assert_eq!(
                std::str::from_utf8(&digits[..len]).unwrap(),
                pid.to_string()
            );
        }
    }

    #[test]
    fn hooks_get_their_path_as_argv0_and_a_timeout() {
        let hook = PreparedHook::new(&HookSpec {
            path: "/bin/h".into(),
            args: vec![],
            env: vec!["A=1".into()],
            timeout: Some(Duration::from_secs(2)),
        })
        .unwrap();
        assert_eq!(hook.argv.len(), 2);
        assert!(hook.argv[1].is_null());
        assert_eq!(hook.envp.len(), 2);
        assert_eq!(hook.timeout_ms, 2000);
        let bad = HookSpec {
            path: "/bin/\0".into(),
            args: vec![],
            env: vec![],
            timeout: None,
        };
        assert!(PreparedHook::new(&bad).is_none());
    }
}
