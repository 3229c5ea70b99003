//! `hull __share`: one container's share server (started by its
//! supervisor through `hull_sandbox::share`), serving its bind mounts and
//! volumes to the VM until the VM's end of the stream closes.

use std::io::Write;
use std::os::fd::{AsFd, FromRawFd};
use std::os::unix::net::UnixListener;

use hull_sandbox::share::{ShareSpec, LISTENER_FD, READY_FD};

use crate::cli::ShareArgs;

/// How long the VM's end may take to connect after the server started.
const ACCEPT_TIMEOUT_MS: i32 = 60_000;

/// Runs before the async runtime exists: the jail unshares the mount
/// namespace, which a process with more than one thread cannot.
pub fn share_serve(args: &ShareArgs) -> i32 {
    let spec: ShareSpec = match serde_json::from_str(&args.spec) {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("hull: share server: bad spec: {e}");
            return super::EXIT_HULL_ERROR;
        }
    };
    // SAFETY: the supervisor put the listening socket on this fd for us
    // (hull_sandbox::share::spawn); nothing else owns it.
    let listener = unsafe { UnixListener::from_raw_fd(LISTENER_FD) };
    // SAFETY: likewise the write end of its readiness pipe.
    let ready = unsafe { std::fs::File::from_raw_fd(READY_FD) };
    let jailed = match hull_share::enter_jail(&spec, &args.scratch) {
        Ok(jailed) => jailed,
        Err(e) => {
            eprintln!("hull: share server: {e}");
            return super::EXIT_HULL_ERROR;
        }
    };
    // One byte: the jail stands and the server will answer. Without it the
    // supervisor fails the start instead of a guest mount waiting forever.
    if (&ready).write_all(b"r").is_err() {
        return super::EXIT_HULL_ERROR;
    }
    drop(ready);
    // A VM that never connects (its supervisor died between the spawn and
    // the hot-add) must not leave the server waiting forever.
    if !hull_share::readable_within(listener.as_fd(), ACCEPT_TIMEOUT_MS) {
        eprintln!("hull: share server: the VM did not connect");
        return super::EXIT_HULL_ERROR;
    }
    match hull_share::serve(&spec, jailed, listener) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("hull: share server: {e}");
            super::EXIT_HULL_ERROR
        }
    }
}
