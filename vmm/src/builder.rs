//! Turns a validated VM description into a running VM: KVM, memory, the
//! kernel and its boot data, devices on their buses, vCPU threads and the
//! event loop. The only module besides `main` that reads config types.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::{Arc, Mutex};

use kvm_bindings::{CpuId, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::VmFd;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

use crate::arch::x86_64::layout::{MMIO_GAP_START, SERIAL_IRQ, VIRTIO_IRQ_BASE, VIRTIO_MMIO_SIZE};
use crate::arch::x86_64::mptable;
use crate::arch::x86_64::regs::BootMode;
use crate::config::{Console, ValidConfig};
use crate::devices::legacy::{i8042, serial, EventFdTrigger, SerialConsole, I8042};
use crate::devices::virtio::block::Block;
use crate::devices::virtio::mmio::MmioTransport;
use crate::devices::virtio::net::Net;
use crate::devices::virtio::vsock::Vsock;
use crate::devices::virtio::{VirtioDevice, VirtioSubscriber};
use crate::devices::{Bus, BusDevice};
use crate::event_loop::{self, EventLoop, EventOps, Subscriber};
use crate::loader;
use crate::seccomp;
use crate::vstate::exit::{ExitReason, ExitSignal};
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

fn attach_virtio<D: VirtioDevice + Subscriber + 'static>(
    vm: &VmFd,
    mmio: &mut Bus,
    el: &mut EventLoop,
    cmdline: &mut Vec<String>,
    slot: u32,
    dev: D,
) -> Result<()> {
    let addr = MMIO_GAP_START + u64::from(slot) * VIRTIO_MMIO_SIZE;
    let irq = VIRTIO_IRQ_BASE + slot;
    let dev = Arc::new(Mutex::new(dev));
    let transport = MmioTransport::new(dev.clone());
    {
        let d = crate::devices::lock(&dev);
        for (i, evt) in d.state().queue_events().iter().enumerate() {
            vm.register_ioevent(
                evt,
                &kvm_ioctls::IoEventAddress::Mmio(addr + 0x50),
                i as u32,
            )
            .map_err(|e| Error::Register("a queue ioeventfd", e))?;
        }
        vm.register_irqfd(d.state().interrupt().eventfd(), irq)
            .map_err(|e| Error::Register("a virtio irqfd", e))?;
    }
    mmio.insert(
        Arc::new(Mutex::new(transport)) as Arc<Mutex<dyn BusDevice>>,
        addr,
        VIRTIO_MMIO_SIZE,
    )?;
    el.add_subscriber(Box::new(VirtioSubscriber::new(dev)));
    cmdline.push(format!("virtio_mmio.device=4K@{addr:#x}:{irq}"));
    Ok(())
}

/// Builds the VM described by `cfg`, runs it, and returns why it stopped.
pub fn run(cfg: &ValidConfig) -> Result<ExitReason> {
    let signals = event_loop::block_stop_signals()?;
    let (kvm, vm) = vm::create_vm()?;
    let vm = Arc::new(vm);
    // The PIT and the CPUID query are slow ioctls (milliseconds here) that
    // depend on nothing else: run them while memory and devices are set up.
    let helper_vm = vm.clone();
    let helper = std::thread::Builder::new()
        .name("kvm-setup".into())
        .spawn(move || -> Result<CpuId> {
            vm::create_pit(&helper_vm)?;
            kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
                .map_err(Error::SupportedCpuid)
        })
        .map_err(Error::Spawn)?;
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

    let exit = Arc::new(ExitSignal::new().map_err(Error::EventFd)?);
    let mut pio = Bus::new();
    let mut mmio = Bus::new();
    let mut el = EventLoop::new()?;

    let serial_irq = new_eventfd()?;
    vm.register_irqfd(&serial_irq, SERIAL_IRQ)
        .map_err(|e| Error::Register("the serial irqfd", e))?;
    let console = Arc::new(Mutex::new(SerialConsole::new(
        EventFdTrigger(serial_irq),
        console_writer(&cfg.console)?,
    )));
    pio.insert(console.clone(), serial::COM1_BASE, serial::COM1_LEN)?;
    if cfg.console == Console::Stdout && stdin_is_ours() {
        el.add_subscriber(Box::new(StdinInput { console }));
    }
    let reset = new_eventfd()?;
    let kbd = I8042::new(EventFdTrigger(reset.try_clone().map_err(Error::EventFd)?));
    pio.insert(
        Arc::new(Mutex::new(kbd)),
        i8042::I8042_BASE,
        i8042::I8042_LEN,
    )?;
    el.add_subscriber(Box::new(ResetWatcher {
        evt: reset,
        exit: exit.clone(),
    }));

    let mut announce = Vec::new();
    let mut slot = 0u32;
    for b in &cfg.block {
        let name = format!("block device {}", b.path.display());
        let file = OpenOptions::new()
            .read(true)
            .write(!b.read_only)
            .open(&b.path)
            .map_err(|e| Error::Open(b.path.display().to_string(), e))?;
        let id = b.id.clone().unwrap_or_else(|| format!("hull{slot}"));
        let dev = Block::new(mem.clone(), file, b.read_only, id.as_bytes())
            .map_err(|e| Error::Device(name, e))?;
        attach_virtio(&vm, &mut mmio, &mut el, &mut announce, slot, dev)?;
        slot += 1;
    }
    for (tap, mac) in &cfg.net {
        let dev = Net::new(mem.clone(), tap, *mac)
            .map_err(|e| Error::Device(format!("net device on {tap}"), e))?;
        attach_virtio(&vm, &mut mmio, &mut el, &mut announce, slot, dev)?;
        slot += 1;
    }
    if let Some((cid, uds)) = &cfg.vsock {
        let dev = Vsock::new(mem.clone(), u64::from(*cid), uds)
            .map_err(|e| Error::Device(format!("vsock device on {}", uds.display()), e))?;
        attach_virtio(&vm, &mut mmio, &mut el, &mut announce, slot, dev)?;
    }

    let cmdline = compose_cmdline(&cfg.cmdline, &announce);
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

    let pio = Arc::new(pio);
    let mmio = Arc::new(mmio);
    let vcpu_filter = seccomp::vcpu_filter()?;
    let supported = helper.join().map_err(|_| Error::SetupThread)??;
    for i in 0..cfg.vcpus {
        let mut v = vcpu::Vcpu::new(&vm, i, pio.clone(), mmio.clone(), exit.clone())?;
        v.configure(&mem, &supported, cfg.vcpus, &entry)?;
        let filter = vcpu_filter.clone();
        let exit_for_thread = exit.clone();
        std::thread::Builder::new()
            .name(format!("vcpu{i}"))
            .spawn(move || {
                if let Err(e) = seccomp::apply(&filter) {
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
    }
    seccomp::apply(&seccomp::event_loop_filter()?)?;
    let reason = el.run(&exit, &signals)?;
    // The vsock listener's socket file goes with the VM (the device itself
    // is still shared with the vCPU threads, so its Drop does not run).
    if let Some((_, uds)) = &cfg.vsock {
        let _ = std::fs::remove_file(uds);
    }
    Ok(reason)
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
