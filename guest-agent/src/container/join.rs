//! Namespaces a new container joins instead of creating them: a pod's
//! members share their sandbox container's IPC, UTS and network
//! namespaces, which the host names as `/proc/PID/ns/KIND` in the guest.
//! The container's process is cloned from a thread that entered them, so
//! nothing else of the agent does.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use thiserror::Error;

use crate::syscall::Syscall;

#[derive(Debug, Error)]
pub enum JoinError {
    #[error("joining a {0} namespace is not supported")]
    Unsupported(String),
    #[error("namespace path {} is not /proc/PID/ns/{kind}", path.display())]
    NotProcPath { path: PathBuf, kind: &'static str },
    #[error("the {0} namespace is named twice")]
    Twice(&'static str),
    #[error("open {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The open namespaces to enter, with their CLONE_NEW* flag.
#[derive(Default)]
pub struct Joined {
    namespaces: Vec<(File, libc::c_int)>,
}

impl Joined {
    /// CLONE_NEW* flags of the joined namespaces (an exec'd process joins
    /// them too, through the container's main process).
    pub fn flags(&self) -> u64 {
        self.namespaces
            .iter()
            .fold(0, |flags, (_, flag)| flags | *flag as u64)
    }

    /// Runs `start` (which clones the container's process) on a thread of
    /// its own that has entered the namespaces first.
    /// setns changes only that thread, which ends with the scope.
    pub fn run_inside<T: Send>(
        &self,
        sys: &dyn Syscall,
        start: impl FnOnce() -> T + Send,
    ) -> Result<T, std::io::Error> {
        if self.namespaces.is_empty() {
            return Ok(start());
        }
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    for (file, flag) in &self.namespaces {
                        sys.set_namespace(file.as_fd(), *flag)?;
                    }
                    Ok(start())
                })
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the joining thread panicked")))
        })
    }
}

/// Opens the namespaces the spec names by path. Only IPC, UTS and network
/// namespaces of another process of this VM may be joined, named exactly
/// `/proc/PID/ns/ipc|uts|net`.
pub fn from_spec(spec: &Spec) -> Result<Joined, JoinError> {
    let mut joined = Joined::default();
    let namespaces = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    for ns in namespaces {
        let Some(path) = ns.path() else {
            continue;
        };
        let (kind, flag) = match ns.typ() {
            LinuxNamespaceType::Ipc => ("ipc", libc::CLONE_NEWIPC),
            LinuxNamespaceType::Uts => ("uts", libc::CLONE_NEWUTS),
            LinuxNamespaceType::Network => ("net", libc::CLONE_NEWNET),
            other => return Err(JoinError::Unsupported(format!("{other:?}"))),
        };
        if !is_proc_namespace(path, kind) {
            return Err(JoinError::NotProcPath {
                path: path.clone(),
                kind,
            });
        }
        if joined.flags() & flag as u64 != 0 {
            return Err(JoinError::Twice(kind));
        }
        let file = File::open(path).map_err(|source| JoinError::Open {
            path: path.clone(),
            source,
        })?;
        joined.namespaces.push((file, flag));
    }
    Ok(joined)
}

fn is_proc_namespace(path: &Path, kind: &str) -> bool {
    let Some(text) = path.to_str() else {
        return false;
    };
    let Some(rest) = text.strip_prefix("/proc/") else {
        return false;
    };
    let Some((pid, tail)) = rest.split_once('/') else {
        return false;
    };
    !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) && tail == format!("ns/{kind}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(namespaces: &str) -> Spec {
        serde_json::from_str(&format!(
            r#"{{"ociVersion":"1.0.2","linux":{{"namespaces":{namespaces}}}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn only_proc_paths_of_shareable_kinds_are_joined() {
        let me = std::process::id();
        let ok = from_spec(&spec(&format!(
            r#"[{{"type":"mount"}},{{"type":"ipc","path":"/proc/{me}/ns/ipc"}},{{"type":"network","path":"/proc/{me}/ns/net"}}]"#
        )))
        .unwrap();
        assert_eq!(ok.flags(), (libc::CLONE_NEWIPC | libc::CLONE_NEWNET) as u64);
        for bad in [
            r#"[{"type":"pid","path":"/proc/1/ns/pid"}]"#,
            r#"[{"type":"ipc","path":"/proc/1/ns/net"}]"#,
            r#"[{"type":"ipc","path":"/etc/passwd"}]"#,
            r#"[{"type":"uts","path":"/proc/self/ns/uts"}]"#,
            r#"[{"type":"uts","path":"/proc/1/../1/ns/uts"}]"#,
            r#"[{"type":"ipc","path":"/proc/999999999/ns/ipc"}]"#,
        ] {
            assert!(from_spec(&spec(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_start_runs_after_every_namespace_was_entered() {
        use crate::syscall::test::{Call, Recording};
        let me = std::process::id();
        let joined = from_spec(&spec(&format!(
            r#"[{{"type":"uts","path":"/proc/{me}/ns/uts"}},{{"type":"network","path":"/proc/{me}/ns/net"}}]"#
        )))
        .unwrap();
        let sys = Recording::new();
        let seen = joined.run_inside(&sys, || sys.calls()).unwrap();
        let entered = vec![
            Call::SetNamespace {
                nstype: libc::CLONE_NEWUTS,
            },
            Call::SetNamespace {
                nstype: libc::CLONE_NEWNET,
            },
        ];
        assert_eq!(seen, entered, "both entered before the start ran");

        let sys = Recording::new();
        sys.fail_when(|call| match call {
            Call::SetNamespace {
                nstype: libc::CLONE_NEWUTS,
            } => Some(libc::EPERM),
            _ => None,
        });
        let mut started = false;
        let err = joined.run_inside(&sys, || started = true).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM));
        assert!(!started, "nothing starts outside the namespaces");
        assert_eq!(sys.calls().len(), 1, "the first failure stops the joining");

        let sys = Recording::new();
        assert_eq!(Joined::default().run_inside(&sys, || 3).unwrap(), 3);
        assert!(sys.calls().is_empty(), "nothing to join: no setns");
    }
}
