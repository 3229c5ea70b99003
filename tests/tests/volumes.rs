//! Host data in containers end to end, under QEMU with the real guest
//! kernel: bind mounts (`-v`, `--mount`), named and anonymous volumes,
//! tmpfs, served by the container's share server over 9P. Each test is a
//! few VMs (clones of the suite's templates): one script per VM checks
//! many things at once.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use hull_tests::{assert_one_line_error, ok, processes_mentioning, stderr, stdout, Hull};

const IMAGE: &str = "hull-demo/busybox";

fn volume_names(hull: &Hull) -> Vec<String> {
    let mut names: Vec<String> = ok(&hull.hull(&["volume", "ls", "-q"]))
        .lines()
        .map(String::from)
        .collect();
    names.sort();
    names
}

/// No share server, VM or record outlived the test's containers.
fn assert_clean(hull: &Hull) {
    hull.assert_no_sandbox_left();
    let servers: Vec<_> = processes_mentioning("__share")
        .into_iter()
        .filter(|p| p.contains(hull.root.path().to_str().unwrap()))
        .collect();
    assert!(servers.is_empty(), "share servers left: {servers:?}");
}

#[test]
fn a_bind_mount_carries_data_and_ownership_both_ways_and_ro_holds() {
    let hull = Hull::with_busybox();
    let host = tempfile::tempdir().unwrap();
    let data = host.path().join("data");
    fs::create_dir(&data).unwrap();
    fs::write(data.join("in.txt"), "from the host\n").unwrap();
    std::os::unix::fs::chown(data.join("in.txt"), Some(1234), Some(5678)).unwrap();
    let ro = host.path().join("ro");
    fs::create_dir(&ro).unwrap();
    fs::write(ro.join("keep.txt"), "read only\n").unwrap();
    let file = host.path().join("single.conf");
    fs::write(&file, "one file\n").unwrap();
    let script = "cat /data/in.txt; stat -c %u:%g /data/in.txt; \
         echo from the guest > /data/out.txt && chown 4321:8765 /data/out.txt; \
         mkdir -p /data/sub/deeper && mv /data/out.txt /data/sub/moved.txt; \
         ln /data/sub/moved.txt /data/hard.txt && ln -s sub/moved.txt /data/soft; \
         cat /data/soft; cat /conf/single.conf; cat /ro/keep.txt; \
         if touch /ro/new 2>/dev/null; then echo RO-BROKEN; fi; \
         if mount -o remount,rw /ro 2>/dev/null && touch /ro/new2 2>/dev/null; then echo RO-BROKEN-ROOT; fi; \
         echo done";
    let out = hull.hull(&[
        "run",
        "--rm",
        "--privileged",
        "-v",
        &format!("{}:/data", data.display()),
        "--mount",
        &format!("type=bind,src={},dst=/ro,readonly", ro.display()),
        "-v",
        &format!("{}:/conf/single.conf:ro", file.display()),
        IMAGE,
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(
        ok(&out),
        "from the host\n1234:5678\nfrom the guest\none file\nread only\ndone\n",
        "stderr: {}",
        stderr(&out)
    );
    let moved = data.join("sub/moved.txt");
    assert_eq!(fs::read_to_string(&moved).unwrap(), "from the guest\n");
    let meta = fs::metadata(&moved).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (4321, 8765));
    assert_eq!(meta.nlink(), 2, "the hard link is a real one");
    assert_eq!(
        fs::read_link(data.join("soft")).unwrap(),
        Path::new("sub/moved.txt")
    );
    assert!(!ro.join("new").exists() && !ro.join("new2").exists());
    assert_clean(&hull);
}

#[test]
fn a_user_namespaced_container_sees_host_ids_as_its_own() {
    // Container ids 0..65535 are guest ids 100000..165535: the share
    // server maps host ids through the same map, so a host file of 1000 is
    // 1000 in the container, and what its root creates is root's on the host.
    let hull = Hull::with_busybox();
    let host = tempfile::tempdir().unwrap();
    fs::write(host.path().join("owned"), "mine\n").unwrap();
    std::os::unix::fs::chown(host.path().join("owned"), Some(1000), Some(1000)).unwrap();
    let out = hull.hull(&[
        "run",
        "--rm",
        "--uidmap",
        "0:100000:65536",
        "-v",
        &format!("{}:/d", host.path().display()),
        IMAGE,
        "sh",
        "-c",
        "stat -c %u:%g /d/owned; echo new > /d/made; mkdir /d/dir; \
         chown 7:8 /d/dir; stat -c %u:%g /d/made",
    ]);
    assert_eq!(ok(&out), "1000:1000\n0:0\n", "stderr: {}", stderr(&out));
    let made = fs::metadata(host.path().join("made")).unwrap();
    assert_eq!((made.uid(), made.gid()), (0, 0));
    let dir = fs::metadata(host.path().join("dir")).unwrap();
    assert_eq!((dir.uid(), dir.gid()), (7, 8));
    assert_clean(&hull);
}

#[test]
fn nothing_outside_the_shared_directory_is_reachable() {
    let hull = Hull::with_busybox();
    let host = tempfile::tempdir().unwrap();
    fs::write(host.path().join("secret"), "HOST-SECRET\n").unwrap();
    let shared = host.path().join("shared");
    fs::create_dir(&shared).unwrap();
    // Planted on the host: links that point out of the share.
    std::os::unix::fs::symlink("../secret", shared.join("up")).unwrap();
    std::os::unix::fs::symlink(host.path().join("secret"), shared.join("abs")).unwrap();
    let script = "cat /s/up /s/abs /s/../secret /s/../../secret 2>/dev/null; \
         ls -a /s/.. | grep -q secret && echo LISTED; \
         ln -s /etc/passwd /s/made 2>/dev/null; \
         ln /etc/passwd /s/hard 2>/dev/null && echo HARDLINKED; \
         mv /s/up /s/../moved 2>/dev/null; \
         cd /s && cd .. && cd .. && cat secret 2>/dev/null; \
         echo done";
    let out = hull.hull(&[
        "run",
        "--rm",
        "--privileged",
        "-v",
        &format!("{}:/s", shared.display()),
        IMAGE,
        "sh",
        "-c",
        script,
    ]);
    let text = ok(&out);
    assert!(!text.contains("HOST-SECRET"), "escaped: {text}");
    assert!(
        !text.contains("LISTED") && !text.contains("HARDLINKED"),
        "{text}"
    );
    assert!(text.ends_with("done\n"), "{text} / {}", stderr(&out));
    // The guest's symlink is stored as data; nothing outside changed.
    assert_eq!(
        fs::read_link(shared.join("made")).unwrap(),
        Path::new("/etc/passwd")
    );
    let mut outside: Vec<_> = fs::read_dir(host.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    outside.sort();
    assert_eq!(outside, ["secret", "shared"]);
    assert_eq!(
        fs::read_to_string(host.path().join("secret")).unwrap(),
        "HOST-SECRET\n"
    );
    assert_clean(&hull);
}

#[test]
fn a_named_volume_outlives_its_containers_and_is_shared_between_them() {
    let hull = Hull::with_busybox();
    assert_eq!(
        ok(&hull.hull(&["volume", "create", "--label", "app=db", "db"])),
        "db\n"
    );
    // A database-like workload: many small files, each written, synced
    // and renamed into place.
    let workload = "cd /var/db && for i in $(seq 1 300); do \
         echo row-$i > .tmp-$i && sync && mv .tmp-$i row-$i; done; ls | wc -l";
    let out = hull.hull(&[
        "run",
        "--name",
        "writer",
        "-v",
        "db:/var/db",
        IMAGE,
        "sh",
        "-c",
        workload,
    ]);
    assert_eq!(ok(&out).trim(), "300");
    // In use by a container record: not removable.
    let refused = hull.hull(&["volume", "rm", "db"]);
    assert_one_line_error(&refused, 1, "in use");
    ok(&hull.hull(&["rm", "writer"]));
    // Two containers see each other's writes.
    ok(&hull.hull(&[
        "run", "-d", "--name", "reader", "-v", "db:/v", IMAGE, "sleep", "60",
    ]));
    let out = hull.hull(&[
        "run",
        "--rm",
        "-v",
        "db:/var/db",
        IMAGE,
        "sh",
        "-c",
        "cat /var/db/row-300; echo fresh > /var/db/new",
    ]);
    assert_eq!(ok(&out), "row-300\n");
    assert_eq!(
        ok(&hull.hull(&["exec", "reader", "cat", "/v/new"])),
        "fresh\n"
    );
    ok(&hull.hull(&["rm", "-f", "reader"]));
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(&hull.hull(&["volume", "inspect", "db"]))).unwrap();
    assert_eq!(inspect[0]["Name"], "db");
    assert_eq!(inspect[0]["Labels"]["app"], "db");
    let mountpoint = inspect[0]["Mountpoint"].as_str().unwrap().to_string();
    assert_eq!(
        fs::read_to_string(Path::new(&mountpoint).join("row-1")).unwrap(),
        "row-1\n"
    );
    assert_eq!(ok(&hull.hull(&["volume", "rm", "db"])), "db\n");
    assert!(volume_names(&hull).is_empty());
    assert!(!Path::new(&mountpoint).exists());
    assert_clean(&hull);
}

#[test]
fn new_volumes_are_filled_from_the_image_and_anonymous_ones_go_with_rm() {
    let hull = Hull::with_busybox();
    // A new named volume over /etc gets the image's /etc first.
    let out = hull.hull(&["run", "--rm", "-v", "etc:/etc", IMAGE, "cat", "/etc/passwd"]);
    assert!(ok(&out).contains("root:"), "{}", stderr(&out));
    let volumes = hull.store_dir().join("volumes");
    assert!(volumes.join("etc/_data/passwd").is_file());
    // Anonymous: `--rm` removes it, `rm` without -v keeps it, `rm -v` not.
    ok(&hull.hull(&[
        "run",
        "--rm",
        "-v",
        "/scratch",
        IMAGE,
        "touch",
        "/scratch/x",
    ]));
    assert_eq!(volume_names(&hull), ["etc"]);
    ok(&hull.hull(&["run", "--name", "a", "-v", "/scratch", IMAGE, "true"]));
    ok(&hull.hull(&["run", "--name", "b", "-v", "/scratch", IMAGE, "true"]));
    assert_eq!(volume_names(&hull).len(), 3);
    ok(&hull.hull(&["rm", "-v", "a"]));
    ok(&hull.hull(&["rm", "b"]));
    assert_eq!(volume_names(&hull).len(), 2, "b's stays");
    ok(&hull.hull(&["volume", "prune", "-f"]));
    assert_eq!(volume_names(&hull), ["etc"], "prune takes anonymous ones");
    // tmpfs, both spellings.
    let out = hull.hull(&[
        "run",
        "--rm",
        "--tmpfs",
        "/t1:size=1m",
        "--mount",
        "type=tmpfs,dst=/t2",
        IMAGE,
        "sh",
        "-c",
        "grep -c ' /t[12] tmpfs' /proc/mounts",
    ]);
    assert_eq!(ok(&out), "2\n");
    assert_clean(&hull);
}

#[test]
fn bad_mounts_are_one_line_errors_that_leave_nothing() {
    let hull = Hull::with_busybox();
    // The first run builds the image's disk and the default network; what
    // the failed runs must not touch is everything after that.
    ok(&hull.hull(&["run", "--rm", IMAGE, "true"]));
    let before = hull.files();
    let missing = hull.hull(&[
        "run",
        "--rm",
        "--mount",
        "type=bind,src=/nonexistent/hull-src,dst=/x",
        IMAGE,
        "true",
    ]);
    assert_one_line_error(&missing, 125, "/nonexistent/hull-src");
    let relative = hull.hull(&["run", "--rm", "-v", "/x:relative", IMAGE, "true"]);
    assert_eq!(relative.status.code(), Some(125), "{}", stderr(&relative));
    let duplicate = hull.hull(&[
        "run", "--rm", "-v", "vol1:/d", "-v", "vol2:/d", IMAGE, "true",
    ]);
    assert_one_line_error(&duplicate, 125, "duplicate mount point");
    let socket = hull.hull(&["run", "--rm", "-v", "/dev/null:/n", IMAGE, "true"]);
    assert_one_line_error(&socket, 125, "device node");
    assert!(
        volume_names(&hull).is_empty(),
        "no volume made by a failed run"
    );
    assert_eq!(stdout(&missing), "");
    assert_eq!(hull.files(), before);
    assert_clean(&hull);
}
