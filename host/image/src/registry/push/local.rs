//! The image a push sends, as the store holds it: the manifest's exact
//! bytes and media type, and every blob it names (layers, then the
//! config) opened under the store's read lock. Open files outlive a
//! concurrent `rmi` that unlinks them, so the push needs the lock only
//! while it opens them and never blocks a pull or load for its length.
//!
//! Every image in the store keeps the blobs its manifest names under
//! their digests: a pull keeps the registry's compressed layers, a load
//! keeps the archive's layer files (a `docker save` layer under the
//! digest of the manifest made for it), and garbage collection treats
//! them all as live. So a push sends exactly what the manifest names and
//! the registry reports the digest hull shows. A blob that is missing or
//! of the wrong size (a damaged store) fails the push naming the image;
//! nothing is regenerated, since a new layer would change the digests.

use std::fs::File;
use std::io;

use crate::index::find;
use crate::media::MT_OCI_MANIFEST;
use crate::{Error, ImageStore};

/// One blob to send.
#[derive(Debug)]
pub(crate) struct LocalBlob {
    pub(crate) digest: String,
    pub(crate) size: u64,
    pub(crate) file: File,
}

/// An image ready to push.
#[derive(Debug)]
pub(crate) struct LocalImage {
    /// Every name the image has in the store (`repo:tag`), to find a
    /// repository it can be mounted from.
    pub(crate) names: Vec<String>,
    pub(crate) manifest_digest: String,
    pub(crate) manifest_bytes: Vec<u8>,
    pub(crate) media_type: String,
    /// The layers in manifest order, then the config.
    pub(crate) blobs: Vec<LocalBlob>,
}

impl ImageStore {
    /// The image `reference` names, its blobs opened.
    pub(crate) fn push_source(&self, reference: &str) -> Result<LocalImage, Error> {
        let _lock = self.read_lock()?;
        let index = self.read_index()?;
        let (id, _) = find(&index, reference)?;
        let rec = &index.images[&id];
        let manifest_bytes = self.blobs().read(&rec.manifest_digest, "image manifest")?;
        let manifest = self.blobs().manifest(&rec.manifest_digest)?;
        let media_type = manifest
            .media_type()
            .as_ref()
            .map_or_else(|| MT_OCI_MANIFEST.to_string(), |m| m.to_string());
        let descs = manifest.layers().iter().chain([manifest.config()]);
        let blobs = descs
            .map(|d| self.open_blob(d.digest().as_ref(), d.size()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(LocalImage {
            names: rec.names.clone(),
            manifest_digest: rec.manifest_digest.clone(),
            manifest_bytes,
            media_type,
            blobs,
        })
    }

    /// Opens blob `digest`, checking it has the size its descriptor says.
    fn open_blob(&self, digest: &str, size: u64) -> Result<LocalBlob, Error> {
        let path = self.blob_path(digest)?;
        let file = File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::MissingBlob {
                digest: digest.to_string(),
            },
            _ => Error::io(&path)(e),
        })?;
        let actual = file.metadata().map_err(Error::io(&path))?.len();
        if actual != size {
            return Err(Error::SizeMismatch {
                digest: digest.to_string(),
                expected: size,
                actual,
            });
        }
        Ok(LocalBlob {
            digest: digest.to_string(),
            size,
            file,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::test_utils::{store_fixture, LayerBuilder, OciArchive, TestImage};
    use crate::Error;

    #[test]
    fn an_image_opens_with_its_manifest_and_every_blob() {
        let f = store_fixture();
        let store = &f.store;
        let layers = vec![
            LayerBuilder::new().file("a", b"1", 0o644).build(),
            LayerBuilder::new().file("b", b"2", 0o644).build(),
        ];
        let a = OciArchive::new(vec![TestImage::new(layers)]);
        let img = f.load_first(&a, "a.tar");
        let local = store.push_source(&img.name).unwrap();
        let (m, c, ls) = &a.digests[0];
        assert_eq!(&local.manifest_digest, m);
        assert_eq!(local.manifest_bytes, a.blob(m));
        assert_eq!(local.media_type, crate::media::MT_OCI_MANIFEST);
        let digests: Vec<&str> = local.blobs.iter().map(|b| b.digest.as_str()).collect();
        let mut want: Vec<&str> = ls.iter().map(String::as_str).collect();
        want.push(c);
        assert_eq!(digests, want);
        assert_eq!(local.names, vec![img.name.clone()]);

        // A damaged store is named, not pushed.
        std::fs::write(store.blob_path(&ls[1]).unwrap(), b"short").unwrap();
        let err = store.push_source(&img.name).unwrap_err();
        assert!(matches!(err, Error::SizeMismatch { .. }), "{err}");
        std::fs::remove_file(store.blob_path(&ls[1]).unwrap()).unwrap();
        let err = store.push_source(&img.name).unwrap_err();
        assert_eq!(err.to_string(), format!("blob {} is missing", ls[1]));
        let err = store.push_source("nothing:here").unwrap_err();
        assert_eq!(err.to_string(), "image not found: nothing:here");
    }
}
