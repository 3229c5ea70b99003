//! The content store: `blobs/sha256/<hex>`, one file per verified blob
//! (manifests, configs, layers), written by temp file + rename so a blob
//! is either whole or absent.
//!
//! Model: containerd's content store and the OCI image layout's `blobs/`.
//! Small blobs are re-hashed whenever they are read back; what may be
//! deleted is decided by the image store (see `ImageStore::gc`).

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use oci_spec::image::{ImageConfiguration, ImageManifest};

use super::{digest, source, Error, MAX_JSON_SIZE};

/// The blobs of one store and the staging directory their writes use.
#[derive(Debug, Clone)]
pub(crate) struct Blobs {
    dir: PathBuf,
    tmp: PathBuf,
}

impl Blobs {
    /// The blobs under `<root>/blobs/sha256`, staged in `tmp`.
    pub(crate) fn new(root: &Path, tmp: &Path) -> Blobs {
        Blobs {
            dir: root.join("blobs/sha256"),
            tmp: tmp.to_path_buf(),
        }
    }

    /// Where blob `digest` is (or would be) kept.
    pub(crate) fn path(&self, digest: &str) -> Result<PathBuf, Error> {
        Ok(self.dir.join(digest::parse(digest)?))
    }

    pub(crate) fn has(&self, digest: &str) -> Result<bool, Error> {
        Ok(self.path(digest)?.exists())
    }

    /// Reads a small blob and checks its digest.
    pub(crate) fn read(&self, digest: &str, what: &'static str) -> Result<Vec<u8>, Error> {
        let path = self.path(digest)?;
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::MissingBlob {
                    digest: digest.to_string(),
                })
            }
            Err(e) => return Err(Error::io(&path)(e)),
        };
        if meta.len() > MAX_JSON_SIZE {
            return Err(Error::TooLarge {
                what,
                digest: digest.to_string(),
                limit: MAX_JSON_SIZE,
            });
        }
        let bytes = fs::read(&path).map_err(Error::io(&path))?;
        let actual = digest::sha256_hex(&bytes);
        if Some(actual.as_str()) != digest::parse(digest).ok() {
            return Err(Error::DigestMismatch {
                digest: digest.to_string(),
                actual,
            });
        }
        Ok(bytes)
    }

    pub(crate) fn manifest(&self, digest: &str) -> Result<ImageManifest, Error> {
        let bytes = self.read(digest, "image manifest")?;
        serde_json::from_slice(&bytes).map_err(|source| Error::InvalidJson {
            what: "image manifest",
            digest: digest.to_string(),
            source,
        })
    }

    pub(crate) fn config(&self, digest: &str) -> Result<ImageConfiguration, Error> {
        source::parse_config(digest, &self.read(digest, "image config")?)
    }

    /// Stores `bytes` as blob `digest` unless it is there; a new blob's
    /// path goes to `created`.
    pub(crate) fn write(
        &self,
        digest: &str,
        bytes: &[u8],
        created: &mut Vec<PathBuf>,
    ) -> Result<(), Error> {
        let dest = self.path(digest)?;
        if !dest.exists() {
            write_atomic(&self.tmp, &dest, bytes)?;
            created.push(dest);
        }
        Ok(())
    }

    /// Moves the verified file `from` in as blob `digest` unless it is
    /// there; a new blob's path goes to `created`.
    pub(crate) fn move_in(
        &self,
        digest: &str,
        from: &Path,
        created: &mut Vec<PathBuf>,
    ) -> Result<(), Error> {
        let dest = self.path(digest)?;
        if !dest.exists() {
            fs::rename(from, &dest).map_err(Error::io(&dest))?;
            created.push(dest);
        }
        Ok(())
    }

    /// Deletes every blob whose digest is not in `live`.
    pub(crate) fn sweep(&self, live: &BTreeSet<String>) -> Result<(), Error> {
        for entry in fs::read_dir(&self.dir).map_err(Error::io(&self.dir))? {
            let entry = entry.map_err(Error::io(&self.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !live.contains(&format!("sha256:{name}")) {
                let p = entry.path();
                fs::remove_file(&p).map_err(Error::io(&p))?;
            }
        }
        Ok(())
    }
}

/// Writes `bytes` to a temp file in `tmp_dir`, syncs and renames it to
/// `dest`.
pub(crate) fn write_atomic(tmp_dir: &Path, dest: &Path, bytes: &[u8]) -> Result<(), Error> {
    let mut tmp = tempfile::NamedTempFile::new_in(tmp_dir).map_err(Error::io(tmp_dir))?;
    tmp.write_all(bytes).map_err(Error::io(tmp.path()))?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(0o644))
        .map_err(Error::io(tmp.path()))?;
    tmp.as_file().sync_all().map_err(Error::io(tmp.path()))?;
    tmp.persist(dest).map_err(|e| Error::io(dest)(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_checked_when_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        fs::create_dir_all(dir.path().join("blobs/sha256")).unwrap();
        fs::create_dir(&tmp).unwrap();
        let blobs = Blobs::new(dir.path(), &tmp);
        let digest = format!("sha256:{}", digest::sha256_hex(b"{}"));
        let missing = blobs.read(&digest, "image config").unwrap_err();
        assert_eq!(missing.to_string(), format!("blob {digest} is missing"));

        let mut created = Vec::new();
        blobs.write(&digest, b"{}", &mut created).unwrap();
        blobs.write(&digest, b"{}", &mut created).unwrap();
        assert_eq!(created, vec![blobs.path(&digest).unwrap()]);
        assert_eq!(blobs.read(&digest, "image config").unwrap(), b"{}");

        fs::write(blobs.path(&digest).unwrap(), b"[]").unwrap();
        let err = blobs.read(&digest, "image config").unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
        blobs.sweep(&BTreeSet::new()).unwrap();
        assert!(!blobs.has(&digest).unwrap());
    }
}
