//! Building a VM from a snapshot (`--restore DIR`), beside `builder`'s
//! cold boot and from the same parts: the state file (`persist`) read
//! and checked, guest memory mapped privately from the memory file, the
//! VM's and every vCPU's KVM state set, each device rebuilt on the
//! backing this VM was given for its slot and put back in its saved
//! state, and then the same launch as a cold boot.
//!
//! Once every vCPU has its state and before any runs, devices catch up on
//! what a snapshot cannot carry: interrupts pending at the snapshot are
//! raised again and every running device's queues are kicked (a kick in
//! flight at the snapshot would otherwise be lost), a block slot whose
//! capacity changed (a placeholder given a file) announces a configuration
//! change, and vsock tells the guest its connections are gone.

use std::sync::{Arc, Mutex};

use kvm_ioctls::VmFd;

use crate::builder::{
    self, join_kvm_setup, launch, legacy_devices, open_block_backing, open_net_backing,
    spawn_kvm_setup, Machine,
};
use crate::config::{ValidBlock, ValidNet, ValidRestore};
use crate::devices::lock;
use crate::devices::virtio::block::Block;
use crate::devices::virtio::mmio::MmioTransport;
use crate::devices::virtio::net::Net;
use crate::devices::virtio::persist::RestoreError as DeviceRestoreError;
use crate::devices::virtio::vsock::Vsock;
use crate::devices::virtio::{DeviceError, VirtioDevice};
use crate::event_loop;
use crate::persist::devices::{SaveKind, VirtioDeviceState, VirtioKind};
use crate::persist::memory::{map_memory_file, MemoryError};
use crate::persist::vm::{restore_vm, VmState, VmStateError};
use crate::persist::{load_state, LoadError, MEMORY_FILE};
use crate::vstate::exit::ExitReason;
use crate::vstate::{memory, vm};

/// Why a VM could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The state file was refused.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The memory file was refused or could not be mapped.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// The device flags do not fit the snapshot's slots.
    #[error("{0}")]
    Devices(String),
    /// A device could not be created.
    #[error("cannot create {0}")]
    Create(String, #[source] DeviceError),
    /// A saved device state was refused.
    #[error("virtio device in slot {0}")]
    Device(u32, #[source] DeviceRestoreError),
    /// The VM state was refused.
    #[error("cannot restore the VM state")]
    Vm(#[source] VmStateError),
    /// KVM, memory slots, threads, the event loop.
    #[error(transparent)]
    Build(#[from] builder::Error),
}

type Result<T> = std::result::Result<T, RestoreError>;

/// The backing this VM gives one saved slot.
enum SlotBacking<'a> {
    Block(&'a ValidBlock),
    Net(&'a ValidNet),
    Vsock(Option<u32>, &'a std::path::Path),
}

/// Pairs the snapshot's slots with the device flags, refusing flags that
/// do not fit (counts, kinds, read-only, ids, MACs).
fn match_slots<'a>(
    saved: &[VirtioDeviceState],
    cfg: &'a ValidRestore,
) -> Result<Vec<SlotBacking<'a>>> {
    let count = |f: fn(&VirtioKind) -> bool| saved.iter().filter(|d| f(&d.kind)).count();
    let blocks = count(|k| matches!(k, VirtioKind::Block(_)));
    let nets = count(|k| matches!(k, VirtioKind::Net(_)));
    let vsocks = count(|k| matches!(k, VirtioKind::Vsock(_)));
    let mismatch = |what: &str, have: usize, given: usize, flag: &str| {
        RestoreError::Devices(format!(
            "the snapshot has {have} {what} device(s), {given} {flag} given (one per slot, \"placeholder\" for none)"
        ))
    };
    if cfg.block.len() != blocks {
        return Err(mismatch("block", blocks, cfg.block.len(), "--block"));
    }
    if cfg.net.len() != nets {
        return Err(mismatch("net", nets, cfg.net.len(), "--net"));
    }
    if usize::from(cfg.vsock.is_some()) != vsocks {
        return Err(RestoreError::Devices(if vsocks == 1 {
            "the snapshot has a vsock device: give --vsock uds=PATH".into()
        } else {
            "the snapshot has no vsock device: --vsock cannot be given".into()
        }));
    }
    let (mut b, mut n) = (cfg.block.iter(), cfg.net.iter());
    let mut out = Vec::with_capacity(saved.len());
    for d in saved {
        out.push(match &d.kind {
            VirtioKind::Block(s) => {
                let given = b.next().ok_or_else(|| mismatch("block", blocks, 0, "--block"))?;
                let i = out.len();
                if given.read_only != s.read_only {
                    return Err(RestoreError::Devices(format!(
                        "block device {i} is {} in the snapshot: {} ,ro",
                        if s.read_only { "read-only" } else { "read-write" },
                        if s.read_only { "give it" } else { "do not give it" },
                    )));
                }
                if let Some(id) = &given.id {
                    if id.as_bytes() != s.id_bytes() {
                        return Err(RestoreError::Devices(format!(
                            "block device {i}: id {id:?} given, the snapshot's is {:?}",
                            String::from_utf8_lossy(s.id_bytes())
                        )));
                    }
                }
                SlotBacking::Block(given)
            }
            VirtioKind::Net(s) => {
                let given = n.next().ok_or_else(|| mismatch("net", nets, 0, "--net"))?;
                if given.mac.is_some() && s.mac.is_none() {
                    return Err(RestoreError::Devices(format!(
                        "net device in slot {} had no MAC address in the snapshot: mac= cannot be given",
                        d.slot
                    )));
                }
                SlotBacking::Net(given)
            }
            VirtioKind::Vsock(_) => match &cfg.vsock {
                Some((cid, uds)) => SlotBacking::Vsock(*cid, uds),
                None => return Err(mismatch("vsock", 1, 0, "--vsock")),
            },
        });
    }
    Ok(out)
}

/// What to do once the vCPUs have their state.
type Wake = Box<dyn FnOnce()>;

/// Restores the shared state and the transport of a device attached in
/// `slot`, and returns what it must do once the VM is whole: raise a
/// pending interrupt and kick its queues (plus `extra`).
fn settle<D>(
    m: &mut Machine,
    d: &VirtioDeviceState,
    mut dev: D,
    extra: impl FnOnce(&mut MmioTransport<D>) + 'static,
) -> Result<Wake>
where
    D: VirtioDevice + crate::event_loop::Subscriber + SaveKind + 'static,
{
    dev.state_mut()
        .restore(&d.virtio)
        .map_err(|e| RestoreError::Device(d.slot, e))?;
    let t: Arc<Mutex<MmioTransport<D>>> = m.attach_virtio(d.slot, dev)?;
    lock(&t)
        .restore_regs(&d.transport)
        .map_err(|e| RestoreError::Device(d.slot, e))?;
    Ok(Box::new(move || {
        let mut t = lock(&t);
        extra(&mut t);
        let dev = t.device().clone();
        let dev = lock(&dev);
        let state = dev.state();
        if state.interrupt().status() != 0 {
            let _ = state.interrupt().eventfd().write(1);
        }
        if state.is_activated() {
            (0..state.queues().len()).for_each(|q| state.kick(q));
        }
    }))
}

fn restore_device(
    m: &mut Machine,
    d: &VirtioDeviceState,
    backing: &SlotBacking<'_>,
) -> Result<Wake> {
    let mem = m.mem.clone();
    match (&d.kind, backing) {
        (VirtioKind::Block(s), SlotBacking::Block(b)) => {
            let (backing, name) = open_block_backing(b, d.slot)?;
            let mut dev = Block::for_saved(mem, backing, s)
                .map_err(|e| RestoreError::Create(name.clone(), e))?;
            dev.set_rate_limiter(builder::limiter(b.rate, &name)?);
            let changed = dev.capacity() != s.capacity;
            settle(m, d, dev, move |t| {
                if changed {
                    t.config_changed();
                }
            })
        }
        (VirtioKind::Net(s), SlotBacking::Net(n)) => {
            let (backing, name) = open_net_backing(n, d.slot)?;
            let mut dev = Net::for_saved(mem, backing, s, n.mac)
                .map_err(|e| RestoreError::Create(name.clone(), e))?;
            dev.set_rate_limiters(
                builder::limiter(n.rx_rate, &name)?,
                builder::limiter(n.tx_rate, &name)?,
            );
            settle(m, d, dev, |_| {})
        }
        (VirtioKind::Vsock(s), SlotBacking::Vsock(cid, uds)) => {
            let cid = cid.map(u64::from).unwrap_or(s.cid);
            let dev = Vsock::new(mem, cid, uds).map_err(|e| {
                RestoreError::Create(format!("vsock device on {}", uds.display()), e)
            })?;
            m.cleanup.push(uds.to_path_buf());
            settle(m, d, dev, |t| {
                let dev = t.device().clone();
                lock(&dev).send_transport_reset();
            })
        }
        _ => Err(RestoreError::Devices(format!(
            "slot {} does not match its flag",
            d.slot
        ))),
    }
}

fn restore_vm_state(vm: &VmFd, state: &VmState) -> Result<()> {
    restore_vm(vm, state).map_err(RestoreError::Vm)
}

/// Restores the VM saved in `cfg.dir` with this VM's device backings, runs
/// it, and returns why it stopped.
pub fn run(cfg: &ValidRestore) -> Result<ExitReason> {
    let state = load_state(&cfg.dir)?;
    let slots = match_slots(&state.devices.virtio, cfg)?;
    let signals = event_loop::block_stop_signals().map_err(builder::Error::from)?;
    let (kvm, vmfd) = vm::create_vm().map_err(builder::Error::from)?;
    let vmfd = Arc::new(vmfd);
    let helper = spawn_kvm_setup(kvm, vmfd.clone(), false)?;
    let mem = Arc::new(map_memory_file(&cfg.dir.join(MEMORY_FILE), &state.memory)?);
    memory::register_guest_memory(&vmfd, &mem).map_err(builder::Error::from)?;

    let legacy = legacy_devices(
        &vmfd,
        &cfg.console,
        Some((&state.devices.serial, &state.devices.i8042)),
    )?;
    let mut m = Machine::new(vmfd.clone(), mem, state.memory.mib, &cfg.console, legacy)?;
    let mut wakes = Vec::with_capacity(slots.len());
    for (d, backing) in state.devices.virtio.iter().zip(&slots) {
        wakes.push(restore_device(&mut m, d, backing)?);
    }
    let info = join_kvm_setup(helper)?;
    restore_vm_state(&vmfd, &state.vm)?;
    let vcpus = &state.vcpus;
    Ok(launch(
        m,
        vcpus.len() as u8,
        &info.save_info,
        cfg.api_socket.as_deref(),
        signals,
        |v, i| Ok(v.restore(&vcpus[usize::from(i)])?),
        move || wakes.into_iter().for_each(|w| w()),
    )?)
}
