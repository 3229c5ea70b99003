//! Compiles a seccomp policy (the OCI runtime spec's `linux.seccomp`) into a
//! classic BPF program for `seccomp(SECCOMP_SET_MODE_FILTER)`.
//!
//! The shape is libseccomp's linear one: check the architecture, then one
//! `jeq nr` per syscall that has rules, each jumping to a block that tries
//! the syscall's rules in order (argument checks ANDed within a rule) and
//! falls back to the default action. 64-bit argument comparisons are done
//! on both 32-bit halves.

use thiserror::Error;

use super::syscalls;

/// What the filter answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    Errno(u16),
    KillThread,
    KillProcess,
    Trap,
    Trace(u16),
    Log,
}

impl Action {
    fn ret_value(self) -> u32 {
        match self {
            Action::KillProcess => 0x8000_0000,
            Action::KillThread => 0,
            Action::Trap => 0x0003_0000,
            Action::Errno(errno) => 0x0005_0000 | u32::from(errno),
            Action::Trace(data) => 0x7ff0_0000 | u32::from(data),
            Action::Log => 0x7ffc_0000,
            Action::Allow => 0x7fff_0000,
        }
    }
}

/// How an argument is compared with a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `(arg & mask) == value`.
    MaskedEq(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgCheck {
    pub index: u8,
    pub op: Op,
    pub value: u64,
}

/// One rule: if the syscall is `nr` and every check holds, answer `action`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub nr: u32,
    pub checks: Vec<ArgCheck>,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub default: Action,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SeccompError {
    #[error("seccomp argument index {0} is out of range (0..=5)")]
    ArgIndex(u8),
    #[error("seccomp policy compiles to {0} instructions, over the kernel's 4096")]
    TooLong(usize),
    #[error("seccomp action {0} is not supported")]
    UnsupportedAction(String),
}

/// One BPF instruction, as `struct sock_filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct SockFilter {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

const LD_ABS_W: u16 = 0x20;
const JEQ: u16 = 0x15;
const JGT: u16 = 0x25;
const JGE: u16 = 0x35;
const JA: u16 = 0x05;
const RET: u16 = 0x06;
const AND: u16 = 0x54;

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;
const MAX_INSTRUCTIONS: usize = 4096;

fn stmt(code: u16, k: u32) -> SockFilter {
    SockFilter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> SockFilter {
    SockFilter { code, jt, jf, k }
}

/// An instruction whose jump may still point at "this rule failed".
#[derive(Clone, Copy)]
enum Branch {
    Rel(u8),
    Fail,
}

#[derive(Clone, Copy)]
struct Pending {
    code: u16,
    k: u32,
    jt: Branch,
    jf: Branch,
}

fn p(code: u16, k: u32, jt: Branch, jf: Branch) -> Pending {
    Pending { code, k, jt, jf }
}

fn ld(k: u32) -> Pending {
    p(LD_ABS_W, k, Branch::Rel(0), Branch::Rel(0))
}

/// Code that falls through when `check` holds and branches to Fail when not.
fn emit_check(check: &ArgCheck, out: &mut Vec<Pending>) -> Result<(), SeccompError> {
    use Branch::{Fail, Rel};
    if check.index > 5 {
        return Err(SeccompError::ArgIndex(check.index));
    }
    let low = 16 + 8 * u32::from(check.index);
    let high = low + 4;
    let (vh, vl) = ((check.value >> 32) as u32, check.value as u32);
    match check.op {
        Op::Eq => out.extend([
            ld(high),
            p(JEQ, vh, Rel(0), Fail),
            ld(low),
            p(JEQ, vl, Rel(0), Fail),
        ]),
        // Holds when either half differs.
        Op::Ne => out.extend([
            ld(high),
            p(JEQ, vh, Rel(0), Rel(2)),
            ld(low),
            p(JEQ, vl, Fail, Rel(0)),
        ]),
        Op::MaskedEq(mask) => out.extend([
            ld(high),
            p(AND, (mask >> 32) as u32, Rel(0), Rel(0)),
            p(JEQ, vh, Rel(0), Fail),
            ld(low),
            p(AND, mask as u32, Rel(0), Rel(0)),
            p(JEQ, vl, Rel(0), Fail),
        ]),
        Op::Gt | Op::Ge => {
            let last = if check.op == Op::Gt {
                p(JGT, vl, Rel(0), Fail)
            } else {
                p(JGE, vl, Rel(0), Fail)
            };
            out.extend([
                ld(high),
                p(JGT, vh, Rel(3), Rel(0)),
                p(JEQ, vh, Rel(0), Fail),
                ld(low),
                last,
            ]);
        }
        Op::Lt | Op::Le => {
            let last = if check.op == Op::Lt {
                p(JGE, vl, Fail, Rel(0))
            } else {
                p(JGT, vl, Fail, Rel(0))
            };
            out.extend([
                ld(high),
                p(JGE, vh, Rel(0), Rel(3)),
                p(JEQ, vh, Rel(0), Fail),
                ld(low),
                last,
            ]);
        }
    }
    Ok(())
}

/// Code for one syscall's rules, ending in the default action.
fn emit_block(rules: &[&Rule], default: Action) -> Result<Vec<SockFilter>, SeccompError> {
    let mut block = Vec::new();
    for rule in rules {
        let mut code = Vec::new();
        for check in &rule.checks {
            emit_check(check, &mut code)?;
        }
        code.push(p(
            RET,
            rule.action.ret_value(),
            Branch::Rel(0),
            Branch::Rel(0),
        ));
        let end = code.len();
        let resolve = |branch: Branch, at: usize| -> Result<u8, SeccompError> {
            match branch {
                Branch::Rel(n) => Ok(n),
                // "Fail" is the first instruction after this rule.
                Branch::Fail => u8::try_from(end - at - 1).map_err(|_| SeccompError::TooLong(end)),
            }
        };
        for (at, insn) in code.iter().enumerate() {
            block.push(jump(
                insn.code,
                insn.k,
                resolve(insn.jt, at)?,
                resolve(insn.jf, at)?,
            ));
        }
        if rule.checks.is_empty() {
            // Unconditional: later rules for this syscall can never match.
            return Ok(block);
        }
    }
    block.push(stmt(RET, default.ret_value()));
    Ok(block)
}

/// Compiles `policy` for x86_64.
pub fn compile(policy: &Policy) -> Result<Vec<SockFilter>, SeccompError> {
    let default = stmt(RET, policy.default.ret_value());
    let mut syscalls: Vec<u32> = policy.rules.iter().map(|r| r.nr).collect();
    syscalls.sort_unstable();
    syscalls.dedup();

    let mut blocks = Vec::new();
    for nr in &syscalls {
        let rules: Vec<&Rule> = policy.rules.iter().filter(|r| r.nr == *nr).collect();
        blocks.push(emit_block(&rules, policy.default)?);
    }

    let mut prog = vec![
        stmt(LD_ABS_W, OFFSET_ARCH),
        jump(JEQ, AUDIT_ARCH_X86_64, 1, 0),
        default,
        stmt(LD_ABS_W, OFFSET_NR),
        // x32 syscalls share numbers with offsets; refuse them outright.
        jump(JGE, X32_SYSCALL_BIT, 0, 1),
        default,
    ];
    // Dispatch: `jeq nr` then `ja block`, so block distance is unbounded.
    let dispatch_len = syscalls.len() * 2 + 1;
    let mut block_start = prog.len() + dispatch_len;
    for (i, nr) in syscalls.iter().enumerate() {
        prog.push(jump(JEQ, *nr, 0, 1));
        let ja_at = prog.len();
        prog.push(stmt(JA, (block_start - ja_at - 1) as u32));
        block_start += blocks[i].len();
    }
    prog.push(default);
    for block in blocks {
        prog.extend(block);
    }
    if prog.len() > MAX_INSTRUCTIONS {
        return Err(SeccompError::TooLong(prog.len()));
    }
    Ok(prog)
}

/// Builds a policy from the OCI spec's seccomp section. Names unknown on
/// x86_64 are skipped; entries whose arguments all test the same index are
/// ORed (one rule per argument), as runc does; otherwise ANDed.
pub fn policy_from_oci(spec: &oci_spec::runtime::LinuxSeccomp) -> Result<Policy, SeccompError> {
    let default_errno = spec.default_errno_ret().unwrap_or(libc::EPERM as u32);
    let default = action_from_oci(spec.default_action(), default_errno)?;
    let mut rules = Vec::new();
    for entry in spec.syscalls().iter().flatten() {
        let action = action_from_oci(
            entry.action(),
            entry.errno_ret().unwrap_or(libc::EPERM as u32),
        )?;
        let mut checks = Vec::new();
        for arg in entry.args().iter().flatten() {
            checks.push(check_from_oci(arg)?);
        }
        let same_index = checks.len() > 1 && checks.iter().all(|c| c.index == checks[0].index);
        let alternatives: Vec<Vec<ArgCheck>> = if same_index {
            checks.iter().map(|c| vec![*c]).collect()
        } else {
            vec![checks]
        };
        for name in entry.names() {
            let Some(nr) = syscalls::number(name) else {
                continue;
            };
            for checks in &alternatives {
                rules.push(Rule {
                    nr,
                    checks: checks.clone(),
                    action,
                });
            }
        }
    }
    Ok(Policy { default, rules })
}

fn action_from_oci(
    action: oci_spec::runtime::LinuxSeccompAction,
    errno: u32,
) -> Result<Action, SeccompError> {
    use oci_spec::runtime::LinuxSeccompAction as A;
    let errno = u16::try_from(errno).unwrap_or(libc::EPERM as u16);
    Ok(match action {
        A::ScmpActAllow => Action::Allow,
        A::ScmpActErrno => Action::Errno(errno),
        A::ScmpActKill | A::ScmpActKillThread => Action::KillThread,
        A::ScmpActKillProcess => Action::KillProcess,
        A::ScmpActTrap => Action::Trap,
        A::ScmpActTrace => Action::Trace(errno),
        A::ScmpActLog => Action::Log,
        other => return Err(SeccompError::UnsupportedAction(format!("{other:?}"))),
    })
}

fn check_from_oci(arg: &oci_spec::runtime::LinuxSeccompArg) -> Result<ArgCheck, SeccompError> {
    use oci_spec::runtime::LinuxSeccompOperator as O;
    let index = u8::try_from(arg.index()).map_err(|_| SeccompError::ArgIndex(u8::MAX))?;
    let op = match arg.op() {
        O::ScmpCmpEq => Op::Eq,
        O::ScmpCmpNe => Op::Ne,
        O::ScmpCmpLt => Op::Lt,
        O::ScmpCmpLe => Op::Le,
        O::ScmpCmpGt => Op::Gt,
        O::ScmpCmpGe => Op::Ge,
        // OCI: value is the mask, valueTwo the datum.
        O::ScmpCmpMaskedEq => {
            return Ok(ArgCheck {
                index,
                op: Op::MaskedEq(arg.value()),
                value: arg.value_two().unwrap_or(0),
            })
        }
    };
    Ok(ArgCheck {
        index,
        op,
        value: arg.value(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `probe` in a forked child under `policy`; returns its exit code.
    /// The probe may only make raw syscalls.
    fn run_filtered(policy: &Policy, probe: fn() -> i32) -> i32 {
        let _children = crate::children_lock();
        let prog = compile(policy).unwrap();
        // SAFETY: the child only makes raw syscalls and _exits; the parent
        // waits for it. The filter program outlives the seccomp call.
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0);
            if pid == 0 {
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                let fprog = libc::sock_fprog {
                    len: prog.len() as u16,
                    filter: prog.as_ptr() as *mut libc::sock_filter,
                };
                if libc::syscall(libc::SYS_seccomp, 1, 0, &fprog as *const libc::sock_fprog) != 0 {
                    libc::_exit(200);
                }
                libc::_exit(probe());
            }
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
            if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                1000 + libc::WTERMSIG(status)
            }
        }
    }

    fn probe_getppid() -> i32 {
        // SAFETY: a plain syscall without arguments.
        errno_of(unsafe { libc::syscall(libc::SYS_getppid) })
    }

    fn probe_getpid() -> i32 {
        // SAFETY: a plain syscall without arguments.
        errno_of(unsafe { libc::syscall(libc::SYS_getpid) })
    }

    /// One probe: the comparison, the value, and (argument, expected match).
    type Case<'a> = (Op, u64, &'a [(u64, bool)]);

    fn errno_of(ret: libc::c_long) -> i32 {
        if ret >= 0 {
            0
        } else {
            // SAFETY: reading this thread's errno.
            unsafe { *libc::__errno_location() }
        }
    }

    fn rule(nr: libc::c_long, checks: Vec<ArgCheck>, action: Action) -> Rule {
        Rule {
            nr: nr as u32,
            checks,
            action,
        }
    }

    #[test]
    fn default_and_plain_rules() {
        let policy = Policy {
            default: Action::Allow,
            rules: vec![rule(libc::SYS_getppid, vec![], Action::Errno(42))],
        };
        assert_eq!(run_filtered(&policy, probe_getppid), 42);
        assert_eq!(run_filtered(&policy, probe_getpid), 0);
    }

    #[test]
    fn allowlist_with_errno_default() {
        let allowed = [libc::SYS_exit_group, libc::SYS_exit, libc::SYS_getpid];
        let policy = Policy {
            default: Action::Errno(1),
            rules: allowed
                .iter()
                .map(|nr| rule(*nr, vec![], Action::Allow))
                .collect(),
        };
        assert_eq!(run_filtered(&policy, probe_getppid), 1);
        assert_eq!(run_filtered(&policy, probe_getpid), 0);
    }

    /// getpriority(which, who) with checks on `who` (arg 1), a 64-bit value.
    fn probe_who(who: u64) -> i32 {
        // SAFETY: getpriority on an arbitrary id only reads.
        errno_of(unsafe { libc::syscall(libc::SYS_getpriority, libc::PRIO_PROCESS, who) })
    }

    #[test]
    fn sixty_four_bit_comparisons() {
        let cases: &[Case] = &[
            (
                Op::Eq,
                0x1_0000_0005,
                &[(0x1_0000_0005, true), (5, false), (0x2_0000_0005, false)],
            ),
            (
                Op::Ne,
                0x1_0000_0005,
                &[(0x1_0000_0005, false), (5, true), (0x1_0000_0006, true)],
            ),
            (
                Op::Gt,
                0x1_0000_0005,
                &[
                    (0x1_0000_0006, true),
                    (0x1_0000_0005, false),
                    (0x2_0000_0000, true),
                    (0xffff_ffff, false),
                ],
            ),
            (
                Op::Ge,
                0x1_0000_0005,
                &[
                    (0x1_0000_0005, true),
                    (0x1_0000_0004, false),
                    (0x2_0000_0000, true),
                ],
            ),
            (
                Op::Lt,
                0x1_0000_0005,
                &[
                    (0x1_0000_0004, true),
                    (0x1_0000_0005, false),
                    (0xffff_ffff, true),
                    (0x2_0000_0000, false),
                ],
            ),
            (
                Op::Le,
                0x1_0000_0005,
                &[(0x1_0000_0005, true), (0x1_0000_0006, false), (7, true)],
            ),
            (
                Op::MaskedEq(0xff00_0000_00ff),
                0x1200_0000_0034,
                &[(0x1299_9999_9934, true), (0x1299_9999_9935, false)],
            ),
        ];
        for (op, value, probes) in cases {
            for (who, matches) in probes.iter() {
                let policy = Policy {
                    default: Action::Allow,
                    rules: vec![rule(
                        libc::SYS_getpriority,
                        vec![ArgCheck {
                            index: 1,
                            op: *op,
                            value: *value,
                        }],
                        Action::Errno(77),
                    )],
                };
                // The probe needs `who`; pass it through a static.
                let _who = who_lock();
                WHO.store(*who, std::sync::atomic::Ordering::SeqCst);
                let got = run_filtered(&policy, || {
                    probe_who(WHO.load(std::sync::atomic::Ordering::SeqCst))
                });
                assert_eq!(
                    got == 77,
                    *matches,
                    "{op:?} {value:#x} vs {who:#x}: errno {got}"
                );
            }
        }
    }

    static WHO: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

    /// Held while a test uses `WHO`: two tests set it.
    fn who_lock() -> std::sync::MutexGuard<'static, ()> {
        static USERS: std::sync::Mutex<()> = std::sync::Mutex::new(());
        USERS.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[test]
    fn rules_are_tried_in_order_then_default() {
        let policy = Policy {
            default: Action::Errno(3),
            rules: vec![
                rule(libc::SYS_exit_group, vec![], Action::Allow),
                rule(
                    libc::SYS_getpriority,
                    vec![ArgCheck {
                        index: 1,
                        op: Op::Eq,
                        value: 1,
                    }],
                    Action::Errno(11),
                ),
                rule(
                    libc::SYS_getpriority,
                    vec![ArgCheck {
                        index: 1,
                        op: Op::Eq,
                        value: 2,
                    }],
                    Action::Errno(12),
                ),
            ],
        };
        for (who, want) in [(1u64, 11), (2, 12), (3, 3)] {
            let _who = who_lock();
            WHO.store(who, std::sync::atomic::Ordering::SeqCst);
            assert_eq!(
                run_filtered(&policy, || probe_who(
                    WHO.load(std::sync::atomic::Ordering::SeqCst)
                )),
                want
            );
        }
    }

    #[test]
    fn kill_process_kills() {
        let policy = Policy {
            default: Action::Allow,
            rules: vec![rule(libc::SYS_getppid, vec![], Action::KillProcess)],
        };
        assert_eq!(run_filtered(&policy, probe_getppid), 1000 + libc::SIGSYS);
    }

    #[test]
    fn bad_policies_are_errors() {
        let policy = Policy {
            default: Action::Allow,
            rules: vec![rule(
                1,
                vec![ArgCheck {
                    index: 6,
                    op: Op::Eq,
                    value: 0,
                }],
                Action::Allow,
            )],
        };
        assert_eq!(compile(&policy), Err(SeccompError::ArgIndex(6)));
        let huge = Policy {
            default: Action::Allow,
            rules: (0..3000).map(|i| rule(i, vec![], Action::Allow)).collect(),
        };
        assert!(matches!(compile(&huge), Err(SeccompError::TooLong(_))));
    }

    #[test]
    fn syscall_table_lookups() {
        assert_eq!(syscalls::number("read"), Some(0));
        assert_eq!(syscalls::number("clone3"), Some(435));
        assert_eq!(syscalls::number("chown32"), None);
    }
}
