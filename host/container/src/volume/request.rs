//! What a front door asks to mount, before the planner resolves it.

use std::path::PathBuf;

use crate::error::Error;

/// One `-v`, `--mount` or `--tmpfs`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountRequest {
    /// A host file or directory.
    Bind {
        source: PathBuf,
        destination: String,
        read_only: bool,
        /// `-v` creates a missing host directory; `--mount` refuses it.
        create_source: bool,
        /// More OCI mount options: propagation, `nosuid`, `nodev`, `noexec`.
        options: Vec<String>,
    },
    /// A named volume, or an anonymous one (`name: None`, `-v /path`).
    Volume {
        name: Option<String>,
        destination: String,
        read_only: bool,
        /// `volume-nocopy`: a new volume is not filled from the image.
        no_copy: bool,
    },
    /// A tmpfs inside the guest; `options` as the OCI mount takes them
    /// (`size=64m`, `mode=1777`, `noexec`, ...).
    Tmpfs {
        destination: String,
        options: Vec<String>,
    },
}

fn bad(flag: &'static str, value: &str, reason: &'static str) -> Error {
    Error::Invalid {
        flag,
        value: value.to_string(),
        reason,
    }
}

/// A volume name as Docker takes one.
pub fn valid_volume_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() >= 2
        && name.len() <= 255
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

const PROPAGATIONS: &[&str] = &[
    "rprivate", "private", "rshared", "shared", "rslave", "slave",
];

/// `-v HOST:CTR[:opts]`, `-v NAME:CTR[:opts]` or `-v CTR`.
pub fn parse_volume_flag(value: &str) -> Result<MountRequest, Error> {
    const FLAG: &str = "--volume";
    let parts: Vec<&str> = value.split(':').collect();
    let (source, destination, opts) = match parts.as_slice() {
        [dst] => (None, *dst, ""),
        [src, dst] => (Some(*src), *dst, ""),
        [src, dst, opts] => (Some(*src), *dst, *opts),
        _ => return Err(bad(FLAG, value, "use HOST-DIR:CONTAINER-DIR[:OPTIONS]")),
    };
    if !destination.starts_with('/') || destination == "/" {
        return Err(bad(
            FLAG,
            value,
            "the container path must be absolute and not /",
        ));
    }
    let (mut read_only, mut no_copy, mut options) = (false, false, Vec::new());
    for opt in opts.split(',').filter(|o| !o.is_empty()) {
        match opt {
            "ro" => read_only = true,
            "rw" => read_only = false,
            // No SELinux here: relabelling is nothing to do.
            "z" | "Z" => {}
            "nocopy" => no_copy = true,
            p if PROPAGATIONS.contains(&p) => options.push(p.to_string()),
            _ => {
                return Err(bad(
                    FLAG,
                    value,
                    "options are ro, rw, z, Z, nocopy and propagation",
                ))
            }
        }
    }
    let destination = destination.to_string();
    match source {
        None => Ok(MountRequest::Volume {
            name: None,
            destination,
            read_only,
            no_copy,
        }),
        Some(src) if src.starts_with('/') || src.starts_with('.') => {
            let path = if src.starts_with('/') {
                PathBuf::from(src)
            } else {
                std::env::current_dir()
                    .map_err(|_| bad(FLAG, value, "no current directory for a relative path"))?
                    .join(src)
            };
            Ok(MountRequest::Bind {
                source: path,
                destination,
                read_only,
                create_source: true,
                options,
            })
        }
        Some(name) if valid_volume_name(name) => {
            if !options.is_empty() {
                return Err(bad(FLAG, value, "propagation is for bind mounts"));
            }
            Ok(MountRequest::Volume {
                name: Some(name.to_string()),
                destination,
                read_only,
                no_copy,
            })
        }
        Some(_) => Err(bad(
            FLAG,
            value,
            "the source must be an absolute path or a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]+)",
        )),
    }
}

/// `--mount type=bind|volume|tmpfs,src=…,dst=…,readonly,…`.
pub fn parse_mount_flag(value: &str) -> Result<MountRequest, Error> {
    const FLAG: &str = "--mount";
    let (mut kind, mut source, mut destination) = ("volume", None, None);
    let (mut read_only, mut no_copy, mut options) = (false, false, Vec::new());
    let mut tmpfs = Vec::new();
    for field in value.split(',').filter(|f| !f.is_empty()) {
        let (key, val) = match field.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (field, None),
        };
        let flag_value = |v: Option<&str>| match v {
            None | Some("true") | Some("1") => Ok(true),
            Some("false") | Some("0") => Ok(false),
            Some(_) => Err(bad(FLAG, value, "a boolean is true, false, 1 or 0")),
        };
        match (key, val) {
            ("type", Some(t @ ("bind" | "volume" | "tmpfs"))) => kind = t,
            ("type", _) => return Err(bad(FLAG, value, "type is bind, volume or tmpfs")),
            ("source" | "src", Some(s)) => source = Some(s),
            ("destination" | "dst" | "target", Some(d)) => destination = Some(d),
            ("readonly" | "ro", v) => read_only = flag_value(v)?,
            ("bind-propagation", Some(p)) if PROPAGATIONS.contains(&p) => {
                options.push(p.to_string())
            }
            ("volume-nocopy", v) => no_copy = flag_value(v)?,
            ("tmpfs-size", Some(size)) => tmpfs.push(format!("size={}", tmpfs_size(size, value)?)),
            ("tmpfs-mode", Some(mode)) => {
                u32::from_str_radix(mode, 8)
                    .map_err(|_| bad(FLAG, value, "tmpfs-mode is octal"))?;
                tmpfs.push(format!("mode={mode}"));
            }
            _ => return Err(bad(FLAG, value, "unknown or incomplete field")),
        }
    }
    let Some(destination) = destination.map(str::to_string) else {
        return Err(bad(FLAG, value, "a destination (dst=) is needed"));
    };
    if !destination.starts_with('/') || destination == "/" {
        return Err(bad(
            FLAG,
            value,
            "the destination must be absolute and not /",
        ));
    }
    match kind {
        "bind" => {
            let Some(source) = source.filter(|s| s.starts_with('/')) else {
                return Err(bad(FLAG, value, "a bind needs an absolute src="));
            };
            Ok(MountRequest::Bind {
                source: PathBuf::from(source),
                destination,
                read_only,
                create_source: false,
                options,
            })
        }
        "tmpfs" => {
            if source.is_some() {
                return Err(bad(FLAG, value, "a tmpfs has no source"));
            }
            let mut opts = vec!["nosuid".to_string(), "nodev".to_string()];
            if read_only {
                opts.push("ro".into());
            }
            opts.extend(tmpfs);
            Ok(MountRequest::Tmpfs {
                destination,
                options: opts,
            })
        }
        _ => {
            if let Some(name) = source.filter(|n| !valid_volume_name(n)) {
                let _ = name;
                return Err(bad(FLAG, value, "not a valid volume name"));
            }
            Ok(MountRequest::Volume {
                name: source.map(str::to_string),
                destination,
                read_only,
                no_copy,
            })
        }
    }
}

/// `--mount tmpfs-size=`: bytes, or with a k, m or g suffix.
fn tmpfs_size(size: &str, value: &str) -> Result<u64, Error> {
    let (digits, unit) = match size.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => size.split_at(i),
        None => (size, ""),
    };
    let n: u64 = digits.parse().map_err(|_| {
        bad(
            "--mount",
            value,
            "tmpfs-size is a number of bytes (k, m, g)",
        )
    })?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" => 10,
        "m" | "mb" => 20,
        "g" | "gb" => 30,
        _ => {
            return Err(bad(
                "--mount",
                value,
                "tmpfs-size is a number of bytes (k, m, g)",
            ))
        }
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| bad("--mount", value, "tmpfs-size is too large"))
}

/// `--tmpfs PATH[:opts]`: Docker's defaults (`nosuid,nodev,noexec`) then
/// the caller's options, which override them.
pub fn parse_tmpfs_flag(value: &str) -> Result<MountRequest, Error> {
    let (destination, opts) = value.split_once(':').unwrap_or((value, ""));
    if !destination.starts_with('/') || destination == "/" {
        return Err(bad("--tmpfs", value, "the path must be absolute and not /"));
    }
    let mut options: Vec<String> = ["nosuid", "nodev", "noexec"].map(String::from).to_vec();
    options.extend(opts.split(',').filter(|o| !o.is_empty()).map(String::from));
    Ok(MountRequest::Tmpfs {
        destination: destination.to_string(),
        options,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dash_v_follows_dockers_rules() {
        assert_eq!(
            parse_volume_flag("/srv/data:/data:ro").unwrap(),
            MountRequest::Bind {
                source: "/srv/data".into(),
                destination: "/data".into(),
                read_only: true,
                create_source: true,
                options: vec![],
            }
        );
        assert_eq!(
            parse_volume_flag("db:/var/lib/db:nocopy").unwrap(),
            MountRequest::Volume {
                name: Some("db".into()),
                destination: "/var/lib/db".into(),
                read_only: false,
                no_copy: true,
            }
        );
        assert!(matches!(
            parse_volume_flag("/cache").unwrap(),
            MountRequest::Volume { name: None, .. }
        ));
        assert!(matches!(
            parse_volume_flag("./here:/x:rshared,Z").unwrap(),
            MountRequest::Bind { source, options, .. } if source.is_absolute() && options == ["rshared"]
        ));
        for bad in [
            "/x:relative",
            "/x:/",
            "a:/x",
            "n@me:/x",
            "/a:/b:bogus",
            "/a:/b:c:d",
            "v:/x:rshared",
        ] {
            assert!(parse_volume_flag(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dash_dash_mount_follows_dockers_rules() {
        assert_eq!(
            parse_mount_flag("type=bind,src=/a,dst=/b,readonly,bind-propagation=rslave").unwrap(),
            MountRequest::Bind {
                source: "/a".into(),
                destination: "/b".into(),
                read_only: true,
                create_source: false,
                options: vec!["rslave".into()],
            }
        );
        assert_eq!(
            parse_mount_flag("target=/v,source=vol,ro=false,volume-nocopy").unwrap(),
            MountRequest::Volume {
                name: Some("vol".into()),
                destination: "/v".into(),
                read_only: false,
                no_copy: true,
            }
        );
        assert_eq!(
            parse_mount_flag("type=tmpfs,dst=/t,tmpfs-size=2m,tmpfs-mode=1770").unwrap(),
            MountRequest::Tmpfs {
                destination: "/t".into(),
                options: ["nosuid", "nodev", "size=2097152", "mode=1770"]
                    .map(String::from)
                    .to_vec(),
            }
        );
        for bad in [
            "type=bind,dst=/b",
            "type=bind,src=rel,dst=/b",
            "type=nfs,dst=/b",
            "src=/a",
            "type=tmpfs,src=x,dst=/t",
            "type=tmpfs,dst=/t,tmpfs-size=lots",
            "dst=/b,colour=red",
            "dst=/b,readonly=maybe",
        ] {
            assert!(parse_mount_flag(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dash_dash_tmpfs_takes_dockers_defaults_first() {
        assert_eq!(
            parse_tmpfs_flag("/run:size=1m,exec").unwrap(),
            MountRequest::Tmpfs {
                destination: "/run".into(),
                options: ["nosuid", "nodev", "noexec", "size=1m", "exec"]
                    .map(String::from)
                    .to_vec(),
            }
        );
        assert!(parse_tmpfs_flag("run").is_err());
    }
}
