//! Per-thread seccomp filters, compiled at start-up with `seccompiler`
//! (Firecracker's model: an allow list per thread kind, with argument
//! checks where the arguments say something). Three kinds of thread run
//! once the guest does:
//!
//! - a **vCPU** thread: `ioctl` only on its own vCPU fd and only KVM_RUN
//!   and the state reads a snapshot makes; device emulation (writes to
//!   the console and to eventfds, closing vsock streams on a device
//!   reset), locks, memory.
//! - the **event loop** (the main thread): epoll, I/O on the fds it owns,
//!   `accept4` on its listeners, snapshots into files it is handed, the
//!   VM's state reads on the VM fd, kicking vCPUs. No `socket`,
//!   `connect`, `bind`, `open*`, `unlink*`, `mkdir*`, `rename*`.
//! - the **host-fs** thread (`hostfs`): the only one that names host
//!   paths, for the event loop: opening a disk or snapshot file with
//!   fixed flags, making the snapshot directory, renaming and unlinking,
//!   and connecting unix sockets (`AF_UNIX` stream sockets only) for
//!   guest-initiated vsock streams. Its paths are bounded by the jail.
//!
//! Every kind shares `common()`: memory without `PROT_EXEC`, a few futex
//! operations, signals only for aborting on a bug and only to this
//! process, time, exiting. A
//! forbidden call traps: the SIGSYS handler writes one line naming the
//! thread and the call, and the process then dies of SIGSYS.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::os::fd::RawFd;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// Errors while building or installing a filter.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The rules did not compile.
    #[error("cannot build a seccomp filter: {0}")]
    Build(String),
    /// The kernel refused the filter.
    #[error("cannot install the seccomp filter: {0}")]
    Install(String),
    /// The SIGSYS handler could not be installed.
    #[error("cannot install the SIGSYS handler")]
    Handler(#[source] std::io::Error),
}

/// A compiled filter.
pub type Filter = BpfProgram;

/// The thread kinds, as the SIGSYS line names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A vCPU thread.
    Vcpu,
    /// The device event loop (main thread).
    EventLoop,
    /// The host-fs helper thread.
    HostFs,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Vcpu => "vCPU",
            Kind::EventLoop => "event loop",
            Kind::HostFs => "host-fs",
        }
    }
}

const KVM_RUN: u64 = 0xae80;
const FIONBIO: u64 = 0x5421;

/// The KVM ioctls made after start-up: the vCPU state reads (on each
/// vCPU's own thread, for a snapshot) and the VM state reads (on the
/// event loop).
mod kvm_nr {
    use kvm_bindings::*;
    use vmm_sys_util::{ioctl_io_nr, ioctl_ior_nr, ioctl_iowr_nr};
    ioctl_ior_nr!(KVM_GET_REGS, KVMIO, 0x81, kvm_regs);
    ioctl_ior_nr!(KVM_GET_SREGS, KVMIO, 0x83, kvm_sregs);
    ioctl_iowr_nr!(KVM_GET_MSRS, KVMIO, 0x88, kvm_msrs);
    ioctl_ior_nr!(KVM_GET_LAPIC, KVMIO, 0x8e, kvm_lapic_state);
    ioctl_iowr_nr!(KVM_GET_CPUID2, KVMIO, 0x91, kvm_cpuid2);
    ioctl_ior_nr!(KVM_GET_MP_STATE, KVMIO, 0x98, kvm_mp_state);
    ioctl_ior_nr!(KVM_GET_VCPU_EVENTS, KVMIO, 0x9f, kvm_vcpu_events);
    ioctl_ior_nr!(KVM_GET_DEBUGREGS, KVMIO, 0xa1, kvm_debugregs);
    ioctl_io_nr!(KVM_GET_TSC_KHZ, KVMIO, 0xa3);
    ioctl_ior_nr!(KVM_GET_XSAVE, KVMIO, 0xa4, kvm_xsave);
    ioctl_ior_nr!(KVM_GET_XCRS, KVMIO, 0xa6, kvm_xcrs);
    ioctl_ior_nr!(KVM_GET_XSAVE2, KVMIO, 0xcf, kvm_xsave);
    ioctl_iowr_nr!(KVM_GET_IRQCHIP, KVMIO, 0x62, kvm_irqchip);
    ioctl_ior_nr!(KVM_GET_PIT2, KVMIO, 0x9f, kvm_pit_state2);
    ioctl_ior_nr!(KVM_GET_CLOCK, KVMIO, 0x7c, kvm_clock_data);

    fn low(nrs: &[libc::c_ulong]) -> Vec<u64> {
        nrs.iter().map(|n| u64::from(*n as u32)).collect()
    }

    /// A vCPU thread saving its own state.
    pub fn vcpu_save() -> Vec<u64> {
        low(&[
            KVM_GET_REGS(),
            KVM_GET_SREGS(),
            KVM_GET_MSRS(),
            KVM_GET_LAPIC(),
            KVM_GET_CPUID2(),
            KVM_GET_MP_STATE(),
            KVM_GET_VCPU_EVENTS(),
            KVM_GET_DEBUGREGS(),
            KVM_GET_TSC_KHZ(),
            KVM_GET_XSAVE(),
            KVM_GET_XCRS(),
            KVM_GET_XSAVE2(),
        ])
    }

    /// The event loop saving the VM's state.
    pub fn vm_save() -> Vec<u64> {
        low(&[KVM_GET_IRQCHIP(), KVM_GET_PIT2(), KVM_GET_CLOCK()])
    }
}

/// One argument test: argument index, operator, value (32-bit compares:
/// every argument checked here is an int, a flag word or an ioctl number).
type Cond = (u8, SeccompCmpOp, u64);

/// A filter's rules as they are collected.
#[derive(Default)]
struct Rules(BTreeMap<i64, Vec<SeccompRule>>);

impl Rules {
    /// Allows each of `nrs` whatever its arguments.
    fn allow(&mut self, nrs: &[i64]) -> &mut Self {
        for nr in nrs {
            self.0.insert(*nr, Vec::new());
        }
        self
    }

    /// Allows `nr` when every test in one of `alternatives` holds.
    fn allow_if(&mut self, nr: i64, alternatives: &[&[Cond]]) -> Result<&mut Self, Error> {
        let rules = self.0.entry(nr).or_default();
        for conds in alternatives {
            let conds = conds
                .iter()
                .map(|(arg, op, val)| {
                    SeccompCondition::new(*arg, SeccompCmpArgLen::Dword, op.clone(), *val)
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Error::Build(e.to_string()))?;
            rules.push(SeccompRule::new(conds).map_err(|e| Error::Build(e.to_string()))?);
        }
        Ok(self)
    }

    /// Allows `nr` when argument `arg` is one of `values`.
    fn allow_arg_in(&mut self, nr: i64, arg: u8, values: &[u64]) -> Result<&mut Self, Error> {
        let alts: Vec<[Cond; 1]> = values
            .iter()
            .map(|v| [(arg, SeccompCmpOp::Eq, *v)])
            .collect();
        let refs: Vec<&[Cond]> = alts.iter().map(|a| &a[..]).collect();
        self.allow_if(nr, &refs)
    }

    /// Allows `ioctl(fd, request)` for each request in `requests`.
    fn allow_ioctls_on(&mut self, fd: RawFd, requests: &[u64]) -> Result<&mut Self, Error> {
        let alts: Vec<[Cond; 2]> = requests
            .iter()
            .map(|r| {
                [
                    (0, SeccompCmpOp::Eq, u64::from(fd as u32)),
                    (1, SeccompCmpOp::Eq, *r),
                ]
            })
            .collect();
        let refs: Vec<&[Cond]> = alts.iter().map(|a| &a[..]).collect();
        self.allow_if(libc::SYS_ioctl, &refs)
    }

    fn compile(self) -> Result<Filter, Error> {
        let f = SeccompFilter::new(
            self.0,
            SeccompAction::Trap,
            SeccompAction::Allow,
            TargetArch::x86_64,
        )
        .map_err(|e| Error::Build(e.to_string()))?;
        f.try_into()
            .map_err(|e: seccompiler::BackendError| Error::Build(e.to_string()))
    }
}

const PROT_EXEC: u64 = libc::PROT_EXEC as u64;
/// The futex operations std and glibc use: (private) wait, wake and
/// bitset wait (std's timed waits, glibc's with CLOCK_REALTIME).
const FUTEX_OPS: &[u64] = &[0, 1, 128, 129, 137, 393];
/// Signals a thread may send itself: SIGABRT (abort on a bug) and SIGSYS
/// (the trap handler ending the process).
const SELF_SIGNALS: &[u64] = &[libc::SIGABRT as u64, libc::SIGSYS as u64];

/// What every thread may do: memory management for the allocator (never
/// executable), locks, the signals of aborting, time, logging, exiting.
fn common() -> Result<Rules, Error> {
    let mut r = Rules::default();
    r.allow(&[
        libc::SYS_brk,
        libc::SYS_munmap,
        libc::SYS_mremap,
        libc::SYS_madvise,
        libc::SYS_sched_yield,
        libc::SYS_rt_sigprocmask,
        libc::SYS_rt_sigreturn,
        libc::SYS_sigaltstack,
        libc::SYS_clock_gettime,
        libc::SYS_clock_nanosleep,
        libc::SYS_nanosleep,
        libc::SYS_restart_syscall,
        libc::SYS_getrandom,
        libc::SYS_write,
        libc::SYS_writev,
        libc::SYS_close,
        libc::SYS_exit,
        libc::SYS_exit_group,
        libc::SYS_getpid,
        libc::SYS_gettid,
    ]);
    let no_exec: &[Cond] = &[(2, SeccompCmpOp::MaskedEq(PROT_EXEC), 0)];
    r.allow_if(libc::SYS_mmap, &[no_exec])?
        .allow_if(libc::SYS_mprotect, &[no_exec])?
        .allow_arg_in(libc::SYS_futex, 1, FUTEX_OPS)?
        .allow_arg_in(libc::SYS_rt_sigaction, 0, &[libc::SIGABRT as u64])?
        // Reading an fd's flags (std checks an fd is open as it drops it).
        .allow_arg_in(
            libc::SYS_fcntl,
            1,
            &[libc::F_GETFD as u64, libc::F_GETFL as u64],
        )?;
    Ok(r)
}

/// `tgkill(pid, tid, sig)` for `sig` in `signals`, to threads of this
/// process only (the filter is compiled by the process that installs it).
fn allow_tgkill(r: &mut Rules, signals: &[u64]) -> Result<(), Error> {
    let pid = u64::from(std::process::id());
    let alts: Vec<[Cond; 2]> = signals
        .iter()
        .map(|s| [(0, SeccompCmpOp::Eq, pid), (2, SeccompCmpOp::Eq, *s)])
        .collect();
    let refs: Vec<&[Cond]> = alts.iter().map(|a| &a[..]).collect();
    r.allow_if(libc::SYS_tgkill, &refs)?;
    Ok(())
}

/// The filter of the vCPU thread whose vCPU fd is `vcpu_fd`.
pub fn vcpu_filter(vcpu_fd: RawFd) -> Result<Filter, Error> {
    let mut r = common()?;
    let mut ioctls = vec![KVM_RUN];
    ioctls.extend(kvm_nr::vcpu_save());
    r.allow_ioctls_on(vcpu_fd, &ioctls)?;
    allow_tgkill(&mut r, SELF_SIGNALS)?;
    r.compile()
}

/// The filter of the event loop thread, on a VM whose fd is `vm_fd`;
/// `kick` is the signal that stops a vCPU.
pub fn event_loop_filter(vm_fd: RawFd, kick: libc::c_int) -> Result<Filter, Error> {
    let mut r = common()?;
    r.allow(&[
        libc::SYS_epoll_wait,
        libc::SYS_epoll_pwait,
        libc::SYS_epoll_ctl,
        libc::SYS_read,
        libc::SYS_readv,
        libc::SYS_pread64,
        libc::SYS_preadv,
        libc::SYS_pwrite64,
        libc::SYS_pwritev,
        libc::SYS_recvfrom,
        libc::SYS_sendto,
        libc::SYS_shutdown,
        libc::SYS_fsync,
        libc::SYS_fdatasync,
        libc::SYS_ftruncate,
        libc::SYS_lseek,
        libc::SYS_fstat,
    ]);
    // Rate limiter timers (made before the filter), relative times only.
    r.allow_arg_in(libc::SYS_timerfd_settime, 1, &[0])?;
    // New connections on the listeners it owns, close-on-exec as std asks.
    r.allow_arg_in(libc::SYS_accept4, 3, &[libc::SOCK_CLOEXEC as u64])?;
    // Accepted streams made non-blocking (std's set_nonblocking).
    r.allow_arg_in(libc::SYS_ioctl, 1, &[FIONBIO])?;
    r.allow_ioctls_on(vm_fd, &kvm_nr::vm_save())?;
    // fstat through statx or fstatat on an fd: the empty path only.
    let empty_path: &[Cond] = &[(
        2,
        SeccompCmpOp::MaskedEq(libc::AT_EMPTY_PATH as u64),
        libc::AT_EMPTY_PATH as u64,
    )];
    r.allow_if(libc::SYS_statx, &[empty_path])?.allow_if(
        libc::SYS_newfstatat,
        &[&[(
            3,
            SeccompCmpOp::MaskedEq(libc::AT_EMPTY_PATH as u64),
            libc::AT_EMPTY_PATH as u64,
        )]],
    )?;
    let mut signals = SELF_SIGNALS.to_vec();
    signals.push(kick as u64);
    allow_tgkill(&mut r, &signals)?;
    r.compile()
}

/// The `openat` flags the host-fs thread uses: a disk read-only or
/// read-write, a new snapshot file (std adds O_CLOEXEC to every open).
const OPEN_FLAGS: &[libc::c_int] = &[
    libc::O_RDONLY | libc::O_CLOEXEC,
    libc::O_RDWR | libc::O_CLOEXEC,
    libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
];

/// The filter of the host-fs thread.
pub fn host_fs_filter() -> Result<Filter, Error> {
    let mut r = common()?;
    r.allow(&[
        libc::SYS_mkdir,
        libc::SYS_mkdirat,
        libc::SYS_rename,
        libc::SYS_renameat,
        libc::SYS_renameat2,
        libc::SYS_unlink,
        libc::SYS_statx,
        libc::SYS_newfstatat,
        libc::SYS_connect,
    ]);
    let flags: Vec<u64> = OPEN_FLAGS.iter().map(|f| *f as u64).collect();
    r.allow_arg_in(libc::SYS_openat, 2, &flags)?;
    r.allow_arg_in(libc::SYS_unlinkat, 2, &[0])?;
    r.allow_if(
        libc::SYS_socket,
        &[&[
            (0, SeccompCmpOp::Eq, libc::AF_UNIX as u64),
            (
                1,
                SeccompCmpOp::Eq,
                (libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) as u64,
            ),
            (2, SeccompCmpOp::Eq, 0),
        ]],
    )?;
    allow_tgkill(&mut r, SELF_SIGNALS)?;
    r.compile()
}

thread_local! {
    /// The kind of filter this thread runs under, for the SIGSYS line.
    static KIND: Cell<Option<Kind>> = const { Cell::new(None) };
}

/// Installs `filter` (of a thread of `kind`) on the calling thread and
/// the threads it spawns later.
pub fn apply(kind: Kind, filter: &Filter) -> Result<(), Error> {
    KIND.with(|k| k.set(Some(kind)));
    seccompiler::apply_filter(filter).map_err(|e| Error::Install(e.to_string()))
}

/// Writes `n` in decimal at the start of `buf`; returns the length.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> usize {
    let mut tmp = [0u8; 20];
    let mut len = 0;
    loop {
        tmp[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        buf[i] = tmp[len - 1 - i];
    }
    len
}

/// The kernel's `siginfo` for SIGSYS: the `_sigsys` member of the union.
#[repr(C)]
struct SigsysInfo {
    signo: libc::c_int,
    errno: libc::c_int,
    code: libc::c_int,
    _pad: libc::c_int,
    call_addr: *mut libc::c_void,
    syscall: libc::c_int,
    arch: libc::c_uint,
}

extern "C" fn on_sigsys(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo; for a seccomp trap its
    // union holds `_sigsys`, which `SigsysInfo` lays out.
    let nr = unsafe { (*info.cast::<SigsysInfo>()).syscall };
    let kind = KIND
        .try_with(|k| k.get())
        .ok()
        .flatten()
        .map_or("unfiltered", Kind::name);
    let mut line = [0u8; 160];
    let mut len = 0;
    let mut put = |s: &[u8]| {
        let n = s.len().min(line.len() - len);
        line[len..len + n].copy_from_slice(&s[..n]);
        len += n;
    };
    let mut digits = [0u8; 20];
    let d = decimal(nr as u64, &mut digits);
    put(b"hull-vmm: seccomp: the ");
    put(kind.as_bytes());
    put(b" thread made forbidden system call ");
    put(&digits[..d]);
    put(b"; ending the VM\n");
    // SAFETY: write and tgkill are async-signal-safe; `line` holds `len`
    // initialised bytes. The handler was installed with SA_RESETHAND, so
    // the SIGSYS sent here (pending until the handler returns) takes the
    // default action: the process dies of SIGSYS.
    unsafe {
        libc::write(libc::STDERR_FILENO, line.as_ptr().cast(), len);
        libc::syscall(
            libc::SYS_tgkill,
            libc::getpid(),
            libc::syscall(libc::SYS_gettid),
            libc::SIGSYS,
        );
    }
}

/// Installs the SIGSYS handler that reports a forbidden call (once per
/// process, before any filter is applied).
pub fn install_sigsys_handler() -> Result<(), Error> {
    // SAFETY: a zeroed sigaction is valid; the handler only makes
    // async-signal-safe calls; `act` outlives the call.
    let r = unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = on_sigsys as *const () as usize;
        act.sa_flags = libc::SA_SIGINFO | libc::SA_RESETHAND;
        libc::sigemptyset(&mut act.sa_mask);
        libc::sigaction(libc::SIGSYS, &act, std::ptr::null_mut())
    };
    if r != 0 {
        return Err(Error::Handler(std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    /// How a child that ran `body` under `filter` ended, and its stderr.
    enum End {
        Exited(i32),
        Signalled(i32),
    }

    /// A filter compiled in the child (it names the child's pid).
    type MakeFilter<'a> = &'a dyn Fn() -> Filter;

    /// Forks; the child compiles `filter` and installs it (as a thread of
    /// `kind`) with the SIGSYS handler, runs `body` and exits 0. (glibc's
    /// malloc is usable in a child forked from threads.)
    fn in_child(kind: Kind, filter: MakeFilter<'_>, body: impl FnOnce()) -> (End, String) {
        let mut fds = [0; 2];
        // SAFETY: pipe writes two fds into `fds`.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: both fds were just created and are owned here only.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: fork in a test; the child makes only raw syscalls and
        // calls that do not allocate before _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: dup2 onto stderr in the child; _exit ends it
            // without running the parent's destructors.
            unsafe {
                libc::dup2(w.as_raw_fd(), libc::STDERR_FILENO);
                let filter = filter();
                if install_sigsys_handler().is_err() || apply(kind, &filter).is_err() {
                    libc::_exit(3);
                }
                body();
                libc::_exit(0);
            }
        }
        drop(w);
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        let mut err = String::new();
        std::fs::File::from(r).read_to_string(&mut err).unwrap();
        let end = if libc::WIFSIGNALED(status) {
            End::Signalled(libc::WTERMSIG(status))
        } else {
            End::Exited(libc::WEXITSTATUS(status))
        };
        (end, err)
    }

    fn assert_allowed(kind: Kind, filter: MakeFilter<'_>, what: &str, body: impl FnOnce()) {
        match in_child(kind, filter, body) {
            (End::Exited(0), _) => {}
            (End::Exited(c), e) => panic!("{what}: child exited {c}: {e}"),
            (End::Signalled(s), e) => panic!("{what}: child killed by signal {s}: {e}"),
        }
    }

    fn assert_forbidden(
        kind: Kind,
        filter: MakeFilter<'_>,
        what: &str,
        nr: i64,
        body: impl FnOnce(),
    ) {
        match in_child(kind, filter, body) {
            (End::Signalled(s), e) => {
                assert_eq!(s, libc::SIGSYS, "{what}: {e}");
                let want = format!(
                    "hull-vmm: seccomp: the {} thread made forbidden system call {nr}; ending the VM\n",
                    kind.name()
                );
                assert_eq!(e, want, "{what}");
            }
            (End::Exited(c), e) => panic!("{what} was allowed (child exited {c}): {e}"),
        }
    }

    /// A raw syscall made only to see whether the filter lets it through
    /// (its result does not matter).
    fn sys(nr: i64, a: [libc::c_long; 4]) {
        // SAFETY: the tests pass bad fds, null pointers, pointers to live
        // C strings, or null buffers of length 0: the kernel writes no
        // memory of ours; at worst it maps a fresh page.
        unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3]) };
    }

    fn path(p: &std::ffi::CStr) -> libc::c_long {
        p.as_ptr() as libc::c_long
    }

    const AT_FDCWD: libc::c_long = libc::AT_FDCWD as libc::c_long;
    /// A pid no process has (above pid_max), should a call get through.
    const NO_PID: libc::c_long = i32::MAX as libc::c_long;

    #[test]
    fn filters_compile() {
        assert!(!vcpu_filter(5).unwrap().is_empty());
        assert!(!event_loop_filter(4, 34).unwrap().is_empty());
        assert!(!host_fs_filter().unwrap().is_empty());
    }

    #[test]
    fn a_vcpu_thread_runs_ioctls_only_on_its_own_fd() {
        let f = || vcpu_filter(100).unwrap();
        let k = Kind::Vcpu;
        let run = KVM_RUN as libc::c_long;
        // The kernel answers EBADF: the filter let it through.
        assert_allowed(k, &f, "KVM_RUN on its fd", || {
            sys(libc::SYS_ioctl, [100, run, 0, 0])
        });
        let regs = kvm_nr::vcpu_save()[0] as libc::c_long;
        assert_allowed(k, &f, "a state read on its fd", || {
            sys(libc::SYS_ioctl, [100, regs, 0, 0])
        });
        assert_allowed(k, &f, "write, futex wake, close", || {
            sys(libc::SYS_write, [-1, 0, 0, 0]);
            sys(libc::SYS_futex, [0, 129, 0, 0]);
            sys(libc::SYS_close, [-1, 0, 0, 0]);
        });
        assert_forbidden(k, &f, "KVM_RUN on another fd", libc::SYS_ioctl, || {
            sys(libc::SYS_ioctl, [101, run, 0, 0])
        });
        assert_forbidden(k, &f, "another ioctl on its fd", libc::SYS_ioctl, || {
            sys(libc::SYS_ioctl, [100, 0xae9a, 0, 0]) // KVM_SET_MSRS-ish
        });
        assert_forbidden(k, &f, "openat", libc::SYS_openat, || {
            sys(libc::SYS_openat, [AT_FDCWD, path(c"/"), 0, 0])
        });
        assert_forbidden(k, &f, "read", libc::SYS_read, || {
            sys(libc::SYS_read, [-1, 0, 0, 0])
        });
        assert_forbidden(k, &f, "socket", libc::SYS_socket, || {
            sys(
                libc::SYS_socket,
                [libc::AF_UNIX as _, libc::SOCK_STREAM as _, 0, 0],
            )
        });
        assert_forbidden(k, &f, "a futex requeue", libc::SYS_futex, || {
            sys(libc::SYS_futex, [0, 3, 0, 0]) // FUTEX_REQUEUE
        });
        assert_forbidden(k, &f, "executable memory", libc::SYS_mmap, || {
            sys(
                libc::SYS_mmap,
                [0, 4096, (libc::PROT_READ | libc::PROT_EXEC) as _, 0x22],
            )
        });
    }

    #[test]
    fn the_event_loop_opens_and_connects_nothing() {
        let f = || event_loop_filter(100, 34).unwrap();
        let k = Kind::EventLoop;
        let clock = kvm_nr::vm_save()[2] as libc::c_long;
        assert_allowed(k, &f, "I/O on its fds, the VM's state, kicks", || {
            sys(libc::SYS_read, [-1, 0, 0, 0]);
            sys(libc::SYS_pwrite64, [-1, 0, 0, 0]);
            sys(libc::SYS_epoll_ctl, [-1, 0, 0, 0]);
            sys(libc::SYS_accept4, [-1, 0, 0, libc::SOCK_CLOEXEC as _]);
            sys(libc::SYS_ioctl, [100, clock, 0, 0]);
            sys(libc::SYS_ioctl, [7, FIONBIO as _, 0, 0]);
            // SAFETY: getpid has no preconditions.
            let me = unsafe { libc::getpid() } as libc::c_long;
            sys(libc::SYS_tgkill, [me, -1, 34, 0]);
            sys(libc::SYS_tgkill, [me, -1, libc::SIGABRT as _, 0]);
            sys(libc::SYS_statx, [3, path(c""), libc::AT_EMPTY_PATH as _, 0]);
        });
        for (what, nr, args) in [
            (
                "socket",
                libc::SYS_socket,
                [libc::AF_UNIX as _, libc::SOCK_STREAM as _, 0, 0],
            ),
            ("connect", libc::SYS_connect, [-1, 0, 0, 0]),
            ("bind", libc::SYS_bind, [-1, 0, 0, 0]),
            ("unlink", libc::SYS_unlink, [path(c"/nonexistent"), 0, 0, 0]),
            (
                "unlinkat",
                libc::SYS_unlinkat,
                [AT_FDCWD, path(c"/nonexistent"), 0, 0],
            ),
            ("open", libc::SYS_open, [path(c"/"), 0, 0, 0]),
            ("openat", libc::SYS_openat, [AT_FDCWD, path(c"/"), 0, 0]),
            ("mkdir", libc::SYS_mkdir, [path(c"/nonexistent"), 0, 0, 0]),
            (
                "rename",
                libc::SYS_rename,
                [path(c"/nonexistent"), path(c"/x"), 0, 0],
            ),
            (
                "a path statx",
                libc::SYS_statx,
                [AT_FDCWD, path(c"/"), 0, 0],
            ),
            ("sendmsg", libc::SYS_sendmsg, [-1, 0, 0, 0]),
            ("accept4 without CLOEXEC", libc::SYS_accept4, [-1, 0, 0, 0]),
            (
                "a KVM ioctl on another fd",
                libc::SYS_ioctl,
                [101, clock, 0, 0],
            ),
            ("KVM_RUN", libc::SYS_ioctl, [100, KVM_RUN as _, 0, 0]),
            (
                "another signal",
                libc::SYS_tgkill,
                [-1, -1, libc::SIGKILL as _, 0],
            ),
            (
                "the kick signal to another process",
                libc::SYS_tgkill,
                [NO_PID, NO_PID, 34, 0],
            ),
            ("kill", libc::SYS_kill, [NO_PID, libc::SIGABRT as _, 0, 0]),
            ("execve", libc::SYS_execve, [path(c"/bin/true"), 0, 0, 0]),
        ] {
            assert_forbidden(k, &f, what, nr, || sys(nr, args));
        }
    }

    #[test]
    fn the_host_fs_thread_opens_with_fixed_flags_and_makes_only_unix_sockets() {
        let f = || host_fs_filter().unwrap();
        let k = Kind::HostFs;
        let dir = tempfile::tempdir().unwrap();
        let file =
            std::ffi::CString::new(dir.path().join("f").into_os_string().into_encoded_bytes())
                .unwrap();
        let p = file.as_ptr() as libc::c_long;
        let create = (libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC) as _;
        let stream = (libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) as _;
        assert_allowed(k, &f, "open, unlink, a unix socket", || {
            sys(libc::SYS_openat, [AT_FDCWD, p, create, 0o600]);
            sys(libc::SYS_openat, [AT_FDCWD, p, libc::O_CLOEXEC as _, 0]);
            sys(libc::SYS_unlink, [p, 0, 0, 0]);
            sys(libc::SYS_socket, [libc::AF_UNIX as _, stream, 0, 0]);
            sys(libc::SYS_connect, [-1, 0, 0, 0]);
        });
        assert!(!dir.path().join("f").exists(), "the allowed calls ran");
        for (what, nr, args) in [
            (
                "an inet socket",
                libc::SYS_socket,
                [libc::AF_INET as _, stream, 0, 0],
            ),
            (
                "a datagram socket",
                libc::SYS_socket,
                [
                    libc::AF_UNIX as _,
                    (libc::SOCK_DGRAM | libc::SOCK_CLOEXEC) as _,
                    0,
                    0,
                ],
            ),
            (
                "openat for appending",
                libc::SYS_openat,
                [
                    AT_FDCWD,
                    p,
                    (libc::O_WRONLY | libc::O_APPEND | libc::O_CLOEXEC) as _,
                    0,
                ],
            ),
            (
                "openat without CLOEXEC",
                libc::SYS_openat,
                [AT_FDCWD, p, 0, 0],
            ),
            ("ioctl", libc::SYS_ioctl, [0, FIONBIO as _, 0, 0]),
            ("read", libc::SYS_read, [-1, 0, 0, 0]),
            ("bind", libc::SYS_bind, [-1, 0, 0, 0]),
            ("execve", libc::SYS_execve, [path(c"/bin/true"), 0, 0, 0]),
        ] {
            assert_forbidden(k, &f, what, nr, || sys(nr, args));
        }
    }

    #[test]
    fn decimal_digits() {
        let mut b = [0u8; 20];
        let n = decimal(0, &mut b);
        assert_eq!(&b[..n], b"0");
        let n = decimal(u64::MAX, &mut b);
        assert_eq!(&b[..n], u64::MAX.to_string().as_bytes());
    }
}
