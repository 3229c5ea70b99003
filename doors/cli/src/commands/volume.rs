//! `hull volume create/ls/inspect/rm/prune`: the library's volume store
//! (`hull_container::volume`), in Docker's words.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{anyhow, Result};
use hull_container::record::format_time;
use hull_container::volume::{users_of, Volume, Volumes};

use super::lifecycle::containers;
use crate::cli::{Cli, VolumeCommand};

pub fn volume(cli: &Cli, command: &VolumeCommand) -> Result<i32> {
    let volumes = Volumes::new(&cli.root);
    match command {
        VolumeCommand::Create(args) => {
            let mut labels = BTreeMap::new();
            for label in &args.labels {
                let (k, v) = label.split_once('=').unwrap_or((label.as_str(), ""));
                if k.is_empty() {
                    return Err(anyhow!("invalid --label {label:?}: use KEY=VALUE"));
                }
                labels.insert(k.to_string(), v.to_string());
            }
            let volume = volumes.create(args.name.as_deref(), labels)?;
            println!("{}", volume.name);
            Ok(0)
        }
        VolumeCommand::Ls(args) => {
            let all = volumes.list()?;
            if !args.quiet {
                println!("{:<16}VOLUME NAME", "DRIVER");
            }
            for v in all {
                if args.quiet {
                    println!("{}", v.name);
                } else {
                    println!("{:<16}{}", "local", v.name);
                }
            }
            Ok(0)
        }
        VolumeCommand::Inspect(args) => {
            let mut out = Vec::new();
            let mut code = 0;
            for name in &args.names {
                match volumes.get(name) {
                    Ok(v) => out.push(inspect(&v)),
                    Err(e) => {
                        eprintln!("hull: {e}");
                        code = 1;
                    }
                }
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(code)
        }
        VolumeCommand::Rm(args) => {
            let users = users_of(&containers(cli))?;
            let mut code = 0;
            for name in &args.names {
                let using = users.get(name).cloned().unwrap_or_default();
                match volumes.remove(name, &using, args.force) {
                    Ok(()) => println!("{name}"),
                    Err(e) => {
                        eprintln!("hull: {e}");
                        code = 1;
                    }
                }
            }
            Ok(code)
        }
        VolumeCommand::Prune(args) => {
            let in_use: BTreeSet<String> = users_of(&containers(cli))?.into_keys().collect();
            let sizes: BTreeMap<String, u64> = volumes
                .list()?
                .into_iter()
                .map(|v| (v.name.clone(), du(&v.mountpoint)))
                .collect();
            let removed = volumes.prune(&in_use, args.all)?;
            println!("Deleted Volumes:");
            let mut total = 0;
            for name in &removed {
                println!("{name}");
                total += sizes.get(name).copied().unwrap_or(0);
            }
            println!();
            println!("Total reclaimed space: {}", human(total));
            Ok(0)
        }
    }
}

/// Docker's `volume inspect` shape.
fn inspect(v: &Volume) -> serde_json::Value {
    serde_json::json!({
        "CreatedAt": format_time(v.created),
        "Driver": "local",
        "Labels": v.labels,
        "Mountpoint": v.mountpoint,
        "Name": v.name,
        "Options": null,
        "Scope": "local",
    })
}

/// Bytes under `dir` (not following symlinks).
fn du(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => du(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.2}GB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.2}MB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.2}kB", b as f64 / 1024.0),
        b => format!("{b}B"),
    }
}
