//! Logs a guest can fill, kept under a size on the host.
//!
//! A hypervisor writes what the guest makes it write (the serial console,
//! its own warnings about the guest) without bound, and the sandbox
//! directory lives on the run dir's tmpfs, which is RAM. So the hypervisor
//! never writes a file: it gets the write end of a pipe, and a thread of
//! the process that started it copies the pipe into `NAME` until `NAME`
//! holds `limit` bytes; then `NAME` becomes `NAME.1` (the older one goes)
//! and a new `NAME` begins, as logrotate's `size` rule would do. A log
//! never takes more than twice its limit, whatever the guest writes.
//!
//! The files are reached through a descriptor of their directory, so a
//! directory renamed while the VM runs (the warm pool renames a clone's
//! directory to its container's) takes its logs along.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// The serial console's limit per file (the current and the previous one).
pub const CONSOLE_LIMIT: u64 = 1 << 20;
/// The hypervisor's own stderr: warnings and its last words.
pub const HYPERVISOR_LOG_LIMIT: u64 = 256 << 10;
/// A supervisor's own log (its stderr, where lines a guest can provoke
/// end up, rate-limited where they are logged).
pub const STDERR_LIMIT: u64 = 1 << 20;
/// Overrides [`CONSOLE_LIMIT`], in bytes (tests use a small one).
pub const CONSOLE_LIMIT_ENV: &str = "HULL_CONSOLE_LOG_LIMIT";

/// The console's limit: [`CONSOLE_LIMIT`] unless the environment says
/// otherwise (a number of bytes, at least 4 KiB).
pub fn console_limit() -> u64 {
    std::env::var(CONSOLE_LIMIT_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(CONSOLE_LIMIT, |n| n.max(4096))
}

/// Starts the copy of a new pipe into `dir/name`; returns the pipe's write
/// end (close-on-exec: give it to the hypervisor). The thread ends when
/// every write end is closed.
pub fn spawn(dir: &Path, name: &str, limit: u64) -> io::Result<OwnedFd> {
    let dir_fd = File::open(dir)?;
    let name = CString::new(name).map_err(io::Error::other)?;
    let previous =
        CString::new(format!("{}.1", name.to_string_lossy())).map_err(io::Error::other)?;
    let first = open_at(&dir_fd, &name)?;
    let (read_end, write_end) = pipe()?;
    let log = Rotating {
        dir: dir_fd,
        name,
        previous,
        file: first,
        written: 0,
        limit,
    };
    std::thread::Builder::new()
        .name("capped-log".into())
        .spawn(move || copy(File::from(read_end), log))?;
    Ok(write_end)
}

struct Rotating {
    dir: File,
    name: CString,
    previous: CString,
    file: File,
    written: u64,
    limit: u64,
}

impl Rotating {
    fn write(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            if self.written >= self.limit {
                self.rotate()?;
            }
            let room = (self.limit - self.written).min(data.len() as u64) as usize;
            self.file.write_all(&data[..room])?;
            self.written += room as u64;
            data = &data[room..];
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        // SAFETY: both names are NUL-terminated and relative to our own
        // directory descriptor.
        let renamed = unsafe {
            libc::renameat(
                self.dir.as_raw_fd(),
                self.name.as_ptr(),
                self.dir.as_raw_fd(),
                self.previous.as_ptr(),
            )
        };
        if renamed != 0 {
            return Err(io::Error::last_os_error());
        }
        self.file = open_at(&self.dir, &self.name)?;
        self.written = 0;
        Ok(())
    }
}

fn copy(mut input: File, mut log: Rotating) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        // A log that cannot be written (its directory went with `rm`)
        // still drains the pipe, so the hypervisor never blocks on it.
        let _ = log.write(&buf[..n]);
    }
}

/// Creates (or empties) `name` in `dir`, owner-only.
fn open_at(dir: &File, name: &CString) -> io::Result<File> {
    // SAFETY: a NUL-terminated name relative to our directory descriptor;
    // the returned descriptor is checked and then owned by the File.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            0o600,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and nothing else owns it.
    Ok(unsafe { File::from_raw_fd(fd) })
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid two-element out-array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 returned two fresh descriptors that we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The process's stderr as a capped log, for a process whose stderr is a
/// file (a supervisor's `supervisor.log`): past [`STDERR_LIMIT`] bytes the
/// file becomes `NAME.1` and a new one takes descriptor 2. The file is
/// found again through `/proc/self/fd/2` at each rotation, so it follows a
/// renamed directory. On anything but a regular file it is plain stderr.
#[derive(Clone, Copy)]
pub struct Stderr;

/// Bytes in the current stderr file (`u64::MAX`: not a file, never rotated).
static STDERR_WRITTEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static STDERR_INIT: std::sync::Once = std::sync::Once::new();

impl Stderr {
    fn account(n: usize) {
        use std::sync::atomic::Ordering;
        STDERR_INIT.call_once(|| {
            let size = std::fs::metadata("/proc/self/fd/2")
                .ok()
                .filter(|m| m.is_file())
                .map_or(u64::MAX, |m| m.len());
            STDERR_WRITTEN.store(size, Ordering::Relaxed);
        });
        let before = STDERR_WRITTEN.load(Ordering::Relaxed);
        if before == u64::MAX {
            return;
        }
        if before >= STDERR_LIMIT {
            // One rotation, even when two threads get here together: the
            // counter is reset by the one that wins.
            if STDERR_WRITTEN
                .compare_exchange(before, 0, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                let _ = rotate_stderr();
            }
        }
        STDERR_WRITTEN.fetch_add(n as u64, Ordering::Relaxed);
    }
}

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Self::account(buf.len());
        io::stderr().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

fn rotate_stderr() -> io::Result<()> {
    let path = std::fs::read_link("/proc/self/fd/2")?;
    let mut previous = path.clone().into_os_string();
    previous.push(".1");
    std::fs::rename(&path, &previous)?;
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)?
    };
    // SAFETY: dup2 onto descriptor 2 from a descriptor we own; the old
    // file is closed by it, atomically for other writers.
    if unsafe { libc::dup2(file.as_raw_fd(), 2) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_for(path: &Path, len: u64) {
        for _ in 0..500 {
            if std::fs::metadata(path).is_ok_and(|m| m.len() == len) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("{} never reached {len} bytes", path.display());
    }

    #[test]
    fn a_flood_keeps_two_files_under_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let writer = spawn(dir.path(), "console.log", 4096).unwrap();
        let mut writer = File::from(writer);
        // 1 MiB in lines: 256 times the limit.
        for i in 0..(1 << 20) / 16 {
            writer
                .write_all(format!("line {i:>10}\n").as_bytes())
                .unwrap();
        }
        drop(writer);
        let current = dir.path().join("console.log");
        let previous = dir.path().join("console.log.1");
        // The current file is full many times during the flood, so wait
        // for the copy to reach the last line, not for a size.
        let last = format!("line {:>10}\n", (1 << 20) / 16 - 1);
        let mut tail = String::new();
        for _ in 0..500 {
            tail = std::fs::read_to_string(&current).unwrap_or_default();
            if tail.ends_with(&last) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(tail.ends_with(&last), "the newest lines are kept");
        // 1 MiB is a multiple of the limit: the last write leaves the
        // current file full.
        assert_eq!(tail.len(), 4096);
        assert_eq!(std::fs::metadata(&previous).unwrap().len(), 4096);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 2, "only the log and one older file");
    }

    #[test]
    fn the_log_follows_its_directory_when_renamed() {
        let base = tempfile::tempdir().unwrap();
        let before = base.path().join("pool-slot");
        std::fs::create_dir(&before).unwrap();
        let mut writer = File::from(spawn(&before, "console.log", 1 << 20).unwrap());
        writer.write_all(b"before\n").unwrap();
        let after = base.path().join("container");
        std::fs::rename(&before, &after).unwrap();
        writer.write_all(b"after\n").unwrap();
        drop(writer);
        wait_for(&after.join("console.log"), 13);
        assert_eq!(
            std::fs::read_to_string(after.join("console.log")).unwrap(),
            "before\nafter\n"
        );
    }

    #[test]
    fn a_removed_directory_still_drains_the_pipe() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("vm");
        std::fs::create_dir(&dir).unwrap();
        let mut writer = File::from(spawn(&dir, "console.log", 4096).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
        // More than a pipe holds: this would block if nobody read it.
        let chunk = vec![b'x'; 64 << 10];
        for _ in 0..64 {
            writer.write_all(&chunk).unwrap();
        }
    }
}
