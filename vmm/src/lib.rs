//! hull-vmm: a small KVM virtual machine monitor, one process per microVM,
//! built on the rust-vmm crates (kvm-ioctls, vm-memory, linux-loader,
//! virtio-queue, vm-superio, seccompiler). It boots what it is told with
//! the devices it is told, and knows nothing about containers.
//!
//! Layout follows Firecracker's `src/vmm`: `arch` (x86_64 boot tables),
//! `loader`, `vstate` (KVM VM, memory, vCPUs), `devices` (legacy and
//! virtio), `event_loop`, `seccomp` (with `hostfs`, the one thread that names
//! host paths once the guest runs), with `config` read only by `builder`
//! (and `restore`). Snapshot state is `persist` (each device's part in its
//! folder's `persist.rs`), written through the control API (`api`,
//! `controller`) and read back by `restore` (`--restore DIR`).

pub mod api;
pub mod arch;
pub mod builder;
pub mod config;
pub mod controller;
pub mod devices;
pub mod event_loop;
pub mod hostfs;
pub mod loader;
pub mod logger;
pub mod persist;
pub mod rate_limiter;
pub mod restore;
pub mod seccomp;
pub mod vstate;

pub use vstate::exit::ExitReason;
