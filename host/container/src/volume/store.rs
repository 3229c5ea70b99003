//! Named and anonymous volumes: `HULL_ROOT/volumes/<name>/_data` (what
//! the container sees) and `volume.json` beside it. A volume is made
//! whole in a `.new-` directory and renamed into place; one in use by a
//! container record is never removed.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::request::valid_volume_name;
use crate::error::{io_error, Error};
use crate::record::Containers;

const VOLUMES_DIR: &str = "volumes";
const DATA_DIR: &str = "_data";
const RECORD_FILE: &str = "volume.json";
const NEW_PREFIX: &str = ".new-";

/// What `volume.json` says.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    name: String,
    created: u64,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    anonymous: bool,
    driver: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub name: String,
    /// Its content: the directory containers mount.
    pub mountpoint: PathBuf,
    /// Unix nanoseconds.
    pub created: u64,
    pub labels: BTreeMap<String, String>,
    pub anonymous: bool,
}

pub struct Volumes {
    dir: PathBuf,
}

fn no_such(name: &str) -> Error {
    Error::NoSuchVolume(name.to_string())
}

impl Volumes {
    pub fn new(root: &Path) -> Self {
        Self {
            dir: root.join(VOLUMES_DIR),
        }
    }

    /// Makes volume `name` (anonymous, with a random name, for `None`);
    /// an existing one is returned as it is (Docker's create is
    /// idempotent).
    pub fn create(
        &self,
        name: Option<&str>,
        labels: BTreeMap<String, String>,
    ) -> Result<Volume, Error> {
        let name = match name {
            Some(name) => {
                if !valid_volume_name(name) {
                    return Err(Error::Invalid {
                        flag: "volume name",
                        value: name.to_string(),
                        reason: "use [a-zA-Z0-9][a-zA-Z0-9_.-]+",
                    });
                }
                if let Ok(existing) = self.get(name) {
                    return Ok(existing);
                }
                name.to_string()
            }
            None => hull_sandbox::new_id().map_err(io_error("name an anonymous volume"))?,
        };
        fs::create_dir_all(&self.dir)
            .map_err(io_error(format!("create {}", self.dir.display())))?;
        let staging = self.dir.join(format!("{NEW_PREFIX}{name}"));
        let _ = fs::remove_dir_all(&staging);
        let record = Record {
            name: name.clone(),
            created: hull_sandbox::process::now_nanos(),
            labels,
            anonymous: false,
            driver: "local".into(),
        };
        let record = Record {
            anonymous: record.name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()),
            ..record
        };
        let made = (|| -> io::Result<()> {
            fs::create_dir(&staging)?;
            fs::create_dir(staging.join(DATA_DIR))?;
            fs::set_permissions(staging.join(DATA_DIR), fs::Permissions::from_mode(0o755))?;
            let bytes = serde_json::to_vec_pretty(&record).map_err(io::Error::other)?;
            fs::write(staging.join(RECORD_FILE), bytes)?;
            fs::rename(&staging, self.dir.join(&name))
        })();
        if let Err(e) = made {
            let _ = fs::remove_dir_all(&staging);
            // Made by someone else at the same time: theirs stands.
            if let Ok(existing) = self.get(&name) {
                return Ok(existing);
            }
            return Err(io_error(format!("create volume {name}"))(e));
        }
        self.get(&name)
    }

    pub fn get(&self, name: &str) -> Result<Volume, Error> {
        if !valid_volume_name(name) {
            return Err(no_such(name));
        }
        let dir = self.dir.join(name);
        let bytes = fs::read(dir.join(RECORD_FILE)).map_err(|_| no_such(name))?;
        let record: Record = serde_json::from_slice(&bytes).map_err(|_| no_such(name))?;
        Ok(Volume {
            name: record.name,
            mountpoint: dir.join(DATA_DIR),
            created: record.created,
            labels: record.labels,
            anonymous: record.anonymous,
        })
    }

    /// Every volume, by name.
    pub fn list(&self) -> Result<Vec<Volume>, Error> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(format!("read {}", self.dir.display()))(e)),
        };
        let mut volumes: Vec<Volume> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .filter_map(|n| self.get(&n).ok())
            .collect();
        volumes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(volumes)
    }

    /// Removes volume `name` and all it holds, unless `users` (names of
    /// containers whose records use it) is not empty; `force` only makes
    /// a missing volume no error (Docker refuses one in use even then).
    pub fn remove(&self, name: &str, users: &[String], force: bool) -> Result<(), Error> {
        if let Some(user) = users.first() {
            return Err(Error::VolumeInUse {
                name: name.to_string(),
                container: user.clone(),
            });
        }
        match self.get(name) {
            Ok(_) => {}
            Err(_) if force => return Ok(()),
            Err(e) => return Err(e),
        }
        let dir = self.dir.join(name);
        // Out of the way first, so a half-removed volume is never found.
        let doomed = self.dir.join(format!("{NEW_PREFIX}rm-{name}"));
        fs::rename(&dir, &doomed).map_err(io_error(format!("remove volume {name}")))?;
        remove_tree(&doomed).map_err(io_error(format!("remove volume {name}")))
    }

    /// Removes the volumes no container uses (only anonymous ones unless
    /// `all`); their names.
    pub fn prune(&self, in_use: &BTreeSet<String>, all: bool) -> Result<Vec<String>, Error> {
        let mut removed = Vec::new();
        for volume in self.list()? {
            if in_use.contains(&volume.name) || !(all || volume.anonymous) {
                continue;
            }
            self.remove(&volume.name, &[], true)?;
            removed.push(volume.name);
        }
        Ok(removed)
    }
}

/// `remove_dir_all` that also gets through directories a guest made
/// unwritable or unreadable.
fn remove_tree(dir: &Path) -> io::Result<()> {
    if fs::remove_dir_all(dir).is_ok() {
        return Ok(());
    }
    fn open_up(dir: &Path) {
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                open_up(&entry.path());
            }
        }
    }
    open_up(dir);
    fs::remove_dir_all(dir)
}

/// Which containers use which volumes, from every record's shares.
pub fn users_of(containers: &Containers) -> Result<BTreeMap<String, Vec<String>>, Error> {
    let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for container in containers.list() {
        for share in &container.config.shares {
            if let Some(volume) = &share.volume {
                users
                    .entry(volume.clone())
                    .or_default()
                    .push(container.config.name.clone());
            }
        }
    }
    Ok(users)
}

/// Removes the anonymous volumes of a container that is gone (`--rm`,
/// `rm -v`), unless another container uses one too.
pub fn remove_anonymous(root: &Path, containers: &Containers, config: &crate::ContainerConfig) {
    let users = users_of(containers).unwrap_or_default();
    let volumes = Volumes::new(root);
    for share in config.shares.iter().filter(|s| s.anonymous) {
        if let Some(name) = &share.volume {
            let others: Vec<String> = users
                .get(name)
                .into_iter()
                .flatten()
                .filter(|n| **n != config.name)
                .cloned()
                .collect();
            let _ = volumes.remove(name, &others, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_are_made_listed_kept_in_use_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let volumes = Volumes::new(dir.path());
        let labels = BTreeMap::from([("app".to_string(), "db".to_string())]);
        let db = volumes.create(Some("db"), labels.clone()).unwrap();
        assert!(db.mountpoint.is_dir() && !db.anonymous);
        assert_eq!(
            volumes.create(Some("db"), BTreeMap::new()).unwrap().labels,
            labels
        );
        let anon = volumes.create(None, BTreeMap::new()).unwrap();
        assert!(anon.anonymous && anon.name.len() == 64);
        assert_eq!(volumes.list().unwrap().len(), 2);
        assert!(volumes.create(Some("-bad"), BTreeMap::new()).is_err());
        // In use: refused, even forced.
        let err = volumes.remove("db", &["web".into()], true).unwrap_err();
        assert!(err.to_string().contains("in use by container web"), "{err}");
        // A guest's unwritable directory does not stop the removal.
        fs::create_dir_all(db.mountpoint.join("locked/inner")).unwrap();
        fs::write(db.mountpoint.join("locked/inner/f"), "x").unwrap();
        fs::set_permissions(
            db.mountpoint.join("locked"),
            fs::Permissions::from_mode(0o500),
        )
        .unwrap();
        volumes.remove("db", &[], false).unwrap();
        assert!(volumes.get("db").is_err());
        assert!(volumes.remove("db", &[], false).is_err());
        volumes.remove("db", &[], true).unwrap();
        // Prune takes the unused anonymous ones unless told all.
        volumes.create(Some("named"), BTreeMap::new()).unwrap();
        assert_eq!(
            volumes.prune(&BTreeSet::new(), false).unwrap(),
            std::slice::from_ref(&anon.name)
        );
        assert_eq!(
            volumes
                .prune(&BTreeSet::from(["named".to_string()]), true)
                .unwrap()
                .len(),
            0
        );
        assert_eq!(volumes.prune(&BTreeSet::new(), true).unwrap(), ["named"]);
        let left: Vec<_> = fs::read_dir(dir.path().join(VOLUMES_DIR))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
