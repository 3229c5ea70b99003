//! Turns a validated VM description into a running VM: KVM, memory, the
//! kernel and its boot data, devices on their buses, vCPU threads and the
//! event loop. `restore` builds a restored VM from the same
//! parts (`Machine`, `launch`). The only modules besides `main` that read
//! config types.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kvm_bindings::{CpuId, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Kvm, VmFd};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use crate::api::{ApiListener, ApiServer};
use crate::arch::x86_64::layout::{MMIO_GAP_START, SERIAL_IRQ, VIRTIO_IRQ_BASE, VIRTIO_MMIO_SIZE};
use crate::arch::x86_64::mptable;
use crate::arch::x86_64::regs::BootMode;
use crate::config::{Console, ValidBlock, ValidConfig, ValidNet};
use crate::controller::{VcpuHandle, VmController};
use crate::devices::legacy::persist::{I8042State, LegacyRestoreError, SerialState};
use crate::devices::legacy::{i8042, serial, EventFdTrigger, SerialConsole, I8042};
use crate::devices::virtio::block::{Backing, Block};
use crate::devices::virtio::mmio::MmioTransport;
use crate::devices::virtio::net::{Net, NetBacking};
use crate::devices::virtio::vsock::Vsock;
use crate::devices::virtio::{VirtioDevice, VirtioSubscriber};
use crate::devices::{Bus, BusDevice};
use crate::event_loop::{self, EventLoop, EventOps, Subscriber};
use crate::loader;
use crate::persist::devices::{DeviceRegistry, SaveKind};
use crate::rate_limiter::{RateLimit, RateLimiter};
use crate::seccomp;
use crate::vstate::exit::{ExitReason, ExitSignal};
use crate::vstate::vcpu::SaveInfo;
use crate::vstate::vcpu_control::{install_kick_handler, ControlError, VcpuControl};
use crate::vstate::{memory, vcpu, vm};

/// Errors while building or starting the VM.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The VM could not be created.
    #[error(transparent)]
    Vm(#[from] vm::Error),
    /// Guest memory could not be set up.
    #[error(transparent)]
    Memory(#[from] memory::Error),
    /// A file could not be opened.
    #[error("cannot open {0}")]
    Open(String, #[source] std::io::Error),
    /// Loading the guest failed.
    #[error(transparent)]
    Loader(#[from] loader::Error),
    /// The MP table could not be written.
    #[error(transparent)]
    MpTable(#[from] mptable::Error),
    /// An eventfd could not be created.
    #[error("cannot create an eventfd")]
    EventFd(#[source] std::io::Error),
    /// KVM refused an irqfd or ioeventfd.
    #[error("cannot register {0} with KVM")]
    Register(&'static str, #[source] kvm_ioctls::Error),
    /// Devices overlap on a bus.
    #[error(transparent)]
    Bus(#[from] crate::devices::BusError),
    /// A device could not be created.
    #[error("cannot create {0}")]
    Device(String, #[source] crate::devices::virtio::DeviceError),
    /// CPUID could not be queried.
    #[error("KVM_GET_SUPPORTED_CPUID failed")]
    SupportedCpuid(#[source] kvm_ioctls::Error),
    /// A vCPU could not be set up.
    #[error(transparent)]
    Vcpu(#[from] vcpu::Error),
    /// A thread could not be spawned.
    #[error("cannot spawn a thread")]
    Spawn(#[source] std::io::Error),
    /// The KVM setup helper thread panicked.
    #[error("the KVM setup thread failed")]
    SetupThread,
    /// The event loop failed.
    #[error(transparent)]
    EventLoop(#[from] event_loop::Error),
    /// A seccomp filter could not be built or installed.
    #[error(transparent)]
    Seccomp(#[from] seccomp::Error),
    /// KVM's MSR list could not be read.
    #[error("cannot list the MSRs to save")]
    MsrList(#[source] crate::persist::vcpu::VcpuStateError),
    /// A saved legacy device state is not valid.
    #[error(transparent)]
    Legacy(#[from] LegacyRestoreError),
    /// The vCPU kick signal could not be set up.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The control API socket could not be set up.
    #[error(transparent)]
    Api(#[from] crate::api::ApiError),
    /// The host-fs thread could not be started.
    #[error(transparent)]
    HostFs(#[from] crate::hostfs::Error),
    /// A rate limiter's timer could not be made.
    #[error("cannot set up the rate limiter of {0}")]
    RateLimiter(String, #[source] std::io::Error),
}

type Result<T> = std::result::Result<T, Error>;

/// Watches the i8042 reset line and turns it into a VM exit.
struct ResetWatcher {
    evt: EventFd,
    exit: Arc<ExitSignal>,
}

impl Subscriber for ResetWatcher {
    fn init(&mut self, ops: &mut EventOps<'_>) {
        if let Err(e) = ops.add(self.evt.as_raw_fd(), EventSet::IN) {
            self.exit.request(ExitReason::DeviceError(format!(
                "cannot watch the i8042 reset line: {e}"
            )));
        }
    }
    fn process(&mut self, _fd: RawFd, _events: EventSet, _ops: &mut EventOps<'_>) {
        let _ = self.evt.read();
        self.exit.request(ExitReason::Reset);
    }
}

/// Feeds our stdin to the console UART when the console is our stdout
/// (an interactive VM). Bytes that find the UART's FIFO full are dropped,
/// as a real UART overruns; EOF (or a stdin that cannot be polled, such as
/// /dev/null) simply ends the input.
struct StdinInput {
    console: Arc<Mutex<SerialConsole>>,
}

impl Subscriber for StdinInput {
    fn init(&mut self, ops: &mut EventOps<'_>) {
        // Fails harmlessly for files and /dev/null, which epoll refuses.
        let _ = ops.add(libc::STDIN_FILENO, EventSet::IN);
    }
    fn process(&mut self, fd: RawFd, _events: EventSet, ops: &mut EventOps<'_>) {
        let mut buf = [0u8; 64];
        // SAFETY: reads at most `buf.len()` bytes into `buf` from stdin.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            let transient = n < 0
                && matches!(
                    std::io::Error::last_os_error().kind(),
                    std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock
                );
            if !transient {
                let _ = ops.remove(fd);
            }
            return;
        }
        crate::devices::lock(&self.console).enqueue_input(&buf[..n as usize]);
    }
}

/// Whether reading stdin is ours to do: not a terminal we share from the
/// background (reading it would stop us with SIGTTIN).
fn stdin_is_ours() -> bool {
    // SAFETY: isatty, tcgetpgrp and getpgrp only query process state.
    unsafe {
        libc::isatty(libc::STDIN_FILENO) == 0
            || libc::tcgetpgrp(libc::STDIN_FILENO) == libc::getpgrp()
    }
}

fn console_writer(c: &Console) -> Result<Box<dyn Write + Send>> {
    Ok(match c {
        Console::Stdout => {
            // An unbuffered handle on fd 1: every guest byte goes out at once.
            let fd = std::io::stdout()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| Error::Open("stdout".into(), e))?;
            Box::new(File::from(fd))
        }
        Console::None => Box::new(std::io::sink()),
        Console::File(p) => Box::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| Error::Open(p.display().to_string(), e))?,
        ),
    })
}

fn new_eventfd() -> Result<EventFd> {
    EventFd::new(libc::EFD_NONBLOCK).map_err(Error::EventFd)
}

/// Inserts `cmdline_extra` before a `--` separating init arguments, if any.
fn compose_cmdline(base: &str, extra: &[String]) -> String {
    if extra.is_empty() {
        return base.to_string();
    }
    let extra = extra.join(" ");
    match base.find(" -- ") {
        Some(i) => format!("{} {}{}", &base[..i], extra, &base[i..]),
        None if base.is_empty() => extra,
        None => format!("{base} {extra}"),
    }
}

/// The legacy devices and the lines they raise.
pub(crate) struct Legacy {
    /// The COM1 console.
    pub serial: Arc<Mutex<SerialConsole>>,
    /// The i8042.
    pub i8042: Arc<Mutex<I8042>>,
    /// The i8042's reset line.
    pub reset: EventFd,
}

/// Creates the console (its irqfd registered) and the i8042, fresh or
/// from a snapshot's state.
pub(crate) fn legacy_devices(
    vm: &VmFd,
    console: &Console,
    saved: Option<(&SerialState, &I8042State)>,
) -> Result<Legacy> {
    let serial_irq = new_eventfd()?;
    vm.register_irqfd(&serial_irq, SERIAL_IRQ)
        .map_err(|e| Error::Register("the serial irqfd", e))?;
    let out = console_writer(console)?;
    let reset = new_eventfd()?;
    let reset_line = EventFdTrigger(reset.try_clone().map_err(Error::EventFd)?);
    let (serial, i8042) = match saved {
        None => (
            SerialConsole::new(EventFdTrigger(serial_irq), out),
            I8042::new(reset_line),
        ),
        Some((s, k)) => (
            SerialConsole::restore(EventFdTrigger(serial_irq), out, s)?,
            I8042::restore(reset_line, k)?,
        ),
    };
    Ok(Legacy {
        serial: Arc::new(Mutex::new(serial)),
        i8042: Arc::new(Mutex::new(i8042)),
        reset,
    })
}

/// A VM being put together: KVM, memory, the buses and the event loop
/// with the devices on them, and what the snapshot code needs of those.
pub(crate) struct Machine {
    /// The VM.
    pub vm: Arc<VmFd>,
    /// Guest memory.
    pub mem: Arc<GuestMemoryMmap>,
    /// Guest memory in MiB.
    pub memory_mib: u64,
    /// Where threads report why the VM stops.
    pub exit: Arc<ExitSignal>,
    pio: Bus,
    mmio: Bus,
    /// The device event loop.
    pub el: EventLoop,
    /// The devices a snapshot saves.
    pub devices: DeviceRegistry,
    /// `virtio_mmio.device=` announcements for the command line.
    pub announce: Vec<String>,
    /// Socket files to remove when the VM ends.
    pub cleanup: Vec<PathBuf>,
}

impl Machine {
    /// A machine with the legacy devices on its port bus.
    pub fn new(
        vm: Arc<VmFd>,
        mem: Arc<GuestMemoryMmap>,
        memory_mib: u64,
        console: &Console,
        legacy: Legacy,
    ) -> Result<Self> {
        let exit = Arc::new(ExitSignal::new().map_err(Error::EventFd)?);
        let mut pio = Bus::new();
        let mut el = EventLoop::new()?;
        pio.insert(legacy.serial.clone(), serial::COM1_BASE, serial::COM1_LEN)?;
        if *console == Console::Stdout && stdin_is_ours() {
            el.add_subscriber(Box::new(StdinInput {
                console: legacy.serial.clone(),
            }));
        }
        pio.insert(legacy.i8042.clone(), i8042::I8042_BASE, i8042::I8042_LEN)?;
        el.add_subscriber(Box::new(ResetWatcher {
            evt: legacy.reset,
            exit: exit.clone(),
        }));
        Ok(Self {
            devices: DeviceRegistry::new(legacy.serial, legacy.i8042),
            vm,
            mem,
            memory_mib,
            exit,
            pio,
            mmio: Bus::new(),
            el,
            announce: Vec::new(),
            cleanup: Vec::new(),
        })
    }

    /// Puts `dev` in MMIO slot `slot`: its queue ioeventfds and irqfd
    /// registered, its transport on the bus, its events in the loop, its
    /// announcement on the command line. Returns the transport.
    pub fn attach_virtio<D>(&mut self, slot: u32, dev: D) -> Result<Arc<Mutex<MmioTransport<D>>>>
    where
        D: VirtioDevice + Subscriber + SaveKind + 'static,
    {
        let addr = MMIO_GAP_START + u64::from(slot) * VIRTIO_MMIO_SIZE;
        let irq = VIRTIO_IRQ_BASE + slot;
        let dev = Arc::new(Mutex::new(dev));
        let transport = Arc::new(Mutex::new(MmioTransport::new(dev.clone())));
        {
            let d = crate::devices::lock(&dev);
            for (i, evt) in d.state().queue_events().iter().enumerate() {
                self.vm
                    .register_ioevent(
                        evt,
                        &kvm_ioctls::IoEventAddress::Mmio(addr + 0x50),
                        i as u32,
                    )
                    .map_err(|e| Error::Register("a queue ioeventfd", e))?;
            }
            self.vm
                .register_irqfd(d.state().interrupt().eventfd(), irq)
                .map_err(|e| Error::Register("a virtio irqfd", e))?;
        }
        self.mmio.insert(
            transport.clone() as Arc<Mutex<dyn BusDevice>>,
            addr,
            VIRTIO_MMIO_SIZE,
        )?;
        self.el.add_subscriber(Box::new(VirtioSubscriber::new(dev)));
        self.devices.add_virtio(slot, transport.clone());
        // The block devices, typed, for the control API's attach-disk.
        let any: Arc<dyn std::any::Any + Send + Sync> = transport.clone();
        if let Ok(block) = any.downcast::<Mutex<MmioTransport<Block<Backing>>>>() {
            self.devices.add_block(block);
        }
        self.announce
            .push(format!("virtio_mmio.device=4K@{addr:#x}:{irq}"));
        Ok(transport)
    }
}

/// What the KVM setup thread finds out.
pub(crate) struct KvmInfo {
    /// KVM_GET_SUPPORTED_CPUID, when asked for.
    pub supported_cpuid: Option<CpuId>,
    /// What a vCPU needs to save its state.
    pub save_info: SaveInfo,
}

/// Runs the slow, independent KVM set-up (the PIT, CPUID and MSR lists:
/// milliseconds here) on a thread while memory and devices are set up.
pub(crate) fn spawn_kvm_setup(
    kvm: Kvm,
    vm: Arc<VmFd>,
    want_cpuid: bool,
) -> Result<std::thread::JoinHandle<Result<KvmInfo>>> {
    std::thread::Builder::new()
        .name("kvm-setup".into())
        .spawn(move || -> Result<KvmInfo> {
            vm::create_pit(&vm)?;
            let supported_cpuid = if want_cpuid {
                Some(
                    kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
                        .map_err(Error::SupportedCpuid)?,
                )
            } else {
                None
            };
            let msrs = crate::persist::vcpu::msrs_to_save(&kvm).map_err(Error::MsrList)?;
            let xsave2_size = kvm.check_extension_int(kvm_ioctls::Cap::Xsave2).max(0) as usize;
            Ok(KvmInfo {
                supported_cpuid,
                save_info: SaveInfo { msrs, xsave2_size },
            })
        })
        .map_err(Error::Spawn)
}

/// Joins the KVM setup thread.
pub(crate) fn join_kvm_setup(h: std::thread::JoinHandle<Result<KvmInfo>>) -> Result<KvmInfo> {
    h.join().map_err(|_| Error::SetupThread)?
}

/// Creates the vCPUs of `m` (each set up by `setup`), calls `ready` once
/// all are, starts their threads and the control API if asked, and runs
/// the event loop until the VM stops.
pub(crate) fn launch(
    mut m: Machine,
    vcpus: u8,
    save_info: &SaveInfo,
    api_socket: Option<&Path>,
    signals: std::os::fd::OwnedFd,
    mut setup: impl FnMut(&vcpu::Vcpu, u8) -> Result<()>,
    ready: impl FnOnce(),
) -> Result<ExitReason> {
    let api = match api_socket {
        Some(p) => {
            m.cleanup.push(p.to_path_buf());
            Some(ApiListener::bind(p)?)
        }
        None => None,
    };
    let pio = Arc::new(std::mem::take(&mut m.pio));
    let mmio = Arc::new(std::mem::take(&mut m.mmio));
    seccomp::install_sigsys_handler()?;
    install_kick_handler()?;
    let mut ready_vcpus = Vec::new();
    for i in 0..vcpus {
        let control = Arc::new(VcpuControl::default());
        let v = vcpu::Vcpu::new(
            &m.vm,
            i,
            pio.clone(),
            mmio.clone(),
            m.exit.clone(),
            control.clone(),
            save_info.clone(),
        )?;
        setup(&v, i)?;
        ready_vcpus.push((i, v, control));
    }
    ready();
    let mut handles = Vec::new();
    for (i, mut v, control) in ready_vcpus {
        // Compiled here: the thread allocates nothing before its filter.
        let filter = seccomp::vcpu_filter(v.raw_fd())?;
        let exit_for_thread = m.exit.clone();
        let thread = std::thread::Builder::new()
            .name(format!("vcpu{i}"))
            .spawn(move || {
                if let Err(e) = seccomp::apply(seccomp::Kind::Vcpu, &filter) {
                    exit_for_thread.request(ExitReason::VcpuError {
                        cpu: i,
                        what: e.to_string(),
                    });
                    return;
                }
                v.run();
                // The process is about to end; keeping the vCPU (and its fd)
                // alive avoids close and thread-exit syscalls the filter
                // need not allow.
                loop {
                    std::thread::park();
                }
            })
            .map_err(Error::Spawn)?;
        handles.push(VcpuHandle { control, thread });
    }
    let vm_fd = m.vm.as_raw_fd();
    let Machine {
        vm,
        mem,
        memory_mib,
        exit,
        mut el,
        devices,
        cleanup,
        ..
    } = m;
    if let Some(listener) = api {
        let ctl = VmController::new(vm, mem, memory_mib, handles, devices);
        el.add_subscriber(Box::new(ApiServer::new(listener, ctl)));
    }
    crate::hostfs::start(seccomp::host_fs_filter()?)?;
    let el_filter = seccomp::event_loop_filter(vm_fd, crate::vstate::vcpu_control::kick_signal())?;
    seccomp::apply(seccomp::Kind::EventLoop, &el_filter)?;
    let reason = el.run(&exit, &signals)?;
    // Socket files go with the VM (the devices themselves are still shared
    // with the vCPU threads, so their Drop does not run).
    let _ = crate::hostfs::run(move || {
        for p in cleanup {
            let _ = std::fs::remove_file(p);
        }
        Ok(())
    });
    Ok(reason)
}

/// Opens what a block slot stands on; returns it with the device's name
/// for messages.
pub(crate) fn open_block_backing(b: &ValidBlock, slot: u32) -> Result<(Backing, String)> {
    Ok(match &b.path {
        Some(p) => (
            Backing::File(
                OpenOptions::new()
                    .read(true)
                    .write(!b.read_only)
                    .open(p)
                    .map_err(|e| Error::Open(p.display().to_string(), e))?,
            ),
            format!("block device {}", p.display()),
        ),
        None => (
            Backing::Placeholder,
            format!("placeholder block device in slot {slot}"),
        ),
    })
}

/// The rate limiter of the device called `name`.
pub(crate) fn limiter(limit: RateLimit, name: &str) -> Result<RateLimiter> {
    RateLimiter::new(limit).map_err(|e| Error::RateLimiter(name.to_string(), e))
}

/// Opens what a net slot stands on; returns it with the device's name.
pub(crate) fn open_net_backing(n: &ValidNet, slot: u32) -> Result<(NetBacking, String)> {
    let name = match &n.tap {
        Some(t) => format!("net device on {t}"),
        None => format!("placeholder net device in slot {slot}"),
    };
    let backing = match &n.tap {
        Some(t) => NetBacking::tap(t),
        None => NetBacking::placeholder(),
    }
    .map_err(|e| Error::Device(name.clone(), e))?;
    Ok((backing, name))
}

/// Builds the VM described by `cfg`, runs it, and returns why it stopped.
pub fn run(cfg: &ValidConfig) -> Result<ExitReason> {
    let signals = event_loop::block_stop_signals()?;
    let (kvm, vm) = vm::create_vm()?;
    let vm = Arc::new(vm);
    let helper = spawn_kvm_setup(kvm, vm.clone(), true)?;
    let mem = Arc::new(memory::create_guest_memory(&vm, cfg.memory_mib)?);

    let mut kernel =
        File::open(&cfg.kernel).map_err(|e| Error::Open(cfg.kernel.display().to_string(), e))?;
    let entry = loader::load_kernel(&mem, &mut kernel)?;
    let initrd = match &cfg.initramfs {
        Some(p) => {
            let mut f = File::open(p).map_err(|e| Error::Open(p.display().to_string(), e))?;
            Some(loader::load_initrd(&mem, &mut f, entry.kernel_end)?)
        }
        None => None,
    };

    let legacy = legacy_devices(&vm, &cfg.console, None)?;
    let mut m = Machine::new(vm, mem.clone(), cfg.memory_mib, &cfg.console, legacy)?;
    let mut slot = 0u32;
    for b in &cfg.block {
        let id = b.id.clone().unwrap_or_else(|| format!("hull{slot}"));
        let (backing, name) = open_block_backing(b, slot)?;
        let mut dev = Block::with_backing(mem.clone(), backing, b.read_only, id.as_bytes())
            .map_err(|e| Error::Device(name.clone(), e))?;
        dev.set_rate_limiter(limiter(b.rate, &name)?);
        m.attach_virtio(slot, dev)?;
        slot += 1;
    }
    for n in &cfg.net {
        let (backing, name) = open_net_backing(n, slot)?;
        let mut dev = Net::with_backing(mem.clone(), backing, n.mac)
            .map_err(|e| Error::Device(name.clone(), e))?;
        dev.set_rate_limiters(limiter(n.rx_rate, &name)?, limiter(n.tx_rate, &name)?);
        m.attach_virtio(slot, dev)?;
        slot += 1;
    }
    if let Some((cid, uds)) = &cfg.vsock {
        let dev = Vsock::new(mem.clone(), u64::from(*cid), uds)
            .map_err(|e| Error::Device(format!("vsock device on {}", uds.display()), e))?;
        m.attach_virtio(slot, dev)?;
        m.cleanup.push(uds.clone());
    }

    let cmdline = compose_cmdline(&cfg.cmdline, &m.announce);
    loader::write_cmdline(&mem, &cmdline)?;
    match entry.mode {
        BootMode::Pvh => loader::write_pvh_info(&mem, cfg.memory_mib << 20, initrd)?,
        BootMode::Linux64 => loader::write_zero_page(
            &mem,
            cfg.memory_mib << 20,
            cmdline.len() + 1,
            initrd,
            entry.setup_header,
        )?,
    }
    mptable::setup_mptable(&mem, cfg.vcpus)?;

    let info = join_kvm_setup(helper)?;
    let supported = info.supported_cpuid.ok_or(Error::SetupThread)?;
    let count = cfg.vcpus;
    launch(
        m,
        count,
        &info.save_info,
        cfg.api_socket.as_deref(),
        signals,
        |v, _| Ok(v.configure(&mem, &supported, count, &entry)?),
        || {},
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_go_before_init_args() {
        let e = vec!["virtio_mmio.device=4K@0xd0000000:5".to_string()];
        assert_eq!(
            compose_cmdline("a b", &e),
            "a b virtio_mmio.device=4K@0xd0000000:5"
        );
        assert_eq!(
            compose_cmdline("a -- x", &e),
            "a virtio_mmio.device=4K@0xd0000000:5 -- x"
        );
        assert_eq!(compose_cmdline("a", &[]), "a");
    }
}
