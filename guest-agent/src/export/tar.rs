//! A small tar writer: ustar headers, with a PAX extended header in front
//! of an entry whose name, link, ids, size or xattrs do not fit in one
//! (the format Docker's and containerd's layer writers emit). Only what a
//! layer needs; the agent has no tar crate.

use std::io::{self, Read, Write};

const BLOCK: usize = 512;

/// What kind of entry a header describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink(Vec<u8>),
    /// A hard link to an earlier entry (its path in the archive).
    Link(Vec<u8>),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
}

/// One entry's metadata; the path is relative, without a leading `/`,
/// and a directory's path has no trailing `/` (the writer adds it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub path: Vec<u8>,
    pub kind: Kind,
    /// Permission bits (with setuid, setgid, sticky).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: i64,
    /// Extended attributes carried as `SCHILY.xattr.NAME` PAX records.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

impl Header {
    pub fn new(path: Vec<u8>, kind: Kind) -> Self {
        Self {
            path,
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: 0,
            mtime: 0,
            xattrs: Vec::new(),
        }
    }
}

/// Writes entries to `out`; [`TarWriter::finish`] ends the archive.
pub struct TarWriter<W: Write> {
    out: W,
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W) -> Self {
        Self { out }
    }

    /// Appends one entry; a regular file's data comes from `data`, exactly
    /// `header.size` bytes (a file that shrank meanwhile is padded with
    /// zeros, one that grew is cut: the header was already written).
    pub fn append(&mut self, header: &Header, data: Option<&mut dyn Read>) -> io::Result<()> {
        let mut name = header.path.clone();
        if header.kind == Kind::Dir {
            name.push(b'/');
        }
        let link = match &header.kind {
            Kind::Symlink(target) | Kind::Link(target) => target.clone(),
            _ => Vec::new(),
        };
        let size = if header.kind == Kind::File {
            header.size
        } else {
            0
        };
        let mut pax = Vec::new();
        if name.len() > 100 {
            pax_record(&mut pax, "path", &name);
        }
        if link.len() > 100 {
            pax_record(&mut pax, "linkpath", &link);
        }
        if size > OCTAL_11_MAX {
            pax_record(&mut pax, "size", size.to_string().as_bytes());
        }
        if u64::from(header.uid) > OCTAL_7_MAX {
            pax_record(&mut pax, "uid", header.uid.to_string().as_bytes());
        }
        if u64::from(header.gid) > OCTAL_7_MAX {
            pax_record(&mut pax, "gid", header.gid.to_string().as_bytes());
        }
        if header.mtime < 0 || header.mtime as u64 > OCTAL_11_MAX {
            pax_record(&mut pax, "mtime", header.mtime.to_string().as_bytes());
        }
        for (key, value) in &header.xattrs {
            pax_record(&mut pax, &format!("SCHILY.xattr.{key}"), value);
        }
        if !pax.is_empty() {
            let mut pax_name = b"PaxHeaders/".to_vec();
            pax_name.extend_from_slice(&name[name.len().saturating_sub(80)..]);
            let block = ustar_block(&UstarFields {
                name: &pax_name,
                mode: 0o644,
                uid: 0,
                gid: 0,
                size: pax.len() as u64,
                mtime: header.mtime.clamp(0, OCTAL_11_MAX as i64) as u64,
                typeflag: b'x',
                link: b"",
                dev: (0, 0),
            });
            self.out.write_all(&block)?;
            self.out.write_all(&pax)?;
            self.pad(pax.len() as u64)?;
        }
        let (typeflag, dev) = match header.kind {
            Kind::File => (b'0', (0, 0)),
            Kind::Dir => (b'5', (0, 0)),
            Kind::Symlink(_) => (b'2', (0, 0)),
            Kind::Link(_) => (b'1', (0, 0)),
            Kind::Char(major, minor) => (b'3', (major, minor)),
            Kind::Block(major, minor) => (b'4', (major, minor)),
            Kind::Fifo => (b'6', (0, 0)),
        };
        let block = ustar_block(&UstarFields {
            name: &name,
            mode: header.mode & 0o7777,
            uid: u64::from(header.uid).min(OCTAL_7_MAX),
            gid: u64::from(header.gid).min(OCTAL_7_MAX),
            size: size.min(OCTAL_11_MAX),
            mtime: header.mtime.clamp(0, OCTAL_11_MAX as i64) as u64,
            typeflag,
            link: &link,
            dev,
        });
        self.out.write_all(&block)?;
        if size > 0 {
            let mut left = size;
            if let Some(data) = data {
                let mut buf = vec![0u8; 64 * 1024];
                while left > 0 {
                    let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let n = match data.read(&mut buf[..want]) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    };
                    self.out.write_all(&buf[..n])?;
                    left -= n as u64;
                }
            }
            let zeros = [0u8; BLOCK];
            while left > 0 {
                let n = (left as usize).min(BLOCK);
                self.out.write_all(&zeros[..n])?;
                left -= n as u64;
            }
            self.pad(size)?;
        }
        Ok(())
    }

    /// Ends the archive (two zero blocks) and hands the writer back.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; 2 * BLOCK])?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn pad(&mut self, len: u64) -> io::Result<()> {
        let rest = (BLOCK - (len % BLOCK as u64) as usize) % BLOCK;
        self.out.write_all(&[0u8; BLOCK][..rest])
    }
}

const OCTAL_7_MAX: u64 = 0o7_777_777;
const OCTAL_11_MAX: u64 = 0o77_777_777_777;

struct UstarFields<'a> {
    name: &'a [u8],
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
    typeflag: u8,
    link: &'a [u8],
    dev: (u32, u32),
}

/// One ustar header block; a name or link over 100 bytes is cut here (a
/// PAX record in front carries it whole).
fn ustar_block(f: &UstarFields<'_>) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    let copy = |b: &mut [u8; BLOCK], at: usize, len: usize, src: &[u8]| {
        let n = src.len().min(len);
        b[at..at + n].copy_from_slice(&src[..n]);
    };
    copy(&mut b, 0, 100, f.name);
    octal(&mut b[100..108], u64::from(f.mode));
    octal(&mut b[108..116], f.uid);
    octal(&mut b[116..124], f.gid);
    octal(&mut b[124..136], f.size);
    octal(&mut b[136..148], f.mtime);
    b[156] = f.typeflag;
    copy(&mut b, 157, 100, f.link);
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    if matches!(f.typeflag, b'3' | b'4') {
        octal(&mut b[329..337], u64::from(f.dev.0));
        octal(&mut b[337..345], u64::from(f.dev.1));
    }
    b[148..156].copy_from_slice(b"        ");
    let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
    octal(&mut b[148..155], u64::from(sum));
    b[155] = b' ';
    b
}

/// `value` as zero-padded octal filling `field` but its last byte (NUL).
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    let text = &text.as_bytes()[text.len().saturating_sub(digits)..];
    field[..digits].copy_from_slice(text);
    field[digits] = 0;
}

/// Appends one PAX record, `"<len> <key>=<value>\n"`, whose length counts
/// its own digits.
fn pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_records_count_their_own_length() {
        let mut out = Vec::new();
        pax_record(&mut out, "path", b"a");
        assert_eq!(out, b"9 path=a\n");
        let mut out = Vec::new();
        let long = vec![b'x'; 95];
        pax_record(&mut out, "path", &long);
        // 95 + "path" + " =\n" = 102, plus 3 digits.
        assert!(out.starts_with(b"105 path="));
        assert_eq!(out.len(), 105);
    }

    #[test]
    fn headers_have_valid_checksums_and_sizes() {
        let mut w = TarWriter::new(Vec::new());
        let mut h = Header::new(b"etc/motd".to_vec(), Kind::File);
        h.size = 5;
        h.mtime = 1_700_000_000;
        w.append(&h, Some(&mut &b"hello"[..])).unwrap();
        let out = w.finish().unwrap();
        assert_eq!(out.len(), 512 + 512 + 1024);
        let header = &out[..512];
        let stored = std::str::from_utf8(&header[148..154]).unwrap();
        let mut copy = header.to_vec();
        copy[148..156].copy_from_slice(b"        ");
        let sum: u32 = copy.iter().map(|&x| u32::from(x)).sum();
        assert_eq!(u32::from_str_radix(stored, 8).unwrap(), sum);
        assert_eq!(&out[512..517], b"hello");
    }
}
