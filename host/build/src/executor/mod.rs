//! Runs a build: parses the Dockerfile, picks the stages the target
//! needs (through `FROM stage` and `COPY --from=stage`), runs them in
//! order step by step through the cache, and stores the target stage's
//! result as the image. Nothing reaches the store before the last step
//! succeeded: a failed build leaves no image (layers it made wait in the
//! build cache, whole, for the next build).
//!
//! Model: BuildKit's Dockerfile frontend (`dockerfile2llb`: stage
//! dependencies, meta ARGs for `FROM`, `--target`) with Docker's classic
//! builder's step-by-step execution and cache.

mod copy;
mod stage;
mod time;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use hull_image::registry::{self, PullOptions};
use hull_image::{Image, ImageStore, NewImage, NewLayer, Reference};

use crate::cache::{self, Cache, CacheError};
use crate::context::{ContextError, Tree};
use crate::dockerfile::{self, Dockerfile, ExpandError, Expander, Kind, SyntaxError};
use crate::layer::LayerError;
use crate::progress::Progress;
use crate::run::{RunError, Runner};
use crate::state::State;

/// What to build.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The build context directory.
    pub context: PathBuf,
    /// The Dockerfile; `CONTEXT/Dockerfile` when not given.
    pub dockerfile: Option<PathBuf>,
    /// Names for the image (`repo[:tag]`).
    pub tags: Vec<String>,
    /// `--build-arg K=V`.
    pub build_args: Vec<(String, String)>,
    /// `--target`: the stage to build (the last one otherwise).
    pub target: Option<String>,
    /// `--no-cache`: run every step (results are still cached).
    pub no_cache: bool,
    /// `--pull`: pull base images even when the store has them.
    pub pull: bool,
    /// `--label K=V`, set on the image.
    pub labels: Vec<(String, String)>,
    /// `--platform`: only `linux/amd64`.
    pub platform: Option<String>,
    /// The step cache's directory.
    pub cache_dir: PathBuf,
    /// `SOURCE_DATE_EPOCH`: times clamped and history dated to it.
    pub source_date_epoch: Option<u64>,
    /// Speak plain HTTP to registries base images come from (loopback).
    pub plain_http: bool,
}

/// A finished build.
#[derive(Debug)]
pub struct Built {
    pub image: Image,
    /// Steps taken from the cache and steps run.
    pub cached: usize,
    pub ran: usize,
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the Dockerfile {path}")]
    ReadDockerfile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{file}:{line}")]
    Syntax {
        file: String,
        line: usize,
        #[source]
        source: SyntaxError,
    },
    #[error("{file}:{line}: {instruction}")]
    Step {
        file: String,
        line: usize,
        instruction: String,
        #[source]
        source: Box<StepError>,
    },
    #[error("target stage {0:?} not found")]
    NoTarget(String),
    #[error("platform {0} is not supported: hull builds linux/amd64 only")]
    Platform(String),
    #[error("invalid tag {tag:?}")]
    Tag {
        tag: String,
        #[source]
        source: hull_image::Error,
    },
    #[error("invalid --label or --build-arg {0:?} (K=V)")]
    BadKeyValue(String),
    #[error("build context")]
    Context(#[source] ContextError),
    #[error("build cache")]
    Cache(#[source] CacheError),
    #[error("cannot store the image")]
    Store(#[source] hull_image::Error),
}

/// Why one step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Expand(#[from] ExpandError),
    #[error(transparent)]
    Context(#[from] ContextError),
    #[error(transparent)]
    Layer(#[from] LayerError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("base image {reference}")]
    Image {
        reference: String,
        #[source]
        source: hull_image::Error,
    },
    #[error("cannot pull {reference}")]
    Pull {
        reference: String,
        // Boxed: a registry's error is large, and every step returns this.
        #[source]
        source: Box<registry::Error>,
    },
    #[error("image {image} is {platform}, not linux/amd64")]
    WrongPlatform { image: String, platform: String },
    #[error("platform {0} is not supported: hull builds linux/amd64 only")]
    Platform(String),
    #[error("RUN --{0} is not supported by hull build")]
    RunFlag(String),
    #[error("invalid port {0:?}")]
    BadPort(String),
    #[error("{0} needs a value")]
    Empty(&'static str),
    #[error("ONBUILD trigger {trigger:?} of the base image")]
    Trigger {
        trigger: String,
        #[source]
        source: SyntaxError,
    },
    #[error("cannot copy from stage {0}: it is not before this one")]
    StageOrder(String),
    #[error("the image store")]
    Store(#[source] hull_image::Error),
    #[error("scratch space {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The build args that every build has (BuildKit's automatic platform
/// args), visible to `FROM` lines and to stages that declare them.
const PLATFORM_ARGS: [(&str, &str); 8] = [
    ("TARGETPLATFORM", "linux/amd64"),
    ("TARGETOS", "linux"),
    ("TARGETARCH", "amd64"),
    ("TARGETVARIANT", ""),
    ("BUILDPLATFORM", "linux/amd64"),
    ("BUILDOS", "linux"),
    ("BUILDARCH", "amd64"),
    ("BUILDVARIANT", ""),
];

/// Builds an image; progress goes to `out` in Docker's plain format.
pub async fn build<R: Runner>(
    store: &ImageStore,
    opts: &BuildOptions,
    runner: &R,
    out: &mut (dyn Write + Send),
) -> Result<Built, Error> {
    if let Some(p) = &opts.platform {
        if !is_amd64(p) {
            return Err(Error::Platform(p.clone()));
        }
    }
    let names = opts
        .tags
        .iter()
        .map(|t| {
            Reference::parse(t)
                .map(|r| r.tagged_name().unwrap_or_else(|| r.to_string()))
                .map_err(|source| Error::Tag {
                    tag: t.clone(),
                    source,
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut progress = Progress::new(out);
    let dockerfile_path = opts
        .dockerfile
        .clone()
        .unwrap_or_else(|| opts.context.join("Dockerfile"));
    let file_name = dockerfile_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "Dockerfile".into());
    let step = progress.start(&format!(
        "[internal] load build definition from {file_name}"
    ));
    let parsed = read_bounded(&dockerfile_path)
        .map_err(|source| Error::ReadDockerfile {
            path: dockerfile_path.clone(),
            source,
        })
        .and_then(|text| {
            dockerfile::parse(&text).map_err(|e| Error::Syntax {
                file: file_name.clone(),
                line: e.line,
                source: e.error,
            })
        });
    let file = match parsed {
        Ok(file) => file,
        Err(e) => {
            progress.error(&step, &crate::error_line(&e));
            return Err(e);
        }
    };
    progress.done(&step);
    let step = progress.start("[internal] load .dockerignore");
    let context = Tree::context(&opts.context).map_err(Error::Context)?;
    progress.done(&step);
    let cache = Cache::open(&opts.cache_dir).map_err(Error::Cache)?;

    let target = match &opts.target {
        Some(t) => file
            .stages
            .iter()
            .position(|s| s.name.as_deref() == Some(&t.to_ascii_lowercase()))
            .ok_or_else(|| Error::NoTarget(t.clone()))?,
        None => file.stages.len() - 1,
    };
    let meta = meta_args(&file, &opts.build_args).map_err(|(line, source)| Error::Step {
        file: file_name.clone(),
        line,
        instruction: "ARG".into(),
        source: Box::new(source.into()),
    })?;
    let needed = needed_stages(&file, target, &meta);
    // Refuse RUN up front when it cannot run: never a half build.
    if let Err(e) = runner.check() {
        let first_run = needed.iter().find_map(|&i| {
            file.stages[i]
                .instructions
                .iter()
                .find(|ins| matches!(ins.kind, Kind::Run { .. }))
        });
        if let Some(ins) = first_run {
            return Err(Error::Step {
                file: file_name,
                line: ins.line,
                instruction: ins.text.clone(),
                source: Box::new(StepError::Run(e)),
            });
        }
    }

    let mut build = Build {
        store,
        opts,
        runner,
        file: &file,
        file_name: &file_name,
        context,
        cache,
        progress,
        meta_args: meta,
        consumed: BTreeSet::new(),
        results: HashMap::new(),
        rootfs: HashMap::new(),
        intermediate: Vec::new(),
        dir_memo: HashMap::new(),
        cached: 0,
        ran: 0,
    };
    let result = build.run_stages(&needed, target).await;
    build.drop_intermediate();
    let mut state = result?;
    if !opts.labels.is_empty() {
        state = build.labels(state)?;
    }
    build.warn_unconsumed();
    let image = build.export(&state, &names)?;
    Ok(Built {
        image,
        cached: build.cached,
        ran: build.ran,
    })
}

/// The state of a running build.
struct Build<'a, R: Runner> {
    store: &'a ImageStore,
    opts: &'a BuildOptions,
    runner: &'a R,
    file: &'a Dockerfile,
    file_name: &'a str,
    context: Tree,
    cache: Cache,
    progress: Progress<'a>,
    /// Global ARGs (before the first FROM) with their values.
    meta_args: Vec<(String, String)>,
    /// Build args some instruction declared.
    consumed: BTreeSet<String>,
    /// Finished stages' results, by index.
    results: HashMap<usize, State>,
    /// Root filesystems made for `COPY --from`, by stage index or image id.
    rootfs: HashMap<String, tempfile::TempDir>,
    /// Untagged images stored for RUN steps, removed at the end.
    intermediate: Vec<String>,
    /// Whether a path is a directory of a base image, by base and path.
    dir_memo: HashMap<String, bool>,
    cached: usize,
    ran: usize,
}

impl<R: Runner> Build<'_, R> {
    async fn run_stages(&mut self, needed: &[usize], target: usize) -> Result<State, Error> {
        for &i in needed {
            let state = self.run_stage(i).await?;
            self.results.insert(i, state);
        }
        Ok(self.results[&target].clone())
    }

    /// An error of the instruction at `line`.
    fn step_err(&self, line: usize, text: &str) -> impl FnOnce(StepError) -> Error {
        let instruction = text.to_string();
        let file = self.file_name.to_string();
        move |source| Error::Step {
            file,
            line,
            instruction,
            source: Box::new(source),
        }
    }

    /// A stored image by reference, pulled when missing (or always with
    /// `--pull`).
    async fn image(
        &mut self,
        reference: &str,
        step: Option<&crate::progress::Step>,
    ) -> Result<Image, StepError> {
        if !self.opts.pull {
            match self.store.resolve(reference) {
                Ok(img) => return Ok(img),
                Err(hull_image::Error::NotFound(_)) => {}
                Err(source) => {
                    return Err(StepError::Image {
                        reference: reference.to_string(),
                        source,
                    })
                }
            }
        }
        if let Some(step) = step {
            self.progress.note(step, &format!("pulling {reference}"));
        }
        let pulled = registry::pull(
            self.store,
            reference,
            PullOptions {
                plain_http: self.opts.plain_http,
                progress: hull_image::progress::PullProgress::new(false),
            },
        )
        .await
        .map_err(|source| StepError::Pull {
            reference: reference.to_string(),
            source: Box::new(source),
        })?;
        if let Some(step) = step {
            let note = format!("pulled {} ({})", pulled.image.id, pulled.manifest_digest);
            self.progress.note(step, &note);
        }
        Ok(pulled.image)
    }

    /// The state of a base image (config from the store).
    fn base_state(&self, img: &Image) -> Result<(State, Vec<String>), StepError> {
        let config = self.store.config_of(&img.id).map_err(StepError::Store)?;
        let os = config["os"].as_str().unwrap_or("linux");
        let arch = config["architecture"].as_str().unwrap_or("amd64");
        if os != "linux" || arch != "amd64" {
            return Err(StepError::WrongPlatform {
                image: img.name.clone(),
                platform: format!("{os}/{arch}"),
            });
        }
        let triggers = State::onbuild_of(&config);
        let key = cache::key("", &[b"FROM", img.id.as_bytes()]);
        Ok((
            State::from_base(Some(img.id.clone()), config, key),
            triggers,
        ))
    }

    /// Applies `--label`s as a last LABEL step.
    fn labels(&mut self, mut state: State) -> Result<State, Error> {
        let text = format!(
            "LABEL {}",
            self.opts
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let key = cache::key(&state.key, &[text.as_bytes()]);
        let step = self.progress.start(&format!("[labels] {text}"));
        if let Some(hit) = self.cache_get(&key) {
            self.progress.cached(&step);
            self.cached += 1;
            return Ok(hit);
        }
        for (k, v) in &self.opts.labels {
            state.insert_into("Labels", k, serde_json::json!(v));
        }
        state.history(&text, true, &self.created());
        state.key = key;
        self.cache.put(&state).map_err(Error::Cache)?;
        self.progress.done(&step);
        self.ran += 1;
        Ok(state)
    }

    fn cache_get(&self, key: &str) -> Option<State> {
        if self.opts.no_cache {
            return None;
        }
        self.cache.get(key)
    }

    /// `created` of new history entries.
    fn created(&self) -> String {
        time::rfc3339(self.opts.source_date_epoch)
    }

    /// The new layers of `state` as the store takes them.
    fn new_layers(&self, state: &State) -> Vec<NewLayer> {
        state
            .layers
            .iter()
            .map(|l| NewLayer {
                path: self.cache.layer_path(&l.digest),
                digest: l.digest.clone(),
                diff_id: l.diff_id.clone(),
                size: l.size,
                media_type: crate::layer::MEDIA_TYPE.to_string(),
            })
            .collect()
    }

    /// Stores the result under `names`.
    fn export(&mut self, state: &State, names: &[String]) -> Result<Image, Error> {
        let step = self.progress.start("exporting to image");
        let layers = self.new_layers(state);
        let image = self
            .store
            .write_image(NewImage {
                base: state.base.as_deref(),
                layers: &layers,
                config: state.config.clone(),
                names,
            })
            .map_err(Error::Store)?;
        self.progress
            .note(&step, &format!("writing image {} done", image.id));
        for n in names {
            self.progress.note(&step, &format!("naming to {n} done"));
        }
        self.progress.done(&step);
        Ok(image)
    }

    /// Stores `state` as an untagged image for a RUN step to run on.
    fn intermediate_image(&mut self, state: &State) -> Result<Image, StepError> {
        let layers = self.new_layers(state);
        let image = self
            .store
            .write_image(NewImage {
                base: state.base.as_deref(),
                layers: &layers,
                config: state.config.clone(),
                names: &[],
            })
            .map_err(StepError::Store)?;
        self.intermediate.push(image.id.clone());
        Ok(image)
    }

    /// Removes the RUN steps' untagged images (their layers stay where
    /// the final image uses them).
    fn drop_intermediate(&mut self) {
        for id in std::mem::take(&mut self.intermediate) {
            let tagged = self
                .store
                .resolve(&id)
                .is_ok_and(|img| !img.name.is_empty());
            if !tagged {
                let _ = self.store.remove(&id);
            }
        }
    }

    fn warn_unconsumed(&mut self) {
        let unused: Vec<&str> = self
            .opts
            .build_args
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| !self.consumed.contains(*k) && !self.meta_args.iter().any(|(m, _)| m == k))
            .collect();
        if !unused.is_empty() {
            let step = self.progress.start("[warning]");
            self.progress.note(
                &step,
                &format!(
                    "One or more build-args [{}] were not consumed",
                    unused.join(" ")
                ),
            );
            self.progress.done(&step);
        }
    }

    /// Scratch space for unpacking (inside the cache directory, so on
    /// the store's filesystem).
    fn scratch(&self) -> Result<tempfile::TempDir, StepError> {
        let dir = &self.opts.cache_dir;
        tempfile::Builder::new()
            .prefix("tmp-")
            .tempdir_in(dir)
            .map_err(|source| StepError::Io {
                path: dir.clone(),
                source,
            })
    }
}

/// The stages `target` needs, itself included, in file order (a `FROM`
/// naming a stage through a global ARG counts).
fn needed_stages(file: &Dockerfile, target: usize, meta: &[(String, String)]) -> Vec<usize> {
    let by_name: BTreeMap<&str, usize> = file
        .stages
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.name.as_deref().map(|n| (n, i)))
        .collect();
    let refers = |word: &str, before: usize| -> Option<usize> {
        let w = word.to_ascii_lowercase();
        match by_name.get(w.as_str()) {
            Some(&i) if i < before => Some(i),
            _ => w.parse::<usize>().ok().filter(|&i| i < before),
        }
    };
    let mut needed = BTreeSet::new();
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if !needed.insert(i) {
            continue;
        }
        let s = &file.stages[i];
        let image = Expander::new(meta, file.escape)
            .word(&s.image)
            .unwrap_or_else(|_| s.image.clone());
        if let Some(j) = by_name.get(image.to_ascii_lowercase().as_str()) {
            if *j < i {
                todo.push(*j);
            }
        }
        for ins in &s.instructions {
            if let Kind::Copy(c) = &ins.kind {
                if let Some(j) = c.from.as_deref().and_then(|f| refers(f, i)) {
                    todo.push(j);
                }
            }
        }
    }
    needed.into_iter().collect()
}

/// The global ARGs with their values: defaults (expanded with the ones
/// before) unless `--build-arg` says otherwise, plus the platform args.
fn meta_args(
    file: &Dockerfile,
    build_args: &[(String, String)],
) -> Result<Vec<(String, String)>, (usize, ExpandError)> {
    let mut vars: Vec<(String, String)> = PLATFORM_ARGS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for ins in &file.global_args {
        let Kind::Arg(args) = &ins.kind else { continue };
        for (name, default) in args {
            let given = build_args.iter().rev().find(|(k, _)| k == name);
            let value = match (given, default) {
                (Some((_, v)), _) => Some(v.clone()),
                (None, Some(d)) => Some(
                    Expander::new(&vars, file.escape)
                        .word(d)
                        .map_err(|e| (ins.line, e))?,
                ),
                (None, None) => None,
            };
            if let Some(v) = value {
                vars.push((name.clone(), v));
            }
        }
    }
    Ok(vars)
}

fn is_amd64(platform: &str) -> bool {
    matches!(platform, "linux/amd64" | "linux/x86_64" | "amd64")
}

/// Reads a Dockerfile, at most 4 MiB (BuildKit's bound is lower still).
fn read_bounded(path: &Path) -> io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(4 << 20)
        .read_to_string(&mut text)?;
    Ok(text)
}

#[cfg(test)]
mod tests;
