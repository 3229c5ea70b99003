//! `containerd-shim-hull-v2`: containerd's runtime v2 shim for hull, so
//! that `ctr run --runtime io.containerd.hull.v2` (and CRI through a
//! RuntimeClass) runs each task in its own microVM. Built on the
//! `containerd-shim` crate (rust-extensions): that crate parses the shim
//! command line, serves ttrpc and publishes events; `task` implements the
//! Task service over hull's library — container records and one
//! supervisor per container, the same as `hull-runc` uses.

mod error;
mod rootfs;
mod service;
mod shim;
mod stdio;

/// The runtime name containerd knows this shim by.
const RUNTIME_ID: &str = "io.containerd.hull.v2";

#[tokio::main]
async fn main() {
    let config = containerd_shim::Config {
        // The library spawns and waits for its own children (mkfs, the
        // supervisors); a reaper that waits on any pid would steal their
        // statuses. Orphans of dead supervisors go to init.
        no_reaper: true,
        no_sub_reaper: true,
        ..Default::default()
    };
    containerd_shim::asynchronous::run::<shim::HullShim>(RUNTIME_ID, Some(config)).await;
}
