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
/// (the diff id). The stream fails once it yields more than `limit` bytes,
/// so a compression bomb costs CPU at most, never disk. Every frame of a
/// zstd layer and every member of a gzip layer is read.
pub(crate) fn open(path: &Path, limit: u64) -> io::Result<HashingReader<Box<dyn Read>>> {
    let mut file = BufReader::with_capacity(256 << 10, File::open(path)?);
    let head = file.fill_buf()?;
    let stream: Box<dyn Read> = if head.starts_with(GZIP_MAGIC) {
        Box::new(flate2::bufread::MultiGzDecoder::new(file))
    } else if head.starts_with(ZSTD_MAGIC) {
        Box::new(ZstdFrames::new(file)?)
    } else {
        Box::new(file)
    };
    Ok(HashingReader::new(Box::new(Bounded {
        inner: stream,
        left: limit,
        limit,
    })))
}

/// The diff id (hex sha256 of the uncompressed stream) of a layer blob,
/// reading at most the default layer bound.
pub(crate) fn diff_id(path: &Path) -> io::Result<String> {
    Ok(open(path, super::DEFAULT_MAX_LAYER_SIZE)?.finish()?.0)
}

/// A zstd stream of one or more frames (`zstd` and `pzstd` write several;
/// RFC 8878 says a decoder reads them all, concatenated).
struct ZstdFrames<R: BufRead> {
    frame: Option<ruzstd::decoding::StreamingDecoder<R, ruzstd::decoding::FrameDecoder>>,
}

impl<R: BufRead> ZstdFrames<R> {
    fn new(inner: R) -> io::Result<Self> {
        let frame = ruzstd::decoding::StreamingDecoder::new(inner).map_err(io::Error::other)?;
        Ok(ZstdFrames { frame: Some(frame) })
    }
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(frame) = self.frame.as_mut() else {
                return Ok(0);
            };
            let n = frame.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            // This frame is done: another one may follow.
            let Some(frame) = self.frame.take() else {
                return Ok(0);
            };
            let mut inner = frame.into_inner();
            if inner.fill_buf()?.is_empty() {
                return Ok(0);
            }
            self.frame =
                Some(ruzstd::decoding::StreamingDecoder::new(inner).map_err(io::Error::other)?);
        }
    }
}

/// Fails a read that would go past `limit` bytes in total.
struct Bounded<R> {
    inner: R,
    left: u64,
    limit: u64,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Ask for one byte more than allowed, to tell "exactly at the
        // limit" from "past it".
        let want = buf
            .len()
            .min(usize::try_from(self.left.saturating_add(1)).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > self.left {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("more than {} bytes uncompressed", self.limit),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::sha256_hex;
    use crate::test_utils::gzip;

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
        // Two frames back to back (what `cat a.zst b.zst` gives).
        let two = [frame, frame].concat();
        std::fs::write(&p, &two).unwrap();
        assert_eq!(diff_id(&p).unwrap(), sha256_hex(b"hull\nhull\n"));
        // A truncated second frame is an error, not a short stream.
        std::fs::write(&p, &two[..two.len() - 3]).unwrap();
        assert!(diff_id(&p).is_err());
    }

    #[test]
    fn real_multi_frame_zstd() {
        let dir = tempfile::tempdir().unwrap();
        let a = b"first frame ".repeat(5000);
        let b = b"second frame".repeat(7000);
        let mut both = Vec::new();
        for part in [&a[..], &b[..]] {
            let out = std::process::Command::new("zstd")
                .args(["-q", "-c", "-"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .and_then(|mut c| {
                    use std::io::Write;
                    c.stdin.take().unwrap().write_all(part)?;
                    c.wait_with_output()
                })
                .expect("zstd is needed by this test");
            both.extend_from_slice(&out.stdout);
        }
        let p = dir.path().join("z");
        std::fs::write(&p, &both).unwrap();
        assert_eq!(diff_id(&p).unwrap(), sha256_hex(&[&a[..], &b[..]].concat()));
    }

    #[test]
    fn uncompressed_size_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bomb");
        std::fs::write(&p, gzip(&vec![0u8; 1 << 20])).unwrap();
        assert!(open(&p, 1 << 20).unwrap().finish().is_ok());
        let err = open(&p, (1 << 20) - 1).unwrap().finish().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("more than {} bytes uncompressed", (1 << 20) - 1)
        );
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
