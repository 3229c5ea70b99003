//! `list`: every container under `--root`, as runc's table (its
//! tabwriter's layout), its JSON (`null` when there are none, as Go
//! encodes runc's empty slice) or bare ids with `-q`.

use std::os::unix::fs::MetadataExt;

use anyhow::{anyhow, Result};

use super::args::{ListArgs, RuncArgs};
use super::containers;
use super::state::oci_state;

pub fn list(args: &RuncArgs, list: &ListArgs) -> Result<i32> {
    let mut all = containers(args).list();
    all.sort_by_key(|c| c.config.created);
    if list.quiet {
        for container in &all {
            println!("{}", container.config.name);
        }
        return Ok(0);
    }
    let states: Vec<_> = all
        .iter()
        .map(|container| {
            let mut state = oci_state(container);
            // runc's list names the owner of the container's state directory.
            let uid = std::fs::metadata(&container.dir).map_or(0, |m| m.uid());
            state["owner"] = owner_name(uid).into();
            state
        })
        .collect();
    match list.format.as_str() {
        "json" if states.is_empty() => println!("null"),
        "json" => println!("{}", serde_json::to_string(&states)?),
        "table" => {
            let mut rows =
                vec![["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from)];
            for state in &states {
                let text = |key: &str| match &state[key] {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                rows.push(["id", "pid", "status", "bundle", "created", "owner"].map(text));
            }
            print!("{}", table(&rows));
        }
        other => return Err(anyhow!("invalid format option {other:?}")),
    }
    Ok(0)
}

/// Columns as Go's `tabwriter.NewWriter(out, 12, 1, 3, ' ', 0)` lays them
/// out for runc: at least 12 wide, 3 spaces of padding, the last unpadded.
fn table(rows: &[[String; 6]]) -> String {
    let widths: Vec<usize> = (0..6)
        .map(|col| {
            let widest = rows.iter().map(|r| r[col].len()).max().unwrap_or(0);
            (widest + 3).max(12)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        for (col, cell) in row.iter().enumerate() {
            if col == row.len() - 1 {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}", width = widths[col]));
            }
        }
        out.push('\n');
    }
    out
}

/// The user name of `uid` from /etc/passwd, or `#uid` as runc prints an
/// unknown one.
fn owner_name(uid: u32) -> String {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let id = fields.nth(1)?.parse::<u32>().ok()?;
            (id == uid).then(|| name.to_string())
        })
        .unwrap_or_else(|| format!("#{uid}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_pads_like_runcs_tabwriter() {
        let rows = vec![
            ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from),
            ["a-long-container-id", "42", "running", "/b", "2026", "root"].map(String::from),
        ];
        let text = table(&rows);
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(
            lines[0],
            format!(
                "{:<22}{:<12}{:<12}{:<12}{:<12}OWNER",
                "ID", "PID", "STATUS", "BUNDLE", "CREATED"
            )
        );
        assert!(lines[1].starts_with("a-long-container-id   42          running"));
    }

    #[test]
    fn owner_names_come_from_passwd() {
        assert_eq!(owner_name(0), "root");
        assert_eq!(owner_name(4_000_000_000), "#4000000000");
    }
}
