//! Builds against a real store in a temp dir, from `scratch` (no VM, no
//! registry): metadata, COPY, the cache, stages, errors.

use std::fs;

use serde_json::json;

use super::*;
use crate::run::{RunRequest, Unwired};

struct Fixture {
    dir: tempfile::TempDir,
    store: ImageStore,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(&dir.path().join("store")).unwrap();
        fs::create_dir(dir.path().join("ctx")).unwrap();
        Fixture { dir, store }
    }

    fn ctx(&self) -> std::path::PathBuf {
        self.dir.path().join("ctx")
    }

    fn file(&self, rel: &str, content: &str) {
        let p = self.ctx().join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    fn opts(&self, tag: &str) -> BuildOptions {
        BuildOptions {
            context: self.ctx(),
            tags: vec![tag.to_string()],
            cache_dir: self.dir.path().join("cache"),
            source_date_epoch: Some(1_700_000_000),
            ..Default::default()
        }
    }

    fn build(&self, opts: &BuildOptions) -> (Result<Built, Error>, String) {
        self.build_with(opts, &Unwired)
    }

    fn build_with<R: Runner>(&self, opts: &BuildOptions, r: &R) -> (Result<Built, Error>, String) {
        let mut out = Vec::new();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let res = rt.block_on(build(&self.store, opts, r, &mut out));
        (res, String::from_utf8(out).unwrap())
    }

    /// The files of an image's layers, `path -> content` (dirs as "/").
    fn files(&self, img: &Image) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for l in self.store.layers_of(&img.id).unwrap() {
            let f = fs::File::open(&l.path).unwrap();
            let mut a = tar::Archive::new(flate2::read::GzDecoder::new(f));
            for e in a.entries().unwrap() {
                let mut e = e.unwrap();
                let p = e.path().unwrap().to_string_lossy().into_owned();
                let mut s = String::new();
                if e.header().entry_type().is_file() {
                    let mut bytes = Vec::new();
                    std::io::Read::read_to_end(&mut e, &mut bytes).unwrap();
                    s = String::from_utf8_lossy(&bytes).into_owned();
                } else if e.header().entry_type().is_dir() {
                    s = "/".into();
                }
                out.push((p, s));
            }
        }
        out
    }
}

const FULL: &str = r#"
# A scratch image with everything the config can say.
FROM scratch
ARG VERSION=1.0
ENV APP_VERSION=$VERSION \
    HOME=/home/app
WORKDIR /app
COPY hello.txt ./
COPY conf/ /etc/app/
LABEL org.example.version="${APP_VERSION}" maintainer=hull
EXPOSE 8080 53/udp
VOLUME /data
USER 1000:1000
STOPSIGNAL SIGINT
HEALTHCHECK --interval=10s CMD ["/bin/check"]
SHELL ["/bin/ash", "-c"]
ONBUILD COPY . /src
ENTRYPOINT ["/bin/app"]
CMD --serve
"#;

fn full_fixture() -> Fixture {
    let f = Fixture::new();
    f.file("Dockerfile", FULL);
    f.file("hello.txt", "hello\n");
    f.file("conf/a.conf", "a=1\n");
    f.file("conf/sub/b.conf", "b=2\n");
    f
}

#[test]
fn metadata_and_copies_reach_the_image() {
    let f = full_fixture();
    let (res, out) = f.build(&f.opts("hull-test/full:1"));
    let built = res.unwrap_or_else(|e| panic!("{}\n{out}", crate::error_line(&e)));
    let img = &built.image;
    assert_eq!(img.name, "hull-test/full:1");
    let c = &img.config;
    assert_eq!(c.env, ["APP_VERSION=1.0", "HOME=/home/app"]);
    assert_eq!(c.working_dir, "/app");
    assert_eq!(c.user, "1000:1000");
    assert_eq!(c.entrypoint, ["/bin/app"]);
    assert_eq!(c.cmd, ["/bin/ash", "-c", "--serve"]);
    assert_eq!(c.labels["org.example.version"], "1.0");
    assert_eq!(c.exposed_ports, ["53/udp", "8080/tcp"]);
    assert_eq!(c.stop_signal.as_deref(), Some("SIGINT"));
    let config = f.store.config_of(&img.id).unwrap();
    assert_eq!(config["config"]["Volumes"], json!({"/data": {}}));
    assert_eq!(
        config["config"]["Healthcheck"],
        json!({"Test": ["CMD", "/bin/check"], "Interval": 10_000_000_000u64})
    );
    assert_eq!(config["config"]["OnBuild"], json!(["COPY . /src"]));
    assert_eq!(config["config"]["Shell"], json!(["/bin/ash", "-c"]));
    assert_eq!(config["created"], json!("2023-11-14T22:13:20Z"));
    let history = config["history"].as_array().unwrap();
    let by: Vec<(&str, bool)> = history
        .iter()
        .map(|h| {
            (
                h["created_by"].as_str().unwrap(),
                h["empty_layer"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    assert_eq!(by[0], ("ENV APP_VERSION=$VERSION     HOME=/home/app", true));
    assert_eq!(by[1], ("WORKDIR /app", false));
    assert_eq!(by[2], ("COPY hello.txt ./", false));
    assert_eq!(by.len(), 14, "{by:?}");
    // Three layers: WORKDIR's directory and the two COPYs.
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 3);
    let files = f.files(img);
    for want in [
        ("app/", "/"),
        ("app/hello.txt", "hello\n"),
        ("etc/", "/"),
        ("etc/app/", "/"),
        ("etc/app/a.conf", "a=1\n"),
        ("etc/app/sub/b.conf", "b=2\n"),
    ] {
        assert!(
            files.contains(&(want.0.to_string(), want.1.to_string())),
            "{want:?} in {files:?}"
        );
    }
    assert!(out.contains("#3 [1/16] FROM scratch"), "{out}");
    assert!(out.contains("exporting to image"), "{out}");
}

#[test]
fn a_rebuild_is_all_cached_and_a_change_misses_from_its_step_on() {
    let f = full_fixture();
    let opts = f.opts("hull-test/full:1");
    let first = f.build(&opts).0.unwrap();
    let (again, out) = f.build(&opts);
    let again = again.unwrap();
    assert_eq!(again.image.id, first.image.id);
    assert_eq!(again.ran, 0, "{out}");
    // Every step but FROM and ARG (which make nothing to cache).
    assert_eq!(out.matches("CACHED").count(), 14, "{out}");

    // A changed file: COPY conf/ and everything after run again.
    f.file("conf/sub/b.conf", "b=3\n");
    let (changed, out) = f.build(&opts);
    let changed = changed.unwrap();
    assert_ne!(changed.image.id, first.image.id);
    let lines: Vec<&str> = out.lines().collect();
    let cached_steps: Vec<&str> = lines
        .windows(2)
        .filter(|w| w[1].ends_with("CACHED"))
        .map(|w| w[0])
        .collect();
    assert_eq!(cached_steps.len(), 3, "{out}");
    assert!(cached_steps[2].contains("COPY hello.txt"), "{out}");
    assert!(
        out.contains("[6/16] COPY conf/ /etc/app/\n#8 DONE"),
        "{out}"
    );

    // A build arg the steps use is part of their keys.
    let mut with_arg = opts.clone();
    with_arg.build_args = vec![("VERSION".into(), "2.0".into())];
    let (res, out) = f.build(&with_arg);
    let img = res.unwrap().image;
    assert_eq!(img.config.env[0], "APP_VERSION=2.0");
    assert!(
        out.contains("[3/16] ENV APP_VERSION=$VERSION     HOME=/home/app\n#5 DONE"),
        "{out}"
    );

    // --no-cache runs everything and gives the same bytes.
    let mut no_cache = opts.clone();
    no_cache.no_cache = true;
    let (res, out) = f.build(&no_cache);
    assert_eq!(res.unwrap().image.id, changed.image.id);
    assert!(!out.contains("CACHED"), "{out}");
}

#[test]
fn multi_stage_copy_from_and_target() {
    let f = Fixture::new();
    f.file(
        "Dockerfile",
        "FROM scratch AS build\nCOPY src/ /out/\n\nFROM scratch AS unused\nCOPY missing /x\n\n\
         FROM scratch\nCOPY --from=build /out/bin.txt /usr/bin/tool\nCOPY --from=0 --chown=7:8 /out /opt/\n",
    );
    f.file("src/bin.txt", "binary\n");
    let (res, out) = f.build(&f.opts("hull-test/multi:1"));
    let img = res
        .unwrap_or_else(|e| panic!("{}\n{out}", crate::error_line(&e)))
        .image;
    assert!(
        !out.contains("unused"),
        "the unused stage is skipped: {out}"
    );
    assert!(out.contains("[build 1/2] FROM scratch"), "{out}");
    let files = f.files(&img);
    assert!(
        files.contains(&("usr/bin/tool".into(), "binary\n".into())),
        "{files:?}"
    );
    assert!(
        files.contains(&("opt/bin.txt".into(), "binary\n".into())),
        "{files:?}"
    );

    let mut t = f.opts("hull-test/multi:build");
    t.target = Some("build".into());
    let img = f.build(&t).0.unwrap().image;
    assert!(f
        .files(&img)
        .contains(&("out/bin.txt".into(), "binary\n".into())));
    t.target = Some("nope".into());
    let err = f.build(&t).0.unwrap_err();
    assert_eq!(err.to_string(), "target stage \"nope\" not found");
}

#[test]
fn failures_name_the_line_and_leave_no_image() {
    let f = Fixture::new();
    f.file(
        "Dockerfile",
        "FROM scratch\nCOPY present /\n\nCOPY absent /x\n",
    );
    f.file("present", "x");
    let (res, _) = f.build(&f.opts("hull-test/bad:1"));
    let e = res.unwrap_err();
    assert_eq!(
        crate::error_line(&e),
        "Dockerfile:4: COPY absent /x: /absent: not found in the build context"
    );
    assert!(f.store.list().unwrap().is_empty());

    f.file("Dockerfile", "FROM scratch\nCOPY present /\nRUN echo hi\n");
    let e = f.build(&f.opts("hull-test/bad:1")).0.unwrap_err();
    let line = crate::error_line(&e);
    assert!(
        line.starts_with("Dockerfile:3: RUN echo hi: RUN is not available"),
        "{line}"
    );
    assert!(f.store.list().unwrap().is_empty());

    f.file("Dockerfile", "FROM scratch\nCOPYY present /\n");
    let e = f.build(&f.opts("hull-test/bad:1")).0.unwrap_err();
    assert_eq!(
        crate::error_line(&e),
        "Dockerfile:2: unknown instruction: COPYY"
    );

    f.file("Dockerfile", "FROM scratch\nCOPY present /\n");
    let mut o = f.opts("hull-test/bad:1");
    o.platform = Some("linux/arm64".into());
    let e = f.build(&o).0.unwrap_err();
    assert_eq!(
        e.to_string(),
        "platform linux/arm64 is not supported: hull builds linux/amd64 only"
    );
    f.file(
        "Dockerfile",
        "FROM scratch\nADD https://example.invalid/x.tgz /\n",
    );
    let e = f.build(&f.opts("hull-test/bad:1")).0.unwrap_err();
    assert!(crate::error_line(&e).contains("needs the internet"), "{e}");
    assert!(f.store.list().unwrap().is_empty());
}

#[test]
fn dockerignore_add_archives_and_globs() {
    let f = Fixture::new();
    f.file(".dockerignore", "*.secret\nlogs/\n");
    f.file("a.txt", "a");
    f.file("b.txt", "b");
    f.file("key.secret", "s");
    f.file("logs/x.log", "l");
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o600);
    h.set_uid(5);
    h.set_gid(6);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut h, "pkg/x", &b"tar"[..]).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &tar.into_inner().unwrap()).unwrap();
    fs::write(f.ctx().join("pkg.tar.gz"), gz.finish().unwrap()).unwrap();
    f.file(
        "Dockerfile",
        "FROM scratch\nCOPY *.txt /t/\nCOPY . /all\nADD pkg.tar.gz /opt/\n",
    );
    let img = f.build(&f.opts("hull-test/ign:1")).0.unwrap().image;
    let files: Vec<String> = f.files(&img).into_iter().map(|(p, _)| p).collect();
    assert!(files.contains(&"t/a.txt".into()) && files.contains(&"t/b.txt".into()));
    assert!(files.contains(&"all/a.txt".into()));
    assert!(
        !files
            .iter()
            .any(|p| p.contains("secret") || p.contains("logs")),
        "{files:?}"
    );
    assert!(files.contains(&"opt/pkg/x".into()), "{files:?}");

    f.file("Dockerfile", "FROM scratch\nCOPY *.txt /t\n");
    let e = f.build(&f.opts("hull-test/ign:1")).0.unwrap_err();
    assert!(crate::error_line(&e).contains("must be a directory"), "{e}");
}

/// What the fake runner was asked: image id, argv, env.
type Ran = (String, Vec<String>, Vec<String>);

/// A runner that hands back a prepared layer and records what it ran.
struct FakeRunner {
    ran: std::sync::Mutex<Vec<Ran>>,
}

impl Runner for FakeRunner {
    fn check(&self) -> Result<(), RunError> {
        Ok(())
    }

    async fn run(
        &self,
        req: RunRequest<'_>,
        out: &mut (dyn Write + Send),
    ) -> Result<Option<NewLayer>, RunError> {
        self.ran
            .lock()
            .unwrap()
            .push((req.image.id.clone(), req.argv.clone(), req.env.clone()));
        writeln!(out, "output of {}", req.argv.join(" ")).unwrap();
        if req.argv.last().is_some_and(|a| a == "false") {
            return Err(RunError::Exit(1));
        }
        let mut l = crate::layer::Layer::default();
        l.add_dir("ran", (0, 0), 0);
        Ok(Some(l.write(req.layer_dir, Some(0)).unwrap()))
    }
}

#[test]
fn run_steps_go_through_the_runner_on_an_intermediate_image() {
    let f = Fixture::new();
    f.file(
        "Dockerfile",
        "FROM scratch\nARG WHO=world\nENV A=1\nCOPY a.txt /\nRUN echo hello $WHO\nCMD [\"x\"]\n",
    );
    f.file("a.txt", "a");
    let runner = FakeRunner {
        ran: Default::default(),
    };
    let (res, out) = f.build_with(&f.opts("hull-test/run:1"), &runner);
    let img = res
        .unwrap_or_else(|e| panic!("{}\n{out}", crate::error_line(&e)))
        .image;
    let ran = runner.ran.lock().unwrap().clone();
    assert_eq!(ran.len(), 1);
    assert_eq!(ran[0].1, ["/bin/sh", "-c", "echo hello $WHO"]);
    assert_eq!(ran[0].2, ["A=1", "WHO=world"]);
    assert!(
        out.contains("output of /bin/sh -c echo hello $WHO"),
        "{out}"
    );
    // The intermediate image is gone; the result has the RUN's layer.
    assert_eq!(f.store.list().unwrap().len(), 1);
    assert!(f.files(&img).contains(&("ran/".into(), "/".into())));

    // Cached the second time: no run.
    f.build_with(&f.opts("hull-test/run:1"), &runner).0.unwrap();
    assert_eq!(runner.ran.lock().unwrap().len(), 1);

    // A directory the RUN made is one to COPY into, not over.
    f.file(
        "Dockerfile",
        "FROM scratch\nARG WHO=world\nENV A=1\nCOPY a.txt /\nRUN echo hello $WHO\nCOPY a.txt /ran\n",
    );
    let (res, out) = f.build_with(&f.opts("hull-test/run:3"), &runner);
    let img = res
        .unwrap_or_else(|e| panic!("{}\n{out}", crate::error_line(&e)))
        .image;
    assert!(f.files(&img).contains(&("ran/a.txt".into(), "a".into())));

    f.file("Dockerfile", "FROM scratch\nCOPY a.txt /\nRUN false\n");
    let (res, out) = f.build_with(&f.opts("hull-test/run:2"), &runner);
    let e = res.unwrap_err();
    assert_eq!(
        crate::error_line(&e),
        "Dockerfile:3: RUN false: did not complete successfully: exit code: 1"
    );
    assert!(
        out.contains("ERROR: did not complete successfully: exit code: 1"),
        "{out}"
    );
    let names: Vec<String> = f
        .store
        .list()
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, ["hull-test/run:1", "hull-test/run:3"]);
}

#[test]
fn global_args_reach_from_and_stages_that_declare_them() {
    let f = Fixture::new();
    f.file(
        "Dockerfile",
        "ARG BASE=scratch\nARG STAGE=first\nARG WHERE=/default\n\
         FROM $BASE AS first\nCOPY a.txt /a.txt\n\
         FROM ${STAGE}\nARG WHERE\nARG UNSEEN\nENV WHERE=$WHERE UNSEEN=x${UNSEEN}x\n",
    );
    f.file("a.txt", "a");
    let (res, out) = f.build(&f.opts("hull-test/args:1"));
    let img = res
        .unwrap_or_else(|e| panic!("{}\n{out}", crate::error_line(&e)))
        .image;
    assert_eq!(img.config.env, ["WHERE=/default", "UNSEEN=xx"]);
    assert!(f.files(&img).contains(&("a.txt".into(), "a".into())));

    let mut o = f.opts("hull-test/args:2");
    o.build_args = vec![
        ("WHERE".into(), "/given".into()),
        ("UNUSED".into(), "1".into()),
    ];
    let (res, out) = f.build(&o);
    assert_eq!(res.unwrap().image.config.env[0], "WHERE=/given");
    assert!(
        out.contains("One or more build-args [UNUSED] were not consumed"),
        "{out}"
    );
}

#[test]
fn a_base_images_onbuild_triggers_run_in_the_child() {
    let f = Fixture::new();
    f.file(
        "Dockerfile",
        "FROM scratch\nONBUILD COPY a.txt /from-trigger.txt\n",
    );
    f.file("a.txt", "a");
    f.build(&f.opts("hull-test/parent:1")).0.unwrap();
    f.file("Dockerfile", "FROM hull-test/parent:1\nENV X=1\n");
    let (res, out) = f.build(&f.opts("hull-test/child:1"));
    let img = res
        .unwrap_or_else(|e| panic!("{}\n{out}", crate::error_line(&e)))
        .image;
    assert!(
        out.contains("[1/2] ONBUILD COPY a.txt /from-trigger.txt"),
        "{out}"
    );
    assert!(f
        .files(&img)
        .contains(&("from-trigger.txt".into(), "a".into())));
    let config = f.store.config_of(&img.id).unwrap();
    assert!(
        config["config"].get("OnBuild").is_none(),
        "triggers are not inherited"
    );
}

#[test]
fn a_symlinked_directory_of_the_base_is_not_replaced() {
    let f = Fixture::new();
    // A usrmerge-style base: /bin is a symlink to usr/bin.
    f.file("Dockerfile", "FROM scratch\nCOPY base/ /\n");
    fs::create_dir_all(f.ctx().join("base/usr/bin")).unwrap();
    fs::write(f.ctx().join("base/usr/bin/tool"), "t").unwrap();
    std::os::unix::fs::symlink("usr/bin", f.ctx().join("base/bin")).unwrap();
    f.build(&f.opts("hull-test/usrmerge:1")).0.unwrap();
    f.file(
        "Dockerfile",
        "FROM hull-test/usrmerge:1\nCOPY x /bin/x\nCOPY x /bin\n",
    );
    f.file("x", "x");
    let img = f.build(&f.opts("hull-test/child:1")).0.unwrap().image;
    let files = f.files(&img);
    let top: Vec<&str> = files[files.len() - 2..]
        .iter()
        .map(|(p, _)| p.as_str())
        .collect();
    assert_eq!(top, ["bin/x", "bin/x"], "{files:?}");
    assert!(!files.iter().any(|(p, _)| p == "bin/"), "{files:?}");
}
