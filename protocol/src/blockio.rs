//! How a spec names the container's own disks in
//! `linux.resources.blockIO`.
//!
//! Docker's `--device-read-bps /dev/sda:1mb` names a host device, which
//! means nothing to a container whose I/O goes to its VM's virtio disks,
//! and the host cannot know the major:minor the guest kernel gives those.
//! So the host writes throttle and weight entries for the container's
//! disks with the major number [`CONTAINER_DISK_MAJOR`] (no real device
//! has a negative major) and a minor naming the disk; the agent replaces
//! them with the numbers of the disks it mounted. Any other major:minor is
//! used as it is.

/// The major number of an entry that names one of the container's disks.
pub const CONTAINER_DISK_MAJOR: i64 = -1;
/// The minor number of the image disk (the overlay's read-only lower layer).
pub const IMAGE_DISK_MINOR: i64 = 0;
/// The minor number of the writable-layer disk (the overlay's upper layer).
pub const WRITABLE_DISK_MINOR: i64 = 1;
