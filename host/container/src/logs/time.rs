//! RFC 3339 timestamps in UTC with nanoseconds, as Go writes them
//! (`time.RFC3339Nano`, and Docker's fixed-width `RFC3339NanoFixed` for
//! `docker logs -t`), without a date crate. The calendar arithmetic is
//! Howard Hinnant's `civil_from_days` / `days_from_civil` (proleptic
//! Gregorian, exact for every `i64` day count we can meet).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SECS_PER_DAY: i64 = 86_400;
const NANOS_PER_SEC: u32 = 1_000_000_000;

/// `t` as `2026-11-22T16:55:01.123456789Z`, trailing zeros of the fraction
/// dropped (and the dot with them), as Go's `RFC3339Nano` and Docker's
/// json-file `time` field.
pub fn rfc3339_nano(t: SystemTime) -> String {
    let (date_time, nanos) = split(t);
    if nanos == 0 {
        return format!("{date_time}Z");
    }
    let fraction = format!("{nanos:09}");
    format!("{date_time}.{}Z", fraction.trim_end_matches('0'))
}

/// `t` with always nine fraction digits, as `docker logs -t` prints it, so
/// prefixed lines stay aligned.
pub fn rfc3339_nano_fixed(t: SystemTime) -> String {
    let (date_time, nanos) = split(t);
    format!("{date_time}.{nanos:09}Z")
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`: any number of fraction
/// digits (beyond nine they are truncated), `t`/`z` in either case. `None`
/// for anything else, including out-of-range fields (February 30th, hour
/// 24, second 60).
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let year = i64::from(digits(&b[0..4])?);
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    let second = digits(&b[17..19])?;
    let separators_ok = b[4] == b'-'
        && b[7] == b'-'
        && matches!(b[10], b'T' | b't')
        && b[13] == b':'
        && b[16] == b':';
    if !separators_ok
        || !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }

    let mut i = 19;
    let mut nanos = 0u32;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 9 {
                nanos = nanos * 10 + u32::from(b[i] - b'0');
            }
            i += 1;
        }
        let count = i - start;
        if count == 0 {
            return None;
        }
        if count < 9 {
            nanos *= 10u32.pow((9 - count) as u32);
        }
    }

    let offset = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let hours = digits(&b[i + 1..i + 3])?;
            let minutes = digits(&b[i + 4..i + 6])?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = i64::from(hours * 3600 + minutes * 60);
            if *sign == b'-' {
                -offset
            } else {
                offset
            }
        }
        _ => return None,
    };

    let secs = days_from_civil(year, month, day) * SECS_PER_DAY
        + i64::from(hour * 3600 + minute * 60 + second)
        - offset;
    let nanos = Duration::from_nanos(u64::from(nanos));
    if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(secs.unsigned_abs()) + nanos)
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(secs.unsigned_abs()))?
            .checked_add(nanos)
    }
}

/// `(YYYY-MM-DDTHH:MM:SS, nanoseconds)` of `t` in UTC.
fn split(t: SystemTime) -> (String, u32) {
    let (secs, nanos) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        Err(before) => {
            let d = before.duration();
            let secs = -i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            match d.subsec_nanos() {
                0 => (secs, 0),
                n => (secs - 1, NANOS_PER_SEC - n),
            }
        }
    };
    let (year, month, day) = civil_from_days(secs.div_euclid(SECS_PER_DAY));
    let of_day = secs.rem_euclid(SECS_PER_DAY);
    let date_time = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    );
    (date_time, nanos)
}

/// Days since 1970-01-01 → (year, month 1..=12, day 1..=31).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of the 400-year era, 0..=146_096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the March-based year
    let mp = (5 * doy + 2) / 153; // March = 0 … February = 11
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// (year, month 1..=12, day 1..=31) → days since 1970-01-01.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The value of a run of ASCII digits; `None` if any byte is not one.
fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_nano(at(0, 0)), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_nano(at(951_782_400, 0)), "2000-02-29T00:00:00Z");
        assert_eq!(
            rfc3339_nano(at(1_795_366_501, 123_456_789)),
            "2026-11-22T16:55:01.123456789Z"
        );
        assert_eq!(
            rfc3339_nano(at(1_795_366_501, 120_000_000)),
            "2026-11-22T16:55:01.12Z"
        );
        assert_eq!(
            rfc3339_nano_fixed(at(0, 0)),
            "1970-01-01T00:00:00.000000000Z"
        );
        assert_eq!(
            rfc3339_nano_fixed(at(1_795_366_501, 5)),
            "2026-11-22T16:55:01.000000005Z"
        );
        // The last second of a leap year, and one before the epoch.
        assert_eq!(rfc3339_nano(at(1_735_689_599, 0)), "2024-12-31T23:59:59Z");
        let before = UNIX_EPOCH - Duration::from_millis(1500);
        assert_eq!(rfc3339_nano(before), "1969-12-31T23:59:58.5Z");
    }

    #[test]
    fn parses_known_instants() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(at(0, 0)));
        assert_eq!(
            parse_rfc3339("2000-02-29T00:00:00Z"),
            Some(at(951_782_400, 0))
        );
        assert_eq!(
            parse_rfc3339("2026-11-22T16:55:01.123456789Z"),
            Some(at(1_795_366_501, 123_456_789))
        );
        assert_eq!(
            parse_rfc3339("2026-11-22t16:55:01.5z"),
            Some(at(1_795_366_501, 500_000_000))
        );
        // Digits beyond nanoseconds are truncated.
        assert_eq!(
            parse_rfc3339("2026-11-22T16:55:01.1234567891Z"),
            Some(at(1_795_366_501, 123_456_789))
        );
        assert_eq!(
            parse_rfc3339("2026-11-22T17:55:01+01:00"),
            Some(at(1_795_366_501, 0))
        );
        assert_eq!(
            parse_rfc3339("2026-11-22T11:25:01-05:30"),
            Some(at(1_795_366_501, 0))
        );
        assert_eq!(
            parse_rfc3339("1969-12-31T23:59:58.5Z"),
            Some(UNIX_EPOCH - Duration::from_millis(1500))
        );
    }

    #[test]
    fn rejects_malformed_times() {
        for bad in [
            "",
            "2026-11-22",
            "2026-11-22T16:55:01",
            "2026-11-22 16:55:01Z",
            "2026-11-22T16:55:01.Z",
            "2026-11-22T16:55:01ZZ",
            "2026-11-22T16:55:01+0100",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-11-22T24:00:00Z",
            "2026-11-22T16:60:00Z",
            "2026-11-22T16:55:60Z",
            "2026-11-22T16:55:01+24:00",
            "2026-1a-22T16:55:01Z",
            "+026-11-22T16:55:01Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn calendar_round_trips() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert!((1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m));
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        for secs in [0, 1, 59, 86_399, 951_782_400, 1_795_366_501, 4_102_444_800] {
            for nanos in [0, 1, 999_999_999] {
                let t = at(secs, nanos);
                assert_eq!(parse_rfc3339(&rfc3339_nano(t)), Some(t));
                assert_eq!(parse_rfc3339(&rfc3339_nano_fixed(t)), Some(t));
            }
        }
    }
}
