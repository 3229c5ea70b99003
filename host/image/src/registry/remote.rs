//! Where an image lives in a registry, and what a registry's failures
//! mean to the user: every `oci-client` error becomes one line naming the
//! image (or blob) and the registry.
//!
//! Model: docker's reference normalization (`busybox` is
//! `docker.io/library/busybox`) and its pull errors (`not found`, `denied`,
//! `run docker login`).

use oci_client::errors::{OciDistributionError, OciErrorCode};

use super::Error;
use crate::reference::{is_domain, Reference};

/// Where an image lives: registry host and repository path in it.
#[derive(Debug, Clone)]
pub(crate) struct Remote {
    pub(super) registry: String,
    pub(super) repository: String,
    pub(super) tag: Option<String>,
    pub(super) digest: Option<String>,
}

impl Remote {
    pub(super) fn new(r: &Reference) -> Remote {
        let (registry, repository) = match r.repo.split_once('/') {
            Some((first, rest)) if is_domain(first) => (first.to_string(), rest.to_string()),
            _ if r.repo.contains('/') => ("docker.io".to_string(), r.repo.clone()),
            _ => ("docker.io".to_string(), format!("library/{}", r.repo)),
        };
        Remote {
            registry,
            repository,
            tag: r.tag.clone(),
            digest: r.digest.clone(),
        }
    }

    /// The reference oci-client uses for requests about this repository.
    pub(super) fn oci(&self) -> oci_client::Reference {
        match (&self.tag, &self.digest) {
            (_, Some(d)) => oci_client::Reference::with_digest(
                self.registry.clone(),
                self.repository.clone(),
                d.clone(),
            ),
            (Some(t), None) => oci_client::Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                t.clone(),
            ),
            (None, None) => oci_client::Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                "latest".into(),
            ),
        }
    }

    pub(super) fn at_digest(&self, digest: &str) -> Remote {
        Remote {
            digest: Some(digest.to_string()),
            ..self.clone()
        }
    }

    pub(super) fn display(&self) -> String {
        let mut s = format!("{}/{}", self.registry, self.repository);
        if let Some(t) = &self.tag {
            s = format!("{s}:{t}");
        }
        if let Some(d) = &self.digest {
            s = format!("{s}@{d}");
        }
        s
    }
}

/// One line for what the registry said, naming the image (or blob).
pub(super) fn map_oci_error(e: OciDistributionError, remote: &Remote, blob: Option<&str>) -> Error {
    let reference = match blob {
        Some(d) => format!("blob {d} of {}", remote.display()),
        None => remote.display(),
    };
    let registry = remote.registry.clone();
    let not_found = || Error::NotFound {
        reference: reference.clone(),
        registry: registry.clone(),
    };
    let unauthorized = || Error::Unauthorized {
        reference: reference.clone(),
        registry: registry.clone(),
    };
    match e {
        OciDistributionError::RequestError(source) => Error::Unreachable { registry, source },
        OciDistributionError::ImageManifestNotFoundError(_) => not_found(),
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => unauthorized(),
        OciDistributionError::RegistryError { envelope, .. } => {
            let first = envelope.errors.first();
            match first.map(|e| &e.code) {
                Some(
                    OciErrorCode::NameUnknown
                    | OciErrorCode::ManifestUnknown
                    | OciErrorCode::BlobUnknown
                    | OciErrorCode::NotFound,
                ) => not_found(),
                Some(OciErrorCode::Unauthorized | OciErrorCode::Denied) => unauthorized(),
                _ => Error::Registry {
                    registry,
                    message: one_line(
                        &first
                            .map(|e| format!("{:?}: {}", e.code, e.message))
                            .unwrap_or_else(|| "an error without details".into()),
                    ),
                },
            }
        }
        OciDistributionError::ServerError { code: 404, .. } => not_found(),
        OciDistributionError::ServerError {
            code: 401 | 403, ..
        } => unauthorized(),
        OciDistributionError::ServerError { code, message, .. } => Error::Registry {
            registry,
            message: one_line(&format!("HTTP {code} for {reference}: {message}")),
        },
        other => Error::Registry {
            registry,
            message: one_line(&format!("{reference}: {other}")),
        },
    }
}

/// Collapses whitespace (a registry's message may span lines) and bounds
/// the length.
pub(super) fn one_line(s: &str) -> String {
    let mut out: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if out.len() > 200 {
        let mut end = 200;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(s: &str) -> Remote {
        Remote::new(&Reference::parse(s).unwrap())
    }

    #[test]
    fn references_map_to_registries() {
        let r = remote("busybox");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("docker.io", "library/busybox")
        );
        let r = remote("foo/bar:1");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("docker.io", "foo/bar")
        );
        let r = remote("127.0.0.1:5000/hull/busybox:v1");
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "hull/busybox");
        assert_eq!(r.oci().to_string(), "127.0.0.1:5000/hull/busybox:v1");
        let d = format!("sha256:{}", "a".repeat(64));
        let r = remote(&format!("localhost/x@{d}"));
        assert_eq!(r.registry, "localhost");
        assert_eq!(r.oci().digest(), Some(d.as_str()));
    }

    #[test]
    fn messages_are_one_bounded_line() {
        assert_eq!(one_line("a\n  b\tc"), "a b c");
        assert!(one_line(&"x".repeat(500)).chars().count() <= 201);
    }
}
