//! A new image from a base image and one more layer: `hull commit` (a
//! container's changes) and, for the builder, a step's layer. The layer
//! tar comes from a hostile guest, so [`check_layer`] reads it through the
//! same bounds as a pulled layer (entries, bytes, extension headers) and
//! refuses unsafe paths (absolute, `..`, hard links out of the layer)
//! before anything is stored. [`ImageStore::commit_layer`] gzips it,
//! writes the config (the base's, with the diff id, a history entry and
//! the changes) and an OCI manifest, and commits them as a pull does, so
//! the image's disk is built from its layers as for any other image.
//!
//! Model: Docker's `commit` (daemon/commit.go): the base config with the
//! container's config changes, `--change` in Dockerfile syntax.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Component, Path};

use flate2::write::GzEncoder;
use serde_json::{json, Map, Value};

use super::digest::{HashingReader, HashingWriter};
use super::source::{self, Documents, Imported, LayerFile};
use super::store::ImageStore;
use super::tar_bounds::{self, TarBounds};
use super::{media, reference::Reference, Error, Image, Limits};

/// Why a layer or a commit was refused.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("read the layer")]
    Read(#[source] io::Error),
    #[error("the layer is over a bound")]
    Bounds(#[source] tar_bounds::Error),
    #[error("the layer is not a valid tar")]
    Tar(#[source] io::Error),
    #[error("layer entry {entry:?}: {why}")]
    BadEntry { entry: String, why: &'static str },
    #[error("bad --change {0:?}: want CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, VOLUME, WORKDIR or STOPSIGNAL with a value")]
    BadChange(String),
    #[error("write the layer blob")]
    Write(#[source] io::Error),
    #[error(transparent)]
    Store(#[from] Error),
}

/// What [`check_layer`] found in a layer tar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedLayer {
    /// `sha256:<hex>` of the uncompressed tar: the config's diff id.
    pub diff_id: String,
    /// Entries and file bytes, as the bounds counted them.
    pub entries: u64,
    pub bytes: u64,
    /// The tar's own size.
    pub size: u64,
}

/// Reads an uncompressed layer tar to its end through the bounds of a
/// hostile layer (`limits`, as for one layer of a new image) and checks
/// every entry's path: relative, no `..`, hard links only to entries
/// before them in the layer; only files, directories, links, devices and
/// fifos.
pub fn check_layer(reader: impl Read, limits: &Limits) -> Result<CheckedLayer, CommitError> {
    let hashing = HashingReader::new(reader);
    let mut bounds = TarBounds::new(hashing, limits.budget(Default::default()));
    let walked = walk_entries(&mut bounds);
    if let Some(v) = bounds.violation() {
        return Err(CommitError::Bounds(v.clone()));
    }
    walked?;
    let totals = bounds.totals();
    let (hex, size) = bounds.into_inner().finish().map_err(CommitError::Read)?;
    Ok(CheckedLayer {
        diff_id: format!("sha256:{hex}"),
        entries: totals.entries,
        bytes: totals.bytes,
        size,
    })
}

fn walk_entries(reader: &mut dyn Read) -> Result<(), CommitError> {
    let mut archive = tar::Archive::new(reader);
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    for entry in archive.entries().map_err(CommitError::Tar)? {
        let entry = entry.map_err(CommitError::Tar)?;
        let path = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&path).into_owned();
        let bad = |why| CommitError::BadEntry {
            entry: name.clone(),
            why,
        };
        let clean =
            clean_path(&path).ok_or_else(|| bad("the path is absolute, empty or has .."))?;
        use tar::EntryType as T;
        match entry.header().entry_type() {
            T::Regular
            | T::Continuous
            | T::Directory
            | T::Symlink
            | T::Char
            | T::Block
            | T::Fifo => {}
            T::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| bad("a hard link without a target"))?;
                let target = clean_path(&target)
                    .ok_or_else(|| bad("a hard link whose target is absolute or has .."))?;
                if !seen.contains(&target) {
                    return Err(bad("a hard link to nothing before it in the layer"));
                }
            }
            _ => return Err(bad("an entry type a layer does not hold")),
        }
        seen.insert(clean);
    }
    Ok(())
}

/// `path` without `./` and trailing `/`, or `None` if it is absolute,
/// empty or climbs (`..`).
fn clean_path(path: &[u8]) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let path = Path::new(std::ffi::OsStr::from_bytes(path));
    let mut out: Vec<u8> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(name.as_bytes());
            }
            Component::CurDir => {}
            Component::RootDir | Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    (!out.is_empty()).then_some(out)
}

/// What a commit records besides the layer.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// `NAME[:TAG]` for the new image; `None`: reachable by id only.
    pub name: Option<String>,
    pub author: Option<String>,
    /// The history entry's comment (`--message`).
    pub comment: Option<String>,
    /// The history entry's `created_by` (the container's command, a
    /// build step).
    pub created_by: String,
    /// RFC 3339 time of the image and its history entry.
    pub created: String,
    /// Dockerfile instructions applied to the config (`--change`).
    pub changes: Vec<ConfigChange>,
}

/// One `--change`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigChange {
    Cmd(Vec<String>),
    Entrypoint(Vec<String>),
    Env(String, String),
    Expose(String),
    Label(String, String),
    User(String),
    Volume(String),
    Workdir(String),
    StopSignal(String),
}

impl ConfigChange {
    /// Parses one Dockerfile instruction of those `docker commit
    /// --change` takes (CMD and ENTRYPOINT in exec (JSON) or shell form).
    pub fn parse(text: &str) -> Result<ConfigChange, CommitError> {
        let bad = || CommitError::BadChange(text.to_string());
        let text = text.trim();
        let (word, rest) = text.split_once(char::is_whitespace).ok_or_else(bad)?;
        let rest = rest.trim();
        if rest.is_empty() {
            return Err(bad());
        }
        let args = || -> Vec<String> {
            match serde_json::from_str::<Vec<String>>(rest) {
                Ok(list) => list,
                Err(_) => vec!["/bin/sh".into(), "-c".into(), rest.into()],
            }
        };
        let pair = || -> Result<(String, String), CommitError> {
            let (k, v) = rest
                .split_once('=')
                .or_else(|| rest.split_once(char::is_whitespace))
                .ok_or_else(bad)?;
            Ok((k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        };
        Ok(match word.to_ascii_uppercase().as_str() {
            "CMD" => ConfigChange::Cmd(args()),
            "ENTRYPOINT" => ConfigChange::Entrypoint(args()),
            "ENV" => {
                let (k, v) = pair()?;
                ConfigChange::Env(k, v)
            }
            "LABEL" => {
                let (k, v) = pair()?;
                ConfigChange::Label(k, v)
            }
            "EXPOSE" if rest.contains('/') => ConfigChange::Expose(rest.to_string()),
            "EXPOSE" => ConfigChange::Expose(format!("{rest}/tcp")),
            "USER" => ConfigChange::User(rest.to_string()),
            "VOLUME" => ConfigChange::Volume(rest.to_string()),
            "WORKDIR" => ConfigChange::Workdir(rest.to_string()),
            "STOPSIGNAL" => ConfigChange::StopSignal(rest.to_string()),
            _ => return Err(bad()),
        })
    }

    fn apply(&self, config: &mut Map<String, Value>) {
        match self {
            ConfigChange::Cmd(args) => {
                config.insert("Cmd".into(), json!(args));
            }
            ConfigChange::Entrypoint(args) => {
                config.insert("Entrypoint".into(), json!(args));
                // As Docker: a new entrypoint drops the inherited command.
                config.insert("Cmd".into(), Value::Null);
            }
            ConfigChange::Env(key, value) => {
                let mut env: Vec<String> = config
                    .get("Env")
                    .and_then(|e| serde_json::from_value(e.clone()).ok())
                    .unwrap_or_default();
                env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
                env.push(format!("{key}={value}"));
                config.insert("Env".into(), json!(env));
            }
            ConfigChange::Label(key, value) => {
                object_at(config, "Labels").insert(key.clone(), json!(value));
            }
            ConfigChange::Expose(port) => {
                object_at(config, "ExposedPorts").insert(port.clone(), json!({}));
            }
            ConfigChange::Volume(path) => {
                object_at(config, "Volumes").insert(path.clone(), json!({}));
            }
            ConfigChange::User(user) => {
                config.insert("User".into(), json!(user));
            }
            ConfigChange::Workdir(dir) => {
                config.insert("WorkingDir".into(), json!(dir));
            }
            ConfigChange::StopSignal(signal) => {
                config.insert("StopSignal".into(), json!(signal));
            }
        }
    }
}

/// The object at `key` of `config`, made (or replacing a non-object).
fn object_at<'a>(config: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = config
        .entry(key)
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    match slot {
        Value::Object(map) => map,
        _ => unreachable!("the slot was just made an object"),
    }
}

impl ImageStore {
    /// Makes a new image of `base` (an image id or reference; `None`:
    /// `scratch`) plus the uncompressed layer tar at `layer`, which is
    /// checked first ([`check_layer`]); records it under `opts.name` and
    /// returns it. Nothing is left in the store if any step fails.
    pub fn commit_layer(
        &self,
        base: Option<&str>,
        layer: &Path,
        opts: &CommitOptions,
    ) -> Result<Image, CommitError> {
        let names = match &opts.name {
            Some(name) => vec![Reference::parse(name)?.tagged_name().ok_or_else(|| {
                CommitError::Store(Error::InvalidReference {
                    reference: name.clone(),
                    reason: "a commit names a tag, not a digest",
                })
            })?],
            None => Vec::new(),
        };
        let open = || File::open(layer).map_err(CommitError::Read);
        let checked = check_layer(BufReader::new(open()?), &self.limits)?;
        // Staged where a verified download waits (the lock clears `tmp/`),
        // and moved into `blobs/` by the commit.
        let (layer_digest, layer_size, gz_path) = self.stage_gzip(&mut open()?)?;
        let result = self.commit_staged(
            base,
            &checked,
            &layer_digest,
            layer_size,
            &gz_path,
            opts,
            names,
        );
        if result.is_err() {
            let _ = std::fs::remove_file(&gz_path);
        }
        result
    }

    /// Gzips `src` into `ingest/`: its digest, size and path.
    fn stage_gzip(
        &self,
        src: &mut impl Read,
    ) -> Result<(String, u64, std::path::PathBuf), CommitError> {
        let ingest = self.root().join("ingest");
        let partial = tempfile::Builder::new()
            .prefix(".commit-")
            .tempfile_in(&ingest)
            .map_err(CommitError::Write)?;
        let (digest, size) = gzip(src, partial.path())?;
        let dest = ingest.join(super::digest::parse(&digest)?);
        partial
            .persist(&dest)
            .map_err(|e| CommitError::Write(e.error))?;
        Ok((digest, size, dest))
    }

    #[allow(clippy::too_many_arguments)]
    fn commit_staged(
        &self,
        base: Option<&str>,
        checked: &CheckedLayer,
        layer_digest: &str,
        layer_size: u64,
        gz_path: &Path,
        opts: &CommitOptions,
        names: Vec<String>,
    ) -> Result<Image, CommitError> {
        let (base_config, base_layers) = match base {
            Some(reference) => {
                let image = self.resolve(reference)?;
                let (manifest, config) = self.raw_documents(&image.id)?;
                (config, manifest_layers(&manifest))
            }
            None => (scratch_config(), Vec::new()),
        };
        let config_bytes = new_config(base_config, &checked.diff_id, opts);
        let config_digest = format!("sha256:{}", super::digest::sha256_hex(&config_bytes));
        let mut layers_json: Vec<Value> = base_layers.clone();
        layers_json.push(json!({
            "mediaType": media::MT_OCI_LAYER_GZIP,
            "digest": layer_digest,
            "size": layer_size,
        }));
        let manifest_bytes = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": media::MT_OCI_MANIFEST,
            "config": {
                "mediaType": media::MT_OCI_CONFIG,
                "digest": config_digest,
                "size": config_bytes.len(),
            },
            "layers": layers_json,
        }))
        .map_err(|e| CommitError::Write(io::Error::other(e)))?;
        let manifest_digest = format!("sha256:{}", super::digest::sha256_hex(&manifest_bytes));
        let manifest = source::parse_manifest(&manifest_digest, &manifest_bytes)?;
        let config = source::parse_config(&config_digest, &config_bytes)?;
        let diff_ids = source::diff_ids(&manifest_digest, &manifest, &config)?;
        let mut files = Vec::new();
        for layer in &base_layers {
            let digest = layer["digest"].as_str().unwrap_or_default().to_string();
            let path = self.blob_path(&digest)?;
            files.push(LayerFile { digest, path });
        }
        files.push(LayerFile {
            digest: layer_digest.to_string(),
            path: gz_path.to_path_buf(),
        });
        let imported = Imported {
            names,
            docs: Documents {
                manifest_digest,
                manifest_bytes,
                manifest,
                config_digest,
                config_bytes,
                diff_ids,
            },
            layers: files,
        };
        Ok(self.commit_pulled(&imported)?)
    }
}

/// Gzips `src` into `dest`: the blob's digest and size.
fn gzip(src: &mut impl Read, dest: &Path) -> Result<(String, u64), CommitError> {
    let file = File::create(dest).map_err(CommitError::Write)?;
    // mtime 0 in the gzip header (flate2's default): the same layer gives
    // the same blob.
    let mut encoder = GzEncoder::new(HashingWriter::new(file), flate2::Compression::fast());
    io::copy(src, &mut encoder).map_err(CommitError::Write)?;
    let hashing = encoder.finish().map_err(CommitError::Write)?;
    let (file, hex, size) = hashing.finish();
    file.sync_all().map_err(CommitError::Write)?;
    Ok((format!("sha256:{hex}"), size))
}

/// The base manifest's layer descriptors, as they are.
fn manifest_layers(manifest: &Value) -> Vec<Value> {
    manifest["layers"].as_array().cloned().unwrap_or_default()
}

fn scratch_config() -> Value {
    json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [],
    })
}

/// The base config with the new layer's diff id, a history entry and
/// the changes.
fn new_config(mut config: Value, diff_id: &str, opts: &CommitOptions) -> Vec<u8> {
    let Some(top) = config.as_object_mut() else {
        return Vec::new();
    };
    top.insert("created".into(), json!(opts.created));
    match &opts.author {
        Some(author) => top.insert("author".into(), json!(author)),
        None => top.remove("author"),
    };
    let rootfs = object_at(top, "rootfs");
    rootfs.insert("type".into(), json!("layers"));
    let mut diff_ids = rootfs
        .get("diff_ids")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    diff_ids.push(json!(diff_id));
    rootfs.insert("diff_ids".into(), Value::Array(diff_ids));
    let mut entry = Map::new();
    entry.insert("created".into(), json!(opts.created));
    entry.insert("created_by".into(), json!(opts.created_by));
    if let Some(author) = &opts.author {
        entry.insert("author".into(), json!(author));
    }
    if let Some(comment) = &opts.comment {
        entry.insert("comment".into(), json!(comment));
    }
    let mut history = top
        .get("history")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    history.push(Value::Object(entry));
    top.insert("history".into(), Value::Array(history));
    let container_config = object_at(top, "config");
    for change in &opts.changes {
        change.apply(container_config);
    }
    serde_json::to_vec(&config).unwrap_or_default()
}

#[cfg(test)]
mod tests;
