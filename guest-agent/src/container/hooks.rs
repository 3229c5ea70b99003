//! The spec's hooks that run in the guest, `createContainer` and
//! `startContainer` (see `process::hooks` for where and how), and the
//! container's state JSON they read on stdin (runtime spec "State"):
//! `ociVersion`, `id`, `status` ("creating" for createContainer,
//! "created" for startContainer), `pid` (the container's process as the
//! agent sees it), `bundle` and `annotations`. The bundle is a host
//! directory the guest does not have: it is given as "" unless the spec
//! names it in the annotation `org.hull.bundle`. Host hooks (prestart,
//! createRuntime, poststart, poststop) are the host's.

use std::time::Duration;

use oci_spec::runtime::{Hook, Spec};
use thiserror::Error;

use crate::process::{ContainerHooks, HookSpec};

/// The annotation that may carry the bundle's host path into the state.
pub const BUNDLE_ANNOTATION: &str = "org.hull.bundle";
/// The annotation that carries the caller's container id (runc's id; the
/// agent knows the container by hull's own).
pub const ID_ANNOTATION: &str = "org.hull.id";
/// hull's own annotations, left out of the state.
const OWN_ANNOTATIONS: &str = "org.hull.";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum HookError {
    #[error("hooks.{kind}[{index}]: path {path:?} is not absolute")]
    Path {
        kind: &'static str,
        index: usize,
        path: String,
    },
    #[error("hooks.{kind}[{index}]: timeout {timeout} is not positive")]
    Timeout {
        kind: &'static str,
        index: usize,
        timeout: i64,
    },
}

/// A JSON string literal of `s`.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn specs(kind: &'static str, hooks: Option<&Vec<Hook>>) -> Result<Vec<HookSpec>, HookError> {
    hooks
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(index, hook)| {
            let path = hook.path().to_string_lossy().into_owned();
            if !hook.path().is_absolute() {
                return Err(HookError::Path { kind, index, path });
            }
            let timeout = match hook.timeout() {
                Some(t) if t <= 0 => {
                    return Err(HookError::Timeout {
                        kind,
                        index,
                        timeout: t,
                    })
                }
                Some(t) => Some(Duration::from_secs(t as u64)),
                None => None,
            };
            Ok(HookSpec {
                path,
                args: hook.args().clone().unwrap_or_default(),
                env: hook.env().clone().unwrap_or_default(),
                timeout,
            })
        })
        .collect()
}

/// The guest's hooks of `spec` for container `id`, with its state.
pub fn from_spec(spec: &Spec, id: &str) -> Result<ContainerHooks, HookError> {
    let hooks = spec.hooks().as_ref();
    let create_container = specs(
        "createContainer",
        hooks.and_then(|h| h.create_container().as_ref()),
    )?;
    let start_container = specs(
        "startContainer",
        hooks.and_then(|h| h.start_container().as_ref()),
    )?;
    if create_container.is_empty() && start_container.is_empty() {
        return Ok(ContainerHooks::default());
    }
    let annotations = spec.annotations().clone().unwrap_or_default();
    let mut pairs: Vec<(&String, &String)> = annotations
        .iter()
        .filter(|(k, _)| !k.starts_with(OWN_ANNOTATIONS))
        .collect();
    pairs.sort();
    let annotations = pairs
        .iter()
        .map(|(k, v)| format!("{}:{}", json_string(k), json_string(v)))
        .collect::<Vec<_>>()
        .join(",");
    let bundle = annotations_bundle(spec);
    let given = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(ID_ANNOTATION));
    let id = given.map_or(id, String::as_str);
    let head = |status: &str| {
        format!(
            "{{\"ociVersion\":{},\"id\":{},\"status\":\"{status}\",\"pid\":",
            json_string(spec.version()),
            json_string(id)
        )
    };
    Ok(ContainerHooks {
        create_container,
        start_container,
        creating: head("creating"),
        created: head("created"),
        after_pid: format!(
            ",\"bundle\":{},\"annotations\":{{{annotations}}}}}",
            json_string(&bundle)
        ),
    })
}

fn annotations_bundle(spec: &Spec) -> String {
    spec.annotations()
        .as_ref()
        .and_then(|a| a.get(BUNDLE_ANNOTATION).cloned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(hooks: &str) -> Spec {
        serde_json::from_str(&format!(
            r#"{{"ociVersion":"1.2.0","annotations":{{"b":"2","a":"q\"uote"}},"hooks":{hooks}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn only_the_guests_hooks_are_kept_with_their_state() {
        let hooks = from_spec(
            &spec(
                r#"{"prestart":[{"path":"/host/x"}],
                    "createContainer":[{"path":"/bin/c","args":["c","-v"],"env":["A=1"],"timeout":3}],
                    "startContainer":[{"path":"/bin/s"}]}"#,
            ),
            "box",
        )
        .unwrap();
        assert_eq!(
            hooks.create_container,
            vec![HookSpec {
                path: "/bin/c".into(),
                args: vec!["c".into(), "-v".into()],
                env: vec!["A=1".into()],
                timeout: Some(Duration::from_secs(3)),
            }]
        );
        assert_eq!(hooks.start_container.len(), 1);
        let state = format!("{}42{}", hooks.creating, hooks.after_pid);
        let parsed: serde_json::Value = serde_json::from_str(&state).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({
                "ociVersion": "1.2.0", "id": "box", "status": "creating", "pid": 42,
                "bundle": "", "annotations": {"a": "q\"uote", "b": "2"}
            })
        );
        let created: serde_json::Value =
            serde_json::from_str(&format!("{}7{}", hooks.created, hooks.after_pid)).unwrap();
        assert_eq!(created["status"], "created");
    }

    #[test]
    fn no_guest_hooks_no_state() {
        let hooks = from_spec(&spec(r#"{"poststop":[{"path":"/x"}]}"#), "box").unwrap();
        assert!(hooks.is_empty());
        assert_eq!(hooks, ContainerHooks::default());
    }

    #[test]
    fn bad_hooks_name_their_place() {
        let err = from_spec(&spec(r#"{"startContainer":[{"path":"rel"}]}"#), "b").unwrap_err();
        assert_eq!(
            err.to_string(),
            "hooks.startContainer[0]: path \"rel\" is not absolute"
        );
        let err = from_spec(
            &spec(r#"{"createContainer":[{"path":"/x"},{"path":"/y","timeout":0}]}"#),
            "b",
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("hooks.createContainer[1]"),
            "{err}"
        );
    }
}
