//! Shared fixtures of the agent's unit tests.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::process::UserNamespace;

/// A fresh directory under the system's temporary one, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("hull-agent-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `rel` under it, as a string (the fake records strings).
    pub fn str(&self, rel: &str) -> String {
        self.0.join(rel).display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A user namespace whose root is VM uid 100000 and gid 200000, with a
/// two-line gid map.
pub fn user_namespace() -> UserNamespace {
    UserNamespace {
        uid_map: "0 100000 65536\n".into(),
        gid_map: "0 200000 10\n10 300000 1\n".into(),
        root_uid: 100_000,
        root_gid: 200_000,
    }
}
