//! VM templates on QEMU under TCG: the first VM of a shape is booted and
//! saved, later ones are restored clones of it (`-incoming`, RAM mapped
//! copy-on-write from the template's file); clones are not twins; a broken
//! template is removed with one warning and a sound one made in its place. Each test has templates of
//! its own (the rest of the suite shares one set).

use std::path::PathBuf;
use std::process::Command;

use hull_tests::{assert_one_line_error, ok, processes_mentioning, stdout, Hull};

const IMAGE: &str = "hull-demo/busybox";

struct Installation {
    hull: Hull,
    templates: PathBuf,
}

impl Installation {
    fn new() -> Self {
        let hull = Hull::with_busybox();
        let templates = hull.root.path().join("templates");
        Self { hull, templates }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = self.hull.command(args);
        command.env("HULL_TEMPLATES", &self.templates);
        command
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        self.command(args).output().expect("spawn hull")
    }

    /// The host's template directories (none half made; not the
    /// scopes' sets, `@NAME`).
    fn templates(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&self.templates)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        dirs.retain(|d| !d.file_name().unwrap().to_string_lossy().starts_with('@'));
        dirs.sort();
        let scratch: Vec<_> = dirs
            .iter()
            .filter(|d| d.file_name().unwrap().to_string_lossy().starts_with('.'))
            .collect();
        assert!(
            scratch.is_empty(),
            "half-made templates or locks: {scratch:?}"
        );
        dirs
    }

    /// The one template, which must exist.
    fn the_template(&self) -> PathBuf {
        let dirs = self.templates();
        assert_eq!(dirs.len(), 1, "templates: {dirs:?}");
        dirs[0].clone()
    }

    /// The QEMU command line of the running container `name`.
    fn qemu_of(&self, name: &str) -> String {
        let inspect = ok(&self.run(&["inspect", name]));
        let inspect: serde_json::Value = serde_json::from_str(&inspect).unwrap();
        let pid = &inspect[0]["Hull"]["HypervisorPid"];
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .unwrap_or_else(|e| panic!("VM pid {pid:?}: {e}"));
        String::from_utf8_lossy(&cmdline).replace('\0', " ")
    }
}

#[test]
fn the_first_run_makes_a_template_and_later_runs_are_clones_of_it() {
    let it = Installation::new();
    assert!(it.templates().is_empty());
    let out = it.run(&["run", "--rm", IMAGE, "echo", "first"]);
    assert_eq!(ok(&out), "first\n");
    let template = it.the_template();
    for file in ["template.json", "state", "memory"] {
        assert!(
            template.join(file).is_file(),
            "{file} missing in {template:?}"
        );
    }

    ok(&it.run(&["run", "-d", "--name", "c1", IMAGE, "sleep", "60"]));
    let qemu = it.qemu_of("c1");
    assert!(qemu.contains("-incoming defer"), "not a clone: {qemu}");
    let memory = template.join("memory");
    assert!(
        qemu.contains(&format!("mem-path={},share=off", memory.display())),
        "RAM not mapped privately from the template: {qemu}"
    );
    // The clone's container has its own disks (hot-added) and runs.
    let out = it.run(&[
        "exec",
        "c1",
        "sh",
        "-c",
        "echo in-clone > /tmp/f && cat /tmp/f",
    ]);
    assert_eq!(ok(&out), "in-clone\n");
    ok(&it.run(&["rm", "-f", "c1"]));
    assert_eq!(it.the_template(), template, "a second template was made");

    // `--no-template` and HULL_TEMPLATE=off boot cold.
    ok(&it.run(&[
        "run",
        "-d",
        "--no-template",
        "--name",
        "cold",
        IMAGE,
        "sleep",
        "60",
    ]));
    assert!(!it.qemu_of("cold").contains("-incoming"));
    ok(&it.run(&["rm", "-f", "cold"]));
    let mut off = it.command(&["run", "-d", "--name", "off", IMAGE, "sleep", "60"]);
    off.env("HULL_TEMPLATE", "off");
    ok(&off.output().unwrap());
    assert!(!it.qemu_of("off").contains("-incoming"));
    ok(&it.run(&["rm", "-f", "off"]));
    it.hull.assert_no_sandbox_left();
}

#[test]
fn two_clones_of_one_template_are_not_twins() {
    let it = Installation::new();
    ok(&it.run(&["run", "--rm", IMAGE, "true"]));
    it.the_template();
    let probe = "cat /proc/sys/kernel/random/uuid; od -A n -x -N 16 /dev/urandom; date +%s";
    let sample = || {
        let out = ok(&it.run(&["run", "--rm", IMAGE, "sh", "-c", probe]));
        let lines: Vec<String> = out.lines().map(str::to_string).collect();
        assert_eq!(lines.len(), 3, "{out}");
        lines
    };
    let (a, b) = (sample(), sample());
    assert_ne!(a[0], b[0], "two clones made the same uuid");
    assert_ne!(a[1], b[1], "two clones read the same /dev/urandom");
    let host = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for clone in [&a, &b] {
        let guest: i64 = clone[2].trim().parse().unwrap();
        assert!(
            (host - guest).abs() <= 10,
            "the clone's clock is {guest}, the host's {host}"
        );
    }
}

/// One way to break a template directory.
type Breakage = fn(&std::path::Path);

#[test]
fn a_broken_template_is_removed_and_the_run_boots_cold() {
    let it = Installation::new();
    ok(&it.run(&["run", "--rm", IMAGE, "true"]));
    let template = it.the_template();
    let breakages: [(&str, Breakage); 3] = [
        ("corrupt state", |t| {
            let state = t.join("state");
            let mut bytes = std::fs::read(&state).unwrap();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0xff;
            std::fs::write(&state, bytes).unwrap();
        }),
        ("truncated memory", |t| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(t.join("memory"))
                .unwrap()
                .set_len(4096)
                .unwrap();
        }),
        ("another key", |t| {
            let meta = t.join("template.json");
            let text = std::fs::read_to_string(&meta).unwrap();
            std::fs::write(
                &meta,
                text.replacen("\"memory_mib\": ", "\"memory_mib\": 1", 1),
            )
            .unwrap();
        }),
    ];
    for (what, breakage) in breakages {
        breakage(&template);
        let out = it.run(&["run", "--rm", IMAGE, "echo", "still-runs"]);
        assert_eq!(ok(&out), "still-runs\n", "after {what}");
        // One warning says so.
        let stderr = String::from_utf8_lossy(&out.stderr);
        let warnings: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("hull: warning: VM template"))
            .collect();
        assert_eq!(warnings.len(), 1, "after {what}: {stderr}");
        assert!(warnings[0].contains("broken"), "after {what}: {stderr}");
        // The broken one went; the run made a sound one in its place.
        let remade = it.the_template();
        let listed = ok(&it.run(&["template", "ls"]));
        assert!(!listed.contains("broken"), "after {what}: {listed}");
        assert_eq!(listed.lines().count(), 2, "after {what}: {listed}");
        assert_eq!(remade, template);
    }
    it.hull.assert_no_sandbox_left();
}

#[test]
fn template_ls_rm_and_prune() {
    let it = Installation::new();
    ok(&it.run(&["run", "--rm", IMAGE, "true"]));
    ok(&it.run(&["run", "--rm", "--cpus", "2", IMAGE, "true"]));
    let dirs = it.templates();
    assert_eq!(dirs.len(), 2, "{dirs:?}");
    let listed = ok(&it.run(&["template", "ls"]));
    assert!(listed.starts_with("KEY"), "{listed}");
    assert_eq!(listed.lines().count(), 3, "{listed}");
    assert!(listed.contains("qemu"), "{listed}");

    let key = dirs[0].file_name().unwrap().to_string_lossy().into_owned();
    assert_one_line_error(&it.run(&["template", "rm", "zz"]), 1, "not a template key");
    let absent = if key.starts_with("0000") {
        "ffff"
    } else {
        "0000"
    };
    assert_one_line_error(&it.run(&["template", "rm", absent]), 1, "no such template");
    assert_eq!(ok(&it.run(&["template", "rm", &key[..8]])).trim(), key);
    assert_eq!(it.templates().len(), 1);

    // Nothing stale: prune keeps it; --all removes it.
    assert_eq!(ok(&it.run(&["template", "prune"])), "");
    assert_eq!(it.templates().len(), 1);
    assert_eq!(
        ok(&it.run(&["template", "prune", "--all"])).lines().count(),
        1
    );
    assert!(it.templates().is_empty());
    let qemus = processes_mentioning(it.templates.to_str().unwrap());
    assert!(qemus.is_empty(), "template VMs left: {qemus:?}");
    assert_eq!(stdout(&it.run(&["template", "ls"])).lines().count(), 1);
}

#[test]
fn a_tenant_scope_has_templates_of_its_own_and_none_boots_cold() {
    let it = Installation::new();
    ok(&it.run(&["run", "--rm", IMAGE, "true"]));
    let host = it.the_template();
    let out = it.run(&[
        "run",
        "--rm",
        "--template-scope",
        "tenant-a",
        IMAGE,
        "echo",
        "a",
    ]);
    assert_eq!(ok(&out), "a\n");
    // The tenant's VM did not clone the host's template: it made its own.
    let scoped = it.templates.join("@tenant-a");
    let theirs: Vec<_> = std::fs::read_dir(&scoped)
        .unwrap_or_else(|e| panic!("{scoped:?}: {e}"))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(theirs.len(), 1, "{theirs:?}");
    assert_eq!(it.the_template(), host, "the host's set changed");
    let listed = ok(&it.run(&["template", "ls"]));
    assert_eq!(listed.lines().count(), 3, "{listed}");
    assert!(listed.lines().any(|l| l.contains(" tenant-a ")), "{listed}");

    ok(&it.run(&[
        "run",
        "-d",
        "--name",
        "n",
        "--template-scope",
        "none",
        IMAGE,
        "sleep",
        "60",
    ]));
    assert!(!it.qemu_of("n").contains("-incoming"));
    ok(&it.run(&["rm", "-f", "n"]));
    assert_one_line_error(
        &it.run(&["run", "--rm", "--template-scope", "../x", IMAGE, "true"]),
        125,
        "template scope",
    );
    assert_eq!(
        ok(&it.run(&["template", "prune", "--all"])).lines().count(),
        2
    );
    assert!(!scoped.exists(), "the empty scope's directory is left");
    it.hull.assert_no_sandbox_left();
}

#[test]
fn memory_a_clone_frees_never_changes_the_template() {
    use std::os::unix::fs::MetadataExt;
    let it = Installation::new();
    ok(&it.run(&["run", "--rm", IMAGE, "true"]));
    let memory = it.the_template().join("memory");
    let before = std::fs::metadata(&memory).unwrap();
    ok(&it.run(&["run", "-d", "--name", "c", IMAGE, "sleep", "60"]));
    // The guest frees 32 MiB; it would report the blocks after 2 s.
    ok(&it.run(&[
        "exec",
        "c",
        "sh",
        "-c",
        "dd if=/dev/zero of=/dev/shm/f bs=1M count=32 2>/dev/null && rm /dev/shm/f",
    ]));
    std::thread::sleep(std::time::Duration::from_secs(5));
    let after = std::fs::metadata(&memory).unwrap();
    assert_eq!(
        (after.blocks(), after.mtime(), after.mtime_nsec()),
        (before.blocks(), before.mtime(), before.mtime_nsec()),
        "a clone changed the template's RAM file"
    );
    ok(&it.run(&["rm", "-f", "c"]));
    let listed = ok(&it.run(&["template", "ls"]));
    assert!(!listed.contains("broken"), "{listed}");
    it.hull.assert_no_sandbox_left();
}
