//! Files only root may read: container records (whose `config.json`
//! holds the `-e` secrets), logs, sockets and the networks' runtime
//! files live in owner-only directories and files, whatever the
//! process's umask (hull-container and hull-net use this). What would be
//! marked complete by its rename is synced first, so a crash never
//! leaves a half-written file in its place.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Directories: owner only.
pub const DIR_MODE: u32 = 0o700;
/// Files: owner read and write.
pub const FILE_MODE: u32 = 0o600;

/// Makes `path` (and missing parents, owner-only too) and sets `path`
/// itself owner-only, also when it existed with a wider mode.
pub fn ensure_dir(path: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)?;
    let mode = fs::metadata(path)?.permissions().mode() & 0o7777;
    if mode != DIR_MODE {
        fs::set_permissions(path, fs::Permissions::from_mode(DIR_MODE))?;
    }
    Ok(())
}

/// Makes the directory `path`, owner-only; fails if it exists.
pub fn create_dir(path: &Path) -> io::Result<()> {
    DirBuilder::new().mode(DIR_MODE).create(path)
}

/// Creates (or empties) the file `path`, owner-only.
pub fn create_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)
}

/// Writes `bytes` to `path` whole or not at all: a temporary file beside
/// it, synced, renamed over it, and the directory synced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let written = (|| {
        let mut file = create_file(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    sync_parent(path)
}

/// Syncs the directory holding `path`, which makes a rename into it
/// durable.
pub fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn directories_and_files_are_owner_only_whatever_the_umask() {
        let base = tempfile::tempdir().unwrap();
        let run = base.path().join("run/hull");
        ensure_dir(&run).unwrap();
        assert_eq!(mode(&run), 0o700);
        assert_eq!(mode(&base.path().join("run")), 0o700);
        // A run dir made wider before is narrowed.
        fs::set_permissions(&run, fs::Permissions::from_mode(0o755)).unwrap();
        ensure_dir(&run).unwrap();
        assert_eq!(mode(&run), 0o700);

        let record = run.join("abc");
        create_dir(&record).unwrap();
        assert_eq!(mode(&record), 0o700);
        assert!(create_dir(&record).is_err(), "exists");
        let file = record.join("config.json");
        write_atomic(&file, b"{\"env\":[\"SECRET=1\"]}").unwrap();
        assert_eq!(mode(&file), 0o600);
        assert_eq!(fs::read(&file).unwrap(), b"{\"env\":[\"SECRET=1\"]}");
        write_atomic(&file, b"{}").unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"{}");
        assert!(!file.with_extension("tmp").exists());
        let log = record.join("supervisor.log");
        drop(create_file(&log).unwrap());
        assert_eq!(mode(&log), 0o600);
    }
}
