use anyhow::{anyhow, Result};

use super::lifecycle::{containers, status_line};
use crate::cli::{Cli, PsArgs};
use hull_container::record::{now_nanos, Status};

pub fn ps(cli: &Cli, args: &PsArgs) -> Result<i32> {
    if !matches!(args.format.as_str(), "table" | "json") {
        return Err(anyhow!(
            "unknown --format {:?} (table or json)",
            args.format
        ));
    }
    let now = now_nanos();
    let mut rows = Vec::new();
    for c in containers(cli).list().into_iter().rev() {
        let state = c.settle();
        if !args.all && state.status() != Status::Running {
            continue;
        }
        rows.push((c, state));
    }
    if args.quiet {
        for (c, _) in &rows {
            println!("{}", c.short_id());
        }
        return Ok(0);
    }
    if args.format == "json" {
        for (c, state) in &rows {
            let line = serde_json::json!({
                "ID": c.short_id(),
                "Names": c.config.name,
                "Image": c.config.image,
                "Command": command_line(&c.config.spec),
                "CreatedAt": hull_container::record::format_time(c.config.created),
                "State": state.status_name(),
                "Status": status_line(state, now),
                "ExitCode": state.exit_code,
            });
            println!("{line}");
        }
        return Ok(0);
    }
    println!(
        "{:<14}{:<24}{:<24}{:<22}{:<26}NAMES",
        "CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS"
    );
    for (c, state) in &rows {
        let created = format!(
            "{} ago",
            super::lifecycle::human_duration(now.saturating_sub(c.config.created))
        );
        let mut command = format!("\"{}\"", command_line(&c.config.spec));
        if command.len() > 22 {
            command = format!("{}…\"", &command[..command.floor_char_boundary(20)]);
        }
        println!(
            "{:<14}{:<24}{:<24}{:<22}{:<26}{}",
            c.short_id(),
            c.config.image,
            command,
            created,
            status_line(state, now),
            c.config.name
        );
    }
    Ok(0)
}

pub fn command_line(spec: &oci_spec::runtime::Spec) -> String {
    spec.process()
        .as_ref()
        .and_then(|p| p.args().clone())
        .unwrap_or_default()
        .join(" ")
}
