//! 9P message bodies: a reader that never reads past the message (every
//! short read is `EPROTO`, answered as an error, not a panic) and a
//! writer. Little-endian; strings are a u16 length and bytes.

/// Message types of 9P2000.L (Linux's include/net/9p/9p.h); the reply
/// of `T` is `T + 1`.
pub mod kind {
    pub const RLERROR: u8 = 7;
    pub const TSTATFS: u8 = 8;
    pub const TLOPEN: u8 = 12;
    pub const TLCREATE: u8 = 14;
    pub const TSYMLINK: u8 = 16;
    pub const TMKNOD: u8 = 18;
    pub const TRENAME: u8 = 20;
    pub const TREADLINK: u8 = 22;
    pub const TGETATTR: u8 = 24;
    pub const TSETATTR: u8 = 26;
    pub const TXATTRWALK: u8 = 30;
    pub const TXATTRCREATE: u8 = 32;
    pub const TREADDIR: u8 = 40;
    pub const TFSYNC: u8 = 50;
    pub const TLOCK: u8 = 52;
    pub const TGETLOCK: u8 = 54;
    pub const TLINK: u8 = 70;
    pub const TMKDIR: u8 = 72;
    pub const TRENAMEAT: u8 = 74;
    pub const TUNLINKAT: u8 = 76;
    pub const TVERSION: u8 = 100;
    pub const TAUTH: u8 = 102;
    pub const TATTACH: u8 = 104;
    pub const TFLUSH: u8 = 108;
    pub const TWALK: u8 = 110;
    pub const TREAD: u8 = 116;
    pub const TWRITE: u8 = 118;
    pub const TCLUNK: u8 = 120;
    pub const TREMOVE: u8 = 122;
}

/// size[4] type[1] tag[2].
pub const HEADER: usize = 7;

pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], i32> {
        if self.buf.len() < n {
            return Err(libc::EPROTO);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub fn u8(&mut self) -> Result<u8, i32> {
        Ok(self.bytes(1)?[0])
    }

    pub fn u16(&mut self) -> Result<u16, i32> {
        let b = self.bytes(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self) -> Result<u32, i32> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self) -> Result<u64, i32> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    pub fn string(&mut self) -> Result<&'a [u8], i32> {
        let n = self.u16()? as usize;
        self.bytes(n)
    }
}

#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// A string; the caller keeps it under 64 KiB (names ≤ 255 bytes,
    /// link targets ≤ 4095).
    pub fn string(&mut self, s: &[u8]) -> &mut Self {
        let n = s.len().min(u16::MAX as usize);
        self.u16(n as u16);
        self.buf.extend_from_slice(&s[..n]);
        self
    }

    pub fn qid(&mut self, q: Qid) -> &mut Self {
        self.u8(q.kind).u32(0).u64(q.path)
    }
}

/// A file's identity as 9P names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Qid {
    pub kind: u8,
    pub path: u64,
}

pub const QT_DIR: u8 = 0x80;
pub const QT_SYMLINK: u8 = 0x02;
pub const QT_FILE: u8 = 0;

impl Qid {
    pub fn of(st: &libc::stat) -> Self {
        let kind = match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => QT_DIR,
            libc::S_IFLNK => QT_SYMLINK,
            _ => QT_FILE,
        };
        // Two shares may be two filesystems with the same inode numbers.
        Self {
            kind,
            path: st.st_ino ^ (st.st_dev << 48),
        }
    }
}

/// The open flags of 9P2000.L (`P9_DOTL_*`, fixed by the protocol
/// whatever the host's own values) a file server honours, and the host's
/// flag for each. Dropped: create/exclusive (Tlcreate decides), noctty,
/// nonblock (the server must not see EAGAIN), async, direct (its
/// alignment rules do not hold for the server's buffers), cloexec and
/// nofollow (always set), largefile (always on).
const DOTL_FLAGS: [(u32, libc::c_int); 6] = [
    (0o1000, libc::O_TRUNC),
    (0o2000, libc::O_APPEND),
    (0o10000, libc::O_DSYNC),
    (0o200000, libc::O_DIRECTORY),
    (0o1000000, libc::O_NOATIME),
    (0o4000000, libc::O_SYNC),
];
/// P9_DOTL_RDONLY/WRONLY/RDWR/NOACCESS, as Linux's O_ACCMODE values.
const DOTL_ACCMODE: u32 = 3;

/// The host's open flags for the guest's `P9_DOTL_*` ones.
pub fn open_flags(dotl: u32) -> libc::c_int {
    let access = match dotl & DOTL_ACCMODE {
        0 => libc::O_RDONLY,
        1 => libc::O_WRONLY,
        // 3 ("no access", for ioctls) needs both permissions, as O_RDWR.
        _ => libc::O_RDWR,
    };
    DOTL_FLAGS
        .iter()
        .filter(|(bit, _)| dotl & bit != 0)
        .fold(access, |flags, (_, host)| flags | host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_bodies_are_protocol_errors() {
        let mut r = Reader::new(&[1, 0, 0]);
        assert_eq!(r.u16(), Ok(1));
        assert_eq!(r.u32(), Err(libc::EPROTO));
        let mut r = Reader::new(&[5, 0, b'a']);
        assert_eq!(r.string(), Err(libc::EPROTO));
        let mut w = Writer::default();
        w.string(b"ab").u32(7);
        let mut r = Reader::new(&w.buf);
        assert_eq!(r.string(), Ok(&b"ab"[..]));
        assert_eq!(r.u32(), Ok(7));
    }

    #[test]
    fn open_flags_keep_only_what_a_server_honours() {
        // O_RDWR | O_CREAT | O_EXCL | O_NONBLOCK | O_TRUNC | O_DIRECT.
        let flags = open_flags(2 | 0o100 | 0o200 | 0o4000 | 0o1000 | 0o40000);
        assert_eq!(flags, libc::O_RDWR | libc::O_TRUNC);
        assert_eq!(open_flags(0o200000), libc::O_RDONLY | libc::O_DIRECTORY);
        assert_eq!(open_flags(3) & libc::O_ACCMODE, libc::O_RDWR);
        // O_SYNC as Linux sends it: the dsync and sync bits.
        assert_eq!(open_flags(1 | 0o4010000), libc::O_WRONLY | libc::O_SYNC);
    }
}
