//! The name index, `images.json`: which images the store holds (image
//! id -> manifest digest and names), and resolving a reference against it.
//!
//! Model: containerd's image metadata (a name points at one manifest),
//! reduced to one JSON document that the store replaces by rename. Names
//! are docker's: a name belongs to one image at most, an image that loses
//! its last name stays, untagged, reachable by id.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::reference::{self, Reference};
use super::Error;

/// The shortest id prefix a reference may use.
const MIN_ID_PREFIX: usize = 12;

/// `images.json`: image id -> record.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Index {
    pub(crate) images: BTreeMap<String, Record>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) manifest_digest: String,
    /// Normalized `repo:tag` names; a name belongs to one image at most.
    pub(crate) names: Vec<String>,
}

impl Index {
    /// Records image `id` with `manifest_digest` and moves `names` to it
    /// (an image that loses its last name stays, untagged).
    pub(crate) fn record(&mut self, id: &str, manifest_digest: &str, names: &[String]) {
        for name in names {
            for rec in self.images.values_mut() {
                rec.names.retain(|n| n != name);
            }
        }
        let rec = self.images.entry(id.to_string()).or_insert_with(|| Record {
            manifest_digest: manifest_digest.to_string(),
            names: Vec::new(),
        });
        rec.manifest_digest = manifest_digest.to_string();
        for name in names {
            if !rec.names.contains(name) {
                rec.names.push(name.clone());
            }
        }
    }
}

/// Finds (id, name) for a reference; the name is empty when found by id
/// and the image has no name.
pub(crate) fn find(index: &Index, reference: &str) -> Result<(String, String), Error> {
    let parsed = Reference::parse(reference);
    if let Some(hit) = parsed.as_ref().ok().and_then(|r| find_by_name(index, r)) {
        return Ok(hit);
    }
    let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
    let is_hex = hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if is_hex && hex.len() >= MIN_ID_PREFIX && hex.len() <= 64 {
        if let Some(hit) = find_by_id(index, reference, hex)? {
            return Ok(hit);
        }
    }
    match parsed {
        Ok(r) => Err(Error::NotFound(r.to_string())),
        Err(_) if is_hex => Err(Error::NotFound(reference.to_string())),
        Err(e) => Err(e),
    }
}

/// An image by `repo:tag` (pinned to a manifest digest if `r` has one),
/// or by `repo@digest` alone.
fn find_by_name(index: &Index, r: &Reference) -> Option<(String, String)> {
    if let Some(name) = r.tagged_name() {
        let (id, _) = index.images.iter().find(|(_, rec)| {
            rec.names.contains(&name) && r.digest.as_ref().is_none_or(|d| d == &rec.manifest_digest)
        })?;
        return Some((id.clone(), name));
    }
    let d = r.digest.as_ref()?;
    let pinned = || {
        index
            .images
            .iter()
            .filter(|(_, rec)| &rec.manifest_digest == d)
    };
    for (id, rec) in pinned() {
        let name = rec.names.iter().find(|n| reference::repo_of(n) == r.repo);
        if let Some(name) = name {
            return Some((id.clone(), name.clone()));
        }
    }
    // Pulled by digest alone: the image may carry no name at all.
    let (id, rec) = pinned().next()?;
    Some((id.clone(), rec.names.first().cloned().unwrap_or_default()))
}

/// The one image whose id starts with `hex`.
fn find_by_id(
    index: &Index,
    reference: &str,
    hex: &str,
) -> Result<Option<(String, String)>, Error> {
    let hits: Vec<&String> = index
        .images
        .keys()
        .filter(|id| id.trim_start_matches("sha256:").starts_with(hex))
        .collect();
    match hits.as_slice() {
        [id] => {
            let name = index.images[*id].names.first().cloned().unwrap_or_default();
            Ok(Some(((*id).clone(), name)))
        }
        [] => Ok(None),
        many => Err(Error::Ambiguous {
            reference: reference.to_string(),
            count: many.len(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ambiguous_id_prefix() {
        let mut index = Index::default();
        for id in ["sha256:aaaaaaaaaaaa1", "sha256:aaaaaaaaaaaa2"] {
            index.images.insert(
                id.to_string(),
                Record {
                    manifest_digest: String::new(),
                    names: vec![],
                },
            );
        }
        let err = find(&index, "aaaaaaaaaaaa").unwrap_err();
        assert!(matches!(err, Error::Ambiguous { count: 2, .. }), "{err}");
        assert!(matches!(
            find(&index, "aaaaaaaaaaa"),
            Err(Error::NotFound(_))
        ));
    }
}
