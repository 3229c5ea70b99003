//! `hull history`: how an image was made, from its config's `history`
//! entries, newest first, each with the size of the layer it made.
//!
//! Model: docker's `image history`: entries that made no layer
//! (`empty_layer`) have size 0, the others take the image's layers in
//! order; an image whose config has no history gets one entry per layer.
//! Sizes are the layer blobs' as stored (compressed), where docker shows
//! the unpacked size.

use serde::Serialize;

use crate::index::find;
use crate::{Error, ImageStore};

/// One step of an image's making.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryEntry {
    /// The image id on the newest entry (docker's `IMAGE` column), none
    /// on the older ones.
    pub id: Option<String>,
    /// RFC 3339, as the config says.
    pub created: Option<String>,
    pub created_by: String,
    pub comment: String,
    /// Bytes of the layer this step made; 0 for one that made none.
    pub size: u64,
    pub empty_layer: bool,
}

impl ImageStore {
    /// The history of the image `reference` names, newest first.
    pub fn history(&self, reference: &str) -> Result<Vec<HistoryEntry>, Error> {
        let _lock = self.read_lock()?;
        let index = self.read_index()?;
        let (id, _) = find(&index, reference)?;
        let manifest = self.blobs().manifest(&index.images[&id].manifest_digest)?;
        let config = self.blobs().config(&id)?;
        let mut sizes = manifest.layers().iter().map(|l| l.size());
        let mut out: Vec<HistoryEntry> = match config.history() {
            Some(history) if !history.is_empty() => history
                .iter()
                .map(|h| {
                    let empty = h.empty_layer().unwrap_or(false);
                    HistoryEntry {
                        id: None,
                        created: h.created().clone(),
                        created_by: h.created_by().clone().unwrap_or_default(),
                        comment: h.comment().clone().unwrap_or_default(),
                        size: if empty { 0 } else { sizes.next().unwrap_or(0) },
                        empty_layer: empty,
                    }
                })
                .collect(),
            _ => sizes
                .map(|size| HistoryEntry {
                    id: None,
                    created: config.created().clone(),
                    created_by: String::new(),
                    comment: String::new(),
                    size,
                    empty_layer: false,
                })
                .collect(),
        };
        out.reverse();
        if let Some(top) = out.first_mut() {
            top.id = Some(id);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use crate::test_utils::{store_fixture, LayerBuilder, OciArchive, TestImage};

    #[test]
    fn history_pairs_entries_with_layers_newest_first() {
        let f = store_fixture();
        let layers = vec![
            LayerBuilder::new().file("a", b"1", 0o644).build(),
            LayerBuilder::new().file("b", b"22", 0o644).build(),
        ];
        let mut img = TestImage::new(layers.clone());
        img.config["history"] = serde_json::json!([
            {"created": "2024-01-01T00:00:00Z", "created_by": "ADD a /"},
            {"created": "2024-01-02T00:00:00Z", "created_by": "ENV X=1", "empty_layer": true},
            {"created": "2024-01-03T00:00:00Z", "created_by": "RUN make b", "comment": "built"},
        ]);
        let a = OciArchive::new(vec![img]);
        let sizes: Vec<u64> = a.digests[0]
            .2
            .iter()
            .map(|d| a.blob(d).len() as u64)
            .collect();
        let loaded = f.load_first(&a, "a.tar");
        let h = f.store.history(&loaded.name).unwrap();
        let rows: Vec<(&str, u64, bool)> = h
            .iter()
            .map(|e| (e.created_by.as_str(), e.size, e.id.is_some()))
            .collect();
        assert_eq!(
            rows,
            [
                ("RUN make b", sizes[1], true),
                ("ENV X=1", 0, false),
                ("ADD a /", sizes[0], false)
            ]
        );
        assert_eq!(h[0].comment, "built");
        assert_eq!(h[0].id.as_deref(), Some(loaded.id.as_str()));

        // No history at all: one entry per layer.
        let b = OciArchive::new(vec![TestImage::new(layers).named(Some("x/plain:1"))]);
        let plain = f.load_first(&b, "b.tar");
        assert_eq!(f.store.history(&plain.name).unwrap().len(), 2);
    }
}
