use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;

use crate::cli::{Cli, HistoryArgs};
use hull_image::{HistoryEntry, ImageStore};

/// Longest `CREATED BY` shown without `--no-trunc` (docker's).
const CREATED_BY_WIDTH: usize = 45;

/// `hull history`: docker's columns, newest step first.
pub fn history(cli: &Cli, args: &HistoryArgs) -> Result<i32> {
    let store = ImageStore::open(&cli.root)?;
    let entries = store.history(&args.image)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let rows: Vec<Row> = entries
        .iter()
        .map(|e| Row::of(e, now, args.no_trunc))
        .collect();
    match args.format.as_deref() {
        Some("json") => {
            for (row, e) in rows.iter().zip(&entries) {
                let json = serde_json::json!({
                    "ID": row.image,
                    "CreatedAt": e.created.clone().unwrap_or_default(),
                    "CreatedSince": row.created,
                    "CreatedBy": row.created_by,
                    "Size": row.size,
                    "Comment": e.comment,
                });
                println!("{json}");
            }
        }
        Some(other) => anyhow::bail!("--format {other:?} is not supported (only json)"),
        None => {
            let w = |f: fn(&Row) -> &str, head: &str| {
                rows.iter()
                    .map(|r| f(r).chars().count())
                    .chain([head.len()])
                    .max()
                    .unwrap_or(0)
                    + 3
            };
            let widths = [
                w(|r| &r.image, "IMAGE"),
                w(|r| &r.created, "CREATED"),
                w(|r| &r.created_by, "CREATED BY"),
                w(|r| &r.size, "SIZE"),
            ];
            let line = |cols: [&str; 5]| {
                let mut s = String::new();
                for (col, width) in cols.iter().zip(widths) {
                    s.push_str(&format!("{col:<width$}"));
                }
                s.push_str(cols[4]);
                println!("{}", s.trim_end());
            };
            line(["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]);
            for r in &rows {
                line([&r.image, &r.created, &r.created_by, &r.size, &r.comment]);
            }
        }
    }
    Ok(0)
}

/// One line of the table, as text.
struct Row {
    image: String,
    created: String,
    created_by: String,
    size: String,
    comment: String,
}

impl Row {
    fn of(e: &HistoryEntry, now: u64, no_trunc: bool) -> Row {
        let image = match &e.id {
            Some(id) if no_trunc => id.clone(),
            Some(id) => {
                let hex = id.trim_start_matches("sha256:");
                hex[..hex.len().min(12)].to_string()
            }
            None => "<missing>".to_string(),
        };
        let created = e
            .created
            .as_deref()
            .and_then(unix_seconds)
            .map_or_else(|| "N/A".to_string(), |t| since(now.saturating_sub(t)));
        let created_by = e.created_by.replace(['\n', '\t'], " ");
        let created_by = if !no_trunc && created_by.chars().count() > CREATED_BY_WIDTH {
            let cut: String = created_by.chars().take(CREATED_BY_WIDTH - 1).collect();
            format!("{cut}…")
        } else {
            created_by
        };
        Row {
            image,
            created,
            created_by,
            size: human_size(e.size),
            comment: e.comment.clone(),
        }
    }
}

/// Docker's "3 weeks ago" (go-units' HumanDuration).
fn since(secs: u64) -> String {
    let (m, h, d) = (60, 3600, 86400);
    let text = match secs {
        s if s < 1 => "Less than a second".to_string(),
        s if s < m => format!("{s} seconds"),
        s if s < 2 * m => "About a minute".to_string(),
        s if s < h => format!("{} minutes", s / m),
        s if s < 2 * h => "About an hour".to_string(),
        s if s < 2 * d => format!("{} hours", s / h),
        s if s < 14 * d => format!("{} days", s / d),
        s if s < 60 * d => format!("{} weeks", s / (7 * d)),
        s if s < 730 * d => format!("{} months", s / (30 * d)),
        s => format!("{} years", s / (365 * d)),
    };
    format!("{text} ago")
}

/// Docker's sizes: decimal units, three significant digits.
fn human_size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < units.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    let digits = match value {
        v if v >= 100.0 => 0,
        v if v >= 10.0 => 1,
        _ => 2,
    };
    let text = format!("{value:.digits$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    format!("{text}{}", units[unit])
}

/// Seconds since the epoch of an RFC 3339 time (`2024-01-02T03:04:05Z`,
/// fractions and offsets allowed).
fn unix_seconds(s: &str) -> Option<u64> {
    let num = |a: usize, b: usize| s.get(a..b)?.parse::<i64>().ok();
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, min, sec) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let rest = s.get(19..)?;
    let rest = rest.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    let offset = match rest {
        "Z" | "z" | "" => 0,
        o => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let h: i64 = o.get(1..3)?.parse().ok()?;
            let m: i64 = o.get(4..6)?.parse().ok()?;
            sign * (h * 3600 + m * 60)
        }
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let t = days * 86400 + hour * 3600 + min * 60 + sec - offset;
    u64::try_from(t).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_sizes_read_as_docker_prints_them() {
        assert_eq!(unix_seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(unix_seconds("2024-01-02T03:04:05Z"), Some(1_704_164_645));
        assert_eq!(
            unix_seconds("2024-01-02T04:04:05.123456789+01:00"),
            Some(1_704_164_645)
        );
        assert_eq!(unix_seconds("yesterday"), None);
        assert_eq!(since(30), "30 seconds ago");
        assert_eq!(since(3 * 86400), "3 days ago");
        assert_eq!(since(21 * 86400), "3 weeks ago");
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(4_261_000), "4.26MB");
        assert_eq!(human_size(12_300), "12.3kB");
        assert_eq!(human_size(123_456), "123kB");
    }
}
