use super::*;

/// A raw tar entry with exactly this name (the `tar` crate's builder
/// refuses the hostile ones).
fn raw_entry(out: &mut Vec<u8>, name: &[u8], kind: u8, link: &[u8], data: &[u8]) {
    let mut header = tar::Header::new_ustar();
    header.as_mut_bytes()[..name.len()].copy_from_slice(name);
    header.set_mode(0o644);
    header.set_size(data.len() as u64);
    header.set_entry_type(tar::EntryType::new(kind));
    header.as_mut_bytes()[157..157 + link.len()].copy_from_slice(link);
    header.set_cksum();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn end(mut out: Vec<u8>) -> Vec<u8> {
    out.extend_from_slice(&[0; 1024]);
    out
}

fn check(bytes: &[u8]) -> Result<CheckedLayer, CommitError> {
    check_layer(bytes, &Limits::default())
}

fn one_line(e: &CommitError) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
}

#[test]
fn a_plain_layer_passes_with_its_diff_id() {
    let mut out = Vec::new();
    raw_entry(&mut out, b"etc/", b'5', b"", b"");
    raw_entry(&mut out, b"etc/motd", b'0', b"", b"hello");
    raw_entry(&mut out, b"etc/.wh.gone", b'0', b"", b"");
    raw_entry(&mut out, b"etc/again", b'1', b"etc/motd", b"");
    raw_entry(&mut out, b"bin/sh", b'2', b"/bin/busybox", b"");
    let out = end(out);
    let checked = check(&out).unwrap();
    assert_eq!(
        checked.diff_id,
        format!("sha256:{}", crate::digest::sha256_hex(&out))
    );
    assert_eq!((checked.entries, checked.bytes), (5, 5));
    assert_eq!(checked.size, out.len() as u64);
}

#[test]
fn paths_that_climb_or_are_absolute_are_refused_on_one_line() {
    for name in [&b"../escape"[..], b"/etc/passwd", b"a/../../b"] {
        let mut out = Vec::new();
        raw_entry(&mut out, name, b'0', b"", b"x");
        let e = check(&end(out)).unwrap_err();
        let line = one_line(&e);
        assert!(
            line.contains("the path is absolute, empty or has .."),
            "{line}"
        );
        assert!(!line.contains('\n'));
    }
}

#[test]
fn hard_links_must_stay_in_the_layer() {
    let mut out = Vec::new();
    raw_entry(&mut out, b"a", b'1', b"../../etc/shadow", b"");
    let e = check(&end(out)).unwrap_err();
    assert!(one_line(&e).contains("target is absolute or has .."), "{e}");
    let mut out = Vec::new();
    raw_entry(&mut out, b"a", b'1', b"etc/shadow", b"");
    let e = check(&end(out)).unwrap_err();
    assert!(
        one_line(&e).contains("a hard link to nothing before it"),
        "{e}"
    );
}

#[test]
fn a_huge_pax_header_is_refused_before_it_is_read() {
    let mut out = Vec::new();
    let mut header = tar::Header::new_ustar();
    header.as_mut_bytes()[..4].copy_from_slice(b"pax0");
    header.set_size(2 << 20);
    header.set_entry_type(tar::EntryType::XHeader);
    header.set_cksum();
    out.extend_from_slice(header.as_bytes());
    out.resize(out.len() + (2 << 20), b'a');
    let e = check(&end(out)).unwrap_err();
    assert!(matches!(e, CommitError::Bounds(_)), "{e:?}");
    assert!(one_line(&e).contains("over the bound"), "{}", one_line(&e));
}

#[test]
fn too_many_entries_are_refused() {
    let mut out = Vec::new();
    for i in 0..5 {
        raw_entry(&mut out, format!("f{i}").as_bytes(), b'0', b"", b"");
    }
    let limits = Limits {
        max_layer_entries: 3,
        ..Limits::default()
    };
    let e = check_layer(&end(out)[..], &limits).unwrap_err();
    assert!(
        one_line(&e).contains("more than 3 entries in the layer"),
        "{}",
        one_line(&e)
    );
}

#[test]
fn garbage_is_not_a_tar() {
    let garbage = vec![0x5a; 4096];
    let e = check(&garbage).unwrap_err();
    assert!(matches!(e, CommitError::Tar(_)), "{e:?}");
}

#[test]
fn changes_parse_as_docker_commit_takes_them() {
    let parse = |s| ConfigChange::parse(s).unwrap();
    assert_eq!(
        parse(r#"CMD ["/bin/sh", "-c", "echo hi"]"#),
        ConfigChange::Cmd(vec!["/bin/sh".into(), "-c".into(), "echo hi".into()])
    );
    assert_eq!(
        parse("CMD echo hi"),
        ConfigChange::Cmd(vec!["/bin/sh".into(), "-c".into(), "echo hi".into()])
    );
    assert_eq!(parse("ENV A=b"), ConfigChange::Env("A".into(), "b".into()));
    assert_eq!(parse("EXPOSE 80"), ConfigChange::Expose("80/tcp".into()));
    assert!(ConfigChange::parse("FROM x").is_err());
    assert!(ConfigChange::parse("CMD").is_err());
}

#[test]
fn the_new_config_adds_the_diff_id_history_and_changes() {
    let base = json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin", "A=1"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:aa"]},
        "history": [{"created_by": "base"}],
    });
    let opts = CommitOptions {
        author: Some("me".into()),
        comment: Some("msg".into()),
        created_by: "sh -c touch /x".into(),
        created: "2024-01-01T00:00:00Z".into(),
        changes: vec![
            ConfigChange::Env("A".into(), "2".into()),
            ConfigChange::Label("k".into(), "v".into()),
        ],
        ..Default::default()
    };
    let config: Value = serde_json::from_slice(&new_config(base, "sha256:bb", &opts)).unwrap();
    assert_eq!(
        config["rootfs"]["diff_ids"],
        json!(["sha256:aa", "sha256:bb"])
    );
    assert_eq!(config["history"][1]["comment"], "msg");
    assert_eq!(config["author"], "me");
    assert_eq!(config["config"]["Env"], json!(["PATH=/bin", "A=2"]));
    assert_eq!(config["config"]["Labels"]["k"], "v");
    assert_eq!(config["config"]["Cmd"], json!(["sh"]));
}
