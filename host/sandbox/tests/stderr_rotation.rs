//! A supervisor's stderr (its `supervisor.log`) rotates at its cap: this
//! test runs itself again with stderr pointed at a file, and the child
//! writes three times the cap through `capped_log::Stderr`.

use std::io::Write;
use std::process::{Command, Stdio};

use hull_sandbox::capped_log::{Stderr, STDERR_LIMIT};

const CHILD: &str = "HULL_TEST_STDERR_CHILD";

/// The child's part; run by the test below, never on its own.
#[test]
#[ignore = "the child half of a_file_stderr_rotates_at_its_cap"]
fn stderr_writer_in_a_child() {
    assert!(std::env::var_os(CHILD).is_some(), "run by the parent test");
    let line = format!("{}\n", "x".repeat(99));
    for _ in 0..3 * STDERR_LIMIT / 100 {
        Stderr.write_all(line.as_bytes()).unwrap();
    }
    Stderr.write_all(b"the last line\n").unwrap();
}

#[test]
fn a_file_stderr_rotates_at_its_cap() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("supervisor.log");
    let file = std::fs::File::create(&log).unwrap();
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "stderr_writer_in_a_child", "--ignored"])
        .env(CHILD, "1")
        .stdout(Stdio::null())
        .stderr(file)
        .status()
        .unwrap();
    assert!(status.success());
    let size = |p: &std::path::Path| std::fs::metadata(p).unwrap().len();
    let older = dir.path().join("supervisor.log.1");
    assert!(older.exists(), "rotated at least once");
    assert!(size(&older) <= STDERR_LIMIT + 100, "{}", size(&older));
    assert!(size(&log) <= STDERR_LIMIT + 100, "{}", size(&log));
    let names = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(names, 2, "the log and one older file");
    let tail = std::fs::read_to_string(&log).unwrap();
    assert!(
        tail.ends_with("the last line\n"),
        "the newest lines are kept"
    );
}
