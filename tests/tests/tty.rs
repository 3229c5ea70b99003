//! `hull run -t`: a pty inside the guest, from the container's own devpts.

use hull_tests::{stderr, stdout, Hull};

const IMAGE: &str = "hull-demo/busybox";

#[test]
fn output_goes_through_a_terminal() {
    let hull = Hull::with_busybox();
    let out = hull.hull(&[
        "run",
        "--rm",
        "-t",
        IMAGE,
        "sh",
        "-c",
        "echo a; echo b >&2; tty",
    ]);
    assert_eq!(
        stdout(&out),
        "a\r\nb\r\n/dev/pts/0\r\n",
        "stderr: {}",
        stderr(&out)
    );
    assert_eq!(stderr(&out), "", "a terminal merges stderr into its output");
}

#[test]
fn the_terminal_has_the_size_passed() {
    let hull = Hull::with_busybox();
    // Without a terminal of its own, hull takes LINES and COLUMNS.
    let out = hull
        .command(&["run", "--rm", "-t", IMAGE, "stty", "size"])
        .env("LINES", "33")
        .env("COLUMNS", "101")
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "33 101\r\n", "stderr: {}", stderr(&out));
}

#[test]
fn an_interactive_shell_on_a_terminal_reads_commands_and_exits_with_its_status() {
    let hull = Hull::with_busybox();
    let out = hull.hull_with_stdin(
        &["run", "--rm", "-i", "-t", IMAGE, "sh"],
        b"echo hello-$((40+2))\nexit 3\n",
    );
    assert!(
        stdout(&out).contains("hello-42"),
        "stdout: {:?} stderr: {}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn ctrl_c_on_the_terminal_interrupts_the_container() {
    let hull = Hull::with_busybox();
    // 0x03 is what a terminal in raw mode sends for Ctrl-C; the guest's
    // line discipline turns it into SIGINT for the foreground job.
    let script = "trap 'echo interrupted; exit 7' INT; echo ready; while :; do sleep 0.1; done";
    let mut child = hull
        .command(&["run", "--rm", "-i", "-t", IMAGE, "sh", "-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::{BufRead, BufReader, Write};
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap().trim_end(), "ready");
    stdin.write_all(&[0x03]).unwrap();
    stdin.flush().unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("interrupted")), "{rest:?}");
    assert_eq!(child.wait().unwrap().code(), Some(7));
}
