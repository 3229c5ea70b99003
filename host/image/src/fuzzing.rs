//! Harnesses of the `image_documents` and `image_layer` fuzz targets
//! (`fuzz/`), also run as randomized unit tests: a registry or an archive
//! controls every byte of a manifest, index, config and layer. Parsing
//! must give a value or an error, and unpacking must keep to the root it
//! was given, never panic, hang or write elsewhere.

use std::path::Path;

use crate::reference::Reference;
use crate::unpack::Unpacker;
use crate::{media, source};

/// Byte 0 picks the document; the rest is its bytes. True if it parsed.
pub fn image_documents(data: &[u8]) -> bool {
    let Some((&kind, bytes)) = data.split_first() else {
        return false;
    };
    let digest = "sha256:fuzz";
    match kind % 5 {
        0 => source::parse_manifest(digest, bytes).is_ok(),
        1 => {
            let is_index = media::is_index(bytes);
            let parsed = media::parse_index(digest, bytes).is_ok();
            let platform = media::platform_manifest(digest, bytes).is_ok();
            // A platform is only found in an index that parses.
            assert!(!platform || parsed);
            is_index && parsed
        }
        2 => source::parse_config(digest, bytes).is_ok(),
        3 => crate::archive::fuzz_docker_manifest(bytes),
        _ => std::str::from_utf8(bytes).is_ok_and(|name| match Reference::parse(name) {
            // What a name parses to prints back to a name that parses.
            Ok(reference) => {
                if let Some(tagged) = reference.tagged_name() {
                    assert!(Reference::parse(&tagged).is_ok(), "{tagged} does not parse");
                }
                true
            }
            Err(_) => false,
        }),
    }
}

/// Unpacks `data` as one uncompressed layer into a fresh root beside an
/// empty directory; the layer may fail, but nothing may appear outside
/// the root. True if the layer applied.
pub fn image_layer(data: &[u8]) -> bool {
    let Ok(dir) = tempfile::tempdir() else {
        return false;
    };
    let root = dir.path().join("root");
    let outside = dir.path().join("outside");
    if std::fs::create_dir(&root).is_err() || std::fs::create_dir(&outside).is_err() {
        return false;
    }
    // Small bounds, so a fuzzer's inputs reach them.
    let mut unpacker = Unpacker::with_limit(&root, 1 << 20);
    let applied = unpacker.apply(data).is_ok() && unpacker.finish().is_ok();
    assert_eq!(entries(dir.path()), 2, "the layer wrote beside its root");
    assert_eq!(entries(&outside), 0, "the layer wrote outside its root");
    applied
}

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64: deterministic, dependency-free randomness.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    fn mutate(r: &mut Rng, mut bytes: Vec<u8>) -> Vec<u8> {
        for _ in 0..(r.next() % 4) {
            if !bytes.is_empty() {
                let at = (r.next() as usize) % bytes.len();
                bytes[at] = r.next() as u8;
            }
        }
        bytes
    }

    #[test]
    fn random_documents_parse_or_fail_cleanly() {
        let seeds: [&[u8]; 5] = [
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":2},"layers":[]}"#,
            br#"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":2,"platform":{"os":"linux","architecture":"amd64"}}]}"#,
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{"Env":["A=b"]}}"#,
            br#"[{"Config":"c.json","RepoTags":["busybox:latest"],"Layers":["l.tar"]}]"#,
            b"registry.example:5000/team/app:1.0",
        ];
        let mut r = Rng(0x0123_4567_89ab_cdef);
        let mut parsed = 0;
        for i in 0..20_000u64 {
            let kind = (i % 5) as u8;
            let mut input = vec![kind];
            input.extend(mutate(&mut r, seeds[kind as usize].to_vec()));
            parsed += usize::from(image_documents(&input));
        }
        assert!(parsed > 1_000, "only {parsed} documents parsed");
    }

    fn header(name: &str, kind: u8, size: usize, link: &str) -> Vec<u8> {
        let mut h = tar::Header::new_ustar();
        h.set_size(size as u64);
        h.set_mode(0o755);
        h.set_entry_type(tar::EntryType::new(kind));
        let _ = h.set_path(name);
        let _ = h.set_link_name(link);
        h.set_cksum();
        h.as_bytes().to_vec()
    }

    /// Tars that try to leave the root: `..`, absolute names, links out
    /// and entries through them, whiteouts; with bytes flipped.
    #[test]
    fn random_layers_stay_in_their_root() {
        let names = [
            "a",
            "a/b",
            "../outside/x",
            "/abs",
            "l",
            "l/x",
            ".wh.a",
            "d/.wh..wh..opq",
        ];
        let links = ["", "../outside", "/", "a", "../../.."];
        let mut r = Rng(0xfeed_beef_dead_cafe);
        let mut applied = 0;
        for _ in 0..300 {
            let mut tar = Vec::new();
            for _ in 0..(1 + r.next() % 6) {
                let name = names[(r.next() as usize) % names.len()];
                let (kind, link) = match r.next() % 4 {
                    0 => (b'5', ""),
                    1 => (b'2', links[(r.next() as usize) % links.len()]),
                    2 => (b'1', names[(r.next() as usize) % names.len()]),
                    _ => (b'0', ""),
                };
                let size = if kind == b'0' { 3 } else { 0 };
                tar.extend(header(name, kind, size, link));
                if size > 0 {
                    let mut body = b"hi\n".to_vec();
                    body.resize(512, 0);
                    tar.extend(body);
                }
            }
            tar.extend([0; 1024]);
            let tar = if r.next().is_multiple_of(4) {
                mutate(&mut r, tar)
            } else {
                tar
            };
            applied += usize::from(image_layer(&tar));
        }
        assert!(applied > 10, "only {applied} layers applied");
    }
}
