//! One mount as the child replays it, and the /dev every container gets
//! (runc's defaults). Plain data, all C strings made before the clone:
//! `container::mounts` plans these from the spec, `spawn` hands them on.

use std::ffi::CString;

/// One mount, ready for the child.
#[derive(Debug)]
pub struct MountOp {
    pub source: CString,
    pub target: CString,
    pub fstype: CString,
    pub flags: libc::c_ulong,
    pub data: CString,
    /// Bind mounts with flags beyond MS_BIND need a second, remount call.
    pub remount_flags: Option<libc::c_ulong>,
    /// This is the container's /dev tmpfs: create the standard nodes in it.
    pub populate_dev: bool,
    /// A bind of a file: its target is a file, made if missing.
    pub file_target: bool,
}

/// Nodes every container gets in /dev (runc's defaults): name, major, minor.
pub const DEFAULT_DEVICES: &[(&str, u32, u32)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// Symlinks every container gets in /dev.
pub const DEFAULT_DEV_LINKS: &[(&str, &str)] = &[
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
    ("core", "/proc/kcore"),
];
