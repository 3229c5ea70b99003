//! `hull build` end to end: real Dockerfiles built from the local busybox
//! test image (and `scratch`), the results run with `hull run` in their
//! VMs and read back with `hull image inspect`; the step cache across
//! rebuilds; bad Dockerfiles refused with one line and no image.

use std::fs;
use std::path::Path;
use std::process::Output;

use hull_tests::{assert_one_line_error, ok, stderr, stdout, Hull};

/// A build context in a temp dir.
struct Context {
    dir: tempfile::TempDir,
}

impl Context {
    fn new(dockerfile: &str) -> Context {
        let ctx = Context {
            dir: tempfile::tempdir().unwrap(),
        };
        ctx.file("Dockerfile", dockerfile);
        ctx
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn file(&self, rel: &str, content: &str) {
        let p = self.dir.path().join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }
}

fn build(hull: &Hull, ctx: &Context, extra: &[&str]) -> Output {
    let mut args = vec!["build"];
    args.extend_from_slice(extra);
    let path = ctx.path().to_str().unwrap().to_string();
    args.push(&path);
    hull.hull(&args)
}

/// Builds, asserting success; the image id printed on stdout.
fn build_ok(hull: &Hull, ctx: &Context, extra: &[&str]) -> (String, String) {
    let out = build(hull, ctx, extra);
    let id = ok(&out).trim().to_string();
    assert!(id.starts_with("sha256:"), "stdout: {id}");
    (id, stderr(&out))
}

fn run(hull: &Hull, args: &[&str]) -> String {
    let mut all = vec!["run", "--rm"];
    all.extend_from_slice(args);
    ok(&hull.hull(&all))
}

fn inspect(hull: &Hull, image: &str) -> serde_json::Value {
    let out = ok(&hull.hull(&["image", "inspect", image]));
    let all: serde_json::Value = serde_json::from_str(&out).unwrap();
    all[0].clone()
}

fn image_names(hull: &Hull) -> Vec<String> {
    let out = ok(&hull.hull(&["images"]));
    out.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn copy_env_workdir_user_cmd_and_labels_carry_into_the_run_and_inspect() {
    let hull = Hull::with_busybox();
    let ctx = Context::new(
        "# syntax=docker/dockerfile:1\n\
         FROM hull-demo/busybox:latest\n\
         ARG GREETING=hello\n\
         ENV GREETING=${GREETING} \\\n    APP_HOME=/srv/app\n\
         WORKDIR $APP_HOME\n\
         COPY msg.txt conf/ ./\n\
         COPY --chown=1000:1000 --chmod=0640 secret.txt /home/app/\n\
         LABEL org.example.title=\"built by hull\"\n\
         EXPOSE 8080\n\
         USER 1000\n\
         CMD [\"sh\", \"-c\", \"echo $GREETING from $(pwd) as $(id -u): $(cat msg.txt) $(cat a.conf) $(stat -c '%u %a' /home/app/secret.txt)\"]\n",
    );
    ctx.file("msg.txt", "the message");
    ctx.file("conf/a.conf", "conf-a");
    ctx.file("secret.txt", "s");
    let (id, progress) = build_ok(
        &hull,
        &ctx,
        &[
            "-t",
            "built/app:1",
            "-t",
            "built/app:latest",
            "--build-arg",
            "GREETING=hi",
            "--label",
            "extra=yes",
        ],
    );
    assert!(
        progress.contains("#3 [1/10] FROM hull-demo/busybox:latest"),
        "{progress}"
    );
    assert!(
        progress.contains("naming to built/app:1 done"),
        "{progress}"
    );

    let said = run(&hull, &["built/app:1"]);
    assert_eq!(
        said.trim(),
        "hi from /srv/app as 1000: the message conf-a 1000 640"
    );

    let img = inspect(&hull, "built/app:latest");
    assert_eq!(img["Id"], id.as_str());
    let config = &img["Config"]["config"];
    assert_eq!(config["WorkingDir"], "/srv/app");
    assert_eq!(config["User"], "1000");
    assert_eq!(config["Labels"]["org.example.title"], "built by hull");
    assert_eq!(config["Labels"]["extra"], "yes");
    assert_eq!(config["ExposedPorts"]["8080/tcp"], serde_json::json!({}));
    let env: Vec<&str> = config["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        env.contains(&"GREETING=hi") && env.contains(&"APP_HOME=/srv/app"),
        "{env:?}"
    );
    assert!(
        env.iter().any(|e| e.starts_with("PATH=")),
        "the base's PATH stays: {env:?}"
    );
    let history = img["Config"]["history"].as_array().unwrap();
    assert!(
        history
            .iter()
            .any(|h| h["created_by"] == "COPY msg.txt conf/ ./" && h.get("empty_layer").is_none()),
        "{history:?}"
    );
    assert!(history
        .iter()
        .any(|h| h["created_by"] == "USER 1000" && h["empty_layer"] == true));
}

#[test]
fn multi_stage_copy_from_and_a_scratch_image_with_static_busybox() {
    let hull = Hull::with_busybox();
    let ctx = Context::new(
        "FROM hull-demo/busybox AS tools\n\
         COPY note.txt /made/note.txt\n\
         \n\
         FROM scratch AS never\n\
         COPY does-not-exist /\n\
         \n\
         FROM scratch\n\
         COPY busybox /bin/busybox\n\
         COPY --from=tools /made/ /data/\n\
         COPY --from=tools /etc/passwd /etc/passwd\n\
         COPY --from=hull-demo/busybox:latest /etc/hull-release /etc/\n\
         ENTRYPOINT [\"/bin/busybox\"]\n\
         CMD [\"cat\", \"/data/note.txt\"]\n",
    );
    ctx.file("note.txt", "from the first stage");
    fs::copy("/bin/busybox", ctx.path().join("busybox")).unwrap();
    let (_, progress) = build_ok(&hull, &ctx, &["-t", "built/scratch:1"]);
    assert!(
        !progress.contains("never"),
        "an unneeded stage is not built: {progress}"
    );
    assert!(
        progress.contains("[tools 2/2] COPY note.txt /made/note.txt"),
        "{progress}"
    );
    assert_eq!(
        run(&hull, &["built/scratch:1"]).trim(),
        "from the first stage"
    );
    assert_eq!(
        run(
            &hull,
            &[
                "built/scratch:1",
                "sh",
                "-c",
                "ls /bin /data && test -s /etc/hull-release"
            ]
        )
        .split_whitespace()
        .collect::<Vec<_>>(),
        ["/bin:", "busybox", "/data:", "note.txt"]
    );
    let layers = inspect(&hull, "built/scratch:1")["Layers"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(layers, 4, "scratch plus four COPY layers");

    // --target builds the first stage alone.
    let (_, progress) = build_ok(&hull, &ctx, &["-t", "built/tools:1", "--target", "tools"]);
    assert!(!progress.contains("stage-2"), "{progress}");
    assert_eq!(
        run(&hull, &["built/tools:1", "cat", "/made/note.txt"]).trim(),
        "from the first stage"
    );
}

#[test]
fn dockerignore_keeps_files_out_of_the_image() {
    let hull = Hull::with_busybox();
    let ctx = Context::new("FROM hull-demo/busybox\nCOPY . /ctx/\nCMD [\"find\", \"/ctx\"]\n");
    ctx.file(
        ".dockerignore",
        "# not for the image\n*.key\nbuild/\n**/*.tmp\n!keep.tmp\n",
    );
    ctx.file("main.c", "int main(void) { return 0; }");
    ctx.file("server.key", "secret");
    ctx.file("build/out.o", "obj");
    ctx.file("src/x.tmp", "tmp");
    ctx.file("keep.tmp", "kept");
    build_ok(&hull, &ctx, &["-t", "built/ignore:1"]);
    let mut found: Vec<String> = run(&hull, &["built/ignore:1"])
        .lines()
        .map(str::to_string)
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            "/ctx",
            "/ctx/.dockerignore",
            "/ctx/Dockerfile",
            "/ctx/keep.tmp",
            "/ctx/main.c",
            "/ctx/src"
        ]
    );
}

/// The steps a build's progress reports CACHED, by their labels.
fn cached_steps(progress: &str) -> Vec<String> {
    let lines: Vec<&str> = progress.lines().collect();
    lines
        .windows(2)
        .filter(|w| w[1].ends_with(" CACHED"))
        .map(|w| w[0].split_once(' ').unwrap().1.to_string())
        .collect()
}

#[test]
fn a_rebuild_is_all_cached_and_one_changed_file_misses_from_its_step_on() {
    let hull = Hull::with_busybox();
    let ctx = Context::new(
        "FROM hull-demo/busybox\nENV A=1\nCOPY first.txt /first.txt\nCOPY second.txt /second.txt\nLABEL l=1\nCMD [\"cat\", \"/first.txt\", \"/second.txt\"]\n",
    );
    ctx.file("first.txt", "one\n");
    ctx.file("second.txt", "two\n");
    let (id, progress) = build_ok(&hull, &ctx, &["-t", "built/cache:1"]);
    assert!(cached_steps(&progress).is_empty(), "{progress}");

    let (again, progress) = build_ok(&hull, &ctx, &["-t", "built/cache:1"]);
    assert_eq!(again, id, "an unchanged rebuild gives the same image");
    assert_eq!(
        cached_steps(&progress),
        [
            "[2/6] ENV A=1",
            "[3/6] COPY first.txt /first.txt",
            "[4/6] COPY second.txt /second.txt",
            "[5/6] LABEL l=1",
            "[6/6] CMD [\"cat\", \"/first.txt\", \"/second.txt\"]"
        ]
    );

    ctx.file("second.txt", "TWO\n");
    let (changed, progress) = build_ok(&hull, &ctx, &["-t", "built/cache:1"]);
    assert_ne!(changed, id);
    assert_eq!(
        cached_steps(&progress),
        ["[2/6] ENV A=1", "[3/6] COPY first.txt /first.txt"]
    );
    assert_eq!(run(&hull, &["built/cache:1"]), "one\nTWO\n");

    // --no-cache runs every step, and so does a build after the cache
    // was pruned.
    let (_, progress) = build_ok(&hull, &ctx, &["-t", "built/cache:1", "--no-cache"]);
    assert!(cached_steps(&progress).is_empty(), "{progress}");
    let pruned = ok(&hull.hull(&["builder", "prune"]));
    assert!(pruned.starts_with("Total reclaimed space: "), "{pruned}");
    let (_, progress) = build_ok(&hull, &ctx, &["-t", "built/cache:1"]);
    assert!(cached_steps(&progress).is_empty(), "{progress}");
}

#[test]
fn bad_dockerfiles_fail_with_one_line_naming_the_line_and_leave_no_image() {
    let hull = Hull::with_busybox();
    let before = image_names(&hull);
    let check = |dockerfile: &str, needle: &str| {
        let ctx = Context::new(dockerfile);
        ctx.file("here.txt", "x");
        let out = build(&hull, &ctx, &["-q", "-t", "built/bad:1"]);
        assert_one_line_error(&out, 1, needle);
        assert_eq!(stdout(&out), "");
        assert_eq!(image_names(&hull), before, "no image is left");
    };
    check(
        "FROM hull-demo/busybox\nCOPY here.txt /\nCOPPY here.txt /x\n",
        "hull: build: Dockerfile:3: unknown instruction: COPPY",
    );
    check(
        "FROM hull-demo/busybox\n\n# the next line names a file the context lacks\nCOPY here.txt missing.txt /x/\n",
        "hull: build: Dockerfile:4: COPY here.txt missing.txt /x/: /missing.txt: not found in the build context",
    );
    check(
        "FROM hull-demo/busybox\nCOPY here.txt /\nRUN --mount=type=cache,target=/x echo hi\n",
        "hull: build: Dockerfile:3: RUN --mount=type=cache,target=/x echo hi: RUN --mount is not supported",
    );
    check(
        "FROM hull-demo/busybox\nADD http://example.invalid/x.tar.gz /\n",
        "needs the internet",
    );
    check(
        "FROM hull-demo/busybox AS a\nFROM a AS a\n",
        "Dockerfile:2: duplicate stage name \"a\"",
    );
    let ctx = Context::new("FROM hull-demo/busybox\n");
    let out = build(&hull, &ctx, &["--platform", "linux/arm64"]);
    assert_one_line_error(&out, 1, "linux/arm64 is not supported");
}

#[test]
fn a_registry_base_is_pulled_when_missing_and_again_with_pull() {
    let reg = hull_tests::registry::Registry::start();
    let archive = |name: &str| format!("oci-archive:{}", hull_tests::image_archive(name).display());
    reg.push(&archive("busybox.tar"), "hull/busybox:1", &[]);
    let hull = Hull::new();
    let base = reg.image("hull/busybox:1");
    let ctx = Context::new("ARG BASE\nFROM $BASE\nCOPY x /x\nCMD [\"cat\", \"/x\"]\n");
    ctx.file("x", "on a pulled base\n");
    let arg = format!("BASE={base}");
    let flags = [
        "--plain-http",
        "--build-arg",
        arg.as_str(),
        "-t",
        "built/pulled:1",
    ];
    let (first, progress) = build_ok(&hull, &ctx, &flags);
    assert!(
        progress.contains(&format!("#3 pulling {base}")),
        "{progress}"
    );
    assert!(image_names(&hull).contains(&base), "the base was pulled");
    assert_eq!(run(&hull, &["built/pulled:1"]), "on a pulled base\n");

    // The tag moves in the registry: without --pull the stored base is
    // used (all cached), with --pull the new one (nothing cached).
    reg.push(&archive("busybox-app.tar"), "hull/busybox:1", &[]);
    let (same, progress) = build_ok(&hull, &ctx, &flags);
    assert_eq!(same, first);
    assert_eq!(cached_steps(&progress).len(), 2, "{progress}");
    let mut with_pull = flags.to_vec();
    with_pull.push("--pull");
    let (moved, progress) = build_ok(&hull, &ctx, &with_pull);
    assert_ne!(moved, first);
    assert!(cached_steps(&progress).is_empty(), "{progress}");
    let config = &inspect(&hull, "built/pulled:1")["Config"]["config"];
    assert_eq!(config["User"], "app", "built on the new base: {config}");
}

#[test]
fn add_unpacks_local_archives_and_chown_takes_names_from_the_image() {
    let hull = Hull::with_busybox();
    let ctx = Context::new(
        "FROM hull-demo/busybox\n\
         ADD bundle.tar.gz /opt/\n\
         ADD plain.txt /opt/plain.txt\n\
         COPY --chown=app:app owned.txt /home/app/\n\
         CMD [\"sh\", \"-c\", \"cat /opt/bundle/hello /opt/plain.txt; stat -c '%u:%g' /home/app/owned.txt\"]\n",
    );
    ctx.file("bundle/hello", "from the archive\n");
    ctx.file("plain.txt", "not an archive\n");
    ctx.file("owned.txt", "mine\n");
    let tar = std::process::Command::new("tar")
        .args(["-czf", "bundle.tar.gz", "bundle"])
        .current_dir(ctx.path())
        .status()
        .unwrap();
    assert!(tar.success());
    fs::remove_dir_all(ctx.path().join("bundle")).unwrap();
    build_ok(&hull, &ctx, &["-t", "built/add:1"]);
    assert_eq!(
        run(&hull, &["built/add:1"]),
        "from the archive\nnot an archive\n1000:1000\n"
    );
}

#[test]
fn run_steps_run_in_vms_and_their_changes_deletions_included_become_layers() {
    let hull = Hull::with_busybox();
    let ctx = Context::new(
        "FROM hull-demo/busybox\n\
         ARG WHO=world\n\
         ENV GREETING=hello\n\
         WORKDIR /work\n\
         RUN echo \"$GREETING $WHO from $(pwd)\" > made.txt && mkdir -p /opt/tree/sub && echo x > /opt/tree/sub/f\n\
         RUN rm /etc/hull-release && rm -rf /opt/tree && mkdir /opt/tree && echo new > /opt/tree/only\n\
         USER app\n\
         RUN id -u > /tmp/uid\n\
         RUN [\"sh\", \"-c\", \"echo from the exec form >&2\"]\n\
         CMD [\"sh\", \"-c\", \"cat /work/made.txt /tmp/uid; ls -R /opt/tree; test -e /etc/hull-release || echo release gone\"]\n",
    );
    let (id, progress) = build_ok(&hull, &ctx, &["-t", "built/run:1"]);
    assert!(
        progress.contains(" from the exec form\n"),
        "step output streamed: {progress}"
    );
    assert_eq!(
        run(&hull, &["built/run:1"]),
        "hello world from /work\n1000\n/opt/tree:\nonly\nrelease gone\n"
    );
    assert_eq!(image_names(&hull).len(), 3, "no intermediate image is left");
    hull.assert_no_sandbox_left();

    // Cached: no VM at all, the same image.
    let (again, progress) = build_ok(&hull, &ctx, &["-t", "built/run:1"]);
    assert_eq!(again, id);
    let cached = cached_steps(&progress);
    assert_eq!(
        cached.iter().filter(|s| s.contains("] RUN ")).count(),
        4,
        "{progress}"
    );
}

#[test]
fn a_failing_run_step_names_its_exit_code_and_leaves_nothing() {
    let hull = Hull::with_busybox();
    let before = image_names(&hull);
    let ctx = Context::new("FROM hull-demo/busybox\nRUN echo before > /before\nRUN exit 7\n");
    let out = build(&hull, &ctx, &["-q", "-t", "built/fails:1"]);
    assert_one_line_error(
        &out,
        1,
        "hull: build: Dockerfile:3: RUN exit 7: did not complete successfully: exit code: 7",
    );
    assert_eq!(image_names(&hull), before);
    hull.assert_no_sandbox_left();
}
