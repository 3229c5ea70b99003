//! vCPUs: boot state and the run loop that turns KVM exits into bus
//! accesses or VM exit reasons (Firecracker's `vstate/vcpu`).

use std::sync::Arc;

use kvm_bindings::CpuId;
use kvm_ioctls::{VcpuExit, VcpuFd, VmFd};
use vm_memory::GuestMemoryMmap;

use super::exit::{ExitReason, ExitSignal};
use super::vcpu_control::{self, VcpuControl};
use crate::arch::x86_64::{cpuid, msr, regs};
use crate::devices::Bus;
use crate::loader::KernelEntry;
use crate::persist::vcpu::{restore_vcpu, save_vcpu, VcpuState, VcpuStateError};

/// Errors while creating or configuring a vCPU.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// KVM_CREATE_VCPU failed.
    #[error("cannot create vCPU {0}")]
    Create(u8, #[source] kvm_ioctls::Error),
    /// CPUID could not be built or set.
    #[error("cannot set CPUID of vCPU {0}")]
    Cpuid(u8, #[source] CpuidError),
    /// MSRs could not be set.
    #[error("cannot set MSRs of vCPU {0}")]
    Msr(u8, #[source] msr::Error),
    /// Registers could not be set.
    #[error("cannot set registers of vCPU {0}")]
    Regs(u8, #[source] regs::Error),
    /// A saved state could not be set.
    #[error("cannot restore vCPU {0}")]
    Restore(u8, #[source] VcpuStateError),
}

/// Why CPUID setup failed.
#[derive(Debug, thiserror::Error)]
pub enum CpuidError {
    /// Filtering failed.
    #[error("cannot filter CPUID")]
    Filter(#[source] cpuid::Error),
    /// KVM_SET_CPUID2 failed.
    #[error("KVM_SET_CPUID2 failed")]
    Set(#[source] kvm_ioctls::Error),
}

/// What a vCPU needs to save its state when paused: the MSRs to read and
/// the size of KVM's XSAVE area (KVM_CAP_XSAVE2, 0 without it).
#[derive(Clone, Debug, Default)]
pub struct SaveInfo {
    /// MSR indices (`persist::vcpu::msrs_to_save`).
    pub msrs: Vec<u32>,
    /// KVM_CAP_XSAVE2.
    pub xsave2_size: usize,
}

/// Everything a vCPU thread needs to run.
pub struct Vcpu {
    fd: VcpuFd,
    index: u8,
    pio: Arc<Bus>,
    mmio: Arc<Bus>,
    exit: Arc<ExitSignal>,
    control: Arc<VcpuControl>,
    save_info: SaveInfo,
}

/// Port ranges Linux probes on any PC (POST/delay ports, DMA page
/// registers, NMI status, CMOS, other UARTs, PCI configuration); reads
/// of them return zero without a log line.
const QUIET_PORTS: &[(u16, u16)] = &[
    (0x61, 0x61),
    (0x70, 0x71),
    (0x80, 0x8f),
    (0xed, 0xed),
    (0x2e8, 0x2ef),
    (0x2f8, 0x2ff),
    (0x3e8, 0x3ef),
    (0xcf8, 0xcff),
];

fn quiet(port: u16) -> bool {
    QUIET_PORTS
        .iter()
        .any(|(lo, hi)| (*lo..=*hi).contains(&port))
}

impl Vcpu {
    /// Creates vCPU `index` on `vm`; `control` is where it parks when
    /// paused, `save_info` what it needs to save its state then.
    pub fn new(
        vm: &VmFd,
        index: u8,
        pio: Arc<Bus>,
        mmio: Arc<Bus>,
        exit: Arc<ExitSignal>,
        control: Arc<VcpuControl>,
        save_info: SaveInfo,
    ) -> Result<Self, Error> {
        let fd = vm
            .create_vcpu(u64::from(index))
            .map_err(|e| Error::Create(index, e))?;
        Ok(Self {
            fd,
            index,
            pio,
            mmio,
            exit,
            control,
            save_info,
        })
    }

    /// The vCPU fd (its thread's filter allows ioctls on this fd only).
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.fd)
    }

    /// Sets a saved state instead of the boot state.
    pub fn restore(&self, state: &VcpuState) -> Result<(), Error> {
        restore_vcpu(&self.fd, state, self.save_info.xsave2_size)
            .map_err(|e| Error::Restore(self.index, e))
    }

    /// Leaves KVM_RUN's immediate exit and parks while a pause is wanted.
    fn on_kick(&mut self) {
        self.fd.set_kvm_immediate_exit(0);
        let Self {
            fd,
            control,
            save_info,
            ..
        } = self;
        control.park_if_paused(|| save_vcpu(fd, &save_info.msrs, save_info.xsave2_size));
    }

    /// Sets CPUID, MSRs, FPU, LAPIC and (for the boot CPU) the entry state.
    pub fn configure(
        &self,
        mem: &GuestMemoryMmap,
        supported: &CpuId,
        count: u8,
        entry: &KernelEntry,
    ) -> Result<(), Error> {
        let i = self.index;
        let table = cpuid::filter_cpuid(supported, i, count)
            .map_err(|e| Error::Cpuid(i, CpuidError::Filter(e)))?;
        self.fd
            .set_cpuid2(&table)
            .map_err(|e| Error::Cpuid(i, CpuidError::Set(e)))?;
        msr::setup_msrs(&self.fd).map_err(|e| Error::Msr(i, e))?;
        regs::setup_fpu(&self.fd).map_err(|e| Error::Regs(i, e))?;
        regs::setup_regs(&self.fd, entry.entry.0, entry.mode).map_err(|e| Error::Regs(i, e))?;
        regs::setup_sregs(mem, &self.fd, entry.mode).map_err(|e| Error::Regs(i, e))?;
        regs::setup_lint(&self.fd).map_err(|e| Error::Regs(i, e))?;
        Ok(())
    }

    /// Runs the vCPU until the guest stops it or something fails; the
    /// reason is reported to the exit signal and returned.
    pub fn run(&mut self) -> ExitReason {
        vcpu_control::bind_thread(self.fd.get_kvm_run());
        let reason = self.run_loop();
        vcpu_control::bind_thread(std::ptr::null_mut());
        self.control.mark_stopped();
        self.exit.request(reason.clone());
        reason
    }

    fn run_loop(&mut self) -> ExitReason {
        let cpu = self.index;
        loop {
            match self.fd.run() {
                Ok(VcpuExit::IoIn(port, data)) => {
                    if !self.pio.read(u64::from(port), data) && !quiet(port) {
                        crate::logger::guest_event(format_args!(
                            "vCPU {cpu}: read of unknown port {port:#x}"
                        ));
                    }
                }
                Ok(VcpuExit::IoOut(port, data)) => {
                    if !self.pio.write(u64::from(port), data) && !quiet(port) {
                        crate::logger::guest_event(format_args!(
                            "vCPU {cpu}: write to unknown port {port:#x}"
                        ));
                    }
                }
                Ok(VcpuExit::MmioRead(addr, data)) => {
                    if !self.mmio.read(addr, data) {
                        data.fill(0);
                        crate::logger::guest_event(format_args!(
                            "vCPU {cpu}: read of unknown MMIO {addr:#x}"
                        ));
                    }
                }
                Ok(VcpuExit::MmioWrite(addr, data)) => {
                    if !self.mmio.write(addr, data) {
                        crate::logger::guest_event(format_args!(
                            "vCPU {cpu}: write to unknown MMIO {addr:#x}"
                        ));
                    }
                }
                Ok(VcpuExit::Hlt) => return ExitReason::Poweroff,
                Ok(VcpuExit::Shutdown) => return ExitReason::TripleFault { cpu },
                Ok(VcpuExit::SystemEvent(kind, _)) => {
                    return match kind {
                        kvm_bindings::KVM_SYSTEM_EVENT_SHUTDOWN => ExitReason::Poweroff,
                        kvm_bindings::KVM_SYSTEM_EVENT_RESET => ExitReason::Reset,
                        k => ExitReason::VcpuError {
                            cpu,
                            what: format!("unhandled system event {k}"),
                        },
                    }
                }
                Ok(VcpuExit::FailEntry(reason, _)) => return ExitReason::FailEntry { cpu, reason },
                Ok(VcpuExit::InternalError) => {
                    // SAFETY: after KVM_EXIT_INTERNAL_ERROR the kernel filled
                    // the `internal` member of the exit union.
                    let suberror =
                        unsafe { self.fd.get_kvm_run().__bindgen_anon_1.internal.suberror };
                    return ExitReason::InternalError { cpu, suberror };
                }
                Ok(VcpuExit::Intr) => self.on_kick(),
                Ok(other) => {
                    return ExitReason::VcpuError {
                        cpu,
                        what: format!("unexpected KVM exit {other:?}"),
                    }
                }
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => self.on_kick(),
                Err(e) => {
                    return ExitReason::VcpuError {
                        cpu,
                        what: format!("KVM_RUN failed: {e}"),
                    }
                }
            }
        }
    }
}
