//! What PID 1 does before it talks to anyone: leave the initramfs root for a
//! tmpfs (pivot_root cannot move away from the initial rootfs, and every
//! container needs pivot_root), mount the kernel filesystems, read the
//! kernel command line.

use std::fs;
use std::io;
use std::path::Path;

use crate::syscall::Syscall;

/// Prepares the VM's own root. Only meaningful as PID 1.
pub fn setup_system(sys: &dyn Syscall) -> io::Result<()> {
    switch_to_tmpfs_root(sys)?;
    for dir in ["/proc", "/sys", "/dev", "/run", "/tmp"] {
        fs::create_dir_all(dir)?;
    }
    let nosuid_nodev_noexec = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    sys.mount("proc", Path::new("/proc"), "proc", nosuid_nodev_noexec, "")
        .map_err(|e| context(e, "mount /proc"))?;
    sys.mount("sysfs", Path::new("/sys"), "sysfs", nosuid_nodev_noexec, "")
        .map_err(|e| context(e, "mount /sys"))?;
    sys.mount(
        "devtmpfs",
        Path::new("/dev"),
        "devtmpfs",
        libc::MS_NOSUID,
        "mode=0755",
    )
    .map_err(|e| context(e, "mount /dev"))?;
    sys.mount(
        "tmpfs",
        Path::new("/run"),
        "tmpfs",
        libc::MS_NOSUID | libc::MS_NODEV,
        "mode=0755",
    )
    .map_err(|e| context(e, "mount /run"))?;
    fs::create_dir_all("/sys/fs/cgroup")?;
    sys.mount(
        "cgroup2",
        Path::new("/sys/fs/cgroup"),
        "cgroup2",
        nosuid_nodev_noexec,
        "",
    )
    .map_err(|e| context(e, "mount /sys/fs/cgroup"))?;
    Ok(())
}

/// Moves the process root from the initramfs onto a fresh tmpfs, as
/// `switch_root` does, freeing the initramfs copy of our own binary.
fn switch_to_tmpfs_root(sys: &dyn Syscall) -> io::Result<()> {
    let new_root = Path::new("/newroot");
    fs::create_dir_all(new_root)?;
    sys.mount("tmpfs", new_root, "tmpfs", 0, "mode=0755")
        .map_err(|e| context(e, "mount tmpfs root"))?;
    // The running image stays mapped; the file only costs memory.
    let _ = fs::remove_file("/init");
    std::env::set_current_dir(new_root)?;
    sys.move_mount(Path::new("."), Path::new("/"))
        .map_err(|e| context(e, "move root"))?;
    sys.chroot(Path::new("."))
        .map_err(|e| context(e, "chroot"))?;
    std::env::set_current_dir("/")
}

/// The value of `key=value` on the kernel command line.
pub fn cmdline_value(cmdline: &str, key: &str) -> Option<String> {
    cmdline
        .split_ascii_whitespace()
        .filter_map(|word| word.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.to_string())
}

pub fn read_cmdline() -> String {
    fs::read_to_string("/proc/cmdline").unwrap_or_default()
}

fn context(err: io::Error, what: &str) -> io::Error {
    io::Error::new(err.kind(), format!("{what}: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cmdline_values() {
        let cmdline = "console=ttyS0 hull.channel=vsock quiet root=/dev/vda hull.x=";
        assert_eq!(
            cmdline_value(cmdline, "hull.channel").as_deref(),
            Some("vsock")
        );
        assert_eq!(cmdline_value(cmdline, "hull.x").as_deref(), Some(""));
        assert_eq!(cmdline_value(cmdline, "quiet"), None);
        assert_eq!(cmdline_value(cmdline, "hull"), None);
    }
}
