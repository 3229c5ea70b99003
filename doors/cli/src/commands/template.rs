//! `hull template ls|rm|prune`: the VM templates under the hull root.

use anyhow::{anyhow, Result};
use hull_container::plan;

use super::lifecycle::human_duration;
use crate::cli::{Cli, TemplateCommand};

pub fn template(cli: &Cli, command: &TemplateCommand) -> Result<i32> {
    let templates = plan::templates(&cli.root);
    match command {
        TemplateCommand::Ls => {
            println!(
                "{:<14}{:<11}{:<7}{:<9}{:<5}{:<10}CREATED",
                "KEY", "HYPERVISOR", "VCPUS", "MEMORY", "NIC", "SIZE"
            );
            let now = hull_sandbox::process::now_nanos();
            for found in templates.list() {
                match found {
                    Ok(t) => {
                        let memory = format!("{}M", t.shape.memory_mib);
                        let size = format!("{:.1}M", t.disk_usage() as f64 / f64::from(1 << 20));
                        let age = human_duration(now.saturating_sub(t.created));
                        println!(
                            "{:<14}{:<11}{:<7}{memory:<9}{:<5}{size:<10}{age} ago{}",
                            &t.key[..12],
                            t.hypervisor,
                            t.shape.vcpus,
                            if t.shape.nic { "yes" } else { "no" },
                            if t.stale { " (stale)" } else { "" },
                        );
                    }
                    Err((name, why)) => println!("{name:<14}broken: {why}"),
                }
            }
            Ok(0)
        }
        TemplateCommand::Rm(args) => {
            let mut code = 0;
            for key in &args.keys {
                match templates.remove(key) {
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
            let removed = templates
                .prune(args.all)
                .map_err(|e| anyhow!("prune templates: {e}"))?;
            for name in removed {
                println!("{name}");
            }
            Ok(0)
        }
    }
}
