//! A container's host data as the guest gets it: `-v`, `--mount` and
//! `--tmpfs` requests ([`from_requests`], `hull run`) and an OCI bundle's
//! bind mounts ([`from_bundle`], `hull-runc` and the shim) become spec
//! mounts whose sources are `hull-share:<n>`, and the [`Share`]s the
//! container's share server will serve as entries `n`. Tmpfs mounts stay
//! in the spec (the guest makes them). What cannot be given to a VM is an
//! error naming the mount, never a silent drop.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use hull_image::{Image, ImageStore};
use hull_protocol::SHARE_SOURCE_PREFIX;
use oci_spec::runtime::{Mount, Spec};

use crate::error::Error;
use crate::record::Share;
use crate::volume::{MountRequest, Volumes};

/// OCI options a bind keeps for the guest's own bind of the share entry.
const GUEST_BIND_OPTIONS: &[&str] = &[
    "ro",
    "rw",
    "nosuid",
    "suid",
    "nodev",
    "dev",
    "noexec",
    "exec",
    "private",
    "rprivate",
    "shared",
    "rshared",
    "slave",
    "rslave",
    "unbindable",
    "runbindable",
];

fn refused(destination: &str, reason: impl Into<String>) -> Error {
    Error::Mount {
        destination: destination.to_string(),
        reason: reason.into(),
    }
}

/// Applies `requests` to `spec` (a mount on the same destination as one
/// of the spec's defaults replaces it) and returns the shares. Volumes are
/// created on first use, and a new one is filled from `image`'s content
/// at its destination (Docker's copy-up, unless `nocopy`).
pub fn from_requests(
    root: &Path,
    store: &ImageStore,
    image: &Image,
    requests: &[MountRequest],
    spec: &mut Spec,
) -> Result<Vec<Share>, Error> {
    let volumes = Volumes::new(root);
    let mut created = Vec::new();
    let result = plan_requests(root, store, image, requests, spec, &mut created);
    if result.is_err() {
        // Nothing of a failed plan stays: not the volumes it made.
        for name in created {
            let _ = volumes.remove(&name, &[], true);
        }
    }
    result
}

fn plan_requests(
    root: &Path,
    store: &ImageStore,
    image: &Image,
    requests: &[MountRequest],
    spec: &mut Spec,
    created: &mut Vec<String>,
) -> Result<Vec<Share>, Error> {
    // Every destination is checked before anything is made.
    let mut seen = std::collections::BTreeSet::new();
    for request in requests {
        let destination = destination_of(request);
        check_destination(destination)?;
        if !seen.insert(destination.trim_end_matches('/').to_string()) {
            return Err(refused(destination, "duplicate mount point"));
        }
    }
    let mut shares = Vec::new();
    let mut mounts = Vec::new();
    for request in requests {
        let mount = match request {
            MountRequest::Bind {
                source,
                destination,
                read_only,
                create_source,
                options,
            } => {
                let source = bind_source(source, destination, *create_source)?;
                shares.push(Share {
                    source,
                    read_only: *read_only,
                    volume: None,
                    anonymous: false,
                });
                share_mount(destination, shares.len() - 1, *read_only, options)
            }
            MountRequest::Volume {
                name,
                destination,
                read_only,
                no_copy,
            } => {
                let volumes = Volumes::new(root);
                let existed = name.as_deref().is_some_and(|n| volumes.get(n).is_ok());
                let volume = volumes.create(name.as_deref(), BTreeMap::new())?;
                if !existed {
                    created.push(volume.name.clone());
                }
                if !no_copy && is_empty_dir(&volume.mountpoint) {
                    store.copy_out(image, destination, &volume.mountpoint)?;
                }
                shares.push(Share {
                    source: volume.mountpoint.clone(),
                    read_only: *read_only,
                    volume: Some(volume.name.clone()),
                    anonymous: name.is_none(),
                });
                share_mount(destination, shares.len() - 1, *read_only, &[])
            }
            MountRequest::Tmpfs {
                destination,
                options,
            } => {
                let mut mount = Mount::default();
                mount.set_destination(PathBuf::from(destination));
                mount.set_typ(Some("tmpfs".into()));
                mount.set_source(Some("tmpfs".into()));
                mount.set_options(Some(options.clone()));
                mount
            }
        };
        mounts.push(mount);
    }
    let mut all: Vec<Mount> = spec.mounts().clone().unwrap_or_default();
    all.retain(|m| {
        let d = m.destination().to_string_lossy();
        !seen.contains(d.trim_end_matches('/'))
    });
    all.extend(mounts);
    spec.set_mounts(Some(all));
    Ok(shares)
}

/// The share for a bundle's bind mount `mount` (its source a host path),
/// as share `index`, and the mount the guest makes of it instead.
pub fn from_bundle_bind(mount: &Mount, index: usize) -> Result<(Share, Mount), Error> {
    let destination = mount.destination().to_string_lossy().into_owned();
    let Some(source) = mount.source().clone() else {
        return Err(refused(&destination, "a bind mount without a source"));
    };
    let options: Vec<String> = mount.options().clone().unwrap_or_default();
    let read_only = options
        .iter()
        .rfold(None, |last, o| match (last, o.as_str()) {
            (Some(v), _) => Some(v),
            (None, "ro") => Some(true),
            (None, "rw") => Some(false),
            _ => None,
        })
        == Some(true);
    let source = bind_source(&source, &destination, false)?;
    let share = Share {
        source,
        read_only,
        volume: None,
        anonymous: false,
    };
    Ok((share, share_mount(&destination, index, read_only, &options)))
}

fn destination_of(request: &MountRequest) -> &str {
    match request {
        MountRequest::Bind { destination, .. }
        | MountRequest::Volume { destination, .. }
        | MountRequest::Tmpfs { destination, .. } => destination,
    }
}

fn check_destination(destination: &str) -> Result<(), Error> {
    let path = Path::new(destination);
    if !path.is_absolute() || path == Path::new("/") {
        return Err(refused(
            destination,
            "the destination must be an absolute path, not /",
        ));
    }
    if path
        .components()
        .any(|c| c == std::path::Component::ParentDir)
    {
        return Err(refused(destination, "the destination may not contain '..'"));
    }
    Ok(())
}

/// The host path a bind serves: absolute, symlinks resolved (it is the
/// caller's own path; the share server then refuses any symlink), a
/// directory or regular file. `-v` makes a missing directory.
fn bind_source(source: &Path, destination: &str, create: bool) -> Result<PathBuf, Error> {
    if !source.is_absolute() {
        return Err(refused(
            destination,
            format!("the source {} is not an absolute path", source.display()),
        ));
    }
    if create && fs::symlink_metadata(source).is_err() {
        fs::create_dir_all(source).map_err(|e| {
            refused(
                destination,
                format!("create the source {}: {e}", source.display()),
            )
        })?;
    }
    let resolved = fs::canonicalize(source).map_err(|_| {
        refused(
            destination,
            format!("the source path {} does not exist", source.display()),
        )
    })?;
    let kind = fs::metadata(&resolved)
        .map_err(|e| refused(destination, format!("{}: {e}", resolved.display())))?
        .file_type();
    if kind.is_dir() || kind.is_file() {
        return Ok(resolved);
    }
    let what = if kind.is_socket() {
        "a unix socket (a VM cannot connect to a host socket through a file)"
    } else if kind.is_block_device() || kind.is_char_device() {
        "a device node (the VM has devices of its own)"
    } else {
        "neither a file nor a directory"
    };
    Err(refused(
        destination,
        format!("cannot share {}: it is {what}", resolved.display()),
    ))
}

/// The guest's bind of share entry `index` on `destination`.
fn share_mount(destination: &str, index: usize, read_only: bool, options: &[String]) -> Mount {
    let mut kept = vec!["rbind".to_string()];
    kept.extend(
        options
            .iter()
            .filter(|o| GUEST_BIND_OPTIONS.contains(&o.as_str()))
            .cloned(),
    );
    if read_only && !kept.iter().any(|o| o == "ro") {
        kept.push("ro".into());
    }
    let mut mount = Mount::default();
    mount.set_destination(PathBuf::from(destination));
    mount.set_typ(Some("bind".into()));
    mount.set_source(Some(PathBuf::from(format!("{SHARE_SOURCE_PREFIX}{index}"))));
    mount.set_options(Some(kept));
    mount
}

fn is_empty_dir(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(source: &str, destination: &str, options: &[&str]) -> Mount {
        serde_json::from_value(serde_json::json!({
            "destination": destination, "type": "bind", "source": source,
            "options": options,
        }))
        .unwrap()
    }

    #[test]
    fn a_bundle_bind_becomes_a_share_entry_with_its_options() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hosts");
        fs::write(&file, "127.0.0.1 localhost\n").unwrap();
        let mount = bind(
            file.to_str().unwrap(),
            "/etc/hosts",
            &["rbind", "ro", "nosuid", "rprivate", "mode=1"],
        );
        let (share, guest) = from_bundle_bind(&mount, 2).unwrap();
        assert!(share.read_only);
        assert_eq!(share.source, fs::canonicalize(&file).unwrap());
        assert_eq!(guest.source().as_deref(), Some(Path::new("hull-share:2")));
        assert_eq!(
            guest.options().as_deref().unwrap(),
            ["rbind", "ro", "nosuid", "rprivate"]
        );
        let rw = bind(file.to_str().unwrap(), "/x", &["ro", "rw"]);
        assert!(!from_bundle_bind(&rw, 0).unwrap().0.read_only);
    }

    #[test]
    fn what_a_vm_cannot_be_given_is_refused_by_name() {
        let missing = bind("/nonexistent/hull", "/data", &["rbind"]);
        let err = from_bundle_bind(&missing, 0).unwrap_err().to_string();
        assert!(
            err.contains("/data") && err.contains("does not exist"),
            "{err}"
        );
        let device = bind("/dev/null", "/dev/x", &["bind"]);
        let err = from_bundle_bind(&device, 0).unwrap_err().to_string();
        assert!(err.contains("device node"), "{err}");
        let relative = bind("data", "/data", &["bind"]);
        assert!(from_bundle_bind(&relative, 0).is_err());
    }

    #[test]
    fn destinations_are_checked() {
        assert!(check_destination("/data").is_ok());
        assert!(check_destination("/").is_err());
        assert!(check_destination("data").is_err());
        assert!(check_destination("/a/../b").is_err());
    }

    #[test]
    fn dash_v_makes_a_missing_host_directory() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("new/dir");
        let path = bind_source(&source, "/data", true).unwrap();
        assert!(path.is_dir());
        assert!(bind_source(&dir.path().join("absent"), "/data", false).is_err());
    }
}
