//! Layer blobs: which media types we accept, opening a blob as its
//! uncompressed tar stream, and applying it onto a tree with its diff id
//! checked as it streams past. Compression is sniffed from the magic bytes
//! (as containerd's `compression.DecompressStream` does) because
//! `docker save` and some registries label layers loosely; the diff id
//! check catches any mismatch between label and content.
//!
//! Applying is split over two threads: one decompresses and hashes, the
//! other applies the tar entries with the [`Unpacker`], so the two halves
//! of the work overlap on two cores (on the 205 MB debootstrap image of
//! `bench/pull/run.sh`, `gunzip` alone takes ~1.3 s of ~2.1 s).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

use super::digest::{self, HashingReader};
use super::tar_bounds::{Budget, TarBounds, Totals};
use super::unpack::{self, Unpacker};
use super::Error;

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
#[cfg(test)]
pub(crate) fn diff_id(path: &Path) -> io::Result<String> {
    Ok(open(path, super::DEFAULT_MAX_LAYER_SIZE)?.finish()?.0)
}

/// Reads layer blob `digest` at `path` to its end without applying it,
/// walking its tar headers against `budget`: its diff id (hex) and what
/// it holds.
pub(crate) fn scan(digest: &str, path: &Path, budget: Budget) -> Result<(String, Totals), Error> {
    let read_err = |source| Error::ReadLayer {
        digest: digest.to_string(),
        source,
    };
    let stream = open(path, stream_limit(budget.layer_bytes)).map_err(read_err)?;
    let mut bounds = TarBounds::new(stream, budget);
    let copied = io::copy(&mut bounds, &mut io::sink());
    if let Some(v) = bounds.violation() {
        return Err(Error::Refused {
            digest: digest.to_string(),
            source: v.clone(),
        });
    }
    copied.map_err(read_err)?;
    let totals = bounds.totals();
    let (hex, _) = bounds.into_inner().finish().map_err(read_err)?;
    Ok((hex, totals))
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

/// One layer to apply: its blob (in `blobs/` or a verified download in
/// `ingest/`) and the diff id its image's config promises.
#[derive(Clone, Debug)]
pub(crate) struct LayerSource {
    pub(crate) digest: String,
    pub(crate) path: PathBuf,
    pub(crate) diff_id: String,
    /// Whether the blob is new to the store (a download not committed
    /// yet): it is checked against its diff id even when the layer need
    /// not be unpacked.
    pub(crate) fresh: bool,
}

/// Applies one layer blob onto `unpacker`'s root within `budget`,
/// checking its diff id; what the layer held.
pub(crate) fn apply_layer(
    unpacker: &mut Unpacker,
    layer: &LayerSource,
    budget: Budget,
) -> Result<Totals, Error> {
    let digest = layer.digest.clone();
    let read_err = |source| Error::ReadLayer {
        digest: digest.clone(),
        source,
    };
    // Decompressing and hashing run on a thread of their own, the tar
    // entries are applied here: the two halves of the work overlap on two
    // cores.
    unpacker.set_budget(budget);
    let (stream, decoder) = decompress_in_background(&layer.path, stream_limit(budget.layer_bytes));
    let applied = unpacker.apply(stream).map_err(|source| match source {
        unpack::Error::Bounds(source) => Error::Refused {
            digest: digest.clone(),
            source,
        },
        source => Error::Unpack {
            digest: digest.clone(),
            source,
        },
    });
    let rest = match applied {
        Ok(rest) => rest,
        Err(e) => {
            drop(decoder.stop());
            return Err(e);
        }
    };
    let (actual, _) = decoder.finish(rest).map_err(read_err)?;
    layer.expect_diff_id(actual)?;
    Ok(unpacker.totals())
}

/// Checks a layer blob against its diff id and `budget` without applying
/// it; what the layer holds.
pub(crate) fn check_diff_id(s: &LayerSource, budget: Budget) -> Result<Totals, Error> {
    let (actual, totals) = scan(&s.digest, &s.path, budget)?;
    s.expect_diff_id(actual)?;
    Ok(totals)
}

impl LayerSource {
    /// Checks the hex sha256 of the uncompressed stream against the diff
    /// id the config promises.
    fn expect_diff_id(&self, actual: String) -> Result<(), Error> {
        if Some(actual.as_str()) != digest::parse(&self.diff_id).ok() {
            return Err(Error::DiffIdMismatch {
                digest: self.digest.clone(),
                expected: self.diff_id.clone(),
                actual,
            });
        }
        Ok(())
    }
}

/// The bound on a layer's whole uncompressed stream: the files' bound
/// plus room for tar headers and padding, so an entry over the bound is
/// refused by name first, while a stream of headers or trailing garbage
/// (a compression bomb that holds no file) still stops.
pub(crate) fn stream_limit(files: u64) -> u64 {
    files.saturating_add(files / 2).saturating_add(64 << 20)
}

/// Chunks handed from the decompressing thread to the unpacker.
const CHUNK: usize = 1 << 20;
/// Chunks in flight: bounds the memory a fast decoder can fill.
const CHUNKS_IN_FLIGHT: usize = 8;

/// The thread decompressing and hashing one layer.
struct Decoder {
    thread: JoinHandle<io::Result<(String, u64)>>,
}

impl Decoder {
    /// Drains what the unpacker left (the tar's end padding) and returns
    /// the diff id (hex) and uncompressed size.
    fn finish(self, mut rest: ChannelReader) -> io::Result<(String, u64)> {
        io::copy(&mut rest, &mut io::sink())?;
        drop(rest);
        self.join()
    }

    /// Stops early (the unpacker failed): the thread sees its channel
    /// closed and ends without reading further.
    fn stop(self) -> io::Result<(String, u64)> {
        self.join()
    }

    fn join(self) -> io::Result<(String, u64)> {
        self.thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the layer decoder panicked")))
    }
}

/// Opens `path` as its uncompressed stream on a background thread.
fn decompress_in_background(path: &Path, limit: u64) -> (ChannelReader, Decoder) {
    let (tx, rx) = sync_channel::<io::Result<Vec<u8>>>(CHUNKS_IN_FLIGHT);
    let path = path.to_path_buf();
    let thread = std::thread::spawn(move || {
        let mut stream = match open(&path, limit) {
            Ok(s) => s,
            Err(e) => {
                let kind = e.kind();
                let msg = e.to_string();
                let _ = tx.send(Err(e));
                return Err(io::Error::new(kind, msg));
            }
        };
        loop {
            let mut buf = vec![0u8; CHUNK];
            let mut filled = 0;
            while filled < buf.len() {
                match stream.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        // What came before the error first: the unpacker
                        // may have a better one to give (an entry over
                        // the bound, by name).
                        buf.truncate(filled);
                        if filled > 0 && tx.send(Ok(buf)).is_err() {
                            return Err(io::Error::from(io::ErrorKind::BrokenPipe));
                        }
                        let kind = e.kind();
                        let msg = e.to_string();
                        let _ = tx.send(Err(e));
                        return Err(io::Error::new(kind, msg));
                    }
                }
            }
            if filled == 0 {
                break;
            }
            buf.truncate(filled);
            if tx.send(Ok(buf)).is_err() {
                // The unpacker gave up: do not decompress the rest.
                return Err(io::Error::from(io::ErrorKind::BrokenPipe));
            }
        }
        drop(tx);
        stream.finish()
    });
    (
        ChannelReader {
            rx,
            chunk: Vec::new(),
            pos: 0,
        },
        Decoder { thread },
    )
}

/// Reads the chunks a [`Decoder`] sends, in order.
struct ChannelReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0), // the sender is done: end of stream
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
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

    #[test]
    fn background_decoding_yields_every_byte_and_the_hash() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..3 * CHUNK + 123).map(|i| (i * 7 % 251) as u8).collect();
        let p = dir.path().join("l");
        std::fs::write(&p, gzip(&data)).unwrap();
        let (mut r, d) = decompress_in_background(&p, u64::MAX);
        let mut head = vec![0u8; 1000];
        r.read_exact(&mut head).unwrap();
        assert_eq!(head, data[..1000]);
        let (hex, n) = d.finish(r).unwrap();
        assert_eq!((hex, n), (sha256_hex(&data), data.len() as u64));

        // Errors (here: past the bound) reach the reader.
        let (mut r, d) = decompress_in_background(&p, 1000);
        let err = io::copy(&mut r, &mut io::sink()).unwrap_err();
        assert!(err.to_string().contains("more than 1000 bytes"), "{err}");
        assert!(d.stop().is_err());

        // A reader that stops early stops the thread too.
        let (mut r, d) = decompress_in_background(&p, u64::MAX);
        r.read_exact(&mut head).unwrap();
        drop(r);
        let _ = d.stop(); // returns: the thread is not left blocked
    }
}
