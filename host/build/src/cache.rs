//! The step cache: a step's result (the stage's state after it) under a
//! key made like Docker's — the parent step's key (so the whole chain
//! back to the base image's id), the instruction as expanded, the
//! content hash of the files it copies and the build args it uses. An
//! unchanged rebuild finds every step here and makes no VM; the results
//! hold their own `created` times, so it also gives the same image id.
//!
//! Layout under the cache directory (`<store root>/build-cache`):
//! `steps/<key>.json` a [`State`]; `layers/<hex>` the layer blobs the
//! steps made (gzip'd tars, named by digest). Entries are written by
//! rename, so a crash leaves whole entries or none (and temp files, swept
//! a day later); an entry whose layer files are gone is a miss. Nothing is
//! evicted yet.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::state::{CachedLayer, State};

/// Why the cache could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("build cache I/O on {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Temp files older than this are a crashed build's.
const LEFTOVER_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The version of the key scheme: a change of what a key covers makes
/// old entries unreachable rather than wrong.
const KEY_VERSION: &str = "hull-build-cache-v1";

/// The cache in one directory.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// Opens (creating) the cache at `dir`, owner-only.
    pub fn open(dir: &Path) -> Result<Cache, CacheError> {
        for sub in ["steps", "layers"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(io_err(&p))?;
        }
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err(dir))?;
        let cache = Cache {
            dir: dir.to_path_buf(),
        };
        cache.sweep_leftovers();
        Ok(cache)
    }

    /// Removes what crashed builds left: temp files of unfinished layers
    /// and steps, and scratch directories. Only old ones: a build running
    /// now may be writing the young ones.
    fn sweep_leftovers(&self) {
        let old = |p: &Path| {
            fs::symlink_metadata(p)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > LEFTOVER_AGE)
        };
        for (sub, prefix) in [("layers", ".tmp"), ("steps", ".tmp"), ("", "tmp-")] {
            let Ok(entries) = fs::read_dir(self.dir.join(sub)) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                let ours = e.file_name().to_string_lossy().starts_with(prefix);
                if ours && old(&p) {
                    let _ = if p.is_dir() {
                        fs::remove_dir_all(&p)
                    } else {
                        fs::remove_file(&p)
                    };
                }
            }
        }
    }

    /// Empties the cache (`hull builder prune`); the bytes it held. A
    /// build running meanwhile loses its cached steps and may fail.
    pub fn prune(&self) -> Result<u64, CacheError> {
        let mut freed = 0;
        for sub in ["steps", "layers"] {
            let dir = self.dir.join(sub);
            for e in fs::read_dir(&dir).map_err(io_err(&dir))? {
                let p = e.map_err(io_err(&dir))?.path();
                freed += fs::symlink_metadata(&p).map_or(0, |m| m.len());
                fs::remove_file(&p).map_err(io_err(&p))?;
            }
        }
        Ok(freed)
    }

    /// Where new layers are written (each then named by its digest).
    pub fn layer_dir(&self) -> PathBuf {
        self.dir.join("layers")
    }

    pub fn layer_path(&self, digest: &str) -> PathBuf {
        self.layer_dir().join(digest.trim_start_matches("sha256:"))
    }

    /// The state stored under `key`, if it and all its layers are there.
    pub fn get(&self, key: &str) -> Option<State> {
        let bytes = fs::read(self.step_path(key)).ok()?;
        let state: State = serde_json::from_slice(&bytes).ok()?;
        let whole = state.key == key
            && state
                .layers
                .iter()
                .all(|l: &CachedLayer| self.layer_path(&l.digest).is_file());
        whole.then_some(state)
    }

    /// Stores `state` under its key.
    pub fn put(&self, state: &State) -> Result<(), CacheError> {
        let dest = self.step_path(&state.key);
        let steps = self.dir.join("steps");
        let mut tmp = tempfile::NamedTempFile::new_in(&steps).map_err(io_err(&steps))?;
        let bytes = serde_json::to_vec(state).map_err(|e| io_err(&dest)(e.into()))?;
        tmp.write_all(&bytes).map_err(io_err(&dest))?;
        tmp.persist(&dest).map_err(|e| io_err(&dest)(e.error))?;
        Ok(())
    }

    fn step_path(&self, key: &str) -> PathBuf {
        self.dir.join("steps").join(format!("{key}.json"))
    }
}

/// A step's key: its parent's key and the parts that make the step.
pub fn key(parent: &str, parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    h.update(KEY_VERSION.as_bytes());
    h.update([0]);
    h.update(parent.as_bytes());
    for p in parts {
        h.update([0]);
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_cover_parent_and_parts() {
        let a = key("p", &[b"COPY a /a", b"hash1"]);
        assert_eq!(a, key("p", &[b"COPY a /a", b"hash1"]));
        assert_ne!(a, key("q", &[b"COPY a /a", b"hash1"]));
        assert_ne!(a, key("p", &[b"COPY a /a", b"hash2"]));
        assert_ne!(
            a,
            key("p", &[b"COPY a /", b"a hash1"]),
            "parts are delimited"
        );
        assert_ne!(a, key("p", &[b"COPY a /a", b"hash1", b"ARG=1"]));
    }

    #[test]
    fn prune_empties_it() {
        let d = tempfile::tempdir().unwrap();
        let c = Cache::open(&d.path().join("cache")).unwrap();
        let s = State::from_base(None, json!({}), key("", &[b"x"]));
        c.put(&s).unwrap();
        fs::write(c.layer_path(&format!("sha256:{}", "b".repeat(64))), "1234").unwrap();
        assert!(c.prune().unwrap() >= 4);
        assert!(c.get(&s.key).is_none());
        assert_eq!(fs::read_dir(c.layer_dir()).unwrap().count(), 0);
    }

    #[test]
    fn old_leftovers_are_swept_young_ones_kept() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("cache");
        Cache::open(&dir).unwrap();
        let old = dir.join("layers/.tmpOLD");
        let young = dir.join("layers/.tmpYOUNG");
        let scratch = dir.join("tmp-old");
        fs::write(&old, "x").unwrap();
        fs::write(&young, "x").unwrap();
        fs::create_dir(&scratch).unwrap();
        let long_ago = std::time::SystemTime::now() - 2 * LEFTOVER_AGE;
        for p in [&old, &scratch] {
            fs::File::open(p).unwrap().set_modified(long_ago).unwrap();
        }
        Cache::open(&dir).unwrap();
        assert!(!old.exists() && !scratch.exists());
        assert!(young.exists());
    }

    #[test]
    fn an_entry_without_its_layers_is_a_miss() {
        let d = tempfile::tempdir().unwrap();
        let c = Cache::open(&d.path().join("cache")).unwrap();
        let mut s = State::from_base(None, json!({}), key("", &[b"x"]));
        assert!(c.get(&s.key).is_none());
        c.put(&s).unwrap();
        assert_eq!(c.get(&s.key), Some(s.clone()));
        s.key = key("", &[b"y"]);
        s.layers.push(CachedLayer {
            digest: format!("sha256:{}", "a".repeat(64)),
            diff_id: String::new(),
            size: 1,
        });
        c.put(&s).unwrap();
        assert!(c.get(&s.key).is_none());
        fs::write(c.layer_path(&s.layers[0].digest), "x").unwrap();
        assert!(c.get(&s.key).is_some());
    }
}
