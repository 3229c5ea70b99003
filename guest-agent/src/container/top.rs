//! The processes of a container for `hull top`: every pid in its cgroup
//! (and the cgroups the container made below it), with what `ps -ef` shows
//! of each from /proc. Processes may end while we look: those are skipped.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::Path;

use hull_protocol::ProcessInfo;

/// The processes in the cgroup at `cgroup_dir`, sorted by pid, described
/// from the proc filesystem at `proc_root`.
pub fn list(cgroup_dir: &Path, proc_root: &Path) -> io::Result<Vec<ProcessInfo>> {
    let mut pids = BTreeSet::new();
    collect_pids(cgroup_dir, &mut pids)?;
    Ok(pids
        .into_iter()
        .filter_map(|pid| describe(&proc_root.join(pid.to_string()), pid))
        .collect())
}

/// Adds the pids of `dir`'s `cgroup.procs` and of every cgroup below it.
fn collect_pids(dir: &Path, pids: &mut BTreeSet<u32>) -> io::Result<()> {
    let procs = fs::read_to_string(dir.join("cgroup.procs"))?;
    pids.extend(
        procs
            .lines()
            .filter_map(|line| line.trim().parse::<u32>().ok()),
    );
    for entry in fs::read_dir(dir)?.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            // A child cgroup removed meanwhile is no error.
            let _ = collect_pids(&entry.path(), pids);
        }
    }
    Ok(())
}

/// One process from its /proc directory; None when it is gone.
fn describe(dir: &Path, pid: u32) -> Option<ProcessInfo> {
    let status = fs::read_to_string(dir.join("status")).ok()?;
    let cmdline = fs::read(dir.join("cmdline")).unwrap_or_default();
    let (ppid, uid, name) = parse_status(&status);
    Some(ProcessInfo {
        pid,
        ppid,
        uid,
        command: command_line(&cmdline, name),
    })
}

/// (ppid, effective uid, name) from /proc/PID/status; the effective uid is
/// what `ps` shows as UID.
fn parse_status(status: &str) -> (u32, u32, &str) {
    let mut fields = (0, 0, "");
    for line in status.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key {
            "PPid" => fields.0 = value.trim().parse().unwrap_or(0),
            "Uid" => {
                // Real, effective, saved, filesystem.
                let mut ids = value.split_whitespace().filter_map(|v| v.parse().ok());
                let real = ids.next().unwrap_or(0);
                fields.1 = ids.next().unwrap_or(real);
            }
            "Name" => fields.2 = value.trim(),
            _ => {}
        }
    }
    fields
}

/// The NUL-separated arguments joined by spaces, or `[name]` without any
/// (kernel threads, zombies).
fn command_line(cmdline: &[u8], name: &str) -> String {
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect();
    let args = match args.iter().rposition(|arg| !arg.is_empty()) {
        Some(last) => &args[..=last],
        None => return format!("[{name}]"),
    };
    args.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tsleep\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t42\n\
        Pid:\t42\nPPid:\t7\nTracerPid:\t0\nUid:\t1000\t1001\t1000\t1000\n\
        Gid:\t1000\t1000\t1000\t1000\n";

    #[test]
    fn status_and_cmdline_parse() {
        assert_eq!(parse_status(STATUS), (7, 1001, "sleep"));
        assert_eq!(command_line(b"sleep\x0030\x00", "sleep"), "sleep 30");
        assert_eq!(
            command_line(b"sh\x00-c\x00echo a b\x00", "sh"),
            "sh -c echo a b"
        );
        assert_eq!(command_line(b"", "kworker/0:1"), "[kworker/0:1]");
        // A process that rewrote its arguments without NULs.
        assert_eq!(command_line(b"nginx: worker", "nginx"), "nginx: worker");
    }

    #[test]
    fn lists_nested_cgroups_sorted() {
        let root = std::env::temp_dir().join(format!("hull-agent-top-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let (cgroup, proc_root) = (root.join("cg"), root.join("proc"));
        fs::create_dir_all(cgroup.join("child/grandchild")).unwrap();
        fs::write(cgroup.join("cgroup.procs"), "42\n9\n").unwrap();
        fs::write(cgroup.join("child/cgroup.procs"), "").unwrap();
        fs::write(cgroup.join("child/grandchild/cgroup.procs"), "100\n").unwrap();
        fs::write(cgroup.join("memory.max"), "max\n").unwrap();
        let process = |pid: u32, status: &str, cmdline: &[u8]| {
            let dir = proc_root.join(pid.to_string());
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("status"), status).unwrap();
            fs::write(dir.join("cmdline"), cmdline).unwrap();
        };
        process(9, "Name:\tsh\nPPid:\t0\nUid:\t0\t0\t0\t0\n", b"/bin/sh\x00");
        process(42, STATUS, b"sleep\x0030\x00");
        // 100 has exited: no /proc entry.
        let listed = list(&cgroup, &proc_root).unwrap();
        assert_eq!(
            listed,
            vec![
                ProcessInfo {
                    pid: 9,
                    ppid: 0,
                    uid: 0,
                    command: "/bin/sh".into()
                },
                ProcessInfo {
                    pid: 42,
                    ppid: 7,
                    uid: 1001,
                    command: "sleep 30".into()
                },
            ]
        );
        fs::remove_dir_all(&root).unwrap();
        assert!(list(&cgroup, &proc_root).is_err());
    }
}
