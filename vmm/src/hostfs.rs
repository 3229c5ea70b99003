//! The host-fs thread: once the guest runs, the only thread that names
//! host paths. The event loop's filter has no `open*`, `socket`,
//! `connect`, `mkdir*`, `rename*` or `unlink*`; what it needs of those
//! (a snapshot's directory and files, a disk given by `attach-disk`, the
//! host socket a guest-initiated vsock stream connects to, removing the
//! VM's socket files at the end) it hands to this thread with [`run`]
//! and waits for the answer. This thread's own filter
//! (`seccomp::host_fs_filter`) allows those calls with fixed open flags
//! and unix stream sockets only, and nothing of KVM, epoll or the fds
//! the devices own.
//!
//! Before [`start`] (building the VM) and in unit tests, [`run`] simply
//! calls the closure on the calling thread.

use std::io;
use std::sync::mpsc::{self, Sender};
use std::sync::OnceLock;

use crate::seccomp::{self, Filter, Kind};

type Job = Box<dyn FnOnce() + Send>;

static HELPER: OnceLock<Sender<Job>> = OnceLock::new();

/// Why the thread could not be started.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The thread could not be spawned.
    #[error("cannot spawn the host-fs thread")]
    Spawn(#[source] io::Error),
    /// Its filter could not be installed.
    #[error("the host-fs thread")]
    Seccomp(#[source] seccomp::Error),
    /// It was started already.
    #[error("the host-fs thread runs already")]
    Started,
}

/// Starts the thread under `filter`; later [`run`] calls go to it.
pub fn start(filter: Filter) -> Result<(), Error> {
    if HELPER.get().is_some() {
        return Err(Error::Started);
    }
    let (tx, rx) = mpsc::channel::<Job>();
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("host-fs".into())
        .spawn(move || {
            let r = seccomp::apply(Kind::HostFs, &filter);
            let ok = r.is_ok();
            let _ = ready_tx.send(r);
            if !ok {
                return;
            }
            for job in rx {
                job();
            }
        })
        .map_err(Error::Spawn)?;
    ready_rx
        .recv()
        .unwrap_or_else(|_| Err(seccomp::Error::Install("the thread ended".into())))
        .map_err(Error::Seccomp)?;
    HELPER.set(tx).map_err(|_| Error::Started)
}

/// Runs `f` on the host-fs thread (on this one before [`start`]) and
/// returns its result. `f` may only make the calls the host-fs filter
/// allows.
/// Creates (or truncates) the file at `path` for writing, on the
/// host-fs thread.
pub fn create_file(path: &std::path::Path) -> io::Result<std::fs::File> {
    let p = path.to_path_buf();
    run(move || {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&p)
    })
}

pub fn run<R: Send + 'static>(f: impl FnOnce() -> io::Result<R> + Send + 'static) -> io::Result<R> {
    let Some(tx) = HELPER.get() else {
        return f();
    };
    let gone = || io::Error::other("the host-fs thread is gone");
    let (rtx, rrx) = mpsc::sync_channel(1);
    tx.send(Box::new(move || {
        let _ = rtx.send(f());
    }))
    .map_err(|_| gone())?;
    rrx.recv().map_err(|_| gone())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_the_thread_jobs_run_here() {
        let me = std::thread::current().id();
        let ran_on = run(move || Ok(std::thread::current().id())).unwrap();
        assert_eq!(ran_on, me);
        let e = run(|| std::fs::File::open("/nonexistent/x")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn started_in_a_child_it_runs_jobs_under_its_filter() {
        // A child process: the thread and its filter must not outlive the
        // test in the test runner.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("made");
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "hostfs::tests::child_body",
                "--nocapture",
                "--ignored",
            ])
            .env("HOSTFS_TEST_PATH", &p)
            .output()
            .unwrap();
        assert!(
            child.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&child.stdout),
            String::from_utf8_lossy(&child.stderr)
        );
        assert!(p.is_dir(), "the job made the directory");
    }

    /// Run by the test above in a child process.
    #[test]
    #[ignore = "run in a child process by started_in_a_child_it_runs_jobs_under_its_filter"]
    fn child_body() {
        let p = std::path::PathBuf::from(std::env::var_os("HOSTFS_TEST_PATH").unwrap());
        seccomp::install_sigsys_handler().unwrap();
        start(seccomp::host_fs_filter().unwrap()).unwrap();
        assert!(matches!(
            start(seccomp::host_fs_filter().unwrap()),
            Err(Error::Started)
        ));
        let me = std::thread::current().id();
        let (ran_on, made) = run({
            let p = p.clone();
            move || {
                std::fs::create_dir_all(&p)?;
                Ok(std::thread::current().id())
            }
        })
        .map(|id| (id, p.is_dir()))
        .unwrap();
        assert_ne!(ran_on, me);
        assert!(made);
    }
}
