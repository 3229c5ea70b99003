//! Sizes as Docker's flags spell them ("512m", "16g", "1048576").

use thiserror::Error;

/// A size that is not a positive number of bytes with an optional unit.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid size {0:?}")]
pub struct InvalidSize(String);

/// Parses "512m", "16g", "1048576" into bytes.
pub fn parse_bytes(size: &str) -> Result<u64, InvalidSize> {
    let invalid = || InvalidSize(size.to_string());
    let s = size.trim().to_ascii_lowercase();
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s.as_str(), ""),
    };
    let n: u64 = digits.parse().map_err(|_| invalid())?;
    let shift = match unit.trim_end_matches('b') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(invalid()),
    };
    n.checked_mul(1 << shift)
        .filter(|&b| b > 0)
        .ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn sizes_parse_like_docker() {
        assert_eq!(parse_bytes("512m"), Ok(512 << 20));
        assert_eq!(parse_bytes("1g"), Ok(1 << 30));
        assert_eq!(parse_bytes("1GB"), Ok(1 << 30));
        assert_eq!(parse_bytes("268435456"), Ok(256 << 20));
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("12x").is_err());
        assert!(parse_bytes("").is_err());
    }
}
