//! `hull push`, `hull tag` and `hull history` against a real registry
//! (Debian's `docker-registry` on 127.0.0.1, anonymous, behind `htpasswd`
//! Basic auth, or behind a token server), read back by real clients:
//! `skopeo inspect` must report the digest hull shows, and `podman` must
//! pull and run what hull pushed.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use hull_tests::ecosystem::{become_subreaper, reap_orphans, temp_dir};
use hull_tests::registry::{free_port, Registry};
use hull_tests::token_server::TokenServer;
use hull_tests::{assert_one_line_error, image_archive, ok, stdout, Hull};

/// The image `Hull::with_busybox` loads: four layers (the last one a
/// whiteout), a history entry for each.
const BUSYBOX: &str = "hull-demo/busybox:latest";
const USER: &str = "hull";
const PASSWORD: &str = "pu5h-pw";

fn push(hull: &Hull, args: &[&str]) -> Output {
    let mut all = vec!["push", "--plain-http"];
    all.extend_from_slice(args);
    hull.hull(&all)
}

/// The manifest digest `hull image inspect` shows.
fn hull_digest(hull: &Hull, image: &str) -> String {
    let out = ok(&hull.hull(&["image", "inspect", image]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0]["ManifestDigest"].as_str().unwrap().to_string()
}

/// The digest `skopeo inspect` reports for `reference` (`docker://…`).
fn skopeo_digest(reference: &str, creds: Option<(&str, &str)>) -> String {
    let mut cmd = Command::new("skopeo");
    cmd.args(["inspect", "--tls-verify=false"]);
    if let Some((u, p)) = creds {
        cmd.arg(format!("--creds={u}:{p}"));
    }
    let out = cmd
        .arg(format!("docker://{reference}"))
        .output()
        .expect("skopeo is needed by this test");
    assert!(
        out.status.success(),
        "skopeo inspect {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["Digest"].as_str().unwrap().to_string()
}

/// The blob lines of a push's output: (short digest, status).
fn blob_lines(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|l| {
            let (short, status) = l.split_once(": ")?;
            (short.len() == 12 && short.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| (short.to_string(), status.to_string()))
        })
        .collect()
}

/// `TAG: digest: sha256:… size: N` of a push's output: the digest.
fn pushed_digest(out: &str, tag: &str) -> String {
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("{tag}: digest: ")))
        .unwrap_or_else(|| panic!("no digest line for {tag}: {out}"));
    let rest = line.split_once("digest: ").unwrap().1;
    let (digest, size) = rest.split_once(" size: ").unwrap();
    assert!(size.parse::<u64>().unwrap() > 0, "{line}");
    digest.to_string()
}

/// podman 4.3 with runc, its storage and configuration in a temp dir
/// (nothing under /etc changes), emptied on drop.
struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    fn new() -> Podman {
        become_subreaper();
        let dir = temp_dir("podman-push");
        let d = dir.path();
        std::fs::write(
            d.join("containers.conf"),
            format!(
                "[containers]\nnetns = \"none\"\n\
                 default_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n\
                 [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
                 events_logfile_path = \"{0}/events.log\"\nlock_type = \"file\"\n",
                d.display()
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"overlay\"\ngraphroot = \"{0}/storage\"\nrunroot = \"{0}/runroot\"\n",
                d.display()
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("registries.conf"),
            "unqualified-search-registries = []\n",
        )
        .unwrap();
        Podman { dir }
    }

    fn podman(&self, args: &[&str]) -> Output {
        let d = self.dir.path();
        Command::new("podman")
            .env("CONTAINERS_CONF", d.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", d.join("storage.conf"))
            .env("CONTAINERS_REGISTRIES_CONF", d.join("registries.conf"))
            .args(["--runtime", "runc", "--tmpdir"])
            .arg(d.join("tmp"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("podman is needed by this test")
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.podman(&["rm", "-a", "-f"]);
        let _ = self.podman(&["rmi", "-a", "-f"]);
        let _ = self.podman(&["system", "reset", "-f"]);
        reap_orphans(10);
    }
}

#[test]
fn a_pushed_image_has_hulls_digest_and_runs_under_podman() {
    let reg = Registry::start();
    let hull = Hull::with_busybox();
    let remote = reg.image("hull/busybox:1");
    let before = hull.files();

    let out = ok(&push(&hull, &[BUSYBOX, &remote]));
    assert!(
        out.contains(&format!(
            "The push refers to repository [{}]",
            reg.image("hull/busybox")
        )),
        "{out}"
    );
    let blobs = blob_lines(&out);
    assert_eq!(blobs.len(), 5, "four layers and the config: {out}");
    assert!(blobs.iter().all(|(_, s)| s == "Pushed"), "{out}");
    let digest = pushed_digest(&out, "1");
    assert_eq!(digest, hull_digest(&hull, BUSYBOX));
    assert_eq!(skopeo_digest(&remote, None), digest);
    assert_eq!(hull.files(), before, "a push changed the store");

    // A second push finds every blob there and uploads nothing.
    let out = ok(&push(&hull, &[BUSYBOX, &remote]));
    let blobs = blob_lines(&out);
    assert_eq!(blobs.len(), 5, "{out}");
    assert!(
        blobs.iter().all(|(_, s)| s == "Layer already exists"),
        "{out}"
    );
    assert_eq!(pushed_digest(&out, "1"), digest);

    // podman pulls what hull pushed, and runs it.
    let podman = Podman::new();
    let pulled = podman.podman(&["pull", "-q", "--tls-verify=false", &remote]);
    assert!(
        pulled.status.success(),
        "podman pull: {}",
        String::from_utf8_lossy(&pulled.stderr)
    );
    let run = podman.podman(&[
        "run",
        "--rm",
        &remote,
        "sh",
        "-c",
        "echo pushed-by-hull; cat /etc/hull-release",
    ]);
    assert!(
        run.status.success(),
        "podman run: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let hull_run = ok(&hull.hull(&[
        "run",
        "--rm",
        BUSYBOX,
        "sh",
        "-c",
        "echo pushed-by-hull; cat /etc/hull-release",
    ]));
    assert!(stdout(&run).starts_with("pushed-by-hull\n"), "{run:?}");
    assert_eq!(stdout(&run), hull_run);
}

#[test]
fn large_blobs_go_up_in_chunks() {
    let reg = Registry::start();
    let hull = Hull::with_busybox();
    let remote = reg.image("hull/chunked:2");
    // 64 KiB chunks: the busybox layer (≈1 MB) takes many PATCHes.
    let out = hull
        .command(&["push", "--plain-http", BUSYBOX, &remote])
        .env("HULL_PUSH_CHUNK_SIZE", "65536")
        .env("HULL_LOG", "hull_image=debug")
        .output()
        .unwrap();
    let chunks = hull_tests::stderr(&out).matches("pushed a chunk").count();
    assert!(
        chunks >= 10,
        "{chunks} chunks: {}",
        hull_tests::stderr(&out)
    );
    let out = ok(&out);
    assert!(blob_lines(&out).iter().all(|(_, s)| s == "Pushed"), "{out}");
    let digest = pushed_digest(&out, "2");
    assert_eq!(digest, hull_digest(&hull, BUSYBOX));
    assert_eq!(skopeo_digest(&remote, None), digest);
    // What the registry holds is byte for byte what the store holds.
    let copy = temp_dir("push-copy");
    let dest = copy.path().join("img.tar");
    let status = Command::new("skopeo")
        .args(["--insecure-policy", "copy", "-q", "--src-tls-verify=false"])
        .arg(format!("docker://{remote}"))
        .arg(format!("oci-archive:{}", dest.display()))
        .status()
        .unwrap();
    assert!(status.success());
    let other = Hull::new();
    ok(&other.hull(&["load", "-i", dest.to_str().unwrap()]));
    let loaded = ok(&other.hull(&["images"]));
    let id = hull_id(&hull, BUSYBOX);
    let short = &id.trim_start_matches("sha256:")[..12];
    assert!(loaded.contains(short), "{loaded}");
    assert_eq!(hull_digest(&other, short), digest);
}

#[test]
fn an_image_loaded_from_docker_save_pushes_with_the_manifest_made_for_it() {
    let reg = Registry::start();
    let dir = temp_dir("push-docker-save");
    let tar = dir.path().join("docker.tar");
    let status = Command::new("skopeo")
        .args(["--insecure-policy", "copy", "-q"])
        .arg(format!(
            "oci-archive:{}",
            image_archive("busybox.tar").display()
        ))
        .arg(format!("docker-archive:{}:saved/busybox:3", tar.display()))
        .status()
        .expect("skopeo is needed by this test");
    assert!(status.success());
    let hull = Hull::new();
    ok(&hull.hull(&["load", "-i", tar.to_str().unwrap()]));
    let remote = reg.image("saved/busybox:3");
    let out = ok(&push(&hull, &["saved/busybox:3", &remote]));
    let digest = pushed_digest(&out, "3");
    assert_eq!(digest, hull_digest(&hull, "saved/busybox:3"));
    assert_eq!(skopeo_digest(&remote, None), digest);
    // And it pulls back into another store as the same image.
    let other = Hull::new();
    ok(&other.hull(&["pull", "--plain-http", &remote]));
    assert_eq!(hull_digest(&other, &remote), digest);
    assert_eq!(hull_id(&other, &remote), hull_id(&hull, "saved/busybox:3"));
}

#[test]
fn a_tag_of_a_pulled_image_mounts_its_blobs_from_the_repository_it_came_from() {
    let reg = Registry::start();
    reg.push(
        &format!("oci-archive:{}", image_archive("busybox.tar").display()),
        "hull/busybox:1",
        &[],
    );
    let hull = Hull::new();
    let pulled = reg.image("hull/busybox:1");
    ok(&hull.hull(&["pull", "--plain-http", &pulled]));
    let copy = reg.image("copies/busybox:2");
    ok(&hull.hull(&["tag", &pulled, &copy]));
    let out = ok(&push(&hull, &[&copy]));
    let blobs = blob_lines(&out);
    assert_eq!(blobs.len(), 5, "{out}");
    assert!(
        blobs.iter().all(|(_, s)| s == "Mounted from hull/busybox"),
        "{out}"
    );
    let digest = pushed_digest(&out, "2");
    assert_eq!(digest, skopeo_digest(&pulled, None));
    assert_eq!(skopeo_digest(&copy, None), digest);
    assert_eq!(hull_digest(&hull, &copy), digest);
}

#[test]
fn push_with_basic_auth_after_login() {
    let reg = Registry::start_with_auth(USER, PASSWORD);
    let hull = Hull::with_busybox();
    let remote = reg.image("private/busybox:1");

    let out = push(&hull, &[BUSYBOX, &remote]);
    assert_one_line_error(&out, 125, &format!("registry {} refused", reg.addr));
    let login = hull.hull_with_stdin(
        &[
            "login",
            "--plain-http",
            "-u",
            USER,
            "--password-stdin",
            &reg.addr,
        ],
        format!("{PASSWORD}\n").as_bytes(),
    );
    assert!(ok(&login).contains("Login Succeeded"));
    let out = ok(&push(&hull, &[BUSYBOX, &remote]));
    let digest = pushed_digest(&out, "1");
    assert_eq!(digest, hull_digest(&hull, BUSYBOX));
    assert_eq!(skopeo_digest(&remote, Some((USER, PASSWORD))), digest);
}

#[test]
fn push_with_bearer_tokens() {
    let tokens = TokenServer::start(USER, PASSWORD);
    let reg = Registry::start_with_tokens(&tokens, USER, PASSWORD);
    let hull = Hull::with_busybox();
    let remote = reg.image("hull/private:1");

    // Anonymous: the token grants nothing; the registry refuses, and no
    // manifest is there.
    let out = push(&hull, &[BUSYBOX, &remote]);
    assert_one_line_error(&out, 125, "refused the check for blob");
    let login = hull.hull_with_stdin(
        &[
            "login",
            "--plain-http",
            "-u",
            USER,
            "--password-stdin",
            &reg.addr,
        ],
        format!("{PASSWORD}\n").as_bytes(),
    );
    assert!(ok(&login).contains("Login Succeeded"));
    let out = ok(&push(&hull, &[BUSYBOX, &remote]));
    let digest = pushed_digest(&out, "1");
    assert_eq!(digest, hull_digest(&hull, BUSYBOX));
    let asked = tokens.requests().iter().any(|r| {
        r.status == 200
            && r.user.as_deref() == Some(USER)
            && r.scopes
                .contains(&"repository:hull/private:pull,push".to_string())
    });
    assert!(asked, "no push token was issued: {:?}", tokens.requests());
    assert_eq!(skopeo_digest(&remote, Some((USER, PASSWORD))), digest);
}

#[test]
fn tag_then_run_the_new_name_and_read_its_history() {
    let hull = Hull::with_busybox();
    ok(&hull.hull(&["tag", BUSYBOX, "mine/box:v1"]));
    let images = ok(&hull.hull(&["images"]));
    assert!(images.contains("mine/box:v1"), "{images}");
    assert!(images.contains(BUSYBOX), "{images}");
    let out = ok(&hull.hull(&["run", "--rm", "mine/box:v1", "echo", "tagged"]));
    assert_eq!(out, "tagged\n");

    let out = ok(&hull.hull(&["history", "mine/box:v1"]));
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("IMAGE") && lines[0].contains("CREATED BY"),
        "{out}"
    );
    let steps: Vec<&str> = lines[1..]
        .iter()
        .map(|l| {
            ["hull: whiteout", "hull: add2", "hull: add", "hull: base"]
                .into_iter()
                .find(|s| l.contains(&format!("{s} ")))
                .unwrap_or_else(|| panic!("unknown step in {l:?}"))
        })
        .collect();
    assert_eq!(
        steps,
        ["hull: whiteout", "hull: add2", "hull: add", "hull: base"]
    );
    let id = hull_id(&hull, "mine/box:v1");
    let short = &id.trim_start_matches("sha256:")[..12];
    assert!(lines[1].starts_with(short), "{out}");
    assert!(
        lines[2..].iter().all(|l| l.starts_with("<missing>")),
        "{out}"
    );

    let out = ok(&hull.hull(&["history", "--no-trunc", "--format", "json", "mine/box:v1"]));
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0]["ID"], id.as_str());
    assert_eq!(rows[3]["CreatedBy"], "hull: base");
}

fn hull_id(hull: &Hull, image: &str) -> String {
    let out = ok(&hull.hull(&["image", "inspect", image]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0]["Id"].as_str().unwrap().to_string()
}

#[test]
fn a_failed_push_leaves_no_manifest_and_the_store_as_it_was() {
    let reg = Registry::start();
    let hull = Hull::with_busybox();
    let remote = reg.image("hull/damaged:1");
    // One layer of the store damaged in place, its size kept: the
    // registry refuses its bytes by digest.
    let out = ok(&hull.hull(&["image", "inspect", BUSYBOX]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let layer = v[0]["Layers"][1]["Digest"].as_str().unwrap().to_string();
    let path = hull
        .store_dir()
        .join("blobs/sha256")
        .join(layer.trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let before = hull.files();

    let out = push(&hull, &[BUSYBOX, &remote]);
    assert_one_line_error(&out, 125, &format!("blob {layer}"));
    assert_eq!(hull.files(), before, "a failed push changed the store");
    let inspect = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{remote}"))
        .output()
        .unwrap();
    assert!(
        !inspect.status.success(),
        "the registry has a manifest after a failed push"
    );
    let err = String::from_utf8_lossy(&inspect.stderr);
    assert!(err.contains("manifest unknown"), "{err}");
}

#[test]
fn bad_pushes_are_one_line_and_change_nothing() {
    let hull = Hull::with_busybox();
    let before: Vec<PathBuf> = hull.files();
    let reg = Registry::start();

    let out = push(&hull, &["nothing/here:1", &reg.image("x/y:1")]);
    assert_one_line_error(&out, 125, "image not found: nothing/here:1");

    let closed = format!("127.0.0.1:{}/x/busybox:1", free_port());
    let out = push(&hull, &[BUSYBOX, &closed]);
    assert_one_line_error(&out, 125, "cannot reach registry 127.0.0.1:");

    let out = push(&hull, &[BUSYBOX]);
    assert_one_line_error(&out, 125, "names no registry");

    let out = hull.hull(&["tag", "nothing/here:1", "x:1"]);
    assert_one_line_error(&out, 125, "image not found: nothing/here:1");
    let out = hull.hull(&["history", "nothing/here:1"]);
    assert_one_line_error(&out, 125, "image not found: nothing/here:1");
    assert_eq!(hull.files(), before, "a failed command changed the store");
}
