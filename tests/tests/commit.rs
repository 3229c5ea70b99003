//! `hull commit` end to end under QEMU with the real guest kernel: a
//! container's changes leave its VM as a layer tar the agent writes (the
//! host never mounts the writable disk), become a new image, and a
//! container of that image sees them: new and modified files, a file of
//! the image deleted (a whiteout), a directory of the image replaced (an
//! opaque directory), for a running container (paused while its changes
//! are read) and for an exited one whose VM was kept for the export.

use hull_tests::{assert_one_line_error, ok, stderr, Hull};

const IMAGE: &str = "hull-demo/busybox";

/// What each container does to its root: a new file, a changed file of
/// the image, a deleted one (`/etc/hull-doomed2`, from a layer of the
/// image), `/home` (whose `app/` is the image's) replaced by a new
/// directory, a symlink and a hard link.
const CHANGES: &str = "set -e; \
    echo new > /new.txt; \
    echo changed > /etc/hull-release; \
    rm /etc/hull-doomed2; \
    rm -rf /home && mkdir /home && echo fresh > /home/fresh; \
    mkdir -p /data && ln -s /new.txt /data/link && ln /new.txt /data/hard; \
    echo ready";

/// What a container of the committed image prints.
const CHECK: &str = "cat /new.txt /etc/hull-release; \
    test -e /etc/hull-doomed2 && echo DOOMED-STILL-THERE; \
    ls -A /home; readlink /data/link; cat /data/hard; \
    stat -c %h /data/hard; \
    test -e /etc/hull-doomed && echo OLD-WHITEOUT-LOST; \
    echo end";

const EXPECTED: &str = "new\nchanged\nfresh\n/new.txt\nnew\n2\nend\n";

fn image_count(hull: &Hull) -> usize {
    ok(&hull.hull(&["images"])).lines().count()
}

/// Runs the committed image and checks it sees the changes.
fn assert_committed(hull: &Hull, image: &str) {
    let out = hull.hull(&["run", "--rm", image, "sh", "-c", CHECK]);
    assert_eq!(ok(&out), EXPECTED, "stderr: {}", stderr(&out));
}

#[test]
fn a_running_container_is_committed_paused_and_runs_on() {
    let hull = Hull::with_busybox();
    let script = format!("{CHANGES}; exec sleep 600");
    let out = hull.hull(&["run", "-d", "--name", "live", IMAGE, "sh", "-c", &script]);
    ok(&out);
    hull_tests::eventually(120, "the changes are made", || {
        ok(&hull.hull(&["logs", "live"])).contains("ready")
    });
    let out = hull.hull(&[
        "commit",
        "--message",
        "from a running one",
        "--author",
        "Test <t@example.com>",
        "--change",
        "ENV COMMITTED=yes",
        "live",
        "committed/live:v1",
    ]);
    let id = ok(&out);
    assert!(id.trim().starts_with("sha256:"), "{id}");
    // Thawed after the export, still running.
    let state = &hull.inspect("live")["State"];
    assert_eq!(state["Status"], "running", "{state}");
    assert_eq!(state["Paused"], false, "{state}");
    assert_committed(&hull, "committed/live:v1");
    let out = hull.hull(&[
        "run",
        "--rm",
        "committed/live:v1",
        "sh",
        "-c",
        "echo $COMMITTED",
    ]);
    assert_eq!(ok(&out), "yes\n");
    ok(&hull.hull(&["rm", "-f", "live"]));
    hull.assert_no_sandbox_left();
}

/// `SOURCE_DATE_EPOCH=1700000000 hull commit NAME TAG`: the image id.
fn commit_reproducibly(hull: &Hull, name: &str, tag: &str) -> String {
    let out = hull
        .command(&["commit", name, tag])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .expect("spawn hull");
    ok(&out).trim().to_string()
}

#[test]
fn exited_containers_kept_for_export_are_committed_reproducibly_and_removed() {
    let hull = Hull::with_busybox();
    let mut ids = Vec::new();
    for name in ["step1", "step2"] {
        let out = hull.hull(&[
            "run",
            "--keep-vm-for-export",
            "--name",
            name,
            IMAGE,
            "sh",
            "-c",
            CHANGES,
        ]);
        assert_eq!(ok(&out), "ready\n");
        assert_eq!(hull.inspect(name)["State"]["Status"], "exited");
        ids.push(commit_reproducibly(
            &hull,
            name,
            &format!("committed/{name}"),
        ));
    }
    // Same changes, same SOURCE_DATE_EPOCH: the same layer and config.
    assert_eq!(ids[0], ids[1]);
    assert!(ids[0].starts_with("sha256:"), "{ids:?}");
    assert_committed(&hull, "committed/step1");
    // The kept VMs go with their containers.
    ok(&hull.hull(&["rm", "step1", "step2"]));
    hull.assert_no_sandbox_left();
}

#[test]
fn commit_of_an_unknown_or_vm_less_container_is_one_line_and_makes_no_image() {
    let hull = Hull::with_busybox();
    let before = image_count(&hull);
    let out = hull.hull(&["commit", "nosuch", "committed/nothing"]);
    assert_one_line_error(&out, 125, "nosuch");
    // An exited container whose VM is gone: nothing to export from.
    ok(&hull.hull(&["run", "--name", "gone", IMAGE, "true"]));
    let out = hull.hull(&["commit", "gone", "committed/nothing"]);
    assert_one_line_error(&out, 125, "its VM is gone");
    let out = hull.hull(&["commit", "--change", "FROM x", "gone"]);
    assert_one_line_error(&out, 125, "bad --change");
    assert_eq!(image_count(&hull), before);
    ok(&hull.hull(&["rm", "gone"]));
    hull.assert_no_sandbox_left();
}

/// The export is the agent's, so hull-vmm commits as QEMU does: in the
/// nested AMD-V test host, a step kept for export under hull-vmm is
/// committed and its image run.
#[test]
fn under_hull_vmm_in_the_test_host_a_kept_step_is_committed() {
    use hull_tests::testhost::{self, Options};
    let script = r#"
hull load -i $HULL_IMAGES/busybox.tar >/dev/null
export HULL_HYPERVISOR=hull-vmm
hull run --keep-vm-for-export --name step hull-demo/busybox sh -c 'echo new > /new.txt; rm /etc/hull-doomed2; rm -rf /home && mkdir /home && echo fresh > /home/fresh' || echo run-failed=$?
hull commit step committed/step >/dev/null || echo commit-failed=$?
echo "check=$(hull run --rm committed/step sh -c 'cat /new.txt; test -e /etc/hull-doomed2 || echo gone; ls -A /home' | tr '\n' ' ')"
hull rm step
echo "left=$(ls $HULL_RUN_DIR | grep -v -e names -e networks | wc -l)"
"#;
    let run = testhost::run(script, &Options::default());
    run.assert_passed();
    assert_eq!(
        run.value("check"),
        Some("new gone fresh "),
        "{}",
        run.describe()
    );
    assert_eq!(run.value("left"), Some("0"), "{}", run.describe());
}
