//! Devices for a container that joins a running QEMU VM (a pod): its disks
//! as SCSI disks on the VM's virtio-scsi bus, and an agent channel of its
//! own as a virtio-serial port named `hull.agent.<tag>`. All of it is
//! named after the joining container's `tag`, so it can be taken out
//! again without touching the rest of the VM.

use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

use hull_protocol::{AGENT_JOIN_PORT_PREFIX, SHARE_PORT_PREFIX};
use serde_json::json;

use super::qmp::{Qmp, QmpError};
use super::DiskSpec;

/// The virtio-scsi bus every QEMU VM of hull's has for hot-added disks.
pub const SCSI_BUS: &str = "scsi0.0";
/// File in the VM directory holding the next free SCSI target.
const NEXT_TARGET_FILE: &str = "next-scsi-target";
/// The LUN of every hot-added disk. The guest boots with
/// `scsi_mod.scan=manual`, under which Linux adds an announced LUN 0 only
/// by scanning its whole target, and skips that; other LUNs it adds as
/// announced.
const DISK_LUN: u32 = 1;
/// SCSI targets on one bus (virtio-scsi allows 0..=255).
const SCSI_TARGETS: u32 = 256;

/// Whether the VM in `vm_dir` can take joining containers (QEMU's QMP
/// socket is there; hull-vmm has no hot-plugging yet).
pub fn can_join(vm_dir: &Path) -> bool {
    vm_dir.join(super::qmp::QMP_SOCKET).exists()
}

fn node(tag: &str, disk: usize) -> String {
    format!("hull-{tag}-disk{disk}")
}

fn chardev(tag: &str) -> String {
    format!("hull-{tag}-agent")
}

fn port(tag: &str) -> String {
    format!("hull-{tag}-port")
}

/// Adds `disks` and an agent port connecting to `agent_socket` (where the
/// caller already listens) to the VM in `vm_dir`. On failure, what was
/// added is taken out again.
pub async fn plug(
    vm_dir: &Path,
    tag: &str,
    disks: &[DiskSpec],
    agent_socket: &Path,
) -> Result<(), QmpError> {
    let mut qmp = Qmp::connect(vm_dir).await?;
    // A supervisor killed before it could unplug leaves its devices; the
    // same container joining again must not trip over them.
    remove_with(&mut qmp, tag, disks.len()).await;
    let result = plug_with(&mut qmp, vm_dir, tag, disks, agent_socket).await;
    if result.is_err() {
        remove_with(&mut qmp, tag, disks.len()).await;
    }
    result
}

async fn plug_with(
    qmp: &mut Qmp,
    vm_dir: &Path,
    tag: &str,
    disks: &[DiskSpec],
    agent_socket: &Path,
) -> Result<(), QmpError> {
    add_disks(qmp, vm_dir, tag, disks).await?;
    add_connected_chardev(qmp, &chardev(tag), agent_socket).await?;
    qmp.execute(
        "device_add",
        json!({
            "driver": "virtserialport",
            "id": port(tag),
            "bus": "vser.0",
            "chardev": chardev(tag),
            "name": format!("{AGENT_JOIN_PORT_PREFIX}{tag}"),
        }),
    )
    .await?;
    Ok(())
}

fn share_chardev(tag: &str) -> String {
    format!("hull-{tag}-share")
}

fn share_port(tag: &str) -> String {
    format!("hull-{tag}-share-port")
}

/// Adds a virtio-serial port `hull.share.<tag>` whose other end connects
/// to `socket` (where the container's share server already listens). On
/// failure, what was added is taken out again.
pub async fn plug_share(vm_dir: &Path, tag: &str, socket: &Path) -> Result<(), QmpError> {
    let mut qmp = Qmp::connect(vm_dir).await?;
    // Left by a supervisor killed before it could unplug.
    remove_share_with(&mut qmp, tag).await;
    let result = plug_share_with(&mut qmp, tag, socket).await;
    if result.is_err() {
        remove_share_with(&mut qmp, tag).await;
    }
    result
}

async fn plug_share_with(qmp: &mut Qmp, tag: &str, socket: &Path) -> Result<(), QmpError> {
    add_connected_chardev(qmp, &share_chardev(tag), socket).await?;
    qmp.execute(
        "device_add",
        json!({
            "driver": "virtserialport",
            "id": share_port(tag),
            "bus": "vser.0",
            "chardev": share_chardev(tag),
            "name": format!("{SHARE_PORT_PREFIX}{tag}"),
        }),
    )
    .await?;
    Ok(())
}

/// Takes the share port of `tag` out of the VM in `vm_dir` (best effort).
pub async fn unplug_share(vm_dir: &Path, tag: &str) {
    if let Ok(mut qmp) = Qmp::connect(vm_dir).await {
        remove_share_with(&mut qmp, tag).await;
    }
}

async fn remove_share_with(qmp: &mut Qmp, tag: &str) {
    let _ = qmp
        .execute("device_del", json!({ "id": share_port(tag) }))
        .await;
    until_free(qmp, "chardev-remove", json!({ "id": share_chardev(tag) })).await;
}

/// Adds a socket chardev `id` already connected to `socket`, where the
/// host listens: the host connects and hands QEMU its end (`getfd`), as
/// a jailed QEMU reaches no host path (see [`super::jail`]).
async fn add_connected_chardev(qmp: &mut Qmp, id: &str, socket: &Path) -> Result<(), QmpError> {
    let stream =
        std::os::unix::net::UnixStream::connect(socket).map_err(|source| QmpError::Connect {
            path: socket.display().to_string(),
            source,
        })?;
    qmp.send_fd(id, stream.as_fd()).await?;
    qmp.execute(
        "chardev-add",
        json!({
            "id": id,
            "backend": {
                "type": "socket",
                "data": {
                    "addr": { "type": "fd", "data": { "str": id } },
                    "server": false,
                },
            },
        }),
    )
    .await?;
    Ok(())
}

/// Adds `disks` (and only disks) to the VM in `vm_dir`: those of a clone
/// restored from a template, which has none of its own.
pub async fn plug_disks(vm_dir: &Path, tag: &str, disks: &[DiskSpec]) -> Result<(), QmpError> {
    let mut qmp = Qmp::connect(vm_dir).await?;
    add_disks(&mut qmp, vm_dir, tag, disks).await
}

async fn add_disks(
    qmp: &mut Qmp,
    vm_dir: &Path,
    tag: &str,
    disks: &[DiskSpec],
) -> Result<(), QmpError> {
    for (i, disk) in disks.iter().enumerate() {
        let node = node(tag, i);
        // The file goes in as a descriptor (a jailed QEMU opens no host
        // path), opened as QEMU will reopen it from its fd set.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(!disk.read_only)
            .open(&disk.path)
            .map_err(|source| QmpError::Open {
                path: disk.path.display().to_string(),
                source,
            })?;
        let set = qmp.add_fd(&node, file.as_fd()).await?;
        qmp.execute(
            "blockdev-add",
            json!({
                "driver": "raw",
                "node-name": node,
                "read-only": disk.read_only,
                "file": {
                    "driver": "file",
                    "filename": format!("/dev/fdset/{set}"),
                    "read-only": disk.read_only,
                },
            }),
        )
        .await?;
        // Connections to QMP are one at a time: the counter needs no lock.
        let target = next_target(vm_dir);
        qmp.execute(
            "device_add",
            json!({
                "driver": "scsi-hd",
                "id": node,
                "drive": node,
                "bus": SCSI_BUS,
                "scsi-id": target,
                "lun": DISK_LUN,
                "serial": disk.serial,
            }),
        )
        .await?;
    }
    Ok(())
}

/// The next SCSI target of the VM, round robin: targets of containers
/// that left are free again long before the counter comes back to them.
fn next_target(vm_dir: &Path) -> u32 {
    let path = vm_dir.join(NEXT_TARGET_FILE);
    let target = std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(0)
        % SCSI_TARGETS;
    let _ = std::fs::write(&path, ((target + 1) % SCSI_TARGETS).to_string());
    target
}

/// Takes the devices of `tag` out of the VM in `vm_dir`. Best effort: a
/// VM that is gone has nothing left to take out.
pub async fn unplug(vm_dir: &Path, tag: &str, disks: usize) {
    if let Ok(mut qmp) = Qmp::connect(vm_dir).await {
        remove_with(&mut qmp, tag, disks).await;
    }
}

async fn remove_with(qmp: &mut Qmp, tag: &str, disks: usize) {
    let _ = qmp.execute("device_del", json!({ "id": port(tag) })).await;
    until_free(qmp, "chardev-remove", json!({ "id": chardev(tag) })).await;
    crate::timings::mark("port_unplugged");
    for i in 0..disks {
        let node = node(tag, i);
        let _ = qmp.execute("device_del", json!({ "id": node })).await;
        until_free(qmp, "blockdev-del", json!({ "node-name": node })).await;
        qmp.remove_fds(&node).await;
        crate::timings::mark("disk_unplugged");
    }
}

/// Runs a removal until the device that used the object has let go of it
/// (QEMU says "busy" or "in use" until then), for at most a second.
async fn until_free(qmp: &mut Qmp, command: &str, arguments: serde_json::Value) {
    for _ in 0..50 {
        match qmp.execute(command, arguments.clone()).await {
            Err(QmpError::Command { message, .. })
                if message.contains("in use") || message.contains("busy") =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            _ => return,
        }
    }
}
