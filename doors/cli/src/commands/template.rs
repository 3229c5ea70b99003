//! `hull template ls|rm|prune`: the VM templates under the hull root, the
//! host's set and every scope's.

use anyhow::{anyhow, Result};
use hull_container::plan;
use hull_sandbox::template::{RemoveError, Templates};

use super::lifecycle::human_duration;
use crate::cli::{Cli, TemplateCommand};

/// The host's set first, then each scope's, by name.
fn every_set(cli: &Cli) -> Vec<(String, Templates)> {
    let host = plan::templates(&cli.root);
    let scopes = host.scopes();
    std::iter::once(("host".to_string(), host))
        .chain(scopes)
        .collect()
}

pub fn template(cli: &Cli, command: &TemplateCommand) -> Result<i32> {
    let sets = every_set(cli);
    match command {
        TemplateCommand::Ls => {
            println!(
                "{:<14}{:<10}{:<11}{:<7}{:<9}{:<5}{:<10}CREATED",
                "KEY", "SCOPE", "HYPERVISOR", "VCPUS", "MEMORY", "NIC", "SIZE"
            );
            let now = hull_sandbox::process::now_nanos();
            for (scope, templates) in &sets {
                for found in templates.list() {
                    match found {
                        Ok(t) => {
                            let memory = format!("{}M", t.shape.memory_mib);
                            let size =
                                format!("{:.1}M", t.disk_usage() as f64 / f64::from(1 << 20));
                            let age = human_duration(now.saturating_sub(t.created));
                            println!(
                                "{:<14}{scope:<10}{:<11}{:<7}{memory:<9}{:<5}{size:<10}{age} ago{}",
                                &t.key[..12],
                                t.hypervisor,
                                t.shape.vcpus,
                                if t.shape.nic { "yes" } else { "no" },
                                if t.stale { " (stale)" } else { "" },
                            );
                        }
                        Err((name, why)) => println!("{name:<14}{scope:<10}broken: {why}"),
                    }
                }
            }
            Ok(0)
        }
        TemplateCommand::Rm(args) => {
            let mut code = 0;
            for key in &args.keys {
                match remove_from_any(&sets, key) {
                    Ok(key) => println!("{key}"),
                    Err(err) => {
                        eprintln!("hull: {err}");
                        code = 1;
                    }
                }
            }
            Ok(code)
        }
        TemplateCommand::Prune(args) => {
            for (scope, templates) in &sets {
                let removed = templates
                    .prune(args.all)
                    .map_err(|e| anyhow!("prune the templates of scope {scope}: {e}"))?;
                for name in removed {
                    println!("{name}");
                }
                if scope != "host" {
                    // An empty scope's directory goes too (not an error if
                    // a VM of the scope is making a template in it).
                    let _ = std::fs::remove_dir(templates.root());
                }
            }
            Ok(0)
        }
    }
}

/// Removes the one template `prefix` names, in whichever set it is.
fn remove_from_any(sets: &[(String, Templates)], prefix: &str) -> Result<String, RemoveError> {
    let mut last = None;
    for (_, templates) in sets {
        match templates.remove(prefix) {
            Err(RemoveError::NoSuchTemplate(_)) => {}
            Ok(key) => return Ok(key),
            Err(other) => last = Some(other),
        }
    }
    Err(last.unwrap_or_else(|| RemoveError::NoSuchTemplate(prefix.to_string())))
}
