//! The engine against a tree on disk, through a small 9P client over a
//! socket pair (the jail is the end-to-end suite's: it needs a mount
//! namespace).

use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;

use super::*;
use crate::wire::{QT_DIR, QT_SYMLINK};

struct Client {
    stream: UnixStream,
    tag: u16,
}

enum Answer {
    Ok(Vec<u8>),
    Err(i32),
}

impl Answer {
    fn ok(self) -> Vec<u8> {
        match self {
            Answer::Ok(b) => b,
            Answer::Err(e) => panic!("9P error {e}"),
        }
    }

    fn errno(self) -> i32 {
        match self {
            Answer::Ok(_) => panic!("expected an error"),
            Answer::Err(e) => e,
        }
    }
}

impl Client {
    fn call(&mut self, kind: u8, body: &Writer) -> Answer {
        self.tag = self.tag.wrapping_add(1);
        let mut msg = ((HEADER + body.buf.len()) as u32).to_le_bytes().to_vec();
        msg.push(kind);
        msg.extend_from_slice(&self.tag.to_le_bytes());
        msg.extend_from_slice(&body.buf);
        self.stream.write_all(&msg).unwrap();
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).unwrap();
        let mut rest = vec![0u8; u32::from_le_bytes(size) as usize - 4];
        self.stream.read_exact(&mut rest).unwrap();
        assert_eq!(u16::from_le_bytes([rest[1], rest[2]]), self.tag);
        if rest[0] == kind::RLERROR {
            Answer::Err(u32::from_le_bytes([rest[3], rest[4], rest[5], rest[6]]) as i32)
        } else {
            assert_eq!(rest[0], kind + 1);
            Answer::Ok(rest[3..].to_vec())
        }
    }

    fn body(f: impl FnOnce(&mut Writer)) -> Writer {
        let mut w = Writer::default();
        f(&mut w);
        w
    }

    fn walk(&mut self, fid: u32, newfid: u32, names: &[&str]) -> Answer {
        self.call(
            kind::TWALK,
            &Self::body(|w| {
                w.u32(fid).u32(newfid).u16(names.len() as u16);
                for n in names {
                    w.string(n.as_bytes());
                }
            }),
        )
    }

    /// Walks from the root (fid 0) to a new fid; the qid types walked.
    fn walk_types(&mut self, newfid: u32, names: &[&str]) -> Result<Vec<u8>, i32> {
        match self.walk(0, newfid, names) {
            Answer::Ok(b) => {
                let n = u16::from_le_bytes([b[0], b[1]]) as usize;
                Ok((0..n).map(|i| b[2 + 13 * i]).collect())
            }
            Answer::Err(e) => Err(e),
        }
    }

    fn lopen(&mut self, fid: u32, flags: i32) -> Answer {
        self.call(
            kind::TLOPEN,
            &Self::body(|w| {
                w.u32(fid).u32(flags as u32);
            }),
        )
    }

    fn read(&mut self, fid: u32, offset: u64, count: u32) -> Vec<u8> {
        let b = self
            .call(
                kind::TREAD,
                &Self::body(|w| {
                    w.u32(fid).u64(offset).u32(count);
                }),
            )
            .ok();
        b[4..].to_vec()
    }

    fn clunk(&mut self, fid: u32) -> Answer {
        self.call(
            kind::TCLUNK,
            &Self::body(|w| {
                w.u32(fid);
            }),
        )
    }
}

/// A tree like the jail's: `0` and `1` shared, `1` read-only; a secret
/// next to the root. The server runs on a thread; the client attaches as
/// uid `uid`.
fn start(uid: u32) -> (tempfile::TempDir, Client) {
    let top = tempfile::tempdir().unwrap();
    std::fs::write(top.path().join("secret"), "SECRET").unwrap();
    let root = top.path().join("root");
    for d in ["root/0", "root/1"] {
        std::fs::create_dir_all(top.path().join(d)).unwrap();
    }
    std::fs::write(root.join("0/hello"), "hello world").unwrap();
    std::fs::write(root.join("1/keep"), "keep").unwrap();
    std::os::unix::fs::symlink("/etc", root.join("0/etc")).unwrap();
    std::os::unix::fs::symlink("../../secret", root.join("0/up")).unwrap();
    let fd: OwnedFd = std::fs::File::open(&root).unwrap().into();
    let (ours, theirs) = UnixStream::pair().unwrap();
    std::thread::spawn(move || {
        let mut server = Server::new(fd, vec![false, true], IdMap::default());
        let _ = server.serve(theirs);
    });
    let mut client = Client {
        stream: ours,
        tag: 0,
    };
    let v = client
        .call(
            kind::TVERSION,
            &Client::body(|w| {
                w.u32(65536).string(b"9P2000.L");
            }),
        )
        .ok();
    assert_eq!(&v[6..], b"9P2000.L");
    client
        .call(
            kind::TATTACH,
            &Client::body(|w| {
                w.u32(0).u32(NOFID).string(b"").string(b"").u32(uid);
            }),
        )
        .ok();
    (top, client)
}

#[test]
fn files_are_read_written_created_and_owned_by_the_guest_user() {
    let (top, mut c) = start(1234);
    let share = top.path().join("root/0");
    assert_eq!(c.walk_types(1, &["0", "hello"]), Ok(vec![QT_DIR, 0]));
    c.lopen(1, libc::O_RDONLY).ok();
    assert_eq!(c.read(1, 6, 100), b"world");
    c.clunk(1).ok();

    c.walk(0, 2, &["0"]).ok();
    let created = c.call(
        kind::TLCREATE,
        &Client::body(|w| {
            w.u32(2)
                .string(b"new")
                .u32(libc::O_RDWR as u32)
                .u32(0o640)
                .u32(5678);
        }),
    );
    created.ok();
    c.call(
        kind::TWRITE,
        &Client::body(|w| {
            w.u32(2).u64(0).u32(3).buf.extend_from_slice(b"abc");
        }),
    )
    .ok();
    c.call(
        kind::TFSYNC,
        &Client::body(|w| {
            w.u32(2).u32(0);
        }),
    )
    .ok();
    let meta = std::fs::metadata(share.join("new")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1234, 5678));
    assert_eq!(meta.permissions().mode() & 0o777, 0o640);
    assert_eq!(std::fs::read(share.join("new")).unwrap(), b"abc");

    // mkdir, symlink, link, rename, setattr, unlink.
    c.call(
        kind::TMKDIR,
        &Client::body(|w| {
            w.u32(0).string(b"x").u32(0o755).u32(0);
        }),
    )
    .errno();
    c.walk(0, 3, &["0"]).ok();
    c.call(
        kind::TMKDIR,
        &Client::body(|w| {
            w.u32(3).string(b"dir").u32(0o750).u32(42);
        }),
    )
    .ok();
    assert_eq!(std::fs::metadata(share.join("dir")).unwrap().gid(), 42);
    c.call(
        kind::TSYMLINK,
        &Client::body(|w| {
            w.u32(3).string(b"ln").string(b"/etc/passwd").u32(0);
        }),
    )
    .ok();
    assert_eq!(
        std::fs::read_link(share.join("ln")).unwrap(),
        Path::new("/etc/passwd")
    );
    c.walk(0, 4, &["0", "new"]).ok();
    c.call(
        kind::TLINK,
        &Client::body(|w| {
            w.u32(3).u32(4).string(b"hard");
        }),
    )
    .ok();
    assert_eq!(std::fs::metadata(share.join("new")).unwrap().nlink(), 2);
    c.call(
        kind::TRENAMEAT,
        &Client::body(|w| {
            w.u32(3).string(b"hard").u32(3).string(b"moved");
        }),
    )
    .ok();
    c.call(
        kind::TSETATTR,
        &Client::body(|w| {
            w.u32(4)
                .u32(SET_SIZE | SET_MODE | SET_UID)
                .u32(0o600)
                .u32(7)
                .u32(0)
                .u64(1);
            w.u64(0).u64(0).u64(0).u64(0);
        }),
    )
    .ok();
    let meta = std::fs::metadata(share.join("moved")).unwrap();
    assert_eq!((meta.len(), meta.uid(), meta.mode() & 0o777), (1, 7, 0o600));
    c.call(
        kind::TUNLINKAT,
        &Client::body(|w| {
            w.u32(3).string(b"moved").u32(0);
        }),
    )
    .ok();
    c.call(
        kind::TUNLINKAT,
        &Client::body(|w| {
            w.u32(3).string(b"dir").u32(libc::AT_REMOVEDIR as u32);
        }),
    )
    .ok();
    assert!(!share.join("moved").exists() && !share.join("dir").exists());
    // A device node is never made; a FIFO is.
    let mknod = |c: &mut Client, name: &[u8], mode: u32| {
        c.call(
            kind::TMKNOD,
            &Client::body(|w| {
                w.u32(3).string(name).u32(mode).u32(1).u32(3).u32(0);
            }),
        )
    };
    assert_eq!(
        mknod(&mut c, b"null", libc::S_IFCHR | 0o666).errno(),
        libc::EPERM
    );
    mknod(&mut c, b"fifo", libc::S_IFIFO | 0o600).ok();
}

#[test]
fn directories_list_every_entry_across_calls() {
    let (top, mut c) = start(0);
    let share = top.path().join("root/0");
    for i in 0..200 {
        std::fs::write(share.join(format!("file-{i:03}")), "").unwrap();
    }
    c.walk(0, 1, &["0"]).ok();
    c.lopen(1, libc::O_RDONLY | libc::O_DIRECTORY).ok();
    let mut names = Vec::new();
    let mut offset = 0;
    loop {
        let b = c
            .call(
                kind::TREADDIR,
                &Client::body(|w| {
                    w.u32(1).u64(offset).u32(1000);
                }),
            )
            .ok();
        let n = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
        if n == 0 {
            break;
        }
        let mut r = Reader::new(&b[4..4 + n]);
        while let Ok(_qid) = r.bytes(13) {
            offset = r.u64().unwrap();
            r.u8().unwrap();
            names.push(String::from_utf8(r.string().unwrap().to_vec()).unwrap());
        }
    }
    let files = names.iter().filter(|n| n.starts_with("file-")).count();
    assert_eq!(files, 200);
    assert!(names.contains(&"hello".to_string()));
}

#[test]
fn walks_never_leave_the_root_or_follow_symlinks() {
    let (_top, mut c) = start(0);
    // `..` at the root stays at the root: there is no "secret" above it.
    assert_eq!(
        c.walk_types(1, &["..", "..", "0"]),
        Ok(vec![QT_DIR, QT_DIR, QT_DIR])
    );
    assert_eq!(
        c.walk_types(2, &["0", "..", "..", "secret"]).unwrap().len(),
        3
    );
    assert!(c.fid(2).is_none_or_err());
    // A symlink is an entry, never a way through.
    assert_eq!(c.walk_types(3, &["0", "etc"]), Ok(vec![QT_DIR, QT_SYMLINK]));
    assert_eq!(
        c.walk_types(4, &["0", "etc", "passwd"]),
        Ok(vec![QT_DIR, QT_SYMLINK])
    );
    assert_eq!(c.lopen(3, libc::O_RDONLY).errno(), libc::ELOOP);
    assert_eq!(c.walk_types(5, &["0", "up"]), Ok(vec![QT_DIR, QT_SYMLINK]));
    assert_eq!(c.lopen(5, libc::O_RDONLY).errno(), libc::ELOOP);
    // Names with a slash are refused outright.
    assert_eq!(c.walk(0, 6, &["0/hello"]).errno(), libc::EINVAL);
    c.walk(0, 7, &["0"]).ok();
    let made = c.call(
        kind::TSYMLINK,
        &Client::body(|w| {
            w.u32(7).string(b"../x").string(b"y").u32(0);
        }),
    );
    assert_eq!(made.errno(), libc::EINVAL);
}

#[test]
fn read_only_entries_refuse_every_change() {
    let (top, mut c) = start(0);
    c.walk(0, 1, &["1", "keep"]).ok();
    assert_eq!(c.lopen(1, libc::O_RDWR).errno(), libc::EROFS);
    c.lopen(1, libc::O_RDONLY).ok();
    assert_eq!(c.read(1, 0, 10), b"keep");
    c.walk(0, 2, &["1"]).ok();
    let create = c.call(
        kind::TLCREATE,
        &Client::body(|w| {
            w.u32(2)
                .string(b"x")
                .u32(libc::O_RDWR as u32)
                .u32(0o644)
                .u32(0);
        }),
    );
    assert_eq!(create.errno(), libc::EROFS);
    let unlink = c.call(
        kind::TUNLINKAT,
        &Client::body(|w| {
            w.u32(2).string(b"keep").u32(0);
        }),
    );
    assert_eq!(unlink.errno(), libc::EROFS);
    assert!(top.path().join("root/1/keep").exists());
}

#[test]
fn hostile_messages_get_errors_not_panics() {
    let (_top, mut c) = start(0);
    // Truncated bodies, unknown types, unknown fids, fid reuse.
    for kind in 0..=255u8 {
        if kind == kind::TVERSION {
            continue;
        }
        let _ = c.call(
            kind,
            &Client::body(|w| {
                w.u32(0).u8(1);
            }),
        );
    }
    // The session still works, fid 0 may have been clunked by the noise.
    c.call(
        kind::TVERSION,
        &Client::body(|w| {
            w.u32(65536).string(b"9P2000.L");
        }),
    )
    .ok();
    c.call(
        kind::TATTACH,
        &Client::body(|w| {
            w.u32(0).u32(NOFID).string(b"").string(b"").u32(0);
        }),
    )
    .ok();
    assert_eq!(
        c.call(
            kind::TATTACH,
            &Client::body(|w| {
                w.u32(0).u32(NOFID).string(b"").string(b"").u32(0);
            })
        )
        .errno(),
        libc::EBADF
    );
    assert_eq!(c.clunk(99).errno(), libc::EBADF);
    // Pseudo-random bodies for every type, from a fixed seed.
    let mut seed = 0x9e3779b97f4a7c15u64;
    for i in 0..3000 {
        let mut body = Writer::default();
        for _ in 0..(i % 40) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            body.u8((seed % 7) as u8);
        }
        let kind = [
            kind::TWALK,
            kind::TLOPEN,
            kind::TREAD,
            kind::TWRITE,
            kind::TREADDIR,
            kind::TLCREATE,
            kind::TSETATTR,
            kind::TRENAMEAT,
            kind::TGETATTR,
        ][i % 9];
        let _ = c.call(kind, &body);
    }
    // A size past msize ends the session (the stream closes): the server
    // may hang up before the rest is written, so a write may fail.
    let _ = c.stream.write_all(&(1u32 << 30).to_le_bytes());
    let _ = c.stream.write_all(&[kind::TREAD, 0, 0]);
    let mut buf = [0u8; 1];
    assert_eq!(c.stream.read(&mut buf).unwrap_or(0), 0);
}

trait NoneOrErr {
    fn is_none_or_err(&self) -> bool;
}

impl NoneOrErr for Option<()> {
    fn is_none_or_err(&self) -> bool {
        self.is_none()
    }
}

impl Client {
    /// Whether fid `id` exists: a getattr answers.
    fn fid(&mut self, id: u32) -> Option<()> {
        match self.call(
            kind::TGETATTR,
            &Self::body(|w| {
                w.u32(id).u64(STATS_BASIC);
            }),
        ) {
            Answer::Ok(_) => Some(()),
            Answer::Err(_) => None,
        }
    }
}
