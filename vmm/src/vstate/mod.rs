//! KVM state of the microVM: the VM, its memory and its vCPUs, and the
//! reasons a VM stops.

pub mod exit;
pub mod memory;
pub mod vcpu;
pub mod vcpu_control;
pub mod vm;
