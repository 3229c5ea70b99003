use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;
use crate::hypervisor::{HypervisorError, SnapshotMethod, VmLaunch};

/// A backend that only makes command lines.
struct FakeHypervisor {
    program: PathBuf,
    snapshots: Option<SnapshotMethod>,
}

impl Hypervisor for FakeHypervisor {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn accelerated(&self) -> bool {
        false
    }
    fn launch(&self, spec: &VmSpec) -> Result<VmLaunch, HypervisorError> {
        let mut command = Command::new(&self.program);
        command.arg(format!("vcpus={} memory={}", spec.vcpus, spec.memory_mib));
        command.arg(&spec.sandbox_dir);
        Ok(VmLaunch {
            command,
            agent_socket: spec.sandbox_dir.join("agent.sock"),
            console_log: spec.sandbox_dir.join("console.log"),
            jail: None,
        })
    }
    fn program(&self) -> &Path {
        &self.program
    }
    fn snapshots(&self) -> Option<SnapshotMethod> {
        self.snapshots
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    hypervisor: FakeHypervisor,
    assets: GuestAssets,
    templates: Templates,
}

const SHAPE: Shape = Shape {
    vcpus: 1,
    memory_mib: 2,
    nic: true,
};

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        fs::write(&path, text).unwrap();
        path
    };
    let hypervisor = FakeHypervisor {
        program: file("qemu", "a hypervisor"),
        snapshots: Some(SnapshotMethod::QemuMigration),
    };
    let assets = GuestAssets {
        kernel: file("vmlinux", "a kernel"),
        initramfs: file("initramfs", "an agent"),
    };
    let templates = Templates::new(dir.path().join("templates"));
    Fixture {
        dir,
        hypervisor,
        assets,
        templates,
    }
}

impl Fixture {
    /// Lays a template out as `make` does, without a VM.
    fn make(&self, shape: Shape) -> String {
        let inputs = key_inputs(&self.hypervisor, &self.assets, shape).unwrap();
        let key = digest_of(&inputs);
        let dir = self.templates.root().join(&key);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(STATE_FILE), b"device state").unwrap();
        let memory = dir.join(MEMORY_FILE);
        fs::File::create(&memory)
            .unwrap()
            .set_len(inputs.method.memory_file_len(shape.memory_mib))
            .unwrap();
        let (state_len, state_sha256) = sha256_of(&dir.join(STATE_FILE)).unwrap();
        let meta = Meta {
            key: key.clone(),
            inputs,
            created: 1,
            state_sha256,
            state_len,
            memory: FileIdentity::of(&memory).unwrap(),
        };
        fs::write(dir.join(META_FILE), serde_json::to_vec(&meta).unwrap()).unwrap();
        key
    }

    fn key(&self, shape: Shape) -> String {
        key(&self.hypervisor, &self.assets, shape).unwrap()
    }
}

fn broken(found: Found) -> String {
    match found {
        Found::Broken(why) => why,
        other => panic!("not broken: {other:?}"),
    }
}

#[test]
fn a_key_names_the_shape_the_files_and_the_command_line() {
    let f = fixture();
    let base = f.key(SHAPE);
    assert_eq!(base.len(), 32);
    assert_eq!(f.key(SHAPE), base, "the same inputs, another key");
    for other in [
        Shape { vcpus: 2, ..SHAPE },
        Shape {
            memory_mib: 4,
            ..SHAPE
        },
        Shape {
            nic: false,
            ..SHAPE
        },
    ] {
        assert_ne!(f.key(other), base, "{other:?}");
    }
    // A rebuilt kernel (a new file in its place) is another template.
    let kernel = f.assets.kernel.clone();
    fs::remove_file(&kernel).unwrap();
    fs::write(&kernel, "another kernel").unwrap();
    assert_ne!(f.key(SHAPE), base);
}

#[test]
fn a_backend_that_cannot_snapshot_has_no_key() {
    let mut f = fixture();
    f.hypervisor.snapshots = None;
    let err = key(&f.hypervisor, &f.assets, SHAPE).unwrap_err();
    assert!(matches!(err, KeyError::NoSnapshots("fake")), "{err}");
}

#[test]
fn a_missing_asset_is_named() {
    let f = fixture();
    fs::remove_file(&f.assets.initramfs).unwrap();
    let err = key(&f.hypervisor, &f.assets, SHAPE).unwrap_err();
    assert!(err.to_string().contains("initramfs"), "{err}");
}

#[test]
fn a_sound_template_is_found() {
    let f = fixture();
    assert!(matches!(f.templates.find(&f.key(SHAPE)), Found::Missing));
    let key = f.make(SHAPE);
    match f.templates.find(&key) {
        Found::Ready(t) => {
            assert_eq!(t.shape, SHAPE);
            assert_eq!(t.memory(), f.templates.root().join(&key).join("memory"));
            assert!(!t.stale);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_hull_vmm_template_has_its_own_key_and_memory_layout() {
    let mut f = fixture();
    let qemu_key = f.key(SHAPE);
    f.hypervisor.snapshots = Some(SnapshotMethod::HullVmm);
    assert_ne!(f.key(SHAPE), qemu_key, "the method is part of the key");
    let key = f.make(SHAPE);
    let memory = f.templates.root().join(&key).join(MEMORY_FILE);
    // hull-vmm's memory file: a header page, then RAM.
    assert_eq!(
        fs::metadata(&memory).unwrap().len(),
        4096 + (u64::from(SHAPE.memory_mib) << 20)
    );
    match f.templates.find(&key) {
        Found::Ready(t) => {
            assert_eq!(t.method, SnapshotMethod::HullVmm);
            assert_eq!(t.snapshot(), f.templates.root().join(&key));
        }
        other => panic!("{other:?}"),
    }
    // RAM without the header is a QEMU-sized file: not this template's.
    fs::OpenOptions::new()
        .write(true)
        .open(&memory)
        .unwrap()
        .set_len(u64::from(SHAPE.memory_mib) << 20)
        .unwrap();
    assert!(broken(f.templates.find(&key)).contains("bytes, not"));
}

#[test]
fn a_corrupt_state_is_found_removed() {
    let f = fixture();
    let key = f.make(SHAPE);
    let dir = f.templates.root().join(&key);
    fs::write(dir.join(STATE_FILE), b"device stat!").unwrap();
    assert!(broken(f.templates.find(&key)).contains("checksum"));
    assert!(!dir.exists(), "a broken template stays");
}

#[test]
fn a_truncated_state_or_memory_file_is_broken() {
    let f = fixture();
    let key = f.make(SHAPE);
    let dir = f.templates.root().join(&key);
    fs::write(dir.join(STATE_FILE), b"device").unwrap();
    assert!(broken(f.templates.find(&key)).contains("state"));

    let key = f.make(SHAPE);
    let memory = f.templates.root().join(&key).join(MEMORY_FILE);
    fs::OpenOptions::new()
        .write(true)
        .open(&memory)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    assert!(broken(f.templates.find(&key)).contains("bytes, not"));
}

#[test]
fn a_memory_file_written_since_is_broken() {
    let f = fixture();
    let key = f.make(SHAPE);
    let memory = f.templates.root().join(&key).join(MEMORY_FILE);
    std::thread::sleep(std::time::Duration::from_millis(20));
    use std::os::unix::fs::FileExt;
    fs::OpenOptions::new()
        .write(true)
        .open(&memory)
        .unwrap()
        .write_all_at(b"x", 4096)
        .unwrap();
    assert!(broken(f.templates.find(&key)).contains("changed"));
}

#[test]
fn a_template_under_another_key_is_broken() {
    let f = fixture();
    let key = f.make(SHAPE);
    let elsewhere = f.templates.root().join("0123456789abcdef0123456789abcdef");
    fs::rename(f.templates.root().join(&key), &elsewhere).unwrap();
    assert!(broken(f.templates.find("0123456789abcdef0123456789abcdef")).contains("key"));
    let key = f.make(SHAPE);
    let meta_path = f.templates.root().join(&key).join(META_FILE);
    let text = fs::read_to_string(&meta_path).unwrap();
    fs::write(&meta_path, text.replace("\"vcpus\":1", "\"vcpus\":3")).unwrap();
    assert!(broken(f.templates.find(&key)).contains("key"));
    let key = f.make(SHAPE);
    fs::write(&meta_path, "{not json").unwrap();
    assert!(broken(f.templates.find(&key)).contains("template.json"));
}

#[test]
fn remove_takes_a_unique_prefix() {
    let f = fixture();
    let key = f.make(SHAPE);
    assert!(matches!(
        f.templates.remove("ab"),
        Err(RemoveError::BadPrefix(_))
    ));
    assert!(matches!(
        f.templates.remove("zzzz"),
        Err(RemoveError::BadPrefix(_))
    ));
    let absent = if key.starts_with("0000") {
        "ffff"
    } else {
        "0000"
    };
    assert!(matches!(
        f.templates.remove(absent),
        Err(RemoveError::NoSuchTemplate(_))
    ));
    assert_eq!(f.templates.remove(&key[..6]).unwrap(), key);
    assert!(!f.templates.root().join(&key).exists());
}

#[test]
fn prune_removes_the_broken_the_stale_and_leftovers_and_all_with_all() {
    let f = fixture();
    let sound = f.make(SHAPE);
    let other = f.make(Shape { vcpus: 2, ..SHAPE });
    let broken_key = f.make(Shape {
        nic: false,
        ..SHAPE
    });
    fs::write(f.templates.root().join(&broken_key).join(STATE_FILE), b"?").unwrap();
    // A make whose process is gone left these; one running now did not.
    let dead = ".make-abc-4294967295";
    fs::create_dir(f.templates.root().join(dead)).unwrap();
    fs::write(f.templates.root().join(".lock-abc"), b"").unwrap();
    let running = format!(".make-def-{}", std::process::id());
    fs::create_dir(f.templates.root().join(&running)).unwrap();
    let held = fs::File::create(f.templates.root().join(".lock-def")).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&held);
    // SAFETY: flock on a descriptor this test owns.
    let locked = unsafe { libc::flock(fd, libc::LOCK_EX) };
    assert_eq!(locked, 0);
    let mut expected = vec![broken_key, dead.to_string(), ".lock-abc".to_string()];
    expected.sort();
    assert_eq!(f.templates.prune(false).unwrap(), expected);
    assert_eq!(f.templates.list().len(), 2);
    assert!(f.templates.root().join(&running).exists());
    assert!(f.templates.root().join(".lock-def").exists());
    fs::remove_dir(f.templates.root().join(&running)).unwrap();
    drop(held);
    fs::remove_file(f.templates.root().join(".lock-def")).unwrap();

    // The initramfs is rebuilt: both templates are stale now.
    fs::remove_file(&f.assets.initramfs).unwrap();
    fs::write(&f.assets.initramfs, "a new agent").unwrap();
    let listed = f.templates.list();
    assert!(listed.iter().all(|t| t.as_ref().is_ok_and(|t| t.stale)));
    let mut stale = vec![sound, other];
    stale.sort();
    assert_eq!(f.templates.prune(false).unwrap(), stale);

    f.make(SHAPE);
    assert_eq!(f.templates.prune(true).unwrap().len(), 1);
    assert!(f.templates.list().is_empty());
    drop(f.dir);
}

#[test]
fn a_failed_template_backs_off_until_pruned() {
    let f = fixture();
    let key = "0123456789abcdef0123456789abcdef";
    assert!(!f.templates.recently_failed(key));
    f.templates.mark_failed(key);
    assert!(f.templates.recently_failed(key));
    assert!(!f
        .templates
        .recently_failed("fedcba9876543210fedcba9876543210"));
    // Not a template: not listed; prune clears it.
    assert!(f.templates.list().is_empty());
    assert_eq!(
        f.templates.prune(false).unwrap(),
        vec![format!(".failed-{key}")]
    );
    assert!(!f.templates.recently_failed(key));
    drop(f.dir);
}
