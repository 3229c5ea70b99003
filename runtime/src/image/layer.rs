//! Layer blobs: which media types we accept, and opening a blob as its
//! uncompressed tar stream. Compression is sniffed from the magic bytes
//! (as containerd's `compression.DecompressStream` does) because
//! `docker save` and some registries label layers loosely; the diff id
//! check catches any mismatch between label and content.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use super::digest::HashingReader;

/// Media types of layers we can apply.
const LAYER_MEDIA_TYPES: &[&str] = &[
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];

pub(crate) fn supported_media_type(media_type: &str) -> bool {
    LAYER_MEDIA_TYPES.contains(&media_type)
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// Opens a layer blob as its uncompressed stream, hashing what it yields
/// (the diff id). Only the first frame of a zstd layer is read: a
/// multi-frame layer then fails its diff id check rather than unpacking
/// partly.
pub(crate) fn open(path: &Path) -> io::Result<HashingReader<Box<dyn Read>>> {
    let mut file = BufReader::with_capacity(256 << 10, File::open(path)?);
    let head = file.fill_buf()?;
    let stream: Box<dyn Read> = if head.starts_with(GZIP_MAGIC) {
        Box::new(flate2::bufread::MultiGzDecoder::new(file))
    } else if head.starts_with(ZSTD_MAGIC) {
        let dec = ruzstd::decoding::StreamingDecoder::new(file)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Box::new(dec)
    } else {
        Box::new(file)
    };
    Ok(HashingReader::new(stream))
}

/// The diff id (hex sha256 of the uncompressed stream) of a layer blob.
pub(crate) fn diff_id(path: &Path) -> io::Result<String> {
    Ok(open(path)?.finish()?.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::digest::sha256_hex;
    use crate::image::test_utils::gzip;

    #[test]
    fn sniffs_plain_and_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let data = b"not really a tar".repeat(100);
        let plain = dir.path().join("plain");
        let gz = dir.path().join("gz");
        std::fs::write(&plain, &data).unwrap();
        std::fs::write(&gz, gzip(&data)).unwrap();
        assert_eq!(diff_id(&plain).unwrap(), sha256_hex(&data));
        assert_eq!(diff_id(&gz).unwrap(), sha256_hex(&data));
        let bad = dir.path().join("bad");
        let mut broken = gzip(&data);
        broken.truncate(broken.len() / 2);
        std::fs::write(&bad, broken).unwrap();
        assert!(diff_id(&bad).is_err());
    }

    #[test]
    fn zstd_frames_decode() {
        // A one-frame zstd stream of "hull\n" with a raw block, made by
        // `printf 'hull\n' | zstd -c`.
        let frame: &[u8] = &[
            0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x58, 0x29, 0x00, 0x00, b'h', b'u', b'l', b'l', b'\n',
            0xaf, 0x2e, 0x9f, 0x4e,
        ];
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("z");
        std::fs::write(&p, frame).unwrap();
        assert_eq!(diff_id(&p).unwrap(), sha256_hex(b"hull\n"));
    }

    #[test]
    fn media_types() {
        assert!(supported_media_type(
            "application/vnd.oci.image.layer.v1.tar+gzip"
        ));
        assert!(!supported_media_type(
            "application/vnd.oci.image.config.v1+json"
        ));
    }
}
