//! The agent's half of the user-namespace handshake of a new container,
//! at spawn (runc's and youki's order): the child is cloned into its new
//! user namespace and waits on a pipe; the agent, VM root in the parent
//! namespace, sets its rlimits, writes its maps and then lets it go, so
//! the child becomes root inside only once it is mapped. Reading the maps
//! from the spec and idmapping the root are the container set-up's.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{OwnedFd, RawFd};

use crate::syscall::{IdMap, Syscall};

/// A container's user namespace: its maps, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserNamespace {
    /// uid_map's text ("inside outside count" lines).
    pub uid_map: String,
    pub gid_map: String,
    /// The VM's ids of root inside.
    pub root_uid: u32,
    pub root_gid: u32,
}

/// Writes the maps of the user namespace of process `pid`.
pub fn write_maps(sys: &dyn Syscall, pid: i32, ns: &UserNamespace) -> io::Result<()> {
    sys.write_id_map(pid, IdMap::Uid, &ns.uid_map)?;
    sys.write_id_map(pid, IdMap::Gid, &ns.gid_map)
}

/// Lets a new container's child go on: sets its rlimits (inside the
/// namespace it could not raise a hard limit: that takes CAP_SYS_RESOURCE
/// of the VM's namespace; runc does the same), writes its maps, then one
/// byte on `sync`. On failure the child is killed (it holds a copy of the
/// pipe's write end, so it would never see the pipe close); the caller
/// reaps it.
pub fn release_child(
    sys: &dyn Syscall,
    pid: i32,
    ns: &UserNamespace,
    rlimits: &[(u32, u64, u64)],
    sync: OwnedFd,
) -> io::Result<()> {
    let mut file = File::from(sync);
    let released = set_rlimits(sys, pid, rlimits)
        .and_then(|_| write_maps(sys, pid, ns))
        .and_then(|_| io::Write::write_all(&mut file, b"1"));
    if released.is_err() {
        let _ = sys.kill(pid, libc::SIGKILL);
    }
    released
}

/// prlimit(2) on process `pid`.
fn set_rlimits(sys: &dyn Syscall, pid: i32, rlimits: &[(u32, u64, u64)]) -> io::Result<()> {
    for (resource, soft, hard) in rlimits {
        sys.set_rlimit(pid, *resource, *soft, *hard)
            .map_err(|err| {
                io::Error::new(
                    err.kind(),
                    format!("set rlimit {resource} to {soft}:{hard}: {err}"),
                )
            })?;
    }
    Ok(())
}

/// What the child of a container with a user namespace needs, prepared
/// before the clone.
pub struct ChildUserns {
    /// Read end of the pipe `release_child` writes to.
    pub sync_fd: RawFd,
    /// The VM's device nodes, bound onto the container's (same order as
    /// the devices to create).
    pub device_sources: Vec<CString>,
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::syscall::test::{Call, Recording};
    use crate::test_utils::user_namespace;

    fn map(map: IdMap, text: &str) -> Call {
        Call::WriteIdMap {
            pid: 4242,
            map,
            text: text.into(),
        }
    }

    #[test]
    fn the_child_gets_its_rlimits_then_its_maps_then_the_go() {
        let sys = Recording::new();
        let (read, write) = crate::sys::pipe().unwrap();
        release_child(
            &sys,
            4242,
            &user_namespace(),
            &[(libc::RLIMIT_NOFILE, 10, 20)],
            write,
        )
        .unwrap();
        assert_eq!(
            sys.calls(),
            vec![
                Call::SetRlimit {
                    pid: 4242,
                    resource: libc::RLIMIT_NOFILE,
                    soft: 10,
                    hard: 20,
                },
                map(IdMap::Uid, "0 100000 65536\n"),
                map(IdMap::Gid, "0 200000 10\n10 300000 1\n"),
            ]
        );
        let mut go = Vec::new();
        File::from(read).read_to_end(&mut go).unwrap();
        assert_eq!(go, b"1");
    }

    #[test]
    fn a_refused_map_kills_the_child_and_is_the_error() {
        let sys = Recording::new();
        sys.fail_when(|call| match call {
            Call::WriteIdMap {
                map: IdMap::Gid, ..
            } => Some(libc::EPERM),
            _ => None,
        });
        let (read, write) = crate::sys::pipe().unwrap();
        let err = release_child(&sys, 4242, &user_namespace(), &[], write).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM));
        assert_eq!(
            sys.calls().last(),
            Some(&Call::Kill {
                pid: 4242,
                signal: libc::SIGKILL
            })
        );
        let mut go = Vec::new();
        File::from(read).read_to_end(&mut go).unwrap();
        assert!(go.is_empty(), "no go for a child without maps");
    }

    #[test]
    fn a_refused_rlimit_names_it_and_writes_no_map() {
        let sys = Recording::new();
        sys.fail_when(|call| matches!(call, Call::SetRlimit { .. }).then_some(libc::EPERM));
        let (_read, write) = crate::sys::pipe().unwrap();
        let err = release_child(&sys, 4242, &user_namespace(), &[(7, 1, 2)], write).unwrap_err();
        assert!(err.to_string().contains("set rlimit 7 to 1:2"), "{err}");
        assert!(!sys
            .calls()
            .iter()
            .any(|c| matches!(c, Call::WriteIdMap { .. })));
    }
}
