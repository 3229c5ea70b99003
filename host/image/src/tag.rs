//! `hull tag`: another name for an image the store holds.
//!
//! Model: docker's reference store: a name (`repo:tag`) points at one
//! image; tagging moves it from whatever image had it (that image stays,
//! untagged if it was its last name). Only `images.json` changes.

use crate::index::find;
use crate::reference::Reference;
use crate::{Error, Image, ImageStore};

impl ImageStore {
    /// Names the image `source` resolves to `target` (`repo[:tag]`,
    /// `latest` by default) and returns it under the new name.
    pub fn tag(&self, source: &str, target: &str) -> Result<Image, Error> {
        let parsed = Reference::parse(target)?;
        let Some(name) = parsed.tagged_name().filter(|_| parsed.digest.is_none()) else {
            return Err(Error::InvalidReference {
                reference: target.to_string(),
                reason: "a tag names a repository and a tag, not a digest",
            });
        };
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        let (id, _) = find(&index, source)?;
        let manifest_digest = index.images[&id].manifest_digest.clone();
        index.record(&id, &manifest_digest, std::slice::from_ref(&name));
        self.write_index(&index)?;
        self.image(&id, &name)
    }
}

#[cfg(test)]
mod tests {
    use crate::test_utils::{store_fixture, LayerBuilder, OciArchive, TestImage};
    use crate::Error;

    #[test]
    fn a_tag_names_the_same_image_and_moves_between_images() {
        let f = store_fixture();
        let layer = |s: &[u8]| vec![LayerBuilder::new().file("x", s, 0o644).build()];
        let a = f.load_first(&OciArchive::new(vec![TestImage::new(layer(b"1"))]), "a.tar");
        let tagged = f.store.tag(&a.name, "127.0.0.1:5000/x/copy").unwrap();
        assert_eq!(tagged.name, "127.0.0.1:5000/x/copy:latest");
        assert_eq!(tagged.id, a.id);
        assert_eq!(
            f.store.resolve("127.0.0.1:5000/x/copy:latest").unwrap().id,
            a.id
        );
        assert_eq!(f.store.resolve(&a.name).unwrap().id, a.id);
        // By id, to a name another image has: the name moves.
        let b = OciArchive::new(vec![TestImage::new(layer(b"2")).named(Some("other/img:2"))]);
        let b = f.load_first(&b, "b.tar");
        f.store.tag(b.short_id(), "127.0.0.1:5000/x/copy").unwrap();
        assert_eq!(f.store.resolve("127.0.0.1:5000/x/copy").unwrap().id, b.id);
        assert_eq!(f.store.list().unwrap().len(), 3);

        let err = f.store.tag("nothing:here", "x:1").unwrap_err();
        assert_eq!(err.to_string(), "image not found: nothing:here");
        let err = f.store.tag(&a.name, "Bad:Name").unwrap_err();
        assert!(matches!(err, Error::InvalidReference { .. }), "{err}");
        let d = format!("x@sha256:{}", "a".repeat(64));
        let err = f.store.tag(&a.name, &d).unwrap_err();
        assert!(matches!(err, Error::InvalidReference { .. }), "{err}");
    }
}
