//! `create`: a record, the rootfs disk and writable layer, and a
//! supervisor in runc mode that boots the VM and waits for `start`.

use std::process::Stdio;

use anyhow::{Context, Result};
use hull_container::plan::create_from_bundle;
use hull_container::supervisor::launch;
use hull_container::Container;

use super::args::{CreateArgs, RuncArgs};
use super::{close_inherited_fds, console, containers, write_pid_file};

pub async fn create(args: &RuncArgs, create: &CreateArgs) -> Result<i32> {
    close_inherited_fds();
    let container = create_from_bundle(&args.root, &create.bundle, &create.id)?;
    let all = containers(args);
    match console_and_spawn(args, create, &container) {
        Ok(()) => Ok(0),
        Err(e) => {
            all.remove(&container);
            Err(e)
        }
    }
}

fn console_and_spawn(args: &RuncArgs, create: &CreateArgs, container: &Container) -> Result<()> {
    let stdio = match &create.console_socket {
        Some(socket) => {
            let slave = console::send_pty(socket)?;
            [
                Stdio::from(slave.try_clone()?),
                Stdio::from(slave.try_clone()?),
                Stdio::from(slave),
            ]
        }
        None => [Stdio::inherit(), Stdio::inherit(), Stdio::inherit()],
    };
    let hull = std::env::current_exe().context("find the hull binary")?;
    let supervisor = launch::spawn_runc(&hull, &args.root, &args.root, container, stdio)?;
    if let Some(path) = &create.pid_file {
        if let Err(e) = write_pid_file(path, supervisor.id()) {
            kill_supervisor(container, supervisor);
            return Err(e);
        }
    }
    // The supervisor outlives this command: the caller's subreaper reaps it.
    drop(supervisor);
    Ok(())
}

fn kill_supervisor(container: &Container, mut supervisor: std::process::Child) {
    let _ = supervisor.kill();
    let _ = supervisor.wait();
    let _ = std::fs::remove_file(container.socket_path());
}
