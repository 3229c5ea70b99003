//! A pooled supervisor: started by the pool server with no container, it
//! restores a clone of its spec's template (its tap, if it has a NIC, in
//! the pool's namespace), stops the clone's vCPUs, says it is ready and
//! waits on its line to the server (fd 3). Given a container, it becomes
//! that container's supervisor and the clone its VM. If the line ends
//! first (the pool stops, or its server died) it removes the clone and
//! its tap and exits.

use std::io::BufReader;
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use hull_sandbox::assets::GuestAssets;
use hull_sandbox::hypervisor::{self, NicSpec};
use hull_sandbox::{PreparedClone, Sandbox, SandboxConfig};

use super::{templates, Mode};
use crate::pool::{receive, send, PoolSpec, SlotMessage, DIR, POOLED_FD};
use crate::record::Containers;

/// A restored clone on its way to a container.
pub(super) struct Pooled {
    pub clone: PreparedClone,
    /// Its tap in the pool's namespace, moved onto the container's
    /// network when it joins.
    pub tap: Option<String>,
}

/// Runs a pooled supervisor to its end; returns its exit status.
pub async fn serve(root: &Path, containers: &Containers) -> i32 {
    // SAFETY: the pool server passed this descriptor, and nothing else in
    // this process owns it.
    let line = unsafe { UnixStream::from_raw_fd(POOLED_FD) };
    match run(root, containers, line).await {
        Ok(status) => status,
        Err(why) => {
            tracing::error!("{why}");
            1
        }
    }
}

async fn run(root: &Path, containers: &Containers, line: UnixStream) -> Result<i32, String> {
    let mut reader = BufReader::new(line.try_clone().map_err(|e| e.to_string())?);
    let mut writer = line;
    let (spec, slot) = match receive::<SlotMessage>(&mut reader) {
        Ok(Some(SlotMessage::Prepare { spec, slot })) => (spec, slot),
        other => return Err(format!("expected what to prepare, got {other:?}")),
    };
    let networks = hull_net::Networks::new(root, containers.run_dir());
    let slot_dir = containers.run_dir().join(DIR).join(&slot);
    let tap = spec.nic.then(|| format!("hp{slot}"));
    let prepared = prepare(&spec, &slot_dir, tap.as_deref(), &networks).await;
    let result = match prepared {
        Ok(clone) => {
            let pooled = Pooled {
                clone,
                tap: tap.clone(),
            };
            wait_and_supervise(
                root,
                containers,
                pooled,
                &mut reader,
                &mut writer,
                &slot_dir,
            )
            .await
        }
        Err(why) => Err(why),
    };
    if let Some(tap) = &tap {
        networks.remove_pool_tap(tap);
    }
    let _ = std::fs::remove_dir_all(&slot_dir);
    let _ = std::fs::remove_file(slot_log(&slot_dir));
    result
}

/// Restores the clone in `slot_dir`.
async fn prepare(
    spec: &PoolSpec,
    slot_dir: &Path,
    tap: Option<&str>,
    networks: &hull_net::Networks,
) -> Result<PreparedClone, String> {
    crate::private::ensure_dir(slot_dir)
        .map_err(|e| format!("create {}: {e}", slot_dir.display()))?;
    let nic = match tap {
        Some(tap) => {
            let netns = networks
                .add_pool_tap(tap)
                .map_err(|e| format!("the clone's tap: {e}"))?;
            Some(NicSpec {
                tap: tap.to_string(),
                // A clone keeps the template's; the container's comes
                // with the wake.
                mac: hypervisor::TEMPLATE_MAC.to_string(),
                netns,
            })
        }
        None => None,
    };
    let hypervisor = hypervisor::select(&spec.hypervisor).map_err(|e| e.to_string())?;
    let assets = GuestAssets {
        kernel: spec.kernel.clone(),
        initramfs: spec.initramfs.clone(),
    };
    let shape = hull_sandbox::template::Shape {
        vcpus: spec.vcpus,
        memory_mib: spec.memory_mib,
        nic: spec.nic,
    };
    let Some((template, templates)) =
        templates::find_template(hypervisor.as_ref(), &assets, shape, &spec.templates).await
    else {
        return Err("no VM template to clone".into());
    };
    let config = SandboxConfig {
        id: format!("pool-{}", slot_dir.display()),
        dir: slot_dir.join("vm"),
        assets: &assets,
        vcpus: spec.vcpus,
        memory_mib: spec.memory_mib,
        disks: Vec::new(),
        nic,
        template: Some(&template),
    };
    match Sandbox::prepare_clone(hypervisor.as_ref(), config).await {
        Ok(clone) => Ok(clone),
        Err(hull_sandbox::SandboxError::Restore(why)) => {
            let _ = templates.remove(&template.key);
            templates.mark_failed(&template.key);
            Err(format!("template {} removed ({why})", template.key))
        }
        Err(e) => Err(super::one_line(&e)),
    }
}

/// Says the clone is ready and waits for a container (or the end of the
/// line, or the clone's death).
async fn wait_and_supervise(
    root: &Path,
    containers: &Containers,
    mut pooled: Pooled,
    reader: &mut BufReader<UnixStream>,
    writer: &mut UnixStream,
    slot_dir: &Path,
) -> Result<i32, String> {
    let vm_pid = pooled.clone.vm_pid().unwrap_or(0);
    send(writer, &SlotMessage::Ready { vm_pid }).map_err(|e| format!("say ready: {e}"))?;
    tracing::info!("clone ready");
    // The line is read on a thread of its own: it is a blocking socket.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut reader_line = reader.get_ref().try_clone().map_err(|e| e.to_string())?;
    std::thread::spawn(move || {
        let mut reader = BufReader::new(&mut reader_line);
        let _ = tx.send(receive::<SlotMessage>(&mut reader));
    });
    let message = tokio::select! {
        message = rx => message.ok(),
        _ = pooled.clone.wait_vm() => {
            pooled.clone.discard().await;
            return Err("the clone's VM ended while it waited".into());
        }
    };
    let (id, wait_attach) = match message {
        Some(Ok(Some(SlotMessage::Assign {
            container,
            wait_attach,
            timings,
        }))) => {
            if let Some(path) = timings {
                hull_sandbox::timings::record_to(path);
            }
            (container, wait_attach)
        }
        // The pool stops (or its server died).
        _ => {
            pooled.clone.discard().await;
            return Ok(0);
        }
    };
    let found = containers.find(&id).ok().filter(|c| c.config.id == id);
    let Some(container) = found else {
        pooled.clone.discard().await;
        return Err(format!("no container {id} to supervise"));
    };
    // From here on this is the container's supervisor, and its log the
    // container's.
    follow_log(&container.dir.join("supervisor.log"));
    let _ = std::fs::remove_file(slot_log(slot_dir));
    let _ = send(writer, &SlotMessage::Taken);
    let mode = Mode {
        wait_attach,
        runc: false,
    };
    Ok(super::supervise_with(root, containers, container, mode, Some(pooled)).await)
}

/// The log the pool server gave this supervisor.
fn slot_log(slot_dir: &Path) -> PathBuf {
    slot_dir.with_extension("log")
}

/// Points stderr (where the supervisor's diagnostics go) at `path`.
fn follow_log(path: &Path) {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path);
    if let Ok(file) = file {
        // SAFETY: dup2 onto our own stderr with a descriptor we own.
        unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&file), libc::STDERR_FILENO) };
    }
}
