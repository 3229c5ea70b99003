use anyhow::{anyhow, Result};

use super::lifecycle::containers;
use crate::cli::{Cli, NetworkCommand, TopArgs};
use hull_net::{Networks, DEFAULT_NETWORK};

pub fn network(cli: &Cli, command: &NetworkCommand) -> Result<i32> {
    let networks = Networks::new(&cli.root, &cli.run_dir);
    match command {
        NetworkCommand::Create(args) => {
            let def = networks.create(&args.name, args.subnet.as_deref())?;
            println!("{}", def.name);
            Ok(0)
        }
        NetworkCommand::Ls => {
            // The default network exists from the start, as docker's does.
            networks.get(DEFAULT_NETWORK)?;
            println!("{:<22}{:<20}{:<18}CONTAINERS", "NAME", "SUBNET", "GATEWAY");
            for def in networks.list() {
                println!(
                    "{:<22}{:<20}{:<18}{}",
                    def.name,
                    def.subnet,
                    def.gateway,
                    networks.members(&def.name).len()
                );
            }
            Ok(0)
        }
        NetworkCommand::Inspect(args) => {
            let all = containers(cli);
            let mut out = Vec::new();
            let mut code = 0;
            for name in &args.names {
                match networks.get(name) {
                    Ok(def) => {
                        let members: Vec<_> = networks
                            .members(name)
                            .iter()
                            .filter_map(|id| all.find(id).ok())
                            .map(|c| {
                                serde_json::json!({
                                    "Id": c.config.id,
                                    "Name": c.config.name,
                                    "IPv4Address": c.state().ip_address,
                                })
                            })
                            .collect();
                        out.push(serde_json::json!({
                            "Name": def.name,
                            "Driver": "bridge",
                            "Namespace": networks.namespace(&def.name),
                            "Created": hull_container::record::format_time(def.created),
                            "IPAM": {"Config": [{"Subnet": def.subnet, "Gateway": def.gateway}]},
                            "Containers": members,
                        }));
                    }
                    Err(e) => {
                        eprintln!("hull: {e}");
                        code = 1;
                    }
                }
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(code)
        }
        NetworkCommand::Rm(args) => {
            let mut code = 0;
            for name in &args.names {
                let result = if name == DEFAULT_NETWORK {
                    Err(anyhow!(
                        "the default network {DEFAULT_NETWORK} cannot be removed"
                    ))
                } else {
                    networks.remove(name).map_err(Into::into)
                };
                match result {
                    Ok(()) => println!("{name}"),
                    Err(e) => {
                        eprintln!("hull: {e}");
                        code = 1;
                    }
                }
            }
            Ok(code)
        }
    }
}

/// `hull port NAME`: the published ports, as `docker port` lists them.
pub fn port(cli: &Cli, args: &TopArgs) -> Result<i32> {
    let container = containers(cli).find(&args.container)?;
    for mapping in &container.config.ports {
        println!("{mapping}");
    }
    Ok(0)
}
