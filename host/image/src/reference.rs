//! Image references (`[registry/]repo[:tag][@sha256:…]`), parsed by the
//! grammar of distribution's `reference` package and normalized the way the
//! docker CLI shows them: `docker.io/library/busybox` is `busybox:latest`.

use std::fmt;

use super::{digest, Error};

const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A parsed, normalized image reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// Repository, e.g. `hull-demo/busybox` or `localhost:5000/app`.
    pub repo: String,
    /// The tag; `latest` when neither a tag nor a digest was given.
    pub tag: Option<String>,
    /// A manifest digest, `sha256:<hex>`, if the reference pinned one.
    pub digest: Option<String>,
}

impl Reference {
    /// Parses and normalizes `s`.
    pub fn parse(s: &str) -> Result<Reference, Error> {
        let bad = |reason| Error::InvalidReference {
            reference: s.to_string(),
            reason,
        };
        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => {
                digest::parse(d).map_err(|_| bad("the digest is not sha256:<64 hex>"))?;
                (rest, Some(d.to_string()))
            }
            None => (s, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            if !valid_tag(tag) {
                return Err(bad("invalid tag"));
            }
        }
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return Err(bad("the repository name is empty or too long"));
        }
        let mut parts: Vec<&str> = name.split('/').collect();
        let domain = if parts.len() > 1 && is_domain(parts[0]) {
            Some(parts.remove(0))
        } else {
            None
        };
        if let Some(d) = domain {
            if !valid_domain(d) {
                return Err(bad("invalid registry host"));
            }
        }
        if !parts.iter().all(|p| valid_path_component(p)) {
            return Err(bad(
                "repository path components must be lowercase [a-z0-9] with . _ - separators",
            ));
        }
        let repo = match domain {
            Some("docker.io" | "index.docker.io") if parts.len() == 2 && parts[0] == "library" => {
                parts[1].to_string()
            }
            Some("docker.io" | "index.docker.io") => parts.join("/"),
            Some(d) => format!("{d}/{}", parts.join("/")),
            None => parts.join("/"),
        };
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some("latest".to_string()),
            (None, Some(_)) => None,
        };
        Ok(Reference { repo, tag, digest })
    }

    /// The normalized `repo:tag` a store entry is named by, if the
    /// reference has a tag.
    pub fn tagged_name(&self) -> Option<String> {
        self.tag.as_ref().map(|t| format!("{}:{t}", self.repo))
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.repo)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Splits a normalized `repo:tag` name into its repository.
pub(crate) fn repo_of(name: &str) -> &str {
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[last_slash..].rfind(':') {
        Some(i) => &name[..last_slash + i],
        None => name,
    }
}

pub(crate) fn is_domain(first: &str) -> bool {
    first.contains('.')
        || first.contains(':')
        || first == "localhost"
        || first.bytes().any(|b| b.is_ascii_uppercase())
}

fn valid_domain(d: &str) -> bool {
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d, None),
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    let host_ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    port_ok && host_ok
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_path_component(p: &str) -> bool {
    let b = p.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &p[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[\w][\w.-]{0,127}`
fn valid_tag(t: &str) -> bool {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_TAG_LEN
        && word(b[0])
        && b.iter().all(|&c| word(c) || c == b'.' || c == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> String {
        Reference::parse(s).unwrap().tagged_name().unwrap()
    }

    #[test]
    fn normalizes_names() {
        assert_eq!(name("hull-demo/busybox"), "hull-demo/busybox:latest");
        assert_eq!(name("hull-demo/busybox:latest"), "hull-demo/busybox:latest");
        assert_eq!(name("busybox:1.36"), "busybox:1.36");
        assert_eq!(name("docker.io/library/busybox"), "busybox:latest");
        assert_eq!(name("index.docker.io/library/busybox:1"), "busybox:1");
        assert_eq!(name("docker.io/foo/bar"), "foo/bar:latest");
        assert_eq!(name("localhost:5000/app:v2"), "localhost:5000/app:v2");
        assert_eq!(name("ghcr.io/a/b-c/d__e"), "ghcr.io/a/b-c/d__e:latest");
        assert_eq!(
            name("Registry.Example.com/x"),
            "Registry.Example.com/x:latest"
        );
    }

    #[test]
    fn digests() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("busybox@{d}")).unwrap();
        assert_eq!(r.repo, "busybox");
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_deref(), Some(d.as_str()));
        let r = Reference::parse(&format!("busybox:1@{d}")).unwrap();
        assert_eq!(r.tagged_name().unwrap(), "busybox:1");
        assert!(Reference::parse("busybox@sha256:abc").is_err());
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "busybox:-x",
            "a//b",
            "a/b/",
            "-a",
            "a--",
            "a...b",
            "../etc",
            "a b",
            "busybox:tag/x",
            &format!("x:{}", "t".repeat(129)),
        ] {
            let err = Reference::parse(bad).expect_err(bad);
            assert!(
                err.to_string().starts_with("invalid image reference"),
                "{err}"
            );
        }
    }

    #[test]
    fn repo_of_splits_tag() {
        assert_eq!(repo_of("localhost:5000/app:v2"), "localhost:5000/app");
        assert_eq!(repo_of("busybox:latest"), "busybox");
        assert_eq!(repo_of("busybox"), "busybox");
    }
}
