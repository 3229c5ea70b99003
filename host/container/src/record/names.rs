//! Container names: what users may choose, and the ones hull picks.

use super::LookupError;

/// Docker's rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, and short enough to be a
/// file name.
pub fn validate(name: &str) -> Result<(), LookupError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok && name.len() <= 128 {
        Ok(())
    } else {
        Err(LookupError::InvalidName(name.to_string()))
    }
}

const ADJECTIVES: &[&str] = &[
    "brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid", "merry",
    "nimble", "proud", "quiet", "rapid", "sharp", "tidy", "vivid", "witty", "bold", "clever",
];
const NOUNS: &[&str] = &[
    "anchor", "beacon", "cabin", "delta", "ember", "falcon", "harbor", "island", "keel", "lagoon",
    "mast", "orca", "pier", "quay", "reef", "sail", "tide", "vessel", "wharf", "zephyr",
];

/// An `adjective_noun_NNNN` name derived from the (random) container id,
/// like Docker's generated names.
pub fn random_name(id: &str) -> String {
    let n = u64::from_str_radix(&id[..12], 16).unwrap_or(0);
    let adjective = ADJECTIVES[(n % ADJECTIVES.len() as u64) as usize];
    let noun = NOUNS[((n / 97) % NOUNS.len() as u64) as usize];
    format!("{adjective}_{noun}_{:04}", (n >> 20) % 10_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockers_rule() {
        for ok in ["web", "a", "db-1", "x_y.z", "A9"] {
            assert!(validate(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", ".x", "a/b", "a b", "ü", &"a".repeat(129)] {
            assert!(validate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn generated_names_are_valid() {
        let name = random_name(&"0123456789ab".repeat(6)[..64]);
        assert!(validate(&name).is_ok(), "{name}");
    }
}
