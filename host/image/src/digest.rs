//! sha256 digests: parsing `sha256:<hex>` strings and hashing streams as
//! they are read or written (the content store verifies while it copies,
//! as containerd's `content.Writer` does).

use std::io::{self, Read, Write};

use sha2::{Digest as _, Sha256};

use super::Error;

/// Parses `sha256:<64 lowercase hex>` and returns the hex part.
pub(crate) fn parse(digest: &str) -> Result<&str, Error> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| is_hex64(h))
        .ok_or_else(|| Error::InvalidDigest(digest.to_string()))?;
    Ok(hex)
}

/// Whether `s` is exactly 64 lowercase hex digits.
pub(crate) fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The lowercase hex sha256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A reader that hashes and counts every byte that passes through it.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Reads the rest of the stream, then returns (hex sha256, bytes read).
    pub(crate) fn finish(mut self) -> io::Result<(String, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((hex::encode(self.hasher.finalize()), self.count))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// A writer that hashes and counts every byte written through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Returns the writer, the hex sha256 and the byte count.
    pub fn finish(self) -> (W, String, u64) {
        (self.inner, hex::encode(self.hasher.finalize()), self.count)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_only_sha256_hex64() {
        assert_eq!(parse(&format!("sha256:{EMPTY}")).unwrap(), EMPTY);
        assert!(parse(EMPTY).is_err());
        assert!(parse(&format!("sha512:{EMPTY}")).is_err());
        assert!(parse(&format!("sha256:{}", EMPTY.to_uppercase())).is_err());
        assert!(parse(&format!("sha256:{}", &EMPTY[1..])).is_err());
        assert!(parse("sha256:../../etc/passwd").is_err());
    }

    #[test]
    fn hashing_reader_and_writer_agree() {
        assert_eq!(sha256_hex(b""), EMPTY);
        let data = b"hello hull".repeat(1000);
        let r = HashingReader::new(&data[..]);
        let (hex, n) = r.finish().unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(hex, sha256_hex(&data));
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(&data).unwrap();
        let (out, hex2, n2) = w.finish();
        assert_eq!((out, hex2, n2), (data.clone(), hex, n));
    }
}
