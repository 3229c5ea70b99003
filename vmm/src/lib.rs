//! hull-vmm: a small KVM virtual machine monitor, one process per microVM,
//! built on the rust-vmm crates (kvm-ioctls, vm-memory, linux-loader,
//! virtio-queue, vm-superio, seccompiler). It boots what it is told with
//! the devices it is told, and knows nothing about containers.
//!
//! Layout follows Firecracker's `src/vmm`: `arch` (x86_64 boot tables),
//! `loader`, `vstate` (KVM VM, memory, vCPUs), `devices` (legacy and
//! virtio), `event_loop`, `seccomp`, with `config` read only by `builder`.

pub mod arch;
pub mod builder;
pub mod config;
pub mod devices;
pub mod event_loop;
pub mod loader;
pub mod logger;
pub mod seccomp;
pub mod vstate;

pub use vstate::exit::ExitReason;
