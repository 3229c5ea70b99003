//! Per-thread seccomp filters, compiled at start-up with `seccompiler`
//! (Firecracker's model: an allow list per thread kind, anything else
//! kills the process). A vCPU thread only runs KVM_RUN, talks to device
//! emulation and reads its own state for a snapshot; the event loop
//! thread does device I/O on fds it already owns or that vsock and the
//! control API open (unix sockets), and writes snapshots (files, the VM's
//! state ioctls).

use std::collections::BTreeMap;

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
}

/// A compiled filter.
pub type Filter = BpfProgram;

const KVM_RUN: u64 = 0xae80;
const FIONBIO: u64 = 0x5421;

/// The KVM ioctls a snapshot makes after start-up: the vCPU state reads
/// (on each vCPU's own thread) and the VM state reads (on the event loop).
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

    /// A vCPU thread saving its own state.
    pub fn vcpu_save() -> Vec<u64> {
        [
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
        ]
        .iter()
        .map(|n| u64::from(*n as u32))
        .collect()
    }

    /// The event loop saving the VM's state.
    pub fn vm_save() -> Vec<u64> {
        [KVM_GET_IRQCHIP(), KVM_GET_PIT2(), KVM_GET_CLOCK()]
            .iter()
            .map(|n| u64::from(*n as u32))
            .collect()
    }
}

/// Syscalls every hull thread may make: memory management for the
/// allocator, locks, signals, time, exiting, and aborting on a bug.
const COMMON: &[i64] = &[
    libc::SYS_brk,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_madvise,
    libc::SYS_mprotect,
    libc::SYS_futex,
    libc::SYS_sched_yield,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_getrandom,
    libc::SYS_write,
    libc::SYS_writev,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_tgkill,
];

/// Extra syscalls of the event loop (main) thread.
const EVENT_LOOP: &[i64] = &[
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_ctl,
    libc::SYS_read,
    libc::SYS_readv,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_fdatasync,
    libc::SYS_fsync,
    libc::SYS_close,
    libc::SYS_fcntl,
    libc::SYS_recvfrom,
    libc::SYS_sendto,
    libc::SYS_recvmsg,
    libc::SYS_sendmsg,
    libc::SYS_socket,
    libc::SYS_connect,
    libc::SYS_accept4,
    libc::SYS_shutdown,
    libc::SYS_unlink,
    // Writing a snapshot (control API).
    libc::SYS_openat,
    libc::SYS_mkdir,
    libc::SYS_mkdirat,
    libc::SYS_ftruncate,
    libc::SYS_rename,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_statx,
    libc::SYS_fstat,
    libc::SYS_newfstatat,
    libc::SYS_lseek,
];

fn ioctl_rule(requests: &[u64]) -> Result<Vec<SeccompRule>, Error> {
    requests
        .iter()
        .map(|r| {
            let c = SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, *r)
                .map_err(|e| Error::Build(e.to_string()))?;
            SeccompRule::new(vec![c]).map_err(|e| Error::Build(e.to_string()))
        })
        .collect()
}

fn compile(extra: &[i64], ioctls: &[u64]) -> Result<Filter, Error> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for s in COMMON.iter().chain(extra) {
        rules.insert(*s, vec![]);
    }
    rules.insert(libc::SYS_ioctl, ioctl_rule(ioctls)?);
    let f = SeccompFilter::new(
        rules,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        TargetArch::x86_64,
    )
    .map_err(|e| Error::Build(e.to_string()))?;
    f.try_into()
        .map_err(|e: seccompiler::BackendError| Error::Build(e.to_string()))
}

/// The filter of a vCPU thread: KVM_RUN, the state reads of a snapshot,
/// and what device emulation needs (writes to the console and eventfds,
/// locks, memory).
pub fn vcpu_filter() -> Result<Filter, Error> {
    let mut ioctls = vec![KVM_RUN];
    ioctls.extend(kvm_nr::vcpu_save());
    compile(&[], &ioctls)
}

/// The filter of the event loop thread.
pub fn event_loop_filter() -> Result<Filter, Error> {
    let mut ioctls = vec![FIONBIO];
    ioctls.extend(kvm_nr::vm_save());
    compile(EVENT_LOOP, &ioctls)
}

/// Installs `filter` on the calling thread (and threads it spawns later).
pub fn apply(filter: &Filter) -> Result<(), Error> {
    seccompiler::apply_filter(filter).map_err(|e| Error::Install(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_compile() {
        assert!(!vcpu_filter().unwrap().is_empty());
        assert!(event_loop_filter().unwrap().len() > vcpu_filter().unwrap().len());
    }

    #[test]
    fn a_forbidden_syscall_kills_the_thread_group() {
        // Run in a child process: the filter kills it on openat.
        // SAFETY: fork in a test; the child only applies the filter and
        // makes raw syscalls before _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let f = vcpu_filter().unwrap();
            if apply(&f).is_err() {
                // SAFETY: ends the child without running destructors.
                unsafe { libc::_exit(3) };
            }
            // SAFETY: raw syscalls with valid arguments.
            unsafe {
                libc::syscall(libc::SYS_getpid);
                libc::syscall(libc::SYS_openat, libc::AT_FDCWD, c"/".as_ptr(), 0);
                libc::_exit(0);
            }
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(
            libc::WIFSIGNALED(status),
            "child was not killed: {status:#x}"
        );
        assert_eq!(libc::WTERMSIG(status), libc::SIGSYS);
    }
}
