//! What the child applies to itself before exec besides confinement, as
//! runc's init does: the umask, `oom_score_adj`, the I/O priority
//! (ioprio_set) and the scheduler (sched_setattr), the sysctls of the
//! container's namespaces, its domain name and its extra device nodes.
//! Plain values: `container` checks them from the spec, `spawn` turns
//! them into C strings, `child` replays them.

/// `struct sched_attr` of sched_setattr(2) (SCHED_ATTR_SIZE_VER1).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedAttr {
    pub size: u32,
    pub policy: u32,
    pub flags: u64,
    pub nice: i32,
    pub priority: u32,
    pub runtime: u64,
    pub deadline: u64,
    pub period: u64,
    pub util_min: u32,
    pub util_max: u32,
}

impl Default for SchedAttr {
    fn default() -> Self {
        Self {
            size: std::mem::size_of::<Self>() as u32,
            policy: 0,
            flags: 0,
            nice: 0,
            priority: 0,
            runtime: 0,
            deadline: 0,
            period: 0,
            util_min: 0,
            util_max: 0,
        }
    }
}

/// The umask runc gives a process whose spec sets none.
pub const DEFAULT_UMASK: u32 = 0o022;

/// A process's attributes (main or exec'd).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessAttrs {
    pub umask: u32,
    /// -1000..=1000
    pub oom_score_adj: Option<i32>,
    /// ioprio value: class << 13 | level.
    pub io_priority: Option<u16>,
    pub scheduler: Option<SchedAttr>,
}

impl Default for ProcessAttrs {
    fn default() -> Self {
        Self {
            umask: DEFAULT_UMASK,
            oom_score_adj: None,
            io_priority: None,
            scheduler: None,
        }
    }
}

/// A device node of `linux.devices`, made in the container's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNode {
    /// Absolute, inside the container.
    pub path: String,
    /// S_IFCHR, S_IFBLK or S_IFIFO, with the permission bits.
    pub mode: libc::mode_t,
    pub major: u32,
    pub minor: u32,
    pub uid: u32,
    pub gid: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sched_attr_is_the_kernels_ver1_struct() {
        assert_eq!(std::mem::size_of::<SchedAttr>(), 56);
        assert_eq!(SchedAttr::default().size, 56);
    }
}
