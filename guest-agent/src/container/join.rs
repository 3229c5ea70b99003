//! Namespaces a new container joins instead of creating them: a pod's
//! members share their sandbox container's IPC, UTS and network
//! namespaces, which the host names as `/proc/PID/ns/KIND` in the guest.
//! The container's process is cloned from a thread that entered them, so
//! nothing else of the agent does.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use oci_spec::runtime::{LinuxNamespaceType, Spec};

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
    pub fn run_inside<T: Send>(
        &self,
        start: impl FnOnce() -> T + Send,
    ) -> Result<T, std::io::Error> {
        if self.namespaces.is_empty() {
            return Ok(start());
        }
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    for (file, flag) in &self.namespaces {
                        // SAFETY: setns on a descriptor we own; it changes
                        // only this thread, which ends with the scope.
                        if unsafe { libc::setns(file.as_raw_fd(), *flag) } != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
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
pub fn from_spec(spec: &Spec) -> Result<Joined, String> {
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
            other => return Err(format!("joining a {other:?} namespace is not supported")),
        };
        if !is_proc_namespace(path, kind) {
            return Err(format!(
                "namespace path {} is not /proc/PID/ns/{kind}",
                path.display()
            ));
        }
        if joined.flags() & flag as u64 != 0 {
            return Err(format!("the {kind} namespace is named twice"));
        }
        let file = File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
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
    fn the_start_runs_inside_the_joined_namespaces() {
        let me = std::process::id();
        let joined = from_spec(&spec(&format!(
            r#"[{{"type":"uts","path":"/proc/{me}/ns/uts"}}]"#
        )))
        .unwrap();
        // Joining our own namespace is allowed without privileges only as
        // root; either way the closure's value comes back or the error is
        // setns's.
        match joined.run_inside(|| 7) {
            Ok(v) => assert_eq!(v, 7),
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EPERM)),
        }
        assert_eq!(Joined::default().run_inside(|| 3).unwrap(), 3);
    }
}
