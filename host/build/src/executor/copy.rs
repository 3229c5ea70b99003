//! `COPY` and `ADD`: where the sources come from (the context, an
//! earlier stage's or an image's root filesystem for `--from`), where
//! they land (Docker's destination rules), their owners and modes, the
//! step's cache key (with the sources' content hash) and the layer.
//!
//! Destination rules (BuildKit's): a destination ending in `/` is a
//! directory; so is one that exists as a directory; a directory source's
//! contents go into the destination, other sources go into it by name
//! (or become it, when it is not a directory); several sources need a
//! directory destination. A relative destination is under WORKDIR.

use std::collections::BTreeSet;

use sha2::{Digest as _, Sha256};

use super::stage::{Outcome, Scope};
use super::{Build, StepError};
use crate::cache;
use crate::context::{clean, hash_entries, Source, Tree};
use crate::dockerfile::{Copy, Expander, Instruction};
use crate::layer::{parse_chmod, parse_chown, unpack_archive, Layer, LayerError, Overrides};
use crate::run::Runner;
use crate::state::{CachedLayer, State};

impl<R: Runner> Build<'_, R> {
    pub(super) async fn copy_step(
        &mut self,
        stage: usize,
        state: State,
        scope: &Scope,
        ins: &Instruction,
        c: &Copy,
        is_add: bool,
    ) -> Result<Outcome, StepError> {
        let vars = scope.vars(&state);
        let mut ex = Expander::new(&vars, self.file.escape);
        let mut patterns = Vec::new();
        for s in &c.sources {
            if c.json {
                patterns.push(ex.word(s)?);
            } else {
                patterns.extend(ex.words(s)?);
            }
        }
        let dest_raw = ex.word(&c.dest)?;
        let from = c.from.as_deref().map(|f| ex.word(f)).transpose()?;
        let chown = c.chown.as_deref().map(|f| ex.word(f)).transpose()?;
        let chmod = c.chmod.as_deref().map(|f| ex.word(f)).transpose()?;
        if is_add {
            if let Some(url) = patterns.iter().find(|p| is_url(p)) {
                return Err(LayerError::Url(url.clone()).into());
            }
        }

        // Where the sources come from.
        let (tree, from_key) = match &from {
            None => (self.context.clone(), String::new()),
            Some(f) => self.source_tree(stage, f).await?,
        };
        let keep_owners = from.is_some();

        // Where they land.
        let dir_dest = dest_raw.ends_with('/') || dest_raw == "." || dest_raw.ends_with("/.");
        let joined = if dest_raw.starts_with('/') {
            dest_raw.clone()
        } else {
            format!("{}/{dest_raw}", state.workdir())
        };
        let dest = format!("/{}", clean(&joined).join("/"));
        let mut sources: Vec<Source> = Vec::new();
        for p in &patterns {
            sources.extend(tree.sources(p)?);
        }
        let dest_is_dir = dir_dest || self.exists_dir(&state, &dest)?;
        if sources.len() > 1 && !dest_is_dir {
            return Err(LayerError::DestNotDir(dest_raw).into());
        }

        // Owners and modes.
        let owner = match &chown {
            Some(spec) => Some(self.owner(&state, spec)?),
            None => None,
        };
        let chmod = chmod.as_deref().map(parse_chmod).transpose()?;

        // The key: the instruction, its variables, the sources' content.
        let mut hasher = Sha256::new();
        for s in &sources {
            let entries = tree.walk(s)?;
            hash_entries(&mut hasher, &s.rel, &entries, keep_owners)?;
        }
        let content = hex::encode(hasher.finalize());
        let resolved = format!("{dest}\n{:?}\n{:?}\n{from_key}\n{is_add}", owner, chmod);
        let mut used = String::new();
        for name in &ex.used {
            let v = vars.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v);
            used.push_str(&format!("{name}={v:?}\n"));
        }
        let key = cache::key(
            &state.key,
            &[
                ins.text.as_bytes(),
                used.as_bytes(),
                resolved.as_bytes(),
                content.as_bytes(),
            ],
        );
        if let Some(hit) = self.cache_get(&key) {
            return Ok(Outcome {
                state: hit,
                cached: true,
            });
        }

        // The layer.
        let o = Overrides {
            owner,
            chmod,
            keep_owners,
        };
        let mut layer = Layer::default();
        let rel_dest = dest.trim_start_matches('/').to_string();
        let scratch = self.scratch()?;
        for (n, s) in sources.iter().enumerate() {
            if s.is_dir {
                layer.add_source(&tree, s, &rel_dest, o)?;
                if self.exists_dir(&state, &dest)? {
                    // An existing directory keeps its own owner and mode.
                    layer.entries.remove(&rel_dest);
                }
                continue;
            }
            let name = s.rel.rsplit('/').next().unwrap_or(&s.rel).to_string();
            let at = if dest_is_dir {
                join(&rel_dest, &name)
            } else {
                rel_dest.clone()
            };
            if is_add {
                let unpacked = scratch.path().join(format!("archive-{n}"));
                std::fs::create_dir(&unpacked).map_err(|source| StepError::Io {
                    path: unpacked.clone(),
                    source,
                })?;
                if unpack_archive(&s.path, &unpacked, scratch.path())? {
                    let t = Tree::rootfs(&unpacked);
                    let root = Source {
                        rel: String::new(),
                        path: unpacked.clone(),
                        is_dir: true,
                    };
                    let ao = Overrides {
                        keep_owners: true,
                        ..o
                    };
                    layer.add_source(&t, &root, &rel_dest, ao)?;
                    if self.exists_dir(&state, &dest)? {
                        layer.entries.remove(&rel_dest);
                    }
                    continue;
                }
            }
            layer.add_source(&tree, s, &at, o)?;
        }
        // Missing parents of every entry, as root's 0755 directories.
        let mut parents = BTreeSet::new();
        for path in layer.entries.keys() {
            let mut p = path.as_str();
            while let Some((parent, _)) = p.rsplit_once('/') {
                parents.insert(parent.to_string());
                p = parent;
            }
        }
        let mtime = self.opts.source_date_epoch.unwrap_or(0);
        let mut made = Vec::new();
        for p in parents {
            if layer.entries.contains_key(&p) {
                continue;
            }
            if !self.exists_dir(&state, &format!("/{p}"))? {
                layer.add_dir(&p, (0, 0), mtime);
            }
        }
        for (p, e) in &layer.entries {
            if e.kind == crate::layer::Kind::Dir {
                made.push(format!("/{p}"));
            }
        }
        let written = layer.write(&self.cache.layer_dir(), self.opts.source_date_epoch)?;
        drop(scratch);
        let mut next = state.clone();
        next.layers.push(CachedLayer::from_new(&written));
        next.dirs.extend(made);
        next.history(&ins.text, false, &self.created());
        next.key = key;
        self.cache.put(&next)?;
        Ok(Outcome {
            state: next,
            cached: false,
        })
    }

    /// The tree `--from=f` names: an earlier stage (by name or index) or
    /// an image; and what of it goes into the key.
    async fn source_tree(&mut self, stage: usize, f: &str) -> Result<(Tree, String), StepError> {
        let lower = f.to_ascii_lowercase();
        let by_name = self.file.stages[..stage]
            .iter()
            .position(|s| s.name.as_deref() == Some(lower.as_str()));
        let index = by_name.or_else(|| lower.parse::<usize>().ok().filter(|&i| i < stage));
        if let Some(j) = index {
            let state = self
                .results
                .get(&j)
                .cloned()
                .ok_or_else(|| StepError::StageOrder(f.to_string()))?;
            let memo = format!("stage:{}", state.key);
            let tree = self.materialize(&memo, &state)?;
            return Ok((tree, state.key));
        }
        if stage_like(&lower, self.file.stages.len()) {
            return Err(StepError::StageOrder(f.to_string()));
        }
        let img = self.image(f, None).await?;
        let state = State::from_base(Some(img.id.clone()), serde_json::json!({}), img.id.clone());
        let memo = format!("image:{}", img.id);
        let tree = self.materialize(&memo, &state)?;
        Ok((tree, img.id))
    }

    /// The root filesystem of `state` in a scratch directory (once per
    /// build): the base image's files, then the new layers applied.
    fn materialize(&mut self, memo: &str, state: &State) -> Result<Tree, StepError> {
        if let Some(dir) = self.rootfs.get(memo) {
            return Ok(Tree::rootfs(&dir.path().join("root")));
        }
        let dir = self.scratch()?;
        let root = dir.path().join("root");
        std::fs::create_dir(&root).map_err(|source| StepError::Io {
            path: root.clone(),
            source,
        })?;
        if let Some(base) = &state.base {
            let img = self.store.resolve(base).map_err(StepError::Store)?;
            self.store
                .copy_out(&img, "/", &root)
                .map_err(StepError::Store)?;
        }
        let mut unpacker = hull_image::unpack::Unpacker::new(&root);
        for l in &state.layers {
            let path = self.cache.layer_path(&l.digest);
            let f = std::fs::File::open(&path).map_err(|source| StepError::Io {
                path: path.clone(),
                source,
            })?;
            unpacker
                .apply(flate2::read::GzDecoder::new(f))
                .map_err(|e| LayerError::Unpack(path.clone(), e))?;
        }
        unpacker
            .finish()
            .map_err(|e| LayerError::Unpack(root.clone(), e))?;
        let tree = Tree::rootfs(&root);
        self.rootfs.insert(memo.to_string(), dir);
        Ok(tree)
    }

    /// `--chown`'s ids, names looked up in the base image's passwd and
    /// group files.
    fn owner(&mut self, state: &State, spec: &str) -> Result<(u64, u64), StepError> {
        let read = |this: &mut Self, path: &str| -> Result<Option<String>, StepError> {
            let Some(base) = &state.base else {
                return Ok(None);
            };
            let img = this.store.resolve(base).map_err(StepError::Store)?;
            let p = this.store.path_in(&img, path).map_err(StepError::Store)?;
            Ok(p.and_then(|p| {
                let meta = p.symlink_metadata().ok()?;
                // A passwd file is small; a huge one is not read.
                (meta.is_file() && meta.len() < (4 << 20))
                    .then(|| std::fs::read_to_string(p).ok())?
            }))
        };
        let needs_names = spec.split(':').any(|p| p.parse::<u64>().is_err());
        let (passwd, group) = if needs_names {
            (read(self, "/etc/passwd")?, read(self, "/etc/group")?)
        } else {
            (None, None)
        };
        Ok(parse_chown(spec, passwd.as_deref(), group.as_deref())?)
    }
}

fn join(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else {
        format!("{a}/{b}")
    }
}

fn is_url(s: &str) -> bool {
    ["http://", "https://", "git@", "git://"]
        .iter()
        .any(|p| s.starts_with(p))
}

/// Whether `--from=f` names a stage that does not come before this one
/// (a later stage's index or name) rather than an image.
fn stage_like(f: &str, stages: usize) -> bool {
    f.parse::<usize>().is_ok_and(|i| i < stages)
}
