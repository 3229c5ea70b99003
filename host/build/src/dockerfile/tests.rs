//! The parser against whole Dockerfiles written the way people write them
//! (`testdata/`).

use super::*;

fn testdata(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn multistage_c_program() {
    let f = parse(&testdata("multistage-c.Dockerfile")).unwrap();
    assert_eq!(f.syntax.as_deref(), Some("docker/dockerfile:1.4"));
    assert_eq!(f.global_args.len(), 2);
    assert_eq!(
        f.global_args[0].kind,
        Kind::Arg(vec![("DEBIAN".into(), Some("bookworm".into()))])
    );
    assert_eq!(f.stages.len(), 2);
    let build = &f.stages[0];
    assert_eq!(build.name.as_deref(), Some("build"));
    assert_eq!(build.image, "debian:${DEBIAN}-slim");
    assert_eq!(build.platform.as_deref(), Some("linux/amd64"));
    assert_eq!(build.from.line, 6);
    let keywords: Vec<&str> = build.instructions.iter().map(|i| i.keyword()).collect();
    assert_eq!(keywords, ["ARG", "ENV", "RUN", "WORKDIR", "COPY", "RUN"]);
    assert_eq!(
        build.instructions[1].kind,
        Kind::Env(vec![
            ("DEBIAN_FRONTEND".into(), "noninteractive".into()),
            ("CFLAGS".into(), "\"-O2 -static\"".into()),
        ])
    );
    // The comment inside the continuation is gone, the lines joined.
    let Kind::Run {
        command: Command::Shell(run),
        ..
    } = &build.instructions[2].kind
    else {
        panic!("{:?}", build.instructions[2])
    };
    assert_eq!(build.instructions[2].line, 10);
    assert!(
        run.starts_with("apt-get update  && apt-get install"),
        "{run}"
    );
    assert!(run.ends_with("&& rm -rf /var/lib/apt/lists/*"), "{run}");
    assert!(!run.contains("keep the image"));

    let last = &f.stages[1];
    assert_eq!(last.name.as_deref(), Some("final"));
    let Kind::Copy(copy) = &last.instructions[1].kind else {
        panic!()
    };
    assert_eq!(copy.from.as_deref(), Some("build"));
    assert_eq!(copy.chown.as_deref(), Some("1000:1000"));
    assert_eq!(copy.chmod.as_deref(), Some("0755"));
    assert_eq!(
        last.instructions[3].kind,
        Kind::Expose(vec!["8080/tcp".into(), "8081".into()])
    );
    let Kind::Healthcheck(h) = &last.instructions[4].kind else {
        panic!()
    };
    assert_eq!(h.test, ["CMD", "/usr/local/bin/hello", "--check"]);
    assert_eq!(h.timeout, Some(3_000_000_000));
    assert_eq!(
        last.instructions[7].kind,
        Kind::Cmd(Command::Exec(vec!["--serve".into()]))
    );
}

#[test]
fn backtick_escape() {
    let f = parse(&testdata("escape-backtick.Dockerfile")).unwrap();
    assert_eq!(f.escape, '`');
    let Kind::Copy(c) = &f.stages[0].instructions[0].kind else {
        panic!()
    };
    assert_eq!(c.sources, [r"C:\data\file.txt"]);
    assert_eq!(c.dest, "/data/");
    assert_eq!(
        f.stages[0].instructions[1].text,
        "RUN echo `$HOME     && echo done"
    );
}

#[test]
fn node_app_with_lowercase_keywords() {
    let f = parse(&testdata("node-app.Dockerfile")).unwrap();
    let s = &f.stages[0];
    let kinds: Vec<&str> = s.instructions.iter().map(|i| i.keyword()).collect();
    assert_eq!(
        kinds,
        [
            "WORKDIR",
            "COPY",
            "RUN",
            "COPY",
            "ENV",
            "EXPOSE",
            "VOLUME",
            "SHELL",
            "ONBUILD",
            "ONBUILD",
            "MAINTAINER",
            "CMD"
        ]
    );
    assert_eq!(
        s.instructions[6].kind,
        Kind::Volume(vec!["/usr/src/app/data".into(), "/tmp".into()])
    );
    assert_eq!(
        s.instructions[8].kind,
        Kind::Onbuild("COPY . /usr/src/app".into())
    );
    assert_eq!(s.instructions[11].text, "CMD [\"node\", \"server.js\"]");
}

#[test]
fn errors_name_their_line() {
    let e = parse(&testdata("bad-instruction.Dockerfile")).unwrap_err();
    assert_eq!(
        e,
        LineError {
            line: 4,
            error: SyntaxError::UnknownInstruction("RUNN".into())
        }
    );
    assert_eq!(
        parse("# just a comment\n").unwrap_err().error,
        SyntaxError::NoFrom
    );
    assert_eq!(
        parse("ENV A=1\nFROM x\n").unwrap_err(),
        LineError {
            line: 1,
            error: SyntaxError::BeforeFrom("ENV".into())
        }
    );
    assert_eq!(
        parse("FROM a AS x\nFROM b AS X\n").unwrap_err(),
        LineError {
            line: 2,
            error: SyntaxError::DuplicateStage("x".into())
        }
    );
}
