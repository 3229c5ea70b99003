use std::collections::{HashMap, HashSet};
use std::fs::{self, File, Metadata};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::walk::{self, Options, Overlay};
use super::AGENT_FILES;

/// Overlay markers by path, where a test cannot set `trusted.*` xattrs
/// or make 0:0 devices.
#[derive(Default)]
struct FakeOverlay {
    opaque: HashSet<PathBuf>,
    whiteouts: HashSet<PathBuf>,
    xattrs: HashMap<(PathBuf, String), Vec<u8>>,
}

impl Overlay for FakeOverlay {
    fn is_opaque(&self, path: &Path) -> bool {
        self.opaque.contains(path)
    }
    fn is_whiteout(&self, path: &Path, meta: &Metadata) -> bool {
        self.whiteouts.contains(path) || walk::is_whiteout_device(meta)
    }
    fn xattr(&self, path: &Path, name: &str) -> Option<Vec<u8>> {
        self.xattrs
            .get(&(path.to_path_buf(), name.to_string()))
            .cloned()
    }
}

struct Dirs {
    base: PathBuf,
    upper: PathBuf,
    lower: PathBuf,
}

impl Dirs {
    fn new(name: &str) -> Self {
        let base = std::env::temp_dir().join(format!("hull-export-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let (upper, lower) = (base.join("upper"), base.join("lower"));
        fs::create_dir_all(&upper).unwrap();
        fs::create_dir_all(&lower).unwrap();
        Self { base, upper, lower }
    }

    fn file(&self, rel: &str, data: &[u8]) -> PathBuf {
        let path = self.upper.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, data).unwrap();
        path
    }
}

impl Drop for Dirs {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.base);
    }
}

/// One entry as the `tar` crate reads it back.
#[derive(Debug)]
struct Seen {
    path: String,
    kind: tar::EntryType,
    mode: u32,
    mtime: u64,
    link: Option<String>,
    data: Vec<u8>,
    xattrs: Vec<(String, Vec<u8>)>,
}

fn export(overlay: &FakeOverlay, dirs: &Dirs, epoch: Option<i64>) -> (Vec<Seen>, walk::Written) {
    let opts = Options {
        upper: &dirs.upper,
        lower: Some(&dirs.lower),
        skip: AGENT_FILES,
        source_date_epoch: epoch,
    };
    let mut out = Vec::new();
    let written = walk::write_layer(overlay, &opts, &mut out).unwrap();
    let mut archive = tar::Archive::new(&out[..]);
    let mut seen = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut xattrs = Vec::new();
        if let Some(exts) = entry.pax_extensions().unwrap() {
            for ext in exts {
                let ext = ext.unwrap();
                if let Some(name) = ext.key().unwrap().strip_prefix("SCHILY.xattr.") {
                    xattrs.push((name.to_string(), ext.value_bytes().to_vec()));
                }
            }
        }
        let header = entry.header().clone();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        seen.push(Seen {
            path: String::from_utf8(entry.path_bytes().to_vec()).unwrap(),
            kind: header.entry_type(),
            mode: header.mode().unwrap(),
            mtime: header.mtime().unwrap(),
            link: entry
                .link_name_bytes()
                .map(|l| String::from_utf8(l.to_vec()).unwrap()),
            data,
            xattrs,
        });
    }
    (seen, written)
}

fn paths(seen: &[Seen]) -> Vec<&str> {
    seen.iter().map(|s| s.path.as_str()).collect()
}

#[test]
fn entries_come_depth_first_in_byte_order() {
    let dirs = Dirs::new("order");
    dirs.file("b", b"");
    dirs.file("a.b", b"");
    dirs.file("a/x", b"");
    dirs.file("a/B", b"");
    let (seen, written) = export(&FakeOverlay::default(), &dirs, None);
    assert_eq!(paths(&seen), ["a/", "a/B", "a/x", "a.b", "b"]);
    assert_eq!(written.entries, 5);
}

#[test]
fn whiteouts_and_opaque_directories_become_oci_markers() {
    let dirs = Dirs::new("whiteout");
    let gone = dirs.file("bin/gone", b"");
    let fresh = dirs.file("opt/app/fresh", b"new");
    let mut overlay = FakeOverlay::default();
    overlay.whiteouts.insert(gone);
    overlay.opaque.insert(fresh.parent().unwrap().to_path_buf());
    let (seen, _) = export(&overlay, &dirs, None);
    assert_eq!(
        paths(&seen),
        [
            "bin/",
            "bin/.wh.gone",
            "opt/",
            "opt/app/",
            "opt/app/.wh..wh..opq",
            "opt/app/fresh"
        ]
    );
    let whiteout = &seen[1];
    assert_eq!(whiteout.kind, tar::EntryType::Regular);
    assert!(whiteout.data.is_empty());
    assert_eq!(seen[5].data, b"new");
}

#[test]
fn the_agents_own_files_are_left_out_and_so_is_a_directory_copied_up_for_them() {
    let dirs = Dirs::new("agentfiles");
    for file in AGENT_FILES {
        dirs.file(file, b"written by the agent");
    }
    fs::create_dir(dirs.lower.join("etc")).unwrap();
    let mode = fs::metadata(dirs.upper.join("etc")).unwrap().permissions();
    fs::set_permissions(dirs.lower.join("etc"), mode).unwrap();
    let (seen, _) = export(&FakeOverlay::default(), &dirs, None);
    assert!(seen.is_empty(), "{:?}", paths(&seen));

    // A change of the container's own in /etc keeps /etc, not the rest.
    dirs.file("etc/motd", b"hi");
    let (seen, _) = export(&FakeOverlay::default(), &dirs, None);
    assert_eq!(paths(&seen), ["etc/", "etc/motd"]);
}

#[test]
fn a_changed_etc_is_kept_even_with_only_agent_files_in_it() {
    let dirs = Dirs::new("etcmode");
    dirs.file("etc/hosts", b"");
    fs::create_dir(dirs.lower.join("etc")).unwrap();
    fs::set_permissions(dirs.upper.join("etc"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(dirs.lower.join("etc"), fs::Permissions::from_mode(0o755)).unwrap();
    let (seen, _) = export(&FakeOverlay::default(), &dirs, None);
    assert_eq!(paths(&seen), ["etc/"]);
    assert_eq!(seen[0].mode, 0o700);
}

#[test]
fn hard_links_symlinks_and_fifos_are_carried() {
    let dirs = Dirs::new("links");
    let one = dirs.file("d/one", b"shared");
    fs::hard_link(&one, dirs.upper.join("d/two")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dirs.upper.join("d/sym")).unwrap();
    let fifo = std::ffi::CString::new(
        dirs.upper
            .join("d/pipe")
            .into_os_string()
            .into_encoded_bytes(),
    )
    .unwrap();
    // SAFETY: a NUL-terminated path that lives across the call.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let (seen, written) = export(&FakeOverlay::default(), &dirs, None);
    assert_eq!(paths(&seen), ["d/", "d/one", "d/pipe", "d/sym", "d/two"]);
    assert_eq!(seen[1].data, b"shared");
    assert_eq!(seen[2].kind, tar::EntryType::Fifo);
    assert_eq!(seen[2].mode, 0o600);
    assert_eq!(seen[3].kind, tar::EntryType::Symlink);
    assert_eq!(seen[3].link.as_deref(), Some("/etc/passwd"));
    assert_eq!(seen[4].kind, tar::EntryType::Link);
    assert_eq!(seen[4].link.as_deref(), Some("d/one"));
    assert_eq!(written.bytes, 6, "a hard link's data is sent once");
}

#[test]
fn mtimes_are_clamped_to_source_date_epoch_and_capabilities_carried() {
    let dirs = Dirs::new("clamp");
    let late = dirs.file("late", b"x");
    let early = dirs.file("early", b"y");
    let at = |secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    File::options()
        .write(true)
        .open(&late)
        .unwrap()
        .set_modified(at(2_000_000_000))
        .unwrap();
    File::options()
        .write(true)
        .open(&early)
        .unwrap()
        .set_modified(at(1_000_000_000))
        .unwrap();
    let mut overlay = FakeOverlay::default();
    overlay.xattrs.insert(
        (late.clone(), "security.capability".into()),
        vec![1, 0, 0, 2],
    );
    overlay
        .xattrs
        .insert((late.clone(), "trusted.overlay.origin".into()), vec![9]);
    let (seen, _) = export(&overlay, &dirs, Some(1_700_000_000));
    assert_eq!(paths(&seen), ["early", "late"]);
    assert_eq!(seen[0].mtime, 1_000_000_000);
    assert_eq!(seen[1].mtime, 1_700_000_000);
    assert_eq!(
        seen[1].xattrs,
        [("security.capability".to_string(), vec![1, 0, 0, 2])]
    );
    let (seen, _) = export(&overlay, &dirs, None);
    assert_eq!(seen[1].mtime, 2_000_000_000);
}

#[test]
fn long_names_and_links_go_in_pax_headers() {
    let dirs = Dirs::new("long");
    let deep = format!("{}/{}", "d".repeat(120), "f".repeat(150));
    dirs.file(&deep, b"deep");
    let target = "t".repeat(200);
    std::os::unix::fs::symlink(&target, dirs.upper.join("s")).unwrap();
    let (seen, _) = export(&FakeOverlay::default(), &dirs, None);
    assert_eq!(seen[0].path, format!("{}/", "d".repeat(120)));
    assert_eq!(seen[1].path, deep);
    assert_eq!(seen[1].data, b"deep");
    assert_eq!(seen[2].link.as_deref(), Some(target.as_str()));
}

#[test]
fn a_real_whiteout_device_is_recognised() {
    let dirs = Dirs::new("chardev");
    fs::create_dir(dirs.upper.join("x")).unwrap();
    let node = std::ffi::CString::new(
        dirs.upper
            .join("x/gone")
            .into_os_string()
            .into_encoded_bytes(),
    )
    .unwrap();
    // SAFETY: a NUL-terminated path that lives across the call.
    let made = unsafe { libc::mknod(node.as_ptr(), libc::S_IFCHR | 0o600, 0) };
    assert_eq!(
        made,
        0,
        "mknod needs CAP_MKNOD: {}",
        std::io::Error::last_os_error()
    );
    let (seen, _) = export(&FakeOverlay::default(), &dirs, None);
    assert_eq!(paths(&seen), ["x/", "x/.wh.gone"]);
}
