//! Bounds on an uncompressed layer tar, enforced on the bytes as they
//! stream past, before the `tar` crate sees them.
//!
//! Why a reader of our own: the `tar` crate (0.4.46) reads a PAX extended
//! header (`x`) and a GNU long name or long link (`L`, `K`) whole into a
//! `Vec` before it hands out the entry they describe, however large the
//! header says it is, so a small gzipped layer claiming a 20 GiB PAX
//! header costs 20 GiB of memory. [`TarBounds`] walks the same 512-byte
//! headers the `tar` crate will read (positions computed exactly as its
//! `Archive::next_entry` does, including a PAX `size` record that
//! overrides the size of the entry it describes) and
//! fails the read that would deliver an over-bound header, so the `tar`
//! crate never sees it. It also counts entries and file bytes against the
//! layer's and the image's bounds (see [`crate::Limits`]).
//!
//! Model: Go's `archive/tar` reader, which caps PAX headers at 1 MiB
//! (`maxSpecialFileSize`) for the same reason; containerd inherits that.

use std::io::{self, Read};

/// Largest PAX extended header (`x`, `g`) or GNU long name or link (`L`,
/// `K`): Go's `archive/tar` bound. PATH_MAX is 4 KiB and an xattr value at
/// most 64 KiB (XATTR_SIZE_MAX), so real headers are far smaller.
pub const MAX_EXTENSION_SIZE: u64 = 1 << 20;

const BLOCK: usize = 512;

/// What one stream may still hold: its own bounds (per layer) and what is
/// left of its image's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Budget {
    /// Entries the layer may hold.
    pub(crate) layer_entries: u64,
    /// File bytes the layer may hold.
    pub(crate) layer_bytes: u64,
    /// The image's bounds, and how much of them the layers below used.
    pub(crate) image: ImageBudget,
}

/// An image's bounds and what its lower layers used of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ImageBudget {
    pub(crate) max_entries: u64,
    pub(crate) max_bytes: u64,
    pub(crate) used: Totals,
}

/// Entries and file bytes counted in a stream (or a stack of them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Totals {
    pub(crate) entries: u64,
    pub(crate) bytes: u64,
}

impl Totals {
    pub(crate) fn add(self, other: Totals) -> Totals {
        Totals {
            entries: self.entries.saturating_add(other.entries),
            bytes: self.bytes.saturating_add(other.bytes),
        }
    }
}

/// Which bound an entry crossed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Layer,
    Image,
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Scope::Layer => "layer",
            Scope::Image => "image",
        })
    }
}

/// A header the bounds refuse; `header` counts the archive's headers from
/// 1 and `entry` is the header's own name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("entry {entry:?} (header {header}): {what} of {size} bytes is over the bound of {MAX_EXTENSION_SIZE} bytes")]
    ExtensionTooLarge {
        header: u64,
        entry: String,
        what: &'static str,
        size: u64,
    },
    #[error("entry {entry:?} (header {header}): more than {limit} entries in the {scope}")]
    TooManyEntries {
        header: u64,
        entry: String,
        scope: Scope,
        limit: u64,
    },
    #[error("entry {entry:?} (header {header}): {size} bytes take the {scope} past its bound of {limit} bytes")]
    TooLarge {
        header: u64,
        entry: String,
        size: u64,
        scope: Scope,
        limit: u64,
    },
    #[error("entry {entry:?} (header {header}): GNU sparse files are not supported")]
    Sparse { header: u64, entry: String },
}

/// Where the walk is in the stream.
enum State {
    /// Collecting a 512-byte header.
    Header {
        block: Box<[u8; BLOCK]>,
        filled: usize,
    },
    /// Collecting the body of a PAX extended header (at most
    /// [`MAX_EXTENSION_SIZE`]), then `pad` bytes of padding.
    Pax {
        body: Vec<u8>,
        want: usize,
        pad: u64,
    },
    /// Passing over an entry's data and padding.
    Skip { left: u64 },
    /// Past the end-of-archive block, or past a header the `tar` crate
    /// refuses (bad checksum or size field): it reads no further, so
    /// neither do we; the corruption is its to report.
    Done,
}

/// A reader that refuses, by failing the read that would deliver it, a
/// tar header over the bounds of its [`Budget`].
pub(crate) struct TarBounds<R> {
    inner: R,
    budget: Budget,
    state: State,
    /// Headers seen, for naming them.
    headers: u64,
    counted: Totals,
    /// The `size` record of this group's PAX header: the `tar` crate
    /// (0.4.46) applies it to the entry that ends the group, not to the
    /// extension headers (`x`, `g`, `L`, `K`) before it.
    group_pax_size: Option<u64>,
    failed: Option<Error>,
}

impl<R: Read> TarBounds<R> {
    pub(crate) fn new(inner: R, budget: Budget) -> TarBounds<R> {
        TarBounds {
            inner,
            budget,
            state: State::Header {
                block: Box::new([0; BLOCK]),
                filled: 0,
            },
            headers: 0,
            counted: Totals::default(),
            group_pax_size: None,
            failed: None,
        }
    }

    /// The entries and file bytes counted so far.
    pub(crate) fn totals(&self) -> Totals {
        self.counted
    }

    /// The bound a read failed on, if one did.
    pub(crate) fn violation(&self) -> Option<&Error> {
        self.failed.as_ref()
    }

    pub(crate) fn into_inner(self) -> R {
        self.inner
    }

    /// Walks `data`, the next bytes of the stream.
    fn observe(&mut self, mut data: &[u8]) -> Result<(), Error> {
        while !data.is_empty() {
            match &mut self.state {
                State::Done => return Ok(()),
                State::Skip { left } => {
                    let n = data.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                    *left -= n as u64;
                    data = &data[n..];
                    if *left == 0 {
                        self.state = header_state();
                    }
                }
                State::Pax { body, want, pad } => {
                    let n = data.len().min(*want - body.len());
                    body.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    if body.len() == *want {
                        self.group_pax_size = pax_size(body);
                        let left = *pad;
                        self.state = State::Skip { left };
                        if left == 0 {
                            self.state = header_state();
                        }
                    }
                }
                State::Header { block, filled } => {
                    let n = data.len().min(BLOCK - *filled);
                    block[*filled..*filled + n].copy_from_slice(&data[..n]);
                    *filled += n;
                    data = &data[n..];
                    if *filled == BLOCK {
                        let block = block.clone();
                        self.state = self.on_header(&block)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Checks one complete header; what comes after it.
    fn on_header(&mut self, h: &[u8; BLOCK]) -> Result<State, Error> {
        if h.iter().all(|&b| b == 0) || !checksum_ok(h) {
            return Ok(State::Done);
        }
        self.headers += 1;
        let header = self.headers;
        let entry = || name_of(h);
        let kind = h[156];
        let is_extension = matches!(kind, b'x' | b'g' | b'L' | b'K');
        let size = match field_number(&h[124..136]) {
            Some(size) if is_extension => size,
            Some(size) => self.group_pax_size.unwrap_or(size),
            None => return Ok(State::Done),
        };
        let Some(padded) = size
            .checked_add(BLOCK as u64 - 1)
            .map(|s| s & !(BLOCK as u64 - 1))
        else {
            return Ok(State::Done);
        };
        let extension = match kind {
            b'x' => Some("PAX extended header"),
            b'g' => Some("PAX global header"),
            b'L' => Some("GNU long name"),
            b'K' => Some("GNU long link name"),
            _ => None,
        };
        if let Some(what) = extension {
            if size > MAX_EXTENSION_SIZE {
                return Err(Error::ExtensionTooLarge {
                    header,
                    entry: entry(),
                    what,
                    size,
                });
            }
        }
        // What the `tar` crate takes as part of the next entry (it reads
        // these whole) rather than an entry of its own.
        let recognized = (&h[257..263] == b"ustar\0" && &h[263..265] == b"00")
            || (&h[257..263] == b"ustar " && &h[263..265] == b" \0");
        if recognized && matches!(kind, b'x' | b'L' | b'K') {
            if kind == b'x' {
                let want = usize::try_from(size).expect("bounded by MAX_EXTENSION_SIZE");
                return Ok(State::Pax {
                    body: Vec::with_capacity(want),
                    want,
                    pad: padded - size,
                });
            }
            return Ok(skip(padded));
        }
        // An entry: it ends the group.
        self.group_pax_size = None;
        if kind == b'S' {
            return Err(Error::Sparse {
                header,
                entry: entry(),
            });
        }
        self.counted.entries += 1;
        let b = self.budget;
        let image_entries = b.image.used.entries.saturating_add(self.counted.entries);
        for (count, limit, scope) in [
            (self.counted.entries, b.layer_entries, Scope::Layer),
            (image_entries, b.image.max_entries, Scope::Image),
        ] {
            if count > limit {
                return Err(Error::TooManyEntries {
                    header,
                    entry: entry(),
                    scope,
                    limit,
                });
            }
        }
        if matches!(kind, b'0' | 0 | b'7') {
            self.counted.bytes = self.counted.bytes.saturating_add(size);
            let image_bytes = b.image.used.bytes.saturating_add(self.counted.bytes);
            for (count, limit, scope) in [
                (self.counted.bytes, b.layer_bytes, Scope::Layer),
                (image_bytes, b.image.max_bytes, Scope::Image),
            ] {
                if count > limit {
                    return Err(Error::TooLarge {
                        header,
                        entry: entry(),
                        size,
                        scope,
                        limit,
                    });
                }
            }
        }
        Ok(skip(padded))
    }
}

impl<R: Read> Read for TarBounds<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = &self.failed {
            return Err(io::Error::new(io::ErrorKind::InvalidData, e.clone()));
        }
        let n = self.inner.read(buf)?;
        // The whole read is withheld when a header in it is refused.
        if let Err(e) = self.observe(&buf[..n]) {
            self.failed = Some(e.clone());
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        Ok(n)
    }
}

fn header_state() -> State {
    State::Header {
        block: Box::new([0; BLOCK]),
        filled: 0,
    }
}

fn skip(left: u64) -> State {
    if left == 0 {
        header_state()
    } else {
        State::Skip { left }
    }
}

/// Whether a header's checksum is right, as the `tar` crate checks it:
/// the unsigned sum of its bytes with the checksum field as spaces.
fn checksum_ok(h: &[u8; BLOCK]) -> bool {
    let sum: u32 = h[..148]
        .iter()
        .chain(&h[156..])
        .map(|&b| u32::from(b))
        .sum::<u32>()
        + 8 * 32;
    let field = &h[148..156];
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    std::str::from_utf8(&field[..end])
        .ok()
        .and_then(|t| u32::from_str_radix(t.trim(), 8).ok())
        == Some(sum)
}

/// A header's name for messages: the ustar prefix and name, lossy, cut
/// to what a line can hold.
fn name_of(h: &[u8; BLOCK]) -> String {
    let field = |f: &[u8]| {
        let end = f.iter().position(|&b| b == 0).unwrap_or(f.len());
        String::from_utf8_lossy(&f[..end]).into_owned()
    };
    let name = field(&h[..100]);
    let prefix = if &h[257..263] == b"ustar\0" {
        field(&h[345..500])
    } else {
        String::new()
    };
    let full = if prefix.is_empty() {
        name
    } else {
        format!("{prefix}/{name}")
    };
    full.chars().take(160).collect()
}

/// A numeric header field as the `tar` crate reads it: base-256 when the
/// high bit of its first byte is set (the last 8 bytes of a 12-byte
/// field), else octal text up to the first NUL, trimmed.
fn field_number(f: &[u8]) -> Option<u64> {
    if f[0] & 0x80 != 0 {
        let tail = &f[f.len() - 8..];
        let mut n: u64 = if f.len() == 8 {
            u64::from(f[0] ^ 0x80)
        } else {
            0
        };
        for &b in if f.len() == 8 { &tail[1..] } else { tail } {
            n = (n << 8) | u64::from(b);
        }
        return Some(n);
    }
    let end = f.iter().position(|&b| b == 0).unwrap_or(f.len());
    let text = std::str::from_utf8(&f[..end]).ok()?;
    u64::from_str_radix(text.trim(), 8).ok()
}

/// The `size` record of a PAX header body, exactly as the `tar` crate
/// finds it (`pax_extensions_value`): records split at newlines, the
/// first malformed record or an empty line ends the search, the first
/// `size` key decides, and a value that is not a number counts as none.
fn pax_size(body: &[u8]) -> Option<u64> {
    for line in body.split(|&b| b == b'\n') {
        if line.is_empty() {
            return None;
        }
        let space = line.iter().position(|&b| b == b' ')?;
        let len: usize = std::str::from_utf8(&line[..space]).ok()?.parse().ok()?;
        if line.len() + 1 != len {
            return None;
        }
        let rest = &line[space + 1..];
        let equals = rest.iter().position(|&b| b == b'=')?;
        if std::str::from_utf8(&rest[..equals]) != Ok("size") {
            continue;
        }
        return std::str::from_utf8(&rest[equals + 1..]).ok()?.parse().ok();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_utils::LayerBuilder;

    fn generous() -> Budget {
        Budget {
            layer_entries: u64::MAX,
            layer_bytes: u64::MAX,
            image: ImageBudget {
                max_entries: u64::MAX,
                max_bytes: u64::MAX,
                used: Totals::default(),
            },
        }
    }

    /// Reads `data` through the bounds in odd-sized pieces; the totals or
    /// the refusal.
    fn walk(data: &[u8], budget: Budget) -> Result<Totals, Error> {
        let mut r = TarBounds::new(data, budget);
        let mut buf = [0u8; 77];
        loop {
            match r.read(&mut buf) {
                Ok(0) => return Ok(r.totals()),
                Ok(_) => {}
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
                    return Err(r.violation().cloned().expect("a violation"));
                }
            }
        }
    }

    #[test]
    fn counts_entries_and_file_bytes() {
        let l = LayerBuilder::new()
            .dir("d", 0o755)
            .file("d/a", &[1u8; 1000], 0o644)
            .symlink("s", "d/a")
            .xattr_file("d/b", b"xyz", "user.k", b"v")
            .global_header("pax_global_header")
            .build();
        let t = walk(&l, generous()).unwrap();
        assert_eq!(
            t,
            Totals {
                entries: 5,
                bytes: 1003
            }
        );
    }

    #[test]
    fn huge_extension_headers_are_refused_before_the_tar_crate_sees_them() {
        for kind in [b'x', b'g', b'L', b'K'] {
            let l = LayerBuilder::new()
                .file("ok", b"fine", 0o644)
                .raw_header("PaxHeaders/big", kind, 1 << 30)
                .build();
            let err = walk(&l, generous()).unwrap_err();
            assert!(
                matches!(err, Error::ExtensionTooLarge { header: 2, size, .. } if size == 1 << 30),
                "{err}"
            );
            // The `tar` crate reading through the bounds gets the error
            // at that header, without allocating what it claims.
            let mut ar = tar::Archive::new(TarBounds::new(&l[..], generous()));
            let entries: Vec<_> = ar.entries().unwrap().collect();
            assert!(entries.iter().any(|e| e.is_err()));
        }
        let l = LayerBuilder::new()
            .raw_header("PaxHeaders/big", b'x', (1 << 30) + 1)
            .build();
        assert_eq!(
            walk(&l, generous()).unwrap_err().to_string(),
            "entry \"PaxHeaders/big\" (header 1): PAX extended header of 1073741825 bytes \
             is over the bound of 1048576 bytes"
        );
        // At the bound is fine.
        let l = LayerBuilder::new()
            .pax_header(&[("comment", &"c".repeat(1000))])
            .file("f", b"", 0o644)
            .build();
        assert_eq!(walk(&l, generous()).unwrap().entries, 1);
    }

    #[test]
    fn a_pax_size_skips_the_long_name_and_applies_to_the_entry() {
        // `x` with size=1024, an `L` of 10 bytes (its own size: the `tar`
        // crate applies PAX records to the entry, not to extension
        // headers), then the entry whose header says 0 bytes but which
        // holds 1024.
        let mut name = b"long/name".to_vec();
        name.push(0);
        let l = LayerBuilder::new()
            .pax_header(&[("size", "1024")])
            .raw_header_with_data("././@LongLink", b'L', 10, &name)
            .raw_header_with_data("f", b'0', 0, &[7u8; 1024])
            .file("after", b"x", 0o644)
            .build();
        let t = walk(&l, generous()).unwrap();
        assert_eq!(
            t,
            Totals {
                entries: 2,
                bytes: 1025
            }
        );
        let mut ar = tar::Archive::new(&l[..]);
        let entries: Vec<(String, u64)> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().unwrap().display().to_string(), e.size())
            })
            .collect();
        assert_eq!(
            entries,
            [("long/name".to_string(), 1024), ("after".to_string(), 1)]
        );
    }

    #[test]
    fn a_pax_size_moves_the_next_header_as_the_tar_crate_does() {
        // The file's header says 0 bytes, its PAX header 1024: the 1024
        // bytes of data hold what would be a huge `x` header at the
        // position a walker ignoring the PAX size would read next.
        let hidden = LayerBuilder::new()
            .raw_header("hidden", b'x', 1 << 30)
            .build();
        let mut data = hidden[..512].to_vec();
        data.resize(1024, 0);
        let l = LayerBuilder::new()
            .pax_header(&[("size", "1024")])
            .raw_header_with_data("f", b'0', 0, &data)
            .file("after", b"x", 0o644)
            .build();
        let t = walk(&l, generous()).unwrap();
        assert_eq!(
            t,
            Totals {
                entries: 2,
                bytes: 1025
            }
        );
        // And the `tar` crate agrees on where the entries are.
        let mut ar = tar::Archive::new(&l[..]);
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["f", "after"]);
    }

    #[test]
    fn unrecognized_headers_are_plain_entries() {
        // An `x` without the ustar magic is an entry to the `tar` crate
        // (its PAX size is not applied), so it is one here too.
        let mut l = LayerBuilder::new()
            .pax_header(&[("size", "4096")])
            .file("f", b"abc", 0o644)
            .build();
        l[257..265].fill(0);
        fix_checksum(&mut l[..512]);
        let t = walk(&l, generous()).unwrap();
        assert_eq!(
            t,
            Totals {
                entries: 2,
                bytes: 3
            }
        );
    }

    #[test]
    fn entries_are_bounded_per_layer_and_per_image() {
        let l = LayerBuilder::new()
            .file("a", b"", 0o644)
            .file("b", b"", 0o644)
            .file("c", b"", 0o644)
            .build();
        let mut b = generous();
        b.layer_entries = 2;
        assert_eq!(
            walk(&l, b).unwrap_err().to_string(),
            "entry \"c\" (header 3): more than 2 entries in the layer"
        );
        let mut b = generous();
        b.image.max_entries = 10;
        b.image.used.entries = 8;
        assert_eq!(
            walk(&l, b).unwrap_err().to_string(),
            "entry \"c\" (header 3): more than 10 entries in the image"
        );
        b.image.used.entries = 7;
        assert_eq!(walk(&l, b).unwrap().entries, 3);
    }

    #[test]
    fn file_bytes_are_bounded_per_layer_and_per_image() {
        let l = LayerBuilder::new()
            .file("a", &[0u8; 600], 0o644)
            .file("b", &[0u8; 600], 0o644)
            .build();
        let mut b = generous();
        b.layer_bytes = 1000;
        assert_eq!(
            walk(&l, b).unwrap_err().to_string(),
            "entry \"b\" (header 2): 600 bytes take the layer past its bound of 1000 bytes"
        );
        let mut b = generous();
        b.image.max_bytes = 2000;
        b.image.used.bytes = 1000;
        assert_eq!(
            walk(&l, b).unwrap_err().to_string(),
            "entry \"b\" (header 2): 600 bytes take the image past its bound of 2000 bytes"
        );
    }

    #[test]
    fn sparse_files_are_refused_and_corrupt_headers_left_to_the_tar_crate() {
        let l = LayerBuilder::new().raw_header("s", b'S', 0).build();
        assert!(matches!(walk(&l, generous()), Err(Error::Sparse { .. })));
        // A bad checksum or size field: the `tar` crate stops there with
        // its own error, so the walk stops too (nothing is counted).
        let mut l = LayerBuilder::new().file("f", b"", 0o644).build();
        l[124..136].copy_from_slice(b"zzzzzzzzzzz\0");
        fix_checksum(&mut l[..512]);
        assert_eq!(walk(&l, generous()).unwrap(), Totals::default());
        let mut l = LayerBuilder::new()
            .file("f", b"", 0o644)
            .raw_header("big", b'x', 1 << 30)
            .build();
        l[0] ^= 1;
        assert_eq!(walk(&l, generous()).unwrap(), Totals::default());
        let mut ar = tar::Archive::new(&l[..]);
        assert!(ar.entries().unwrap().next().unwrap().is_err());
    }

    #[test]
    fn nothing_after_the_end_block_is_walked() {
        let mut l = LayerBuilder::new().file("f", b"", 0o644).build();
        l.extend(
            LayerBuilder::new()
                .raw_header("late", b'x', 1 << 40)
                .build(),
        );
        assert_eq!(walk(&l, generous()).unwrap().entries, 1);
    }

    fn fix_checksum(h: &mut [u8]) {
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        let s = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(s.as_bytes());
    }

    #[test]
    fn numeric_fields_read_as_the_tar_crate_does() {
        assert_eq!(field_number(b"00000001750\0"), Some(0o1750));
        assert_eq!(field_number(b" 17 \0\0\0\0\0\0\0\0"), Some(0o17));
        let mut f = [0u8; 12];
        f[0] = 0x80;
        f[4..].copy_from_slice(&(5u64 << 40).to_be_bytes());
        assert_eq!(field_number(&f), Some(5 << 40));
        assert_eq!(field_number(b"9\0\0\0\0\0\0\0\0\0\0\0"), None);
    }

    #[test]
    fn pax_size_records() {
        assert_eq!(pax_size(b"12 size=345\n"), Some(345));
        assert_eq!(pax_size(b"11 path=ab\n12 size=345\n"), Some(345));
        assert_eq!(pax_size(b"11 path=ab\n"), None);
        // Malformed length: the search ends.
        assert_eq!(pax_size(b"99 path=ab\n12 size=345\n"), None);
        assert_eq!(pax_size(b"12 size=abc\n"), None);
    }
}
