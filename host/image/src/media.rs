//! Media types of the documents an image is made of, and the checks every
//! image source applies to them: which manifests, configs and layers we
//! accept, and how an image index picks the linux/amd64 image.
//!
//! Model: the OCI image-spec's `media-types.md` and Docker's v2 schema 2,
//! which registries and `docker save` still write; containerd's
//! `images.Manifest` platform matcher, reduced to one platform.

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, Platform};

use super::{layer, Error};

pub(crate) const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub(crate) const MT_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub(crate) const MT_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub(crate) const MT_OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub(crate) const MT_OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Whether `media_type` is an image manifest we read.
pub(crate) fn is_manifest(media_type: &str) -> bool {
    matches!(media_type, MT_OCI_MANIFEST | MT_DOCKER_MANIFEST)
}

/// Whether `media_type` is an image index / manifest list.
pub(crate) fn is_index_type(media_type: &str) -> bool {
    matches!(media_type, MT_OCI_INDEX | MT_DOCKER_LIST)
}

/// Checks the media types of a manifest, its config and its layers.
pub(crate) fn check_manifest(manifest: &ImageManifest, manifest_digest: &str) -> Result<(), Error> {
    if let Some(mt) = manifest.media_type() {
        let mt = mt.to_string();
        if !is_manifest(&mt) {
            return Err(unsupported("manifest", mt, manifest_digest));
        }
    }
    let config_desc = manifest.config();
    let config_mt = config_desc.media_type().to_string();
    if config_mt != MT_OCI_CONFIG && config_mt != MT_DOCKER_CONFIG {
        return Err(unsupported("config", config_mt, config_desc.digest()));
    }
    for desc in manifest.layers() {
        let mt = desc.media_type().to_string();
        if !layer::supported_media_type(&mt) {
            return Err(unsupported("layer", mt, desc.digest()));
        }
    }
    Ok(())
}

fn unsupported(what: &'static str, media_type: String, digest: impl ToString) -> Error {
    Error::UnsupportedMediaType {
        what,
        media_type,
        digest: digest.to_string(),
    }
}

/// Parses an image index named `digest` and checks its media type.
pub(crate) fn parse_index(digest: &str, bytes: &[u8]) -> Result<ImageIndex, Error> {
    let index: ImageIndex = serde_json::from_slice(bytes).map_err(|source| Error::InvalidJson {
        what: "image index",
        digest: digest.to_string(),
        source,
    })?;
    if let Some(mt) = index.media_type() {
        let mt = mt.to_string();
        if !is_index_type(&mt) {
            return Err(unsupported("image index", mt, digest));
        }
    }
    Ok(index)
}

/// The descriptor of the linux/amd64 image of the index `digest`.
pub(crate) fn platform_manifest(digest: &str, bytes: &[u8]) -> Result<Descriptor, Error> {
    parse_index(digest, bytes)?
        .manifests()
        .iter()
        .find(|d| d.platform().as_ref().is_some_and(is_linux_amd64))
        .cloned()
        .ok_or_else(|| Error::NoMatchingPlatform {
            digest: digest.to_string(),
        })
}

pub(crate) fn is_linux_amd64(p: &Platform) -> bool {
    p.os().to_string() == "linux" && p.architecture().to_string() == "amd64"
}

/// Whether manifest bytes (of unknown media type, as a registry may send
/// them) are an image index / manifest list.
pub(crate) fn is_index(bytes: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<Probe>(bytes) {
        Ok(p) => match p.media_type.as_deref() {
            Some(mt) => is_index_type(mt),
            None => p.manifests.is_some(),
        },
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_are_told_from_manifests() {
        assert!(is_index(
            br#"{"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#
        ));
        assert!(is_index(br#"{"schemaVersion":2,"manifests":[]}"#));
        assert!(!is_index(
            br#"{"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}"#
        ));
        assert!(!is_index(br#"{"schemaVersion":2,"layers":[]}"#));
    }

    #[test]
    fn picks_amd64_or_says_which_index() {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MT_OCI_INDEX,
            "manifests": [
                {"mediaType": MT_OCI_MANIFEST, "digest": d('a'), "size": 1,
                 "platform": {"os": "linux", "architecture": "arm64"}},
                {"mediaType": MT_OCI_MANIFEST, "digest": d('b'), "size": 1,
                 "platform": {"os": "linux", "architecture": "amd64"}},
            ]
        });
        let bytes = serde_json::to_vec(&index).unwrap();
        let chosen = platform_manifest("sha256:i", &bytes).unwrap();
        assert_eq!(chosen.digest().to_string(), d('b'));
        let mut arm_only = index.clone();
        arm_only["manifests"].as_array_mut().unwrap().pop();
        let bytes = serde_json::to_vec(&arm_only).unwrap();
        let err = platform_manifest("sha256:i", &bytes).unwrap_err();
        assert_eq!(
            err.to_string(),
            "image index sha256:i has no linux/amd64 image"
        );
    }

    #[test]
    fn an_index_of_another_media_type_is_refused() {
        let bytes = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": MT_OCI_MANIFEST, "manifests": [],
        }))
        .unwrap();
        let err = parse_index("index.json", &bytes).unwrap_err();
        assert!(matches!(err, Error::UnsupportedMediaType { .. }), "{err}");
    }
}
