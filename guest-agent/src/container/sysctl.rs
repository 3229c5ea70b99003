//! `linux.sysctl`, checked as runc validates it: only the sysctls of the
//! container's own namespaces may be set — IPC (`kernel.msgmax`,
//! `kernel.msgmnb`, `kernel.msgmni`, `kernel.sem`, `kernel.shmall`,
//! `kernel.shmmax`, `kernel.shmmni`, `kernel.shm_rmid_forced`,
//! `fs.mqueue.*`) with an IPC namespace, `net.*` with a network
//! namespace, `kernel.hostname` and `kernel.domainname` with a UTS
//! namespace. Anything else would change the VM's kernel for every
//! container of a pod, and is refused. The child writes them (see
//! `process::child`).

use std::collections::HashMap;

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SysctlError {
    #[error("linux.sysctl {0:?} is not namespaced: the container may not set it")]
    NotNamespaced(String),
    #[error("linux.sysctl {key:?} needs the container's own {namespace} namespace")]
    NoNamespace {
        key: String,
        namespace: &'static str,
    },
    #[error("linux.sysctl {0:?} is not a valid key")]
    BadKey(String),
}

const IPC: &[&str] = &[
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// The sysctls, in key order, once each is allowed for a container with
/// the namespaces `namespaces` (CLONE_NEW* flags, created or joined).
pub fn check(
    sysctls: &HashMap<String, String>,
    namespaces: u64,
) -> Result<Vec<(String, String)>, SysctlError> {
    let has = |flag: libc::c_int| namespaces & flag as u64 != 0;
    let mut checked = Vec::with_capacity(sysctls.len());
    for (key, value) in sysctls {
        // runc accepts either separator.
        let dotted = key.trim_start_matches('/').replace('/', ".");
        if dotted.is_empty()
            || dotted
                .split('.')
                .any(|part| part.is_empty() || part == "..")
        {
            return Err(SysctlError::BadKey(key.clone()));
        }
        let namespace = if IPC.contains(&dotted.as_str()) || dotted.starts_with("fs.mqueue.") {
            (libc::CLONE_NEWIPC, "IPC")
        } else if dotted.starts_with("net.") {
            (libc::CLONE_NEWNET, "network")
        } else if dotted == "kernel.hostname" || dotted == "kernel.domainname" {
            (libc::CLONE_NEWUTS, "UTS")
        } else {
            return Err(SysctlError::NotNamespaced(key.clone()));
        };
        if !has(namespace.0) {
            return Err(SysctlError::NoNamespace {
                key: key.clone(),
                namespace: namespace.1,
            });
        }
        checked.push((key.clone(), value.clone()));
    }
    checked.sort();
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::spawn::sysctl_path;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const ALL: u64 = (libc::CLONE_NEWIPC | libc::CLONE_NEWNET | libc::CLONE_NEWUTS) as u64;

    #[test]
    fn namespaced_sysctls_are_allowed() {
        let sysctls = map(&[
            ("kernel.shmmax", "1000000"),
            ("fs.mqueue.msg_max", "20"),
            ("net.ipv4.ip_forward", "1"),
            ("kernel/domainname", "example.org"),
        ]);
        let checked = check(&sysctls, ALL).unwrap();
        assert_eq!(checked.len(), 4);
        assert_eq!(checked[0].0, "fs.mqueue.msg_max");
        assert_eq!(sysctl_path("kernel.shmmax"), "/proc/sys/kernel/shmmax");
        assert_eq!(
            sysctl_path("net/ipv4/conf/eth0.1/rp_filter"),
            "/proc/sys/net/ipv4/conf/eth0.1/rp_filter"
        );
    }

    #[test]
    fn others_are_refused_with_their_key() {
        let err = check(&map(&[("kernel.panic", "1")]), ALL).unwrap_err();
        assert_eq!(err, SysctlError::NotNamespaced("kernel.panic".into()));
        assert!(err.to_string().starts_with("linux.sysctl \"kernel.panic\""));
        for bad in [
            "vm.swappiness",
            "kernel.msgmaxx",
            "fs.file-max",
            "../etc",
            "",
        ] {
            assert!(check(&map(&[(bad, "1")]), ALL).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_sysctl_needs_its_namespace() {
        let ipc_only = libc::CLONE_NEWIPC as u64;
        assert!(check(&map(&[("kernel.sem", "1 2 3 4")]), ipc_only).is_ok());
        assert_eq!(
            check(&map(&[("net.core.somaxconn", "10")]), ipc_only).unwrap_err(),
            SysctlError::NoNamespace {
                key: "net.core.somaxconn".into(),
                namespace: "network"
            }
        );
        assert!(check(&map(&[("kernel.hostname", "x")]), ipc_only).is_err());
        assert!(check(&map(&[("kernel.shmmax", "1")]), 0).is_err());
    }
}
