//! `create`: a record, the rootfs disk and writable layer, and a
//! supervisor in runc mode that boots the VM and waits for `start`; then
//! the bundle's `prestart` and `createRuntime` hooks on the host.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Child, Stdio};

use anyhow::{anyhow, Context, Result};
use hull_container::hooks::HostHook;
use hull_container::lifecycle;
use hull_container::plan::{create_from_bundle, restore_from_bundle};
use hull_container::supervisor::launch;
use hull_container::Container;

use super::args::{CreateArgs, RuncArgs};
use super::{close_inherited_fds, console, containers, host_hooks, write_pid_file};

/// runc's words for a terminal nobody would hold.
const DETACHED_TTY: &str = "cannot allocate tty if runc will detach without setting console socket";

pub async fn create(args: &RuncArgs, create: &CreateArgs) -> Result<i32> {
    let (_, supervisor) = create_container(args, create, None, None).await?;
    // The supervisor outlives this command: the caller's subreaper reaps it.
    drop(supervisor);
    Ok(0)
}

/// Creates the container and returns it with its supervisor. `terminal`
/// is the slave of a pty `run` holds the master of; without it a process
/// with a terminal needs `--console-socket`. With `checkpoint`, its VM
/// comes back from there (`restore`).
pub async fn create_container(
    args: &RuncArgs,
    create: &CreateArgs,
    terminal: Option<OwnedFd>,
    checkpoint: Option<&Path>,
) -> Result<(Container, Child)> {
    close_inherited_fds();
    let container = match checkpoint {
        Some(image_path) => {
            restore_from_bundle(&args.root, &create.bundle, &create.id, image_path)?
        }
        None => create_from_bundle(&args.root, &create.bundle, &create.id)?,
    };
    let all = containers(args);
    match spawn_and_hook(args, create, &container, terminal).await {
        Ok(supervisor) => Ok((container, supervisor)),
        Err(e) => {
            all.remove(&container);
            Err(e)
        }
    }
}

async fn spawn_and_hook(
    args: &RuncArgs,
    create: &CreateArgs,
    container: &Container,
    terminal: Option<OwnedFd>,
) -> Result<Child> {
    let slave = match (&create.console_socket, terminal) {
        (Some(socket), _) => Some(console::send_pty(socket)?),
        (None, Some(slave)) => Some(slave),
        (None, None) if container.config.tty => return Err(anyhow!(DETACHED_TTY)),
        (None, None) => None,
    };
    let stdio = match slave {
        Some(slave) => [
            Stdio::from(slave.try_clone()?),
            Stdio::from(slave.try_clone()?),
            Stdio::from(slave),
        ],
        None => [Stdio::inherit(), Stdio::inherit(), Stdio::inherit()],
    };
    let hull = std::env::current_exe().context("find the hull binary")?;
    let mut supervisor = launch::spawn_runc(&hull, &args.root, &args.root, container, stdio)?;
    let hooked = (|| {
        if let Some(path) = &create.pid_file {
            write_pid_file(path, supervisor.id())?;
        }
        host_hooks(container, HostHook::Prestart, "creating", supervisor.id())?;
        host_hooks(
            container,
            HostHook::CreateRuntime,
            "creating",
            supervisor.id(),
        )
    })();
    if let Err(e) = hooked {
        // The VM is up: stop it the ordinary way, then reap its supervisor.
        lifecycle::remove(&args.root, container).await;
        let _ = supervisor.kill();
        let _ = supervisor.wait();
        if let Some(path) = &create.pid_file {
            let _ = std::fs::remove_file(path);
        }
        return Err(e);
    }
    Ok(supervisor)
}
