//! What a stage has built so far: the base image, the new layers on it,
//! the image config (Docker's extensions kept) and the directories the
//! new layers made; and the metadata instructions (`ENV`, `WORKDIR`,
//! `USER`, `CMD`, …) applied to the config with their history entries.
//!
//! The config is kept as JSON rather than `oci_spec`'s struct: Docker's
//! `Healthcheck`, `OnBuild` and `Shell` are not in the OCI spec, and an
//! image's config must come back out as it went in.

use std::collections::BTreeSet;

use hull_image::NewLayer;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::dockerfile::Healthcheck;

/// The default shell of shell-form commands.
pub const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// A stage's result so far.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct State {
    /// The stored image below the new layers (`sha256:…`), none for
    /// `scratch`.
    pub base: Option<String>,
    /// The new layers, bottom first, as the step cache keeps them.
    pub layers: Vec<CachedLayer>,
    pub config: Value,
    /// Directories the new layers made (absolute paths).
    pub dirs: BTreeSet<String>,
    /// The step cache key of this state.
    pub key: String,
}

/// A layer of the cache: its file name under the cache's layer
/// directory, digest, diff id, size.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CachedLayer {
    pub digest: String,
    pub diff_id: String,
    pub size: u64,
}

impl CachedLayer {
    pub fn from_new(l: &NewLayer) -> Self {
        CachedLayer {
            digest: l.digest.clone(),
            diff_id: l.diff_id.clone(),
            size: l.size,
        }
    }
}

impl State {
    /// A state on a stored image's config (or `scratch`'s empty one).
    pub fn from_base(base: Option<String>, mut config: Value, key: String) -> State {
        if !config.is_object() {
            config = json!({});
        }
        let obj = config.as_object_mut().expect("an object");
        obj.insert("architecture".into(), json!("amd64"));
        obj.insert("os".into(), json!("linux"));
        obj.remove("rootfs");
        if !obj.get("config").is_some_and(Value::is_object) {
            obj.insert("config".into(), json!({}));
        }
        // The base's ONBUILD triggers are run (not inherited).
        if let Some(c) = obj.get_mut("config").and_then(Value::as_object_mut) {
            c.remove("OnBuild");
        }
        State {
            base,
            layers: Vec::new(),
            config,
            dirs: BTreeSet::new(),
            key,
        }
    }

    fn cfg(&mut self) -> &mut Map<String, Value> {
        if !self.config["config"].is_object() {
            self.config["config"] = json!({});
        }
        self.config["config"].as_object_mut().expect("an object")
    }

    fn cfg_ref(&self) -> Option<&Map<String, Value>> {
        self.config.get("config").and_then(Value::as_object)
    }

    fn strings(&self, field: &str) -> Vec<String> {
        self.cfg_ref()
            .and_then(|c| c.get(field))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn string(&self, field: &str) -> String {
        self.cfg_ref()
            .and_then(|c| c.get(field))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }

    /// `Env` as `(name, value)` pairs.
    pub fn env(&self) -> Vec<(String, String)> {
        self.strings("Env")
            .into_iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv, String::new()),
            })
            .collect()
    }

    pub fn set_env(&mut self, name: &str, value: &str) {
        let mut env = self.strings("Env");
        let prefix = format!("{name}=");
        let entry = format!("{name}={value}");
        match env
            .iter_mut()
            .find(|e| e.starts_with(&prefix) || *e == name)
        {
            Some(e) => *e = entry,
            None => env.push(entry),
        }
        self.cfg().insert("Env".into(), json!(env));
    }

    pub fn workdir(&self) -> String {
        match self.string("WorkingDir") {
            w if w.is_empty() => "/".to_string(),
            w => w,
        }
    }

    /// `WORKDIR path`: relative paths join the current one.
    pub fn set_workdir(&mut self, path: &str) -> String {
        let joined = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("{}/{path}", self.workdir())
        };
        let clean = format!("/{}", crate::context::clean(&joined).join("/"));
        self.cfg().insert("WorkingDir".into(), json!(clean));
        clean
    }

    pub fn user(&self) -> String {
        self.string("User")
    }

    pub fn set(&mut self, field: &str, value: Value) {
        self.cfg().insert(field.into(), value);
    }

    pub fn unset(&mut self, field: &str) {
        self.cfg().remove(field);
    }

    /// `SHELL`, or `/bin/sh -c`.
    pub fn shell(&self) -> Vec<String> {
        match self.strings("Shell") {
            s if s.is_empty() => DEFAULT_SHELL.iter().map(|s| s.to_string()).collect(),
            s => s,
        }
    }

    /// Adds entries to an object field (`Labels`, `ExposedPorts`,
    /// `Volumes`).
    pub fn insert_into(&mut self, field: &str, key: &str, value: Value) {
        let cfg = self.cfg();
        if !cfg.get(field).is_some_and(Value::is_object) {
            cfg.insert(field.into(), json!({}));
        }
        cfg[field]
            .as_object_mut()
            .expect("an object")
            .insert(key.to_string(), value);
    }

    pub fn push_onbuild(&mut self, trigger: &str) {
        let mut v = self.strings("OnBuild");
        v.push(trigger.to_string());
        self.cfg().insert("OnBuild".into(), json!(v));
    }

    /// The base's triggers, read before [`State::from_base`] drops them.
    pub fn onbuild_of(config: &Value) -> Vec<String> {
        config["config"]["OnBuild"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn set_healthcheck(&mut self, h: &Healthcheck) {
        let mut o = Map::new();
        o.insert("Test".into(), json!(h.test));
        for (k, v) in [
            ("Interval", h.interval),
            ("Timeout", h.timeout),
            ("StartPeriod", h.start_period),
            ("StartInterval", h.start_interval),
            ("Retries", h.retries),
        ] {
            if let Some(v) = v {
                o.insert(k.into(), json!(v));
            }
        }
        self.cfg().insert("Healthcheck".into(), Value::Object(o));
    }

    /// Appends a history entry and sets the config's `created`.
    pub fn history(&mut self, created_by: &str, empty_layer: bool, created: &str) {
        let mut entry = json!({
            "created": created,
            "created_by": created_by,
            "comment": "hull build",
        });
        if empty_layer {
            entry["empty_layer"] = json!(true);
        }
        let obj = self.config.as_object_mut().expect("an object");
        obj.insert("created".into(), json!(created));
        match obj.get_mut("history").and_then(Value::as_array_mut) {
            Some(h) => h.push(entry),
            None => {
                obj.insert("history".into(), json!([entry]));
            }
        }
    }
}

/// `EXPOSE` words to `ExposedPorts` keys: `80` is `80/tcp`, a range
/// `8000-8002/udp` is each of its ports.
pub fn exposed_ports(word: &str) -> Option<Vec<String>> {
    let (ports, proto) = match word.split_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (word, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return None;
    }
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (a.parse::<u16>().ok()?, b.parse::<u16>().ok()?),
        None => {
            let p = ports.parse::<u16>().ok()?;
            (p, p)
        }
    };
    if lo > hi || hi - lo > 1024 {
        return None;
    }
    Some((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State::from_base(
            Some("sha256:x".into()),
            json!({"config": {"Env": ["PATH=/bin"], "OnBuild": ["RUN x"]}, "rootfs": {}, "history": []}),
            "k".into(),
        )
    }

    #[test]
    fn env_workdir_and_shell() {
        let mut s = state();
        assert!(s.config.get("rootfs").is_none());
        assert!(s.config["config"].get("OnBuild").is_none());
        s.set_env("A", "1");
        s.set_env("PATH", "/usr/bin:/bin");
        assert_eq!(
            s.env(),
            vec![
                ("PATH".to_string(), "/usr/bin:/bin".to_string()),
                ("A".into(), "1".into())
            ]
        );
        assert_eq!(s.workdir(), "/");
        assert_eq!(s.set_workdir("app"), "/app");
        assert_eq!(s.set_workdir("../srv/./x/"), "/srv/x");
        assert_eq!(s.shell(), ["/bin/sh", "-c"]);
    }

    #[test]
    fn history_and_objects() {
        let mut s = state();
        s.history("ENV A=1", true, "1970-01-01T00:00:00Z");
        s.insert_into("Labels", "a", json!("b"));
        assert_eq!(s.config["history"][0]["empty_layer"], json!(true));
        assert_eq!(s.config["created"], json!("1970-01-01T00:00:00Z"));
        assert_eq!(s.config["config"]["Labels"]["a"], json!("b"));
        s.set_healthcheck(&Healthcheck {
            test: vec!["NONE".into()],
            ..Default::default()
        });
        assert_eq!(s.config["config"]["Healthcheck"], json!({"Test": ["NONE"]}));
    }

    #[test]
    fn ports() {
        assert_eq!(exposed_ports("80").unwrap(), ["80/tcp"]);
        assert_eq!(exposed_ports("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(
            exposed_ports("8000-8002").unwrap(),
            ["8000/tcp", "8001/tcp", "8002/tcp"]
        );
        assert!(exposed_ports("http").is_none());
        assert!(exposed_ports("80/icmp").is_none());
    }
}
