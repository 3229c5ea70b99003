//! `hull pull` against a real registry (Debian's `docker-registry` on
//! 127.0.0.1), with images pushed by `skopeo copy` from the OCI archives
//! `make images` builds (busybox-static, three layers, the top one
//! deleting a file of the bottom one).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use hull_tests::registry::{free_port, Layout, Registry};
use hull_tests::{assert_one_line_error, image_archive, stderr, stdout, Hull};

fn busybox() -> String {
    format!("oci-archive:{}", image_archive("busybox.tar").display())
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "hull failed ({:?}): {}",
        out.status,
        stderr(out)
    );
    stdout(out)
}

/// A store that exists but holds nothing.
fn initialized(hull: &Hull) -> Vec<PathBuf> {
    ok(&hull.hull(&["images"]));
    hull.files()
}

fn pull(hull: &Hull, image: &str) -> Output {
    hull.hull(&["pull", "--plain-http", image])
}

/// The store's built disks.
fn disks(hull: &Hull) -> Vec<PathBuf> {
    let dir = hull.store_dir().join("disks");
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    out.sort();
    out
}

/// Non-directory paths in an EROFS disk, via `fsck.erofs --extract`.
fn disk_listing(disk: &Path) -> Vec<String> {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("x");
    let out = std::process::Command::new("fsck.erofs")
        .arg(format!("--extract={}", dest.display()))
        .arg(disk)
        .output()
        .expect("fsck.erofs (erofs-utils)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut files = Vec::new();
    let mut stack = vec![dest.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            } else {
                files.push(p.strip_prefix(&dest).unwrap().display().to_string());
            }
        }
    }
    files.sort();
    files
}

fn assert_busybox_rootfs(disk: &Path) {
    let files = disk_listing(disk);
    for want in ["bin/busybox", "bin/sh", "etc/passwd", "etc/hull-release"] {
        assert!(files.iter().any(|f| f == want), "{want} missing: {files:?}");
    }
    assert!(
        !files.iter().any(|f| f == "etc/hull-doomed"),
        "the whiteout of the top layer was not applied"
    );
}

fn ingest_is_empty(hull: &Hull) -> bool {
    std::fs::read_dir(hull.store_dir().join("ingest"))
        .unwrap()
        .next()
        .is_none()
}

#[test]
fn pull_verifies_builds_the_disk_once_and_runs() {
    let reg = Registry::start();
    reg.push(&busybox(), "hull/busybox:1", &[]);
    let hull = Hull::new();
    let image = reg.image("hull/busybox:1");
    let out = ok(&pull(&hull, &image));
    assert!(
        out.contains(&format!("Status: Downloaded newer image for {image}")),
        "{out}"
    );
    assert!(
        !out.contains('\x1b'),
        "progress bars drawn on a pipe: {out:?}"
    );
    assert!(ok(&hull.hull(&["images"])).contains(&image));
    let d = disks(&hull);
    assert_eq!(d.len(), 1, "pull builds the disk");
    assert_busybox_rootfs(&d[0]);
    assert!(ingest_is_empty(&hull));

    // A second pull does no work and changes nothing.
    let before = hull.files();
    let mtime = std::fs::metadata(&d[0]).unwrap().modified().unwrap();
    let out = ok(&pull(&hull, &image));
    assert!(out.contains("Status: Image is up to date"), "{out}");
    assert_eq!(hull.files(), before);
    assert_eq!(std::fs::metadata(&d[0]).unwrap().modified().unwrap(), mtime);
}

#[test]
fn a_pulled_image_runs_from_the_disk_the_pull_built() {
    let reg = Registry::start();
    reg.push(&busybox(), "hull/busybox:1", &[]);
    let hull = Hull::new();
    let image = reg.image("hull/busybox:1");
    ok(&pull(&hull, &image));
    let d = disks(&hull);
    let run = hull.hull(&[
        "run",
        "--rm",
        &image,
        "sh",
        "-c",
        "cat /etc/hull-release; ls /etc",
    ]);
    let out = ok(&run);
    assert!(!out.contains("hull-doomed\n"), "{out}");
    assert!(out.contains("hull-doomed2"), "{out}");
    assert_eq!(disks(&hull), d, "run must not build another disk");
}

#[test]
fn docker_schema2_zstd_and_uncompressed_layers() {
    let reg = Registry::start();
    reg.push(&busybox(), "hull/v2s2:1", &["--format", "v2s2"]);
    let tmp = tempfile::tempdir().unwrap();
    for (zstd, name) in [(true, "zstd"), (false, "plain")] {
        let layout = recompressed_layout(tmp.path(), zstd);
        reg.push_raw(&layout, &format!("hull/{name}"), "1");
    }
    let cases = [
        (
            "hull/v2s2:1",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        ),
        ("hull/zstd:1", "application/vnd.oci.image.layer.v1.tar+zstd"),
        ("hull/plain:1", "application/vnd.oci.image.layer.v1.tar"),
    ];
    for (repo, media_type) in cases {
        let hull = Hull::new();
        let image = reg.image(repo);
        ok(&pull(&hull, &image));
        let json: serde_json::Value =
            serde_json::from_str(&ok(&hull.hull(&["image", "inspect", &image]))).unwrap();
        let layers = json[0]["Layers"].as_array().unwrap();
        assert_eq!(layers.len(), 4, "{json}");
        for l in layers {
            assert_eq!(l["MediaType"], media_type, "{repo}: {json}");
        }
        assert_eq!(json[0]["Disk"]["Built"], true);
        assert_busybox_rootfs(&disks(&hull)[0]);
    }
}

/// busybox.tar as an OCI layout whose layers are plain tars, or zstd
/// (each layer as two concatenated zstd frames, as `pzstd` writes them).
fn recompressed_layout(dir: &Path, zstd: bool) -> Layout {
    let name = if zstd { "zstd" } else { "plain" };
    let layout = Layout::from_archive(&image_archive("busybox.tar"), &dir.join(name));
    let desc = layout.first_manifest();
    let mut manifest = layout.json_blob(desc["digest"].as_str().unwrap());
    for l in manifest["layers"].as_array_mut().unwrap() {
        let gz = layout.blob(l["digest"].as_str().unwrap());
        let tar = filter(&["gzip", "-dc"], &gz);
        let (blob, media_type) = if zstd {
            let (a, b) = tar.split_at(tar.len() / 2);
            let mut z = filter(&["zstd", "-q", "-c"], a);
            z.extend(filter(&["zstd", "-q", "-c"], b));
            (z, "application/vnd.oci.image.layer.v1.tar+zstd")
        } else {
            (tar, "application/vnd.oci.image.layer.v1.tar")
        };
        let (digest, size) = layout.add_blob(&blob);
        l["digest"] = digest.into();
        l["size"] = size.into();
        l["mediaType"] = media_type.into();
    }
    let (digest, size) = layout.add_blob(&serde_json::to_vec(&manifest).unwrap());
    let mut index = layout.index();
    index["manifests"] = serde_json::json!([{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": digest, "size": size,
        "annotations": {"org.opencontainers.image.ref.name": name},
    }]);
    layout.set_index(&index);
    layout
}

/// Runs `cmd` with `input` on stdin; returns its stdout.
fn filter(cmd: &[&str], input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = std::process::Command::new(cmd[0])
        .args(&cmd[1..])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{} is needed by this test: {e}", cmd[0]));
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "{cmd:?} failed");
    out.stdout
}

/// Pushes an index over busybox's manifest with the given platforms.
fn push_index(reg: &Registry, tmp: &Path, repo: &str, platforms: &[(&str, &str)]) -> String {
    let layout = Layout::from_archive(
        &image_archive("busybox.tar"),
        &tmp.join(repo.replace([':', '/'], "_")),
    );
    let desc = layout.first_manifest();
    let entries: Vec<serde_json::Value> = platforms
        .iter()
        .map(|(os, arch)| {
            serde_json::json!({
                "mediaType": desc["mediaType"], "digest": desc["digest"], "size": desc["size"],
                "platform": {"os": os, "architecture": arch},
            })
        })
        .collect();
    let nested = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    });
    let (digest, size) = layout.add_blob(&serde_json::to_vec(&nested).unwrap());
    let mut index = layout.index();
    index["manifests"] = serde_json::json!([{
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": digest, "size": size,
        "annotations": {"org.opencontainers.image.ref.name": "multi"},
    }]);
    layout.set_index(&index);
    reg.push(
        &format!("oci:{}:multi", layout.dir.display()),
        repo,
        &["--multi-arch", "all"],
    );
    desc["digest"].as_str().unwrap().to_string()
}

#[test]
fn an_index_picks_linux_amd64_and_other_platforms_are_refused() {
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let amd64 = push_index(
        &reg,
        tmp.path(),
        "hull/multi:1",
        &[("linux", "arm64"), ("linux", "amd64")],
    );
    let hull = Hull::new();
    let out = ok(&pull(&hull, &reg.image("hull/multi:1")));
    assert!(out.contains(&format!("Digest: {amd64}")), "{out}");
    assert_busybox_rootfs(&disks(&hull)[0]);

    push_index(&reg, tmp.path(), "hull/armonly:1", &[("linux", "arm64")]);
    let hull = Hull::new();
    let before = initialized(&hull);
    let out = pull(&hull, &reg.image("hull/armonly:1"));
    assert_one_line_error(&out, 125, "has no linux/amd64 image");
    assert_eq!(hull.files(), before);

    // A plain manifest whose config says arm64.
    let layout = Layout::from_archive(&image_archive("busybox.tar"), &tmp.path().join("arm"));
    let desc = layout.first_manifest();
    let mut manifest = layout.json_blob(desc["digest"].as_str().unwrap());
    let mut config = layout.json_blob(manifest["config"]["digest"].as_str().unwrap());
    config["architecture"] = "arm64".into();
    let (cd, cs) = layout.add_blob(&serde_json::to_vec(&config).unwrap());
    manifest["config"]["digest"] = cd.into();
    manifest["config"]["size"] = cs.into();
    let (md, ms) = layout.add_blob(&serde_json::to_vec(&manifest).unwrap());
    let mut index = layout.index();
    index["manifests"] = serde_json::json!([{
        "mediaType": desc["mediaType"], "digest": md, "size": ms,
        "annotations": {"org.opencontainers.image.ref.name": "arm"},
    }]);
    layout.set_index(&index);
    reg.push(
        &format!("oci:{}:arm", layout.dir.display()),
        "hull/arm:1",
        &[],
    );
    let out = pull(&hull, &reg.image("hull/arm:1"));
    assert_one_line_error(&out, 125, "is for linux/arm64, not linux/amd64");
    assert_eq!(hull.files(), before);
}

#[test]
fn failures_are_one_line_and_leave_the_store_alone() {
    let reg = Registry::start();
    reg.push(&busybox(), "hull/busybox:1", &[]);
    let image = reg.image("hull/busybox:1");
    let hull = Hull::new();
    let before = initialized(&hull);

    let out = pull(&hull, &reg.image("hull/nope:1"));
    assert_one_line_error(&out, 125, "not found in registry");
    assert_eq!(hull.files(), before);
    let out = pull(&hull, &reg.image("hull/busybox:nope"));
    assert_one_line_error(&out, 125, "not found in registry");

    let down = format!("127.0.0.1:{}/hull/busybox:1", free_port());
    let out = pull(&hull, &down);
    assert_one_line_error(&out, 125, "cannot reach registry 127.0.0.1");
    assert_eq!(hull.files(), before);

    // Damage the biggest layer in the registry's own storage.
    let layers = reg.layers("hull/busybox:1");
    let biggest = layers
        .iter()
        .max_by_key(|d| std::fs::metadata(reg.blob_data(d)).unwrap().len())
        .unwrap()
        .clone();
    let data = reg.blob_data(&biggest);
    let good = std::fs::read(&data).unwrap();

    std::fs::write(&data, &good[..good.len() / 2]).unwrap();
    let out = pull(&hull, &image);
    assert_one_line_error(&out, 125, &biggest);
    assert!(stderr(&out).contains("truncated"), "{}", stderr(&out));
    assert_eq!(hull.files(), before, "a truncated blob left files behind");

    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0xff;
    std::fs::write(&data, &flipped).unwrap();
    let out = pull(&hull, &image);
    assert_one_line_error(&out, 125, &biggest);
    assert!(
        stderr(&out).contains("does not match its digest"),
        "{}",
        stderr(&out)
    );
    assert_eq!(hull.files(), before, "a bad digest left files behind");

    // Repaired, the same store pulls fine.
    std::fs::write(&data, &good).unwrap();
    ok(&pull(&hull, &image));
}

#[test]
fn an_interrupted_download_resumes_or_restarts() {
    let reg = Registry::start();
    reg.push(&busybox(), "hull/busybox:1", &[]);
    let image = reg.image("hull/busybox:1");
    let layers = reg.layers("hull/busybox:1");
    let biggest = layers
        .iter()
        .max_by_key(|d| std::fs::metadata(reg.blob_data(d)).unwrap().len())
        .unwrap()
        .clone();
    let good = std::fs::read(reg.blob_data(&biggest)).unwrap();
    let hex = biggest.trim_start_matches("sha256:");

    // What a killed pull leaves: the first half, right.
    let hull = Hull::new();
    initialized(&hull);
    let partial = hull.store_dir().join(format!("ingest/{hex}.partial"));
    std::fs::write(&partial, &good[..good.len() / 2]).unwrap();
    let out = hull
        .command(&["pull", "--plain-http", &image])
        .env("HULL_LOG", "info")
        .output()
        .unwrap();
    ok(&out);
    assert!(
        stderr(&out).contains("resuming download"),
        "{}",
        stderr(&out)
    );
    assert!(ingest_is_empty(&hull));
    assert_busybox_rootfs(&disks(&hull)[0]);

    // A partial file with wrong bytes: verified, found bad, started over.
    let hull = Hull::new();
    initialized(&hull);
    let partial = hull.store_dir().join(format!("ingest/{hex}.partial"));
    std::fs::write(&partial, vec![0x5a; good.len() / 2]).unwrap();
    let out = hull
        .command(&["pull", "--plain-http", &image])
        .env("HULL_LOG", "info")
        .output()
        .unwrap();
    ok(&out);
    assert!(stderr(&out).contains("starting over"), "{}", stderr(&out));
    assert!(ingest_is_empty(&hull));
}

#[test]
fn basic_auth_and_login() {
    let reg = Registry::start_with_auth("hull", "s3cret-pw");
    reg.push(&busybox(), "hull/private:1", &[]);
    let image = reg.image("hull/private:1");
    let hull = Hull::new();
    let before = initialized(&hull);

    let out = pull(&hull, &image);
    assert_one_line_error(&out, 125, "denied access");
    assert_eq!(hull.files(), before);

    let login = |pw: &str| {
        hull.hull_with_stdin(
            &[
                "login",
                "--plain-http",
                "-u",
                "hull",
                "--password-stdin",
                &reg.addr,
            ],
            format!("{pw}\n").as_bytes(),
        )
    };
    let out = login("wrong");
    assert_one_line_error(&out, 125, "wrong user name or password");
    assert!(!hull.store_dir().join("auth.json").exists());

    let out = login("s3cret-pw");
    assert!(ok(&out).contains("Login Succeeded"));
    let auth = hull.store_dir().join("auth.json");
    let mode = std::fs::metadata(&auth).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(!std::fs::read_to_string(&auth)
        .unwrap()
        .contains("s3cret-pw"));

    ok(&pull(&hull, &image));
    assert_busybox_rootfs(&disks(&hull)[0]);

    ok(&hull.hull(&["logout", &reg.addr]));
    let out = pull(&hull, &image);
    assert_one_line_error(&out, 125, "denied access");
}

#[test]
fn save_inspect_prune_and_rmi() {
    let reg = Registry::start();
    reg.push(&busybox(), "hull/app:1", &[]);
    let image = reg.image("hull/app:1");
    let hull = Hull::new();
    ok(&pull(&hull, &image));

    let json: serde_json::Value =
        serde_json::from_str(&ok(&hull.hull(&["image", "inspect", &image]))).unwrap();
    let id = json[0]["Id"].as_str().unwrap().to_string();
    assert_eq!(json[0]["RepoTags"][0], image);
    assert_eq!(json[0]["Config"]["architecture"], "amd64");

    // save -> a fresh store loads the same image; skopeo reads it too.
    let archive = hull.root.path().join("saved.tar");
    ok(&hull.hull(&["save", "-o", archive.to_str().unwrap(), &image]));
    let other = Hull::new();
    let out = ok(&other.hull(&["load", "-i", archive.to_str().unwrap()]));
    assert!(out.contains(&image), "{out}");
    let json2: serde_json::Value =
        serde_json::from_str(&ok(&other.hull(&["image", "inspect", &image]))).unwrap();
    assert_eq!(json2[0]["Id"], id.as_str());
    let sk = std::process::Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci-archive:{}", archive.display()))
        .output()
        .unwrap();
    assert!(
        sk.status.success(),
        "{}",
        String::from_utf8_lossy(&sk.stderr)
    );

    // The tag moves to another image: the old one is untagged, shown as
    // <none>, and prune removes it.
    reg.push(
        &format!("oci-archive:{}", image_archive("busybox-app.tar").display()),
        "hull/app:1",
        &[],
    );
    ok(&pull(&hull, &image));
    let images = ok(&hull.hull(&["images"]));
    assert!(images.contains("<none>"), "{images}");
    assert!(images.contains(&id[7..19]), "{images}");
    let out = ok(&hull.hull(&["image", "prune"]));
    assert!(out.contains(&format!("Deleted: {id}")), "{out}");
    let images = ok(&hull.hull(&["images"]));
    assert!(!images.contains("<none>"), "{images}");
    assert_eq!(disks(&hull).len(), 1);

    ok(&hull.hull(&["rmi", "-f", &image]));
    assert!(disks(&hull).is_empty());
    assert!(
        unpacked_layers(&hull).is_empty(),
        "rmi left unpacked layers"
    );
    let out = hull.hull(&["image", "inspect", &image]);
    assert_one_line_error(&out, 125, "image not found");
}

/// The unpacked layer stacks under the store (`layers/<chain id>`).
fn unpacked_layers(hull: &Hull) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(hull.store_dir().join("layers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

#[test]
fn images_on_the_same_layers_unpack_them_once_and_rmi_frees_them() {
    // busybox-app is busybox's four layers under another config.
    let reg = Registry::start();
    reg.push(&busybox(), "hull/busybox:1", &[]);
    let app = format!("oci-archive:{}", image_archive("busybox-app.tar").display());
    reg.push(&app, "hull/app:1", &[]);
    let (image, app) = (reg.image("hull/busybox:1"), reg.image("hull/app:1"));
    let layer_count = reg.layers("hull/busybox:1").len();
    let hull = Hull::new();
    ok(&pull(&hull, &image));
    let unpacked = unpacked_layers(&hull);
    assert_eq!(unpacked.len(), layer_count, "{unpacked:?}");

    let out = hull
        .command(&["pull", "--plain-http", &app])
        .env("HULL_LOG", "hull_image=info")
        .output()
        .unwrap();
    ok(&out);
    let log = stderr(&out);
    assert!(
        log.contains(&format!("layers_reused={layer_count}")) && log.contains("layers_unpacked=0"),
        "{log}"
    );
    assert_eq!(unpacked_layers(&hull), unpacked);
    assert_eq!(disks(&hull).len(), 2);
    // Its entrypoint is `sh -c`.
    let run = ok(&hull.hull(&["run", "--rm", &app, "cat /etc/hull-release"]));
    assert!(!run.trim().is_empty());

    // Layers go with the last image that uses them.
    ok(&hull.hull(&["rmi", &image]));
    assert_eq!(unpacked_layers(&hull), unpacked);
    ok(&hull.hull(&["rmi", &app]));
    assert!(unpacked_layers(&hull).is_empty());
    assert!(disks(&hull).is_empty());
}

#[test]
fn concurrent_pulls_of_one_image_share_the_work() {
    let reg = Registry::start();
    reg.push(&busybox(), "hull/busybox:1", &[]);
    let image = reg.image("hull/busybox:1");
    let hull = Hull::new();
    initialized(&hull);
    let children: Vec<_> = (0..3)
        .map(|_| {
            hull.command(&["pull", "--plain-http", &image])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        ok(&c.wait_with_output().unwrap());
    }
    let images = ok(&hull.hull(&["images"]));
    assert_eq!(images.lines().count(), 2, "{images}");
    assert_eq!(disks(&hull).len(), 1);
    assert!(ingest_is_empty(&hull));
    assert!(std::fs::read_dir(hull.store_dir().join("tmp"))
        .unwrap()
        .next()
        .is_none());
    assert_busybox_rootfs(&disks(&hull)[0]);
}

#[test]
fn a_layer_over_the_size_bound_is_refused_by_name() {
    let reg = Registry::start();
    reg.push(&busybox(), "hull/busybox:1", &[]);
    let hull = Hull::new();
    let before = initialized(&hull);
    let out = hull.hull(&[
        "pull",
        "--plain-http",
        "--max-layer-size",
        "64k",
        &reg.image("hull/busybox:1"),
    ]);
    assert_one_line_error(&out, 125, "bin/busybox");
    assert!(
        stderr(&out).contains("bound of 65536 bytes"),
        "{}",
        stderr(&out)
    );
    assert_eq!(hull.files(), before);
}

#[test]
fn progress_bars_on_a_terminal_only() {
    let reg = Registry::start();
    reg.push(&busybox(), "hull/busybox:1", &[]);
    let hull = Hull::new();
    let bin = hull_tests::artifact("HULL_BIN");
    // `script` gives hull a pseudo-terminal as stdout.
    let out = std::process::Command::new("script")
        .args(["-qec"])
        .arg(format!(
            "{} pull --plain-http {}",
            bin.display(),
            reg.image("hull/busybox:1")
        ))
        .arg("/dev/null")
        .env("HULL_ROOT", hull.store_dir())
        .env("HULL_RUN_DIR", hull.run_dir())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script (bsdutils)");
    let text = ok(&out);
    assert!(text.contains("Download complete"), "{text:?}");
    assert!(text.contains("Total"), "{text:?}");
    assert!(
        text.contains('\x1b'),
        "no cursor movement on a terminal: {text:?}"
    );
}

/// A tar of one regular file at a raw `path` (what GNU tar refuses to
/// write), as a hostile layer would carry it.
fn hostile_tar(path: &str, data: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..path.len()].copy_from_slice(path.as_bytes());
    let octal = |field: &mut [u8], v: u64| {
        let s = format!("{:0w$o}\0", v, w = field.len() - 1);
        field.copy_from_slice(s.as_bytes());
    };
    octal(&mut h[100..108], 0o644);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], data.len() as u64);
    octal(&mut h[136..148], 1_700_000_000);
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512 + 1024, 0);
    out
}

#[test]
fn a_hostile_layer_from_a_registry_is_refused_by_entry() {
    use sha2::Digest as _;
    let reg = Registry::start();
    let tmp = tempfile::tempdir().unwrap();
    let layout = Layout::from_archive(&image_archive("busybox.tar"), &tmp.path().join("evil"));
    let desc = layout.first_manifest();
    let mut manifest = layout.json_blob(desc["digest"].as_str().unwrap());
    let mut config = layout.json_blob(manifest["config"]["digest"].as_str().unwrap());
    // Append a layer that climbs out of the rootfs.
    let tar = hostile_tar("../../hull-escape", b"pwned");
    let diff_id = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&tar)));
    let (ld, ls) = layout.add_blob(&tar);
    manifest["layers"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": ls,
        }));
    config["rootfs"]["diff_ids"]
        .as_array_mut()
        .unwrap()
        .push(diff_id.into());
    config["history"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"created_by": "evil"}));
    let (cd, cs) = layout.add_blob(&serde_json::to_vec(&config).unwrap());
    manifest["config"]["digest"] = cd.into();
    manifest["config"]["size"] = cs.into();
    let (md, ms) = layout.add_blob(&serde_json::to_vec(&manifest).unwrap());
    let mut index = layout.index();
    index["manifests"] = serde_json::json!([{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
    }]);
    layout.set_index(&index);
    reg.push_raw(&layout, "hull/evil", "1");

    let hull = Hull::new();
    let before = initialized(&hull);
    let out = pull(&hull, &reg.image("hull/evil:1"));
    assert_one_line_error(&out, 125, "../../hull-escape");
    assert!(
        stderr(&out).contains("escapes the rootfs"),
        "{}",
        stderr(&out)
    );
    assert_eq!(hull.files(), before);
    for dir in [
        hull.store_dir(),
        hull.store_dir().join("tmp"),
        std::env::temp_dir(),
    ] {
        assert!(!dir.join("hull-escape").exists(), "{}", dir.display());
    }
}
