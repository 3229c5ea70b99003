//! A recording fake of both syscall traits (youki's
//! `syscall/test.rs` `TestHelperSyscall`): every call is appended to a log
//! in order; a test can make chosen calls fail with an errno, give the
//! fake a mountinfo text and the devices of paths. Nothing touches the
//! kernel, so tests run without root.

use std::collections::{HashMap, HashSet};
use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{ChildSyscall, IdMap, Syscall};

/// One recorded call. Paths and strings as passed (C strings lossily).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Mount {
        source: String,
        target: String,
        fstype: String,
        flags: libc::c_ulong,
        data: String,
        /// `mount_as`'s filesystem ids.
        as_ids: Option<(u32, u32)>,
    },
    Unmount {
        target: String,
        flags: libc::c_int,
    },
    MoveMount {
        source: String,
        target: String,
    },
    Chroot(String),
    OpenTree(String),
    SetMountIdmap,
    AttachTree(String),
    WriteIdMap {
        pid: i32,
        map: IdMap,
        text: String,
    },
    SetRlimit {
        pid: i32,
        resource: u32,
        soft: u64,
        hard: u64,
    },
    WriteFile {
        path: String,
        contents: String,
    },
    Kill {
        pid: i32,
        signal: i32,
    },
    SetNamespace {
        nstype: libc::c_int,
    },
    MakeMountsPrivate,
    Mkdir(String),
    Mknod {
        path: String,
        mode: libc::mode_t,
        dev: libc::dev_t,
    },
    Symlink {
        target: String,
        link: String,
    },
    PivotInto(String),
    SetHostname(String),
    EnterUserNamespace,
    BindDevice {
        source: String,
        target: String,
    },
    BindSysfs {
        target: String,
        flags: libc::c_ulong,
    },
    MountOverVmCgroup {
        target: String,
    },
    OpenPty,
    SendFd,
    WriteSysctl {
        path: String,
        value: String,
    },
    Chown {
        path: String,
        uid: u32,
        gid: u32,
    },
    SetDomainname(String),
    RunHook {
        path: String,
        root: Option<String>,
        state: String,
    },
    AttachDeviceProgram {
        insns: Vec<u64>,
    },
}

/// A plain mount, as recorded (no `mount_as` ids).
pub fn mount(source: &str, target: &str, fstype: &str, flags: libc::c_ulong, data: &str) -> Call {
    Call::Mount {
        source: source.into(),
        target: target.into(),
        fstype: fstype.into(),
        flags,
        data: data.into(),
        as_ids: None,
    }
}

type FailRule = Box<dyn Fn(&Call) -> Option<i32> + Send + Sync>;

/// The fake. `Default` succeeds at everything, with an empty mountinfo.
#[derive(Default)]
pub struct Recording {
    calls: Mutex<Vec<Call>>,
    fail: Mutex<Vec<FailRule>>,
    mountinfo: Mutex<String>,
    devices: Mutex<HashMap<PathBuf, u64>>,
    dirs: Mutex<HashSet<String>>,
    files: Mutex<HashSet<String>>,
}

fn lossy(s: &CStr) -> String {
    s.to_string_lossy().into_owned()
}

fn text(path: &Path) -> String {
    path.display().to_string()
}

impl Recording {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every call for which `rule` returns an errno fail with it
    /// (the call is still recorded).
    pub fn fail_when(&self, rule: impl Fn(&Call) -> Option<i32> + Send + Sync + 'static) {
        self.fail.lock().unwrap().push(Box::new(rule));
    }

    pub fn set_mountinfo(&self, text: &str) {
        *self.mountinfo.lock().unwrap() = text.to_string();
    }

    pub fn set_device(&self, path: impl Into<PathBuf>, dev: u64) {
        self.devices.lock().unwrap().insert(path.into(), dev);
    }

    /// `is_dir` answers true for `path` (false for [`Self::add_file`]s,
    /// ENOENT for anything else).
    pub fn add_dir(&self, path: &str) {
        self.dirs.lock().unwrap().insert(path.to_string());
    }

    pub fn add_file(&self, path: &str) {
        self.files.lock().unwrap().insert(path.to_string());
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// The mount calls so far (`Call::Mount`), in order.
    pub fn mounts(&self) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| matches!(c, Call::Mount { .. }))
            .collect()
    }

    fn record(&self, call: Call) -> Result<(), i32> {
        let errno = self
            .fail
            .lock()
            .unwrap()
            .iter()
            .find_map(|rule| rule(&call));
        self.calls.lock().unwrap().push(call);
        match errno {
            Some(errno) => Err(errno),
            None => Ok(()),
        }
    }

    fn io(&self, call: Call) -> io::Result<()> {
        self.record(call).map_err(io::Error::from_raw_os_error)
    }
}

impl Syscall for Recording {
    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: libc::c_ulong,
        data: &str,
    ) -> io::Result<()> {
        self.io(mount(source, &text(target), fstype, flags, data))
    }

    fn mount_as(
        &self,
        uid: u32,
        gid: u32,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: libc::c_ulong,
        data: &str,
    ) -> io::Result<()> {
        self.io(Call::Mount {
            source: source.into(),
            target: text(target),
            fstype: fstype.into(),
            flags,
            data: data.into(),
            as_ids: Some((uid, gid)),
        })
    }

    fn unmount(&self, target: &Path, flags: libc::c_int) -> io::Result<()> {
        self.io(Call::Unmount {
            target: text(target),
            flags,
        })
    }

    fn move_mount(&self, source: &Path, target: &Path) -> io::Result<()> {
        self.io(Call::MoveMount {
            source: text(source),
            target: text(target),
        })
    }

    fn chroot(&self, path: &Path) -> io::Result<()> {
        self.io(Call::Chroot(text(path)))
    }

    fn open_tree_clone(&self, source: &Path) -> io::Result<OwnedFd> {
        self.io(Call::OpenTree(text(source)))?;
        File::open("/dev/null").map(OwnedFd::from)
    }

    fn set_mount_idmap(&self, _tree: BorrowedFd<'_>, _userns: BorrowedFd<'_>) -> io::Result<()> {
        self.io(Call::SetMountIdmap)
    }

    fn attach_tree(&self, _tree: BorrowedFd<'_>, target: &Path) -> io::Result<()> {
        self.io(Call::AttachTree(text(target)))
    }

    fn write_id_map(&self, pid: i32, map: IdMap, text: &str) -> io::Result<()> {
        self.io(Call::WriteIdMap {
            pid,
            map,
            text: text.into(),
        })
    }

    fn set_rlimit(&self, pid: i32, resource: u32, soft: u64, hard: u64) -> io::Result<()> {
        self.io(Call::SetRlimit {
            pid,
            resource,
            soft,
            hard,
        })
    }

    fn write_file(&self, path: &Path, contents: &str) -> io::Result<()> {
        self.io(Call::WriteFile {
            path: text(path),
            contents: contents.into(),
        })
    }

    fn kill(&self, pid: i32, signal: i32) -> io::Result<()> {
        self.io(Call::Kill { pid, signal })
    }

    fn set_namespace(&self, _fd: BorrowedFd<'_>, nstype: libc::c_int) -> io::Result<()> {
        self.io(Call::SetNamespace { nstype })
    }

    fn mountinfo(&self) -> io::Result<String> {
        Ok(self.mountinfo.lock().unwrap().clone())
    }

    fn attach_device_program(&self, _cgroup: RawFd, insns: &[u64]) -> io::Result<()> {
        self.io(Call::AttachDeviceProgram {
            insns: insns.to_vec(),
        })
    }

    fn device_of(&self, path: &Path) -> io::Result<u64> {
        self.devices
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))
    }
}

impl ChildSyscall for Recording {
    fn make_mounts_private(&self) -> Result<(), i32> {
        self.record(Call::MakeMountsPrivate)
    }

    fn mount(
        &self,
        source: &CStr,
        target: &CStr,
        fstype: &CStr,
        flags: libc::c_ulong,
        data: &CStr,
    ) -> Result<(), i32> {
        self.record(mount(
            &lossy(source),
            &lossy(target),
            &lossy(fstype),
            flags,
            &lossy(data),
        ))
    }

    fn mkdir(&self, path: &CStr, _mode: libc::mode_t) -> Result<(), i32> {
        self.record(Call::Mkdir(lossy(path)))
    }

    fn mknod(&self, path: &CStr, mode: libc::mode_t, dev: libc::dev_t) -> Result<(), i32> {
        self.record(Call::Mknod {
            path: lossy(path),
            mode,
            dev,
        })
    }

    fn symlink(&self, target: &CStr, link: &CStr) -> Result<(), i32> {
        self.record(Call::Symlink {
            target: lossy(target),
            link: lossy(link),
        })
    }

    fn is_dir(&self, path: &CStr) -> Result<bool, i32> {
        let path = lossy(path);
        if self.dirs.lock().unwrap().contains(&path) {
            Ok(true)
        } else if self.files.lock().unwrap().contains(&path) {
            Ok(false)
        } else {
            Err(libc::ENOENT)
        }
    }

    fn pivot_into(&self, new_root: &CStr) -> Result<(), i32> {
        self.record(Call::PivotInto(lossy(new_root)))
    }

    fn set_hostname(&self, name: &CStr) -> Result<(), i32> {
        self.record(Call::SetHostname(lossy(name)))
    }

    fn enter_user_namespace(&self, _sync_fd: RawFd) -> Result<(), i32> {
        self.record(Call::EnterUserNamespace)
    }

    fn bind_device(&self, source: &CStr, target: &CStr) -> Result<(), i32> {
        self.record(Call::BindDevice {
            source: lossy(source),
            target: lossy(target),
        })
    }

    fn bind_sysfs(&self, target: &CStr, flags: libc::c_ulong) -> Result<(), i32> {
        self.record(Call::BindSysfs {
            target: lossy(target),
            flags,
        })
    }

    fn mount_over_vm_cgroup(
        &self,
        _source: &CStr,
        target: &CStr,
        _fstype: &CStr,
        _flags: libc::c_ulong,
        _data: &CStr,
    ) -> Result<(), i32> {
        self.record(Call::MountOverVmCgroup {
            target: lossy(target),
        })
    }

    fn open_pty(
        &self,
        _ptmx: &CStr,
        _pts_prefix: &CStr,
        _rows: u16,
        _cols: u16,
    ) -> Result<(RawFd, RawFd), i32> {
        self.record(Call::OpenPty).map(|_| (-1, -1))
    }

    fn send_fd(&self, _socket: RawFd, _fd: RawFd) -> Result<(), i32> {
        self.record(Call::SendFd)
    }

    fn write_file(&self, path: &CStr, bytes: &[u8]) -> Result<(), i32> {
        self.record(Call::WriteSysctl {
            path: lossy(path),
            value: String::from_utf8_lossy(bytes).into_owned(),
        })
    }

    fn chown(&self, path: &CStr, uid: u32, gid: u32) -> Result<(), i32> {
        self.record(Call::Chown {
            path: lossy(path),
            uid,
            gid,
        })
    }

    fn set_domainname(&self, name: &CStr) -> Result<(), i32> {
        self.record(Call::SetDomainname(lossy(name)))
    }

    fn run_hook(
        &self,
        hook: &crate::process::PreparedHook,
        root: Option<&CStr>,
        state: [&[u8]; 3],
    ) -> Result<(), i32> {
        self.record(Call::RunHook {
            path: lossy(&hook.path),
            root: root.map(lossy),
            state: state
                .iter()
                .map(|part| String::from_utf8_lossy(part))
                .collect(),
        })
    }
}
