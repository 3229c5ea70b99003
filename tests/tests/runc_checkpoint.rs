//! `hull-runc checkpoint` and `restore` end to end in real QEMU guests: a
//! container whose shell counts in memory is saved with
//! `--leave-running` (it runs on) and then for good (it stops); restored
//! twice from one checkpoint, each copy carries on from where the count
//! was, in the same kernel (its boot id), with the file it wrote, the
//! host's clock and randomness of its own; a foreground restore exits
//! with the container's status. Then the errors, and nothing left. The
//! Bundle and Runc helpers are `hull_tests::runc`'s.

use std::process::Stdio;
use std::time::Duration;

use hull_tests::ecosystem::{reap, temp_dir};
use hull_tests::runc::{Bundle, Runc};
use hull_tests::{assert_one_line_error, eventually, ok};

trait Restore {
    fn restore_detached(&self, bundle: &Bundle, image: &std::path::Path, id: &str);
    fn status(&self, id: &str) -> String;
    fn count(&self, id: &str) -> u64;
    fn sh_out(&self, id: &str, script: &str) -> String;
}

impl Restore for Runc {
    /// `restore --detach` with stdio to /dev/null (the supervisor keeps
    /// what it inherits open).
    fn restore_detached(&self, bundle: &Bundle, image: &std::path::Path, id: &str) {
        let status = self
            .command(&["restore", "--detach", "--bundle"])
            .arg(bundle.path())
            .arg("--image-path")
            .arg(image)
            .arg(id)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run restore");
        assert!(status.success(), "restore {id} exited {status}");
    }

    fn status(&self, id: &str) -> String {
        let out = ok(&self.run(&["state", id]));
        let state: serde_json::Value = serde_json::from_str(&out).expect("state JSON");
        state["status"].as_str().unwrap_or_default().to_string()
    }

    /// The count the container's shell has reached.
    fn count(&self, id: &str) -> u64 {
        let out = ok(&self.sh(id, "cat /tmp/n"));
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("a count, not {out:?}"))
    }

    fn sh_out(&self, id: &str, script: &str) -> String {
        ok(&self.sh(id, script)).trim().to_string()
    }
}

/// Counts in the shell's memory, writing each number to a file: a restore
/// that rebooted would start again from 1.
const COUNTER: &str = "n=0; cat /proc/sys/kernel/random/boot_id > /tmp/boot; \
                       while :; do n=$((n+1)); echo $n > /tmp/n; sleep 0.2; done";

fn host_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn a_checkpoint_carries_the_running_container_on_where_it_was() {
    let runc = Runc::new();
    let bundle = Bundle::new(&["sh", "-c", COUNTER]);
    let supervisor = runc.create(&bundle, "c1");
    ok(&runc.run(&["start", "c1"]));
    eventually(60, "the count to reach 3", || {
        runc.sh("c1", "[ $(cat /tmp/n) -ge 3 ]").status.success()
    });
    ok(&runc.sh("c1", "echo written-before > /marker"));
    let boot = runc.sh_out("c1", "cat /tmp/boot");

    // --leave-running: saved, and it runs on.
    let images = temp_dir("checkpoints");
    let first = images.path().join("first");
    ok(&runc.run(&[
        "checkpoint",
        "--leave-running",
        "--image-path",
        first.to_str().unwrap(),
        "c1",
    ]));
    assert_eq!(runc.status("c1"), "running");
    let after_first = runc.count("c1");
    eventually(30, "the count to go on after --leave-running", || {
        runc.count("c1") > after_first
    });

    // Without it: saved, then stopped as runc's checkpoint stops it.
    let image = images.path().join("second");
    let at_checkpoint = runc.count("c1");
    ok(&runc.run(&["checkpoint", "--image-path", image.to_str().unwrap(), "c1"]));
    assert_eq!(runc.status("c1"), "stopped");
    assert_eq!(
        reap(supervisor, 30),
        137,
        "the checkpointed container was killed"
    );
    ok(&runc.run(&["delete", "c1"]));
    for name in [
        "checkpoint.json",
        "state",
        "memory",
        "rootfs.disk",
        "scratch.disk",
    ] {
        assert!(image.join(name).is_file(), "{name} in the checkpoint");
    }
    // Long enough for a clock that was not set to show it.
    std::thread::sleep(Duration::from_secs(3));

    // Restored twice from one checkpoint: each carries on.
    runc.restore_detached(&bundle, &image, "r1");
    assert_eq!(runc.status("r1"), "running");
    let mut foreground = runc
        .command(&["restore", "--bundle"])
        .arg(bundle.path())
        .arg("--image-path")
        .arg(&image)
        .arg("r2")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run restore");
    eventually(120, "r2 to run", || {
        runc.run(&["state", "r2"]).status.success() && runc.status("r2") == "running"
    });
    for id in ["r1", "r2"] {
        let count = runc.count(id);
        assert!(
            count >= at_checkpoint,
            "{id}: {count} < {at_checkpoint}: counted from 1 again"
        );
        eventually(30, "the restored count to go on", || runc.count(id) > count);
        assert_eq!(
            runc.sh_out(id, "cat /proc/sys/kernel/random/boot_id"),
            boot,
            "{id}: the same kernel"
        );
        assert_eq!(runc.sh_out(id, "cat /marker"), "written-before");
        let guest_now: u64 = runc.sh_out(id, "date +%s").parse().unwrap();
        let skew = guest_now.abs_diff(host_now());
        assert!(
            skew <= 2,
            "{id}: the guest's clock is {skew} s off the host's"
        );
    }
    let random = |id| runc.sh_out(id, "head -c 16 /dev/urandom | od -A n -x");
    assert_ne!(random("r1"), random("r2"), "two restores are no twins");

    // The foreground restore ends with the container's status.
    ok(&runc.run(&["kill", "r2", "KILL"]));
    let status = foreground.wait().unwrap();
    assert_eq!(status.code(), Some(137), "foreground restore");
    assert!(
        runc.run(&["state", "r2"]).status.code() != Some(0),
        "a foreground restore deletes its container"
    );

    // Errors: one line each, nothing made.
    let out = runc.run(&[
        "checkpoint",
        "--image-path",
        first.to_str().unwrap(),
        "nope",
    ]);
    assert_one_line_error(&out, 1, "container nope does not exist");
    let missing = images.path().join("missing");
    let out = runc
        .command(&["restore", "--detach", "--bundle"])
        .arg(bundle.path())
        .arg("--image-path")
        .arg(&missing)
        .arg("r3")
        .output()
        .unwrap();
    assert_one_line_error(&out, 1, "not a hull checkpoint");
    assert!(
        !runc.run(&["state", "r3"]).status.success(),
        "no record for a failed restore"
    );
    let out = runc.run(&["checkpoint", "--pre-dump", "r1"]);
    assert_one_line_error(&out, 1, "a VM is saved whole");

    ok(&runc.run(&["delete", "--force", "r1"]));
    drop(images);
    runc.assert_nothing_left();
}
