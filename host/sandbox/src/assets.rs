//! Finds the guest kernel and initramfs: a flag, then `HULL_KERNEL` /
//! `HULL_INITRAMFS`, then `share/hull/` next to the `hull` binary's prefix
//! (`<prefix>/bin/hull` → `<prefix>/share/hull/`), then the system prefixes.

use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum AssetError {
    #[error("guest {what} not found: {path} does not exist")]
    Missing { what: &'static str, path: PathBuf },
    #[error("guest {what} not found (looked in {searched}; set {env} or run `make`)")]
    NotFound {
        what: &'static str,
        searched: String,
        env: &'static str,
    },
}

#[derive(Debug, Clone)]
pub struct GuestAssets {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
}

fn search_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(prefix) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent().map(Path::to_path_buf))
    {
        dirs.push(prefix.join("share/hull"));
    }
    dirs.push("/usr/local/share/hull".into());
    dirs.push("/usr/share/hull".into());
    dirs
}

fn find(
    explicit: Option<&Path>,
    env: &'static str,
    file: &str,
    what: &'static str,
) -> Result<PathBuf, AssetError> {
    if let Some(path) = explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os(env).map(PathBuf::from))
    {
        return if path.is_file() {
            Ok(path)
        } else {
            Err(AssetError::Missing { what, path })
        };
    }
    let dirs = search_dirs();
    dirs.iter()
        .map(|d| d.join(file))
        .find(|p| p.is_file())
        .ok_or_else(|| AssetError::NotFound {
            what,
            searched: dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            env,
        })
}

impl GuestAssets {
    pub fn locate(kernel: Option<&Path>, initramfs: Option<&Path>) -> Result<Self, AssetError> {
        Ok(Self {
            kernel: find(kernel, "HULL_KERNEL", "vmlinux", "kernel")?,
            initramfs: find(initramfs, "HULL_INITRAMFS", "initramfs.cpio", "initramfs")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_missing_kernel_is_named() {
        let err = GuestAssets::locate(Some(Path::new("/nonexistent/vmlinux")), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "guest kernel not found: /nonexistent/vmlinux does not exist"
        );
    }
}
