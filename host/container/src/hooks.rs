//! The OCI hooks that run on the host (`prestart`, `createRuntime`,
//! `poststart`, `poststop`), each a program given the container's state
//! JSON on stdin, as the runtime spec's "Lifecycle" says. In a VM the
//! "runtime namespace" is the host's, so these run here, in the caller's
//! namespaces; `createContainer` and `startContainer` run in the guest (the
//! agent resolves them in the container's root, the only root with
//! programs in a VM; see `bundle::guest_spec`).

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::{Hook, Hooks};
use serde_json::json;

use crate::error::Error;

/// The host's hooks of a container, in the order the lifecycle calls them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostHook {
    /// Deprecated by the spec, still run by runc: at create, first.
    Prestart,
    /// At create, once the VM (the "runtime environment") exists.
    CreateRuntime,
    /// After `start`; a failure stops the container.
    Poststart,
    /// At delete; a failure is only reported.
    Poststop,
}

impl HostHook {
    pub fn name(self) -> &'static str {
        match self {
            Self::Prestart => "prestart",
            Self::CreateRuntime => "createRuntime",
            Self::Poststart => "poststart",
            Self::Poststop => "poststop",
        }
    }

    fn of(self, hooks: &Hooks) -> Vec<Hook> {
        match self {
            Self::Prestart => hooks.prestart(),
            Self::CreateRuntime => hooks.create_runtime(),
            Self::Poststart => hooks.poststart(),
            Self::Poststop => hooks.poststop(),
        }
        .clone()
        .unwrap_or_default()
    }
}

/// What a hook reads on stdin: the spec's state of the container.
pub struct HookState<'a> {
    pub oci_version: &'a str,
    pub id: &'a str,
    /// "creating", "created", "running" or "stopped".
    pub status: &'a str,
    pub pid: u32,
    pub bundle: &'a std::path::Path,
    pub annotations: &'a std::collections::HashMap<String, String>,
}

impl HookState<'_> {
    fn to_json(&self) -> Vec<u8> {
        let mut state = json!({
            "ociVersion": self.oci_version,
            "id": self.id,
            "status": self.status,
            "bundle": self.bundle,
            "annotations": self.annotations,
        });
        if self.pid != 0 {
            state["pid"] = json!(self.pid);
        }
        state.to_string().into_bytes()
    }
}

/// A hook's stderr, at most this much, goes into its error.
const STDERR_KEPT: usize = 4096;

/// Runs the hooks of `which` one after the other; the first that fails (or
/// outlives its `timeout`) ends the run with an error naming it.
pub fn run(which: HostHook, hooks: Option<&Hooks>, state: &HookState) -> Result<(), Error> {
    let Some(hooks) = hooks else {
        return Ok(());
    };
    let input = state.to_json();
    for (index, hook) in which.of(hooks).iter().enumerate() {
        run_one(hook, &input).map_err(|reason| Error::Hook {
            kind: which.name(),
            index,
            path: hook.path().display().to_string(),
            reason,
        })?;
    }
    Ok(())
}

fn run_one(hook: &Hook, input: &[u8]) -> Result<(), String> {
    let args = hook.args().clone().unwrap_or_default();
    let mut command = Command::new(hook.path());
    if let Some((arg0, rest)) = args.split_first() {
        command.arg0(arg0).args(rest);
    }
    // The spec: the hook's environment is `env`, nothing inherited.
    command.env_clear();
    for entry in hook.env().clone().unwrap_or_default() {
        if let Some((key, value)) = entry.split_once('=') {
            command.env(key, value);
        }
    }
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|e| format!("start: {e}"))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    // A hook that never reads its stdin must not block the runtime.
    let writer = {
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        })
    };
    let mut stderr = child.stderr.take().expect("piped stderr");
    let reader = std::thread::spawn(move || {
        let mut kept = Vec::new();
        let _ = (&mut stderr)
            .take(STDERR_KEPT as u64)
            .read_to_end(&mut kept);
        // Drain the rest so the hook never blocks on a full pipe.
        let _ = std::io::copy(&mut stderr, &mut std::io::sink());
        kept
    });
    let deadline = hook
        .timeout()
        .map(|secs| Instant::now() + Duration::from_secs(secs.max(1) as u64));
    let status = loop {
        match child.try_wait().map_err(|e| format!("wait: {e}"))? {
            Some(status) => break status,
            None if deadline.is_some_and(|d| Instant::now() >= d) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "timed out after {} s",
                    hook.timeout().unwrap_or_default()
                ));
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    let _ = writer.join();
    let stderr = reader.join().unwrap_or_default();
    if status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&stderr);
    let said = said.trim();
    Err(if said.is_empty() {
        format!("{status}")
    } else {
        format!("{status}: {said}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{HookBuilder, HooksBuilder};
    use std::collections::HashMap;

    fn hook(script: &str, timeout: Option<i64>) -> Hook {
        let mut builder = HookBuilder::default()
            .path("/bin/sh")
            .args(vec!["sh".into(), "-c".into(), script.into()])
            .env(vec!["HOOK_ENV=set".to_string()]);
        if let Some(t) = timeout {
            builder = builder.timeout(t);
        }
        builder.build().unwrap()
    }

    fn state<'a>(
        bundle: &'a std::path::Path,
        annotations: &'a HashMap<String, String>,
    ) -> HookState<'a> {
        HookState {
            oci_version: "1.0.2",
            id: "c1",
            status: "creating",
            pid: 42,
            bundle,
            annotations,
        }
    }

    #[test]
    fn hooks_get_the_state_on_stdin_and_only_their_env() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let script = format!(
            "cat > {}; echo \" $HOOK_ENV ${{HOME:-nohome}}\" >> {0}",
            out.display()
        );
        let hooks = HooksBuilder::default()
            .create_runtime(vec![hook(&script, None)])
            .build()
            .unwrap();
        let annotations = HashMap::new();
        run(
            HostHook::CreateRuntime,
            Some(&hooks),
            &state(dir.path(), &annotations),
        )
        .unwrap();
        let written = std::fs::read_to_string(&out).unwrap();
        let (json, env) = written.split_once(" ").unwrap();
        let seen: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(seen["id"], "c1");
        assert_eq!(seen["pid"], 42);
        assert_eq!(seen["status"], "creating");
        assert_eq!(env.trim(), "set nohome");
        // Hooks of another kind do not run.
        std::fs::remove_file(&out).unwrap();
        run(
            HostHook::Poststart,
            Some(&hooks),
            &state(dir.path(), &annotations),
        )
        .unwrap();
        assert!(!out.exists());
    }

    #[test]
    fn a_failing_or_slow_hook_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let annotations = HashMap::new();
        let hooks = HooksBuilder::default()
            .prestart(vec![
                hook("true", None),
                hook("echo nope >&2; exit 3", None),
            ])
            .poststop(vec![hook("sleep 30", Some(1))])
            .build()
            .unwrap();
        let err = run(
            HostHook::Prestart,
            Some(&hooks),
            &state(dir.path(), &annotations),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("prestart hook 1 (/bin/sh)"), "{err}");
        assert!(err.contains("exit status: 3: nope"), "{err}");
        let started = Instant::now();
        let err = run(
            HostHook::Poststop,
            Some(&hooks),
            &state(dir.path(), &annotations),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("timed out after 1 s"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_missing_program_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let annotations = HashMap::new();
        let missing = HookBuilder::default()
            .path("/no/such/hook")
            .build()
            .unwrap();
        let hooks = HooksBuilder::default()
            .poststart(vec![missing])
            .build()
            .unwrap();
        let err = run(
            HostHook::Poststart,
            Some(&hooks),
            &state(dir.path(), &annotations),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("/no/such/hook") && err.contains("start:"),
            "{err}"
        );
    }
}
