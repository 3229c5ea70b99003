//! The protocol engine: one request at a time, over a tree of `O_PATH`
//! fds rooted at the jail's root. A fid is an `O_PATH` fd on its file plus
//! the fd of its directory and its name there (to open it without a path
//! and without /proc) and its names from the root (so `..` is a walk from
//! the root that stops there). Names with `/`, NUL, or empty are refused;
//! every call is an `*at` call that does not follow symlinks.

use std::collections::HashMap;
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::rc::Rc;

use crate::sys::{self, Errno};
use crate::wire::{kind, open_flags, Qid, Reader, Writer, HEADER};
use crate::{IdMap, ShareError};

/// The largest message size offered: what Linux's `trans=fd` allows.
pub const MAX_MSIZE: u32 = 1 << 20;
/// The smallest accepted: a directory entry and a header must fit.
const MIN_MSIZE: u32 = 4096;
/// At most this many fids at once (each holds up to two fds).
pub const MAX_FIDS: usize = 8192;
/// Twalk's limit on names per message (the protocol's).
const MAX_WALK: usize = 16;
const MAX_NAME: usize = 255;
const MAX_TARGET: usize = 4095;
const NOFID: u32 = u32::MAX;
/// Rread/Rreaddir: header plus count[4].
const IO_HEADER: u32 = HEADER as u32 + 4;

const LOCK_SUCCESS: u8 = 0;
const F_UNLCK: u8 = 2;

// Tsetattr's valid bits.
const SET_MODE: u32 = 0x1;
const SET_UID: u32 = 0x2;
const SET_GID: u32 = 0x4;
const SET_SIZE: u32 = 0x8;
const SET_ATIME: u32 = 0x10;
const SET_MTIME: u32 = 0x20;
const SET_ATIME_SET: u32 = 0x80;
const SET_MTIME_SET: u32 = 0x100;
/// Rgetattr's valid mask: the basic fields (P9_STATS_BASIC).
const STATS_BASIC: u64 = 0x7ff;

struct Fid {
    fd: Rc<OwnedFd>,
    /// Its directory and its name there; `None` for the root.
    parent: Option<(Rc<OwnedFd>, CString)>,
    /// Names from the root; the first is the share entry.
    names: Vec<CString>,
    uid: u32,
    qid: Qid,
    open: Option<OwnedFd>,
}

pub struct Server {
    root: Rc<OwnedFd>,
    /// Per share entry: served read-only (its bind is read-only too).
    read_only: Vec<bool>,
    ids: IdMap,
    msize: u32,
    fids: HashMap<u32, Fid>,
}

type Reply = Result<Vec<u8>, Errno>;

impl Server {
    /// A server of the tree whose root directory is `root` (an `O_PATH`
    /// or ordinary directory fd); entry `n` is read-only if
    /// `read_only[n]`.
    pub fn new(root: OwnedFd, read_only: Vec<bool>, ids: IdMap) -> Self {
        Self {
            root: Rc::new(root),
            read_only,
            ids,
            msize: MAX_MSIZE,
            fids: HashMap::new(),
        }
    }

    /// Serves `stream` until it ends (Ok) or breaks the framing.
    pub fn serve<S: Read + Write>(&mut self, mut stream: S) -> Result<(), ShareError> {
        let mut header = [0u8; 4];
        loop {
            match read_full(&mut stream, &mut header) {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(e) => return Err(ShareError::Stream(e)),
            }
            let size = u32::from_le_bytes(header);
            if size < HEADER as u32 || size > self.msize {
                return Err(ShareError::Framing(format!(
                    "a message of {size} bytes (msize {})",
                    self.msize
                )));
            }
            let mut message = vec![0u8; size as usize - 4];
            match read_full(&mut stream, &mut message) {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(e) => return Err(ShareError::Stream(e)),
            }
            let response = self.handle(&message);
            stream.write_all(&response).map_err(ShareError::Stream)?;
        }
    }

    /// One message (type, tag, body) in, one framed reply out.
    pub fn handle(&mut self, message: &[u8]) -> Vec<u8> {
        let (kind, tag, body) = (message[0], [message[1], message[2]], &message[3..]);
        let (rkind, body) = match self.dispatch(kind, body) {
            Ok(body) => (kind.wrapping_add(1), body),
            Err(errno) => (kind::RLERROR, (errno as u32).to_le_bytes().to_vec()),
        };
        let mut out = Vec::with_capacity(HEADER + body.len());
        out.extend_from_slice(&((HEADER + body.len()) as u32).to_le_bytes());
        out.push(rkind);
        out.extend_from_slice(&tag);
        out.extend_from_slice(&body);
        out
    }

    fn dispatch(&mut self, k: u8, body: &[u8]) -> Reply {
        let mut r = Reader::new(body);
        match k {
            kind::TVERSION => self.version(&mut r),
            kind::TAUTH => Err(libc::EOPNOTSUPP),
            kind::TATTACH => self.attach(&mut r),
            kind::TFLUSH => Ok(Vec::new()),
            kind::TWALK => self.walk(&mut r),
            kind::TCLUNK => {
                let fid = r.u32()?;
                self.fids
                    .remove(&fid)
                    .map(|_| Vec::new())
                    .ok_or(libc::EBADF)
            }
            kind::TREMOVE => self.remove(&mut r),
            kind::TGETATTR => self.getattr(&mut r),
            kind::TSETATTR => self.setattr(&mut r),
            kind::TSTATFS => self.statfs(&mut r),
            kind::TLOPEN => self.lopen(&mut r),
            kind::TLCREATE => self.lcreate(&mut r),
            kind::TREAD => self.read(&mut r),
            kind::TWRITE => self.write(&mut r),
            kind::TREADDIR => self.readdir(&mut r),
            kind::TFSYNC => self.fsync(&mut r),
            kind::TMKDIR => self.mkdir(&mut r),
            kind::TSYMLINK => self.symlink(&mut r),
            kind::TMKNOD => self.mknod(&mut r),
            kind::TREADLINK => {
                let fid = self.fid(r.u32()?)?;
                let target = sys::readlink(fid.fd.as_fd())?;
                Ok(w(|w| {
                    w.string(&target);
                }))
            }
            kind::TLINK => self.link(&mut r),
            kind::TRENAME => self.rename(&mut r),
            kind::TRENAMEAT => self.renameat(&mut r),
            kind::TUNLINKAT => self.unlinkat(&mut r),
            // No extended attributes: getxattr and listxattr just fail.
            kind::TXATTRWALK | kind::TXATTRCREATE => Err(libc::EOPNOTSUPP),
            // Locks are the guest's own: granted here, not taken on the
            // host, so they do not hold against host processes.
            kind::TLOCK => {
                self.fid(r.u32()?)?;
                Ok(vec![LOCK_SUCCESS])
            }
            kind::TGETLOCK => self.getlock(&mut r),
            _ => Err(libc::EOPNOTSUPP),
        }
    }

    fn fid(&self, fid: u32) -> Result<&Fid, Errno> {
        self.fids.get(&fid).ok_or(libc::EBADF)
    }

    fn add_fid(&mut self, id: u32, fid: Fid) -> Result<(), Errno> {
        if id == NOFID || self.fids.contains_key(&id) {
            return Err(libc::EBADF);
        }
        if self.fids.len() >= MAX_FIDS {
            return Err(libc::EMFILE);
        }
        self.fids.insert(id, fid);
        Ok(())
    }

    /// Refuses a change under a read-only share entry (the jail's bind is
    /// read-only too; this says so without asking the kernel).
    fn writable(&self, fid: &Fid) -> Result<(), Errno> {
        let entry = fid
            .names
            .first()
            .and_then(|n| n.to_str().ok()?.parse::<usize>().ok());
        match entry {
            // The root itself: a read-only tmpfs in the jail.
            None => Err(libc::EACCES),
            Some(n) if self.read_only.get(n).copied().unwrap_or(false) => Err(libc::EROFS),
            Some(_) => Ok(()),
        }
    }

    fn guest_ids(&self, st: &libc::stat) -> (u32, u32) {
        (
            IdMap::to_guest(&self.ids.uids, st.st_uid),
            IdMap::to_guest(&self.ids.gids, st.st_gid),
        )
    }

    fn host_ids(&self, uid: u32, gid: u32) -> Result<(u32, u32), Errno> {
        Ok((
            IdMap::to_host(&self.ids.uids, uid).ok_or(libc::EPERM)?,
            IdMap::to_host(&self.ids.gids, gid).ok_or(libc::EPERM)?,
        ))
    }

    fn version(&mut self, r: &mut Reader) -> Reply {
        let msize = r.u32()?;
        let version = r.string()?;
        if msize < MIN_MSIZE {
            return Err(libc::EINVAL);
        }
        // A new session: every fid of the old one is gone.
        self.fids.clear();
        self.msize = msize.min(MAX_MSIZE);
        let answer: &[u8] = if version == b"9P2000.L" {
            b"9P2000.L"
        } else {
            b"unknown"
        };
        Ok(w(|w| {
            w.u32(self.msize).string(answer);
        }))
    }

    fn attach(&mut self, r: &mut Reader) -> Reply {
        let (fid, afid) = (r.u32()?, r.u32()?);
        let _uname = r.string()?;
        let _aname = r.string()?;
        let n_uname = r.u32()?;
        if afid != NOFID {
            return Err(libc::EINVAL);
        }
        let st = sys::fstat(self.root.as_fd())?;
        let qid = Qid::of(&st);
        let root = Fid {
            fd: self.root.clone(),
            parent: None,
            names: Vec::new(),
            uid: if n_uname == u32::MAX {
                crate::OVERFLOW_ID
            } else {
                n_uname
            },
            qid,
            open: None,
        };
        self.add_fid(fid, root)?;
        Ok(w(|w| {
            w.qid(qid);
        }))
    }

    /// The fid the names lead to from the root (for `..`).
    fn walk_from_root(&self, names: &[CString], uid: u32) -> Result<Fid, Errno> {
        let mut fd = self.root.clone();
        let mut parent = None;
        for name in names {
            let next = Rc::new(sys::open_path(fd.as_fd(), name)?);
            parent = Some((fd, name.clone()));
            fd = next;
        }
        let qid = Qid::of(&sys::fstat(fd.as_fd())?);
        Ok(Fid {
            fd,
            parent,
            names: names.to_vec(),
            uid,
            qid,
            open: None,
        })
    }

    fn step(&self, from: &Fid, name: &[u8]) -> Result<Fid, Errno> {
        if from.qid.kind != crate::wire::QT_DIR {
            return Err(libc::ENOTDIR);
        }
        match name {
            b"." => self.walk_from_root(&from.names, from.uid),
            b".." => {
                let up = &from.names[..from.names.len().saturating_sub(1)];
                self.walk_from_root(up, from.uid)
            }
            _ => {
                let name = checked_name(name)?;
                let fd = Rc::new(sys::open_path(from.fd.as_fd(), &name)?);
                let qid = Qid::of(&sys::fstat(fd.as_fd())?);
                let mut names = from.names.clone();
                names.push(name.clone());
                Ok(Fid {
                    fd,
                    parent: Some((from.fd.clone(), name)),
                    names,
                    uid: from.uid,
                    qid,
                    open: None,
                })
            }
        }
    }

    fn walk(&mut self, r: &mut Reader) -> Reply {
        let (fid, newfid) = (r.u32()?, r.u32()?);
        let n = r.u16()? as usize;
        if n > MAX_WALK {
            return Err(libc::EINVAL);
        }
        let mut names = Vec::with_capacity(n);
        for _ in 0..n {
            names.push(r.string()?);
        }
        let start = self.fid(fid)?;
        if newfid != fid && self.fids.contains_key(&newfid) {
            return Err(libc::EBADF);
        }
        let mut current = Fid {
            fd: start.fd.clone(),
            parent: start.parent.clone(),
            names: start.names.clone(),
            uid: start.uid,
            qid: start.qid,
            open: None,
        };
        let mut qids = Vec::new();
        for name in names {
            match self.step(&current, name) {
                Ok(next) => {
                    qids.push(next.qid);
                    current = next;
                }
                Err(e) if qids.is_empty() => return Err(e),
                // A partial walk: the qids so far, and no new fid.
                Err(_) => {
                    return Ok(w(|w| {
                        w.u16(qids.len() as u16);
                        for q in &qids {
                            w.qid(*q);
                        }
                    }))
                }
            }
        }
        if newfid == fid {
            self.fids.insert(fid, current);
        } else {
            self.add_fid(newfid, current)?;
        }
        Ok(w(|w| {
            w.u16(qids.len() as u16);
            for q in &qids {
                w.qid(*q);
            }
        }))
    }

    fn getattr(&mut self, r: &mut Reader) -> Reply {
        let fid = self.fid(r.u32()?)?;
        let _mask = r.u64()?;
        let st = sys::fstat(fid.fd.as_fd())?;
        let (uid, gid) = self.guest_ids(&st);
        Ok(w(|w| {
            w.u64(STATS_BASIC)
                .qid(Qid::of(&st))
                .u32(st.st_mode)
                .u32(uid)
                .u32(gid)
                .u64(st.st_nlink)
                .u64(st.st_rdev)
                .u64(st.st_size as u64)
                .u64(st.st_blksize as u64)
                .u64(st.st_blocks as u64)
                .u64(st.st_atime as u64)
                .u64(st.st_atime_nsec as u64)
                .u64(st.st_mtime as u64)
                .u64(st.st_mtime_nsec as u64)
                .u64(st.st_ctime as u64)
                .u64(st.st_ctime_nsec as u64)
                .u64(0)
                .u64(0)
                .u64(0)
                .u64(0);
        }))
    }

    fn setattr(&mut self, r: &mut Reader) -> Reply {
        let fid = self.fid(r.u32()?)?;
        let valid = r.u32()?;
        let (mode, uid, gid, size) = (r.u32()?, r.u32()?, r.u32()?, r.u64()?);
        let (atime, atime_ns, mtime, mtime_ns) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?);
        self.writable(fid)?;
        let fd = fid.fd.as_fd();
        if valid & SET_MODE != 0 {
            if fid.qid.kind == crate::wire::QT_SYMLINK {
                return Err(libc::EOPNOTSUPP);
            }
            sys::fchmod(fd, mode)?;
        }
        if valid & (SET_UID | SET_GID) != 0 {
            let st = sys::fstat(fd)?;
            let uid = match valid & SET_UID {
                0 => st.st_uid,
                _ => IdMap::to_host(&self.ids.uids, uid).ok_or(libc::EINVAL)?,
            };
            let gid = match valid & SET_GID {
                0 => st.st_gid,
                _ => IdMap::to_host(&self.ids.gids, gid).ok_or(libc::EINVAL)?,
            };
            sys::fchown(fd, uid, gid)?;
        }
        if valid & SET_SIZE != 0 {
            self.truncate(fid, size)?;
        }
        if valid & (SET_ATIME | SET_MTIME) != 0 {
            let time = |set: u32, given: u32, sec: u64, nsec: u64| libc::timespec {
                tv_sec: if valid & given != 0 { sec as i64 } else { 0 },
                tv_nsec: match (valid & set != 0, valid & given != 0) {
                    (false, _) => libc::UTIME_OMIT,
                    (true, false) => libc::UTIME_NOW,
                    (true, true) => nsec.min(999_999_999) as i64,
                },
            };
            let times = [
                time(SET_ATIME, SET_ATIME_SET, atime, atime_ns),
                time(SET_MTIME, SET_MTIME_SET, mtime, mtime_ns),
            ];
            sys::futimens(fd, &times)?;
        }
        Ok(Vec::new())
    }

    fn truncate(&self, fid: &Fid, size: u64) -> Result<(), Errno> {
        if fid.qid.kind != crate::wire::QT_FILE {
            return Err(libc::EINVAL);
        }
        let reopened;
        let fd = match &fid.open {
            Some(fd) => fd.as_fd(),
            None => {
                reopened = self.reopen(fid, libc::O_WRONLY)?;
                reopened.as_fd()
            }
        };
        sys::ftruncate(fd, size)
    }

    /// The file of `fid` opened with `flags`: a directory through its own
    /// fd, a regular file through its directory and name, checked to be
    /// the same file. Nothing else is opened here: the guest makes its
    /// own FIFOs, sockets and devices of these nodes.
    fn reopen(&self, fid: &Fid, flags: libc::c_int) -> Result<OwnedFd, Errno> {
        let st = sys::fstat(fid.fd.as_fd())?;
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => {
                sys::openat(fid.fd.as_fd(), c".", libc::O_RDONLY | libc::O_DIRECTORY, 0)
            }
            libc::S_IFREG => {
                let (dir, name) = fid.parent.as_ref().ok_or(libc::EISDIR)?;
                // Non-blocking: a FIFO swapped in for the file must not
                // block the open; the check below then refuses it.
                let fd = sys::openat(dir.as_fd(), name, flags | libc::O_NONBLOCK, 0)?;
                let now = sys::fstat(fd.as_fd())?;
                if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) {
                    return Err(libc::ESTALE);
                }
                sys::set_blocking(fd.as_fd())?;
                Ok(fd)
            }
            libc::S_IFLNK => Err(libc::ELOOP),
            _ => Err(libc::EPERM),
        }
    }

    fn lopen(&mut self, r: &mut Reader) -> Reply {
        let id = r.u32()?;
        let flags = open_flags(r.u32()?);
        let fid = self.fid(id)?;
        if fid.open.is_some() {
            return Err(libc::EBADF);
        }
        if flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0 {
            self.writable(fid)?;
        }
        let fd = self.reopen(fid, flags)?;
        let qid = fid.qid;
        let iounit = self.msize - IO_HEADER;
        if let Some(fid) = self.fids.get_mut(&id) {
            fid.open = Some(fd);
        }
        Ok(w(|w| {
            w.qid(qid).u32(iounit);
        }))
    }

    /// The directory fid `dir` and a new entry's name in it, for a change.
    fn dir_and_name(&self, dir: u32, name: &[u8]) -> Result<(&Fid, CString), Errno> {
        let dir = self.fid(dir)?;
        if dir.qid.kind != crate::wire::QT_DIR {
            return Err(libc::ENOTDIR);
        }
        self.writable(dir)?;
        Ok((dir, checked_name(name)?))
    }

    /// Gives a new entry its creator's ids and returns its qid.
    fn own(&self, dir: BorrowedFd, name: &CString, uid: u32, gid: u32) -> Result<Qid, Errno> {
        let (uid, gid) = self.host_ids(uid, gid)?;
        sys::fchownat(dir, name, uid, gid)?;
        Ok(Qid::of(&sys::fstatat(dir, name)?))
    }

    fn lcreate(&mut self, r: &mut Reader) -> Reply {
        let id = r.u32()?;
        let name = r.string()?;
        let (flags, mode, gid) = (open_flags(r.u32()?), r.u32()?, r.u32()?);
        let (dir, name) = self.dir_and_name(id, name)?;
        if dir.open.is_some() {
            return Err(libc::EBADF);
        }
        let (host_uid, host_gid) = self.host_ids(dir.uid, gid)?;
        let open = sys::openat(
            dir.fd.as_fd(),
            &name,
            flags | libc::O_CREAT | libc::O_EXCL,
            mode & 0o7777,
        )?;
        if let Err(e) = sys::fchown(open.as_fd(), host_uid, host_gid) {
            let _ = sys::unlinkat(dir.fd.as_fd(), &name, 0);
            return Err(e);
        }
        let fd = Rc::new(sys::open_path(dir.fd.as_fd(), &name)?);
        let qid = Qid::of(&sys::fstat(fd.as_fd())?);
        let mut names = dir.names.clone();
        names.push(name.clone());
        let created = Fid {
            fd,
            parent: Some((dir.fd.clone(), name)),
            names,
            uid: dir.uid,
            qid,
            open: Some(open),
        };
        self.fids.insert(id, created);
        let iounit = self.msize - IO_HEADER;
        Ok(w(|w| {
            w.qid(qid).u32(iounit);
        }))
    }

    fn read(&mut self, r: &mut Reader) -> Reply {
        let fid = self.fid(r.u32()?)?;
        let (offset, count) = (r.u64()?, r.u32()?);
        let fd = fid.open.as_ref().ok_or(libc::EBADF)?;
        if fid.qid.kind == crate::wire::QT_DIR {
            return Err(libc::EISDIR);
        }
        let count = count.min(self.msize - IO_HEADER) as usize;
        let mut out = vec![0u8; 4 + count];
        let n = sys::pread(fd.as_fd(), &mut out[4..], offset)?;
        out.truncate(4 + n);
        out[..4].copy_from_slice(&(n as u32).to_le_bytes());
        Ok(out)
    }

    fn write(&mut self, r: &mut Reader) -> Reply {
        let fid = self.fid(r.u32()?)?;
        let (offset, count) = (r.u64()?, r.u32()?);
        let data = r.bytes(count as usize)?;
        let fd = fid.open.as_ref().ok_or(libc::EBADF)?;
        self.writable(fid)?;
        let n = sys::pwrite(fd.as_fd(), data, offset)?;
        Ok((n as u32).to_le_bytes().to_vec())
    }

    fn readdir(&mut self, r: &mut Reader) -> Reply {
        let fid = self.fid(r.u32()?)?;
        let (offset, count) = (r.u64()?, r.u32()?);
        let fd = fid.open.as_ref().ok_or(libc::EBADF)?;
        if fid.qid.kind != crate::wire::QT_DIR {
            return Err(libc::ENOTDIR);
        }
        let count = count.min(self.msize - IO_HEADER) as usize;
        let dev = sys::fstat(fd.as_fd())?.st_dev;
        let mut buf = vec![0u8; count.clamp(512, 64 << 10)];
        let entries = sys::read_dir(fd.as_fd(), offset, &mut buf)?;
        let mut data = Writer::default();
        for sys::DirEntry {
            ino,
            next,
            d_type,
            name,
        } in entries
        {
            // qid[13] offset[8] type[1] name[s]
            if data.buf.len() + 24 + name.len() > count {
                break;
            }
            let kind = match d_type {
                libc::DT_DIR => crate::wire::QT_DIR,
                libc::DT_LNK => crate::wire::QT_SYMLINK,
                _ => crate::wire::QT_FILE,
            };
            let qid = Qid {
                kind,
                path: ino ^ (dev << 48),
            };
            data.qid(qid).u64(next).u8(d_type).string(&name);
        }
        let mut out = (data.buf.len() as u32).to_le_bytes().to_vec();
        out.extend_from_slice(&data.buf);
        Ok(out)
    }

    fn fsync(&mut self, r: &mut Reader) -> Reply {
        let fid = self.fid(r.u32()?)?;
        let datasync = r.u32().unwrap_or(0) != 0;
        if let Some(fd) = &fid.open {
            sys::fsync(fd.as_fd(), datasync)?;
        }
        Ok(Vec::new())
    }

    fn mkdir(&mut self, r: &mut Reader) -> Reply {
        let dir = r.u32()?;
        let name = r.string()?;
        let (mode, gid) = (r.u32()?, r.u32()?);
        let (dir, name) = self.dir_and_name(dir, name)?;
        self.host_ids(dir.uid, gid)?;
        sys::mkdirat(dir.fd.as_fd(), &name, mode)?;
        let qid = self
            .own(dir.fd.as_fd(), &name, dir.uid, gid)
            .inspect_err(|_| {
                let _ = sys::unlinkat(dir.fd.as_fd(), &name, libc::AT_REMOVEDIR);
            })?;
        Ok(w(|w| {
            w.qid(qid);
        }))
    }

    fn symlink(&mut self, r: &mut Reader) -> Reply {
        let dir = r.u32()?;
        let name = r.string()?;
        let target = r.string()?;
        let gid = r.u32()?;
        if target.is_empty() || target.len() > MAX_TARGET || target.contains(&0) {
            return Err(libc::EINVAL);
        }
        let target = CString::new(target).map_err(|_| libc::EINVAL)?;
        let (dir, name) = self.dir_and_name(dir, name)?;
        self.host_ids(dir.uid, gid)?;
        // The target is only data: the server never follows it.
        sys::symlinkat(&target, dir.fd.as_fd(), &name)?;
        let qid = self
            .own(dir.fd.as_fd(), &name, dir.uid, gid)
            .inspect_err(|_| {
                let _ = sys::unlinkat(dir.fd.as_fd(), &name, 0);
            })?;
        Ok(w(|w| {
            w.qid(qid);
        }))
    }

    fn mknod(&mut self, r: &mut Reader) -> Reply {
        let dir = r.u32()?;
        let name = r.string()?;
        let (mode, _major, _minor, gid) = (r.u32()?, r.u32()?, r.u32()?, r.u32()?);
        // FIFOs and sockets only: a device node on the host is the host's
        // device to whoever on the host opens it.
        if !matches!(mode & libc::S_IFMT, libc::S_IFIFO | libc::S_IFSOCK) {
            return Err(libc::EPERM);
        }
        let (dir, name) = self.dir_and_name(dir, name)?;
        self.host_ids(dir.uid, gid)?;
        sys::mknodat(dir.fd.as_fd(), &name, mode & (libc::S_IFMT | 0o7777))?;
        let qid = self
            .own(dir.fd.as_fd(), &name, dir.uid, gid)
            .inspect_err(|_| {
                let _ = sys::unlinkat(dir.fd.as_fd(), &name, 0);
            })?;
        Ok(w(|w| {
            w.qid(qid);
        }))
    }

    fn link(&mut self, r: &mut Reader) -> Reply {
        let (dir, fid) = (r.u32()?, r.u32()?);
        let name = r.string()?;
        let target = self.fid(fid)?;
        if target.qid.kind == crate::wire::QT_DIR {
            return Err(libc::EPERM);
        }
        self.writable(target)?;
        let (dir, name) = self.dir_and_name(dir, name)?;
        sys::linkat(target.fd.as_fd(), dir.fd.as_fd(), &name)?;
        Ok(Vec::new())
    }

    fn rename(&mut self, r: &mut Reader) -> Reply {
        let (id, dir) = (r.u32()?, r.u32()?);
        let name = r.string()?;
        let fid = self.fid(id)?;
        self.writable(fid)?;
        let (old_dir, old_name) = fid.parent.clone().ok_or(libc::EBUSY)?;
        let (dir, name) = self.dir_and_name(dir, name)?;
        sys::renameat(old_dir.as_fd(), &old_name, dir.fd.as_fd(), &name)?;
        // The fid follows its file.
        let (new_parent, mut names) = (dir.fd.clone(), dir.names.clone());
        names.push(name.clone());
        if let Some(fid) = self.fids.get_mut(&id) {
            fid.parent = Some((new_parent, name));
            fid.names = names;
        }
        Ok(Vec::new())
    }

    fn renameat(&mut self, r: &mut Reader) -> Reply {
        let old_dir = r.u32()?;
        let old_name = r.string()?;
        let new_dir = r.u32()?;
        let new_name = r.string()?;
        let (old_dir, old_name) = self.dir_and_name(old_dir, old_name)?;
        let (new_dir, new_name) = self.dir_and_name(new_dir, new_name)?;
        sys::renameat(old_dir.fd.as_fd(), &old_name, new_dir.fd.as_fd(), &new_name)?;
        Ok(Vec::new())
    }

    fn unlinkat(&mut self, r: &mut Reader) -> Reply {
        let dir = r.u32()?;
        let name = r.string()?;
        let flags = r.u32()? as libc::c_int & libc::AT_REMOVEDIR;
        let (dir, name) = self.dir_and_name(dir, name)?;
        sys::unlinkat(dir.fd.as_fd(), &name, flags)?;
        Ok(Vec::new())
    }

    fn remove(&mut self, r: &mut Reader) -> Reply {
        let id = r.u32()?;
        // The fid is clunked whatever happens.
        let fid = self.fids.remove(&id).ok_or(libc::EBADF)?;
        self.writable(&fid)?;
        let (dir, name) = fid.parent.as_ref().ok_or(libc::EBUSY)?;
        let flags = if fid.qid.kind == crate::wire::QT_DIR {
            libc::AT_REMOVEDIR
        } else {
            0
        };
        sys::unlinkat(dir.as_fd(), name, flags)?;
        Ok(Vec::new())
    }

    fn statfs(&mut self, r: &mut Reader) -> Reply {
        let fid = self.fid(r.u32()?)?;
        let st = sys::fstatfs(fid.fd.as_fd())?;
        Ok(w(|w| {
            w.u32(st.f_type as u32)
                .u32(st.f_bsize as u32)
                .u64(st.f_blocks)
                .u64(st.f_bfree)
                .u64(st.f_bavail)
                .u64(st.f_files)
                .u64(st.f_ffree)
                .u64(0)
                .u32(st.f_namelen as u32);
        }))
    }

    fn getlock(&mut self, r: &mut Reader) -> Reply {
        self.fid(r.u32()?)?;
        let _kind = r.u8()?;
        let (start, length, proc_id) = (r.u64()?, r.u64()?, r.u32()?);
        let client = r.string()?;
        Ok(w(|w| {
            w.u8(F_UNLCK)
                .u64(start)
                .u64(length)
                .u32(proc_id)
                .string(client);
        }))
    }
}

fn w(f: impl FnOnce(&mut Writer)) -> Vec<u8> {
    let mut writer = Writer::default();
    f(&mut writer);
    writer.buf
}

/// A name of one entry: not empty, `.`, `..`, and without `/` or NUL.
fn checked_name(name: &[u8]) -> Result<CString, Errno> {
    if name.is_empty() || name == b"." || name == b".." || name.len() > MAX_NAME {
        return Err(libc::EINVAL);
    }
    if name.contains(&b'/') {
        return Err(libc::EINVAL);
    }
    CString::new(name).map_err(|_| libc::EINVAL)
}

/// Fills `buf`; false when the stream ended before its first byte.
fn read_full(stream: &mut impl Read, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut at = 0;
    while at < buf.len() {
        match stream.read(&mut buf[at..]) {
            Ok(0) if at == 0 => return Ok(false),
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => at += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests;
