//! One stage: its `FROM` (a stored or pulled image, `scratch`, or an
//! earlier stage), the base image's `ONBUILD` triggers, then each
//! instruction through the cache. Metadata instructions change the
//! config (and `WORKDIR` makes its directory); `RUN` goes to the
//! [`Runner`]; `COPY`/`ADD` are in [`super::copy`].

use serde_json::{json, Value};

use super::{Build, Error, StepError};
use crate::cache;
use crate::dockerfile::{Command, Expander, Instruction, Kind};
use crate::layer::Layer;
use crate::progress::Step;
use crate::run::{RunRequest, Runner};
use crate::state::{exposed_ports, CachedLayer, State};

/// What a stage has declared so far.
#[derive(Debug, Default)]
pub(super) struct Scope {
    /// `ARG`s declared in the stage, with their values.
    pub(super) args: Vec<(String, String)>,
    /// Whether the stage set CMD (ENTRYPOINT then keeps it).
    pub(super) cmd_set: bool,
}

impl Scope {
    /// What expansions see: the stage's args, then its Env (an ENV
    /// overrides an ARG of the same name).
    pub(super) fn vars(&self, state: &State) -> Vec<(String, String)> {
        let mut v = self.args.clone();
        v.extend(state.env());
        v
    }
}

/// How a step ended.
pub(super) struct Outcome {
    pub(super) state: State,
    pub(super) cached: bool,
}

impl<R: Runner> Build<'_, R> {
    /// Runs stage `i`; its final state.
    pub(super) async fn run_stage(&mut self, i: usize) -> Result<State, Error> {
        let file = self.file;
        let stage = &file.stages[i];
        let total = stage.instructions.len() + 1;
        let many = file.stages.len() > 1;
        let label = |k: usize, text: &str| {
            if many {
                format!("[{} {k}/{total}] {text}", stage.display_name(i))
            } else {
                format!("[{k}/{total}] {text}")
            }
        };
        let step = self.progress.start(&label(1, &stage.from.text));
        let (mut state, triggers) = match self.from(i, &step).await {
            Ok(v) => v,
            Err(e) => {
                self.progress.error(&step, &crate::error_line(&e));
                return Err(self.step_err(stage.from.line, &stage.from.text)(e));
            }
        };
        self.progress.done(&step);
        let mut scope = Scope::default();
        for trigger in triggers {
            let ins = match crate::dockerfile::parse_instruction(&trigger, file.escape) {
                Ok(ins) => ins,
                Err(source) => {
                    return Err(self.step_err(stage.from.line, &stage.from.text)(
                        StepError::Trigger { trigger, source },
                    ))
                }
            };
            let ins = Instruction {
                line: stage.from.line,
                ..ins
            };
            let step = self
                .progress
                .start(&label(1, &format!("ONBUILD {}", ins.text)));
            state = self.step(i, state, &mut scope, &ins, &step).await?;
        }
        for (k, ins) in stage.instructions.iter().enumerate() {
            let step = self.progress.start(&label(k + 2, &ins.text));
            state = self.step(i, state, &mut scope, ins, &step).await?;
        }
        Ok(state)
    }

    /// One instruction with its progress lines.
    async fn step(
        &mut self,
        i: usize,
        state: State,
        scope: &mut Scope,
        ins: &Instruction,
        step: &Step,
    ) -> Result<State, Error> {
        match self.instruction(i, state, scope, ins, step).await {
            Ok(o) if o.cached => {
                self.progress.cached(step);
                self.cached += 1;
                Ok(o.state)
            }
            Ok(o) => {
                self.progress.done(step);
                // An ARG only changes the scope: nothing ran.
                if !matches!(ins.kind, Kind::Arg(_)) {
                    self.ran += 1;
                }
                Ok(o.state)
            }
            Err(e) => {
                self.progress.error(step, &crate::error_line(&e));
                Err(self.step_err(ins.line, &ins.text)(e))
            }
        }
    }

    /// `FROM`: the base state and the base image's ONBUILD triggers.
    async fn from(&mut self, i: usize, step: &Step) -> Result<(State, Vec<String>), StepError> {
        let stage = &self.file.stages[i];
        let mut ex = Expander::new(&self.meta_args, self.file.escape);
        if let Some(p) = &stage.platform {
            let p = ex.word(p)?;
            if !super::is_amd64(&p) {
                return Err(StepError::Platform(p));
            }
        }
        let image = ex.word(&stage.image)?;
        if image.is_empty() {
            return Err(StepError::Empty("FROM"));
        }
        let lower = image.to_ascii_lowercase();
        let earlier = self.file.stages[..i]
            .iter()
            .position(|s| s.name.as_deref() == Some(lower.as_str()));
        if let Some(j) = earlier {
            let state = self
                .results
                .get(&j)
                .cloned()
                .ok_or(StepError::StageOrder(lower))?;
            return Ok((state, Vec::new()));
        }
        if lower == "scratch" {
            let key = cache::key("", &[b"FROM", b"scratch"]);
            return Ok((State::from_base(None, json!({}), key), Vec::new()));
        }
        let img = self.image(&image, Some(step)).await?;
        self.base_state(&img)
    }

    async fn instruction(
        &mut self,
        i: usize,
        state: State,
        scope: &mut Scope,
        ins: &Instruction,
        step: &Step,
    ) -> Result<Outcome, StepError> {
        match &ins.kind {
            Kind::Arg(args) => {
                self.arg(&state, scope, args)?;
                Ok(Outcome {
                    state,
                    cached: false,
                })
            }
            Kind::Run { flags, command } => {
                self.run_step(state, scope, ins, flags, command, step).await
            }
            Kind::Copy(c) => self.copy_step(i, state, scope, ins, c, false).await,
            Kind::Add(c) => self.copy_step(i, state, scope, ins, c, true).await,
            Kind::From { .. } => unreachable!("FROM starts a stage"),
            _ => self.meta_step(state, scope, ins),
        }
    }

    /// `ARG name[=default]`: in scope from here, the build arg's value
    /// winning over the default, a global ARG's value when declared
    /// without one.
    fn arg(
        &mut self,
        state: &State,
        scope: &mut Scope,
        args: &[(String, Option<String>)],
    ) -> Result<(), StepError> {
        for (name, default) in args {
            self.consumed.insert(name.clone());
            let given = self.opts.build_args.iter().rev().find(|(k, _)| k == name);
            let value = match (given, default) {
                (Some((_, v)), _) => Some(v.clone()),
                (None, Some(d)) => {
                    let vars = scope.vars(state);
                    Some(Expander::new(&vars, self.file.escape).word(d)?)
                }
                (None, None) => self
                    .meta_args
                    .iter()
                    .rev()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone()),
            };
            scope.args.retain(|(k, _)| k != name);
            if let Some(v) = value {
                scope.args.push((name.clone(), v));
            }
        }
        Ok(())
    }

    /// The instructions that change the config only (WORKDIR may add its
    /// directory).
    fn meta_step(
        &mut self,
        state: State,
        scope: &mut Scope,
        ins: &Instruction,
    ) -> Result<Outcome, StepError> {
        let vars = scope.vars(&state);
        let mut ex = Expander::new(&vars, self.file.escape);
        let mut next = state.clone();
        let mut new_dirs: Vec<String> = Vec::new();
        match &ins.kind {
            Kind::Env(pairs) => {
                for (k, v) in pairs {
                    let v = ex.word(v)?;
                    next.set_env(k, &v);
                }
            }
            Kind::Label(pairs) => {
                for (k, v) in pairs {
                    let (k, v) = (ex.word(k)?, ex.word(v)?);
                    next.insert_into("Labels", &k, json!(v));
                }
            }
            Kind::Workdir(p) => {
                let p = ex.word(p)?;
                if p.is_empty() {
                    return Err(StepError::Empty("WORKDIR"));
                }
                let path = next.set_workdir(&p);
                // The directory and its missing parents, as Docker makes them.
                let mut at = String::new();
                for c in crate::context::clean(&path) {
                    at.push('/');
                    at.push_str(&c);
                    if !self.exists_dir(&state, &at)? {
                        new_dirs.push(at.clone());
                    }
                }
            }
            Kind::User(u) => next.set("User", json!(ex.word(u)?)),
            Kind::StopSignal(s) => next.set("StopSignal", json!(ex.word(s)?)),
            Kind::Expose(words) => {
                for w in words {
                    for word in ex.words(w)? {
                        let ports =
                            exposed_ports(&word).ok_or_else(|| StepError::BadPort(word.clone()))?;
                        for p in ports {
                            next.insert_into("ExposedPorts", &p, json!({}));
                        }
                    }
                }
            }
            Kind::Volume(words) => {
                for w in words {
                    for word in ex.words(w)? {
                        next.insert_into("Volumes", &word, json!({}));
                    }
                }
            }
            Kind::Shell(v) => next.set("Shell", json!(v)),
            Kind::Cmd(c) => {
                scope.cmd_set = true;
                next.set("Cmd", json!(argv(c, &state)));
            }
            Kind::Entrypoint(c) => {
                next.set("Entrypoint", json!(argv(c, &state)));
                if !scope.cmd_set {
                    // Docker: a new ENTRYPOINT drops the base's CMD.
                    next.set("Cmd", Value::Null);
                }
            }
            Kind::Healthcheck(h) => next.set_healthcheck(h),
            Kind::Onbuild(t) => next.push_onbuild(t),
            Kind::Maintainer(m) => {
                next.config["author"] = json!(m);
            }
            Kind::Arg(_) | Kind::Run { .. } | Kind::Copy(_) | Kind::Add(_) | Kind::From { .. } => {
                unreachable!("not a metadata instruction")
            }
        }
        let used = used_vars(&ex.used, &vars);
        let key = cache::key(&state.key, &[ins.text.as_bytes(), used.as_bytes()]);
        if let Some(hit) = self.cache_get(&key) {
            return Ok(Outcome {
                state: hit,
                cached: true,
            });
        }
        if !new_dirs.is_empty() {
            let mut layer = Layer::default();
            let mtime = self.opts.source_date_epoch.unwrap_or(0);
            for d in &new_dirs {
                layer.add_dir(d.trim_start_matches('/'), (0, 0), mtime);
            }
            let written = layer.write(&self.cache.layer_dir(), self.opts.source_date_epoch)?;
            next.layers.push(CachedLayer::from_new(&written));
            next.dirs.extend(new_dirs.iter().cloned());
        }
        next.history(&ins.text, new_dirs.is_empty(), &self.created());
        next.key = key;
        self.cache.put(&next)?;
        Ok(Outcome {
            state: next,
            cached: false,
        })
    }

    async fn run_step(
        &mut self,
        state: State,
        scope: &Scope,
        ins: &Instruction,
        flags: &[(String, String)],
        command: &Command,
        step: &Step,
    ) -> Result<Outcome, StepError> {
        if let Some((flag, _)) = flags.first() {
            return Err(StepError::RunFlag(flag.clone()));
        }
        let argv = argv(command, &state);
        let mut env: Vec<String> = state
            .env()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let env_names: Vec<String> = state.env().into_iter().map(|(k, _)| k).collect();
        let mut args_part = String::new();
        for (k, v) in &scope.args {
            args_part.push_str(&format!("{k}={v}\n"));
            if !env_names.contains(k) {
                env.push(format!("{k}={v}"));
            }
        }
        let key = cache::key(
            &state.key,
            &[b"RUN", ins.text.as_bytes(), args_part.as_bytes()],
        );
        if let Some(hit) = self.cache_get(&key) {
            return Ok(Outcome {
                state: hit,
                cached: true,
            });
        }
        let image = self.intermediate_image(&state)?;
        let layer_dir = self.cache.layer_dir();
        let runner = self.runner;
        let layer = {
            let mut out = self.progress.output(step);
            runner
                .run(
                    RunRequest {
                        image: &image,
                        argv: argv.clone(),
                        env,
                        user: state.user(),
                        workdir: state.workdir(),
                        layer_dir: &layer_dir,
                    },
                    &mut out,
                )
                .await?
        };
        let mut next = state.clone();
        if let Some(l) = &layer {
            next.layers.push(CachedLayer::from_new(l));
            next.dirs.extend(crate::layer::dirs_in(&l.path)?);
        }
        let created_by = match command {
            Command::Shell(_) => format!("RUN {}", argv.join(" ")),
            Command::Exec(_) => ins.text.clone(),
        };
        next.history(&created_by, layer.is_none(), &self.created());
        next.key = key;
        self.cache.put(&next)?;
        Ok(Outcome {
            state: next,
            cached: false,
        })
    }

    /// Whether `path` (absolute, cleaned) is a directory of `state`'s
    /// root filesystem: made by a new layer, or in the base image, where a
    /// symlink counts as the directory it names (`/bin -> usr/bin`: a
    /// layer must never replace it with a directory of its own).
    pub(super) fn exists_dir(&mut self, state: &State, path: &str) -> Result<bool, StepError> {
        if path == "/" || path.is_empty() || state.dirs.contains(path) {
            return Ok(true);
        }
        let Some(base) = &state.base else {
            return Ok(false);
        };
        let memo = format!("{base}\0{path}");
        if let Some(&known) = self.dir_memo.get(&memo) {
            return Ok(known);
        }
        let img = self.store.resolve(base).map_err(StepError::Store)?;
        let found = self
            .store
            .path_in(&img, path)
            .map_err(StepError::Store)?
            .is_some_and(|p| {
                p.symlink_metadata()
                    .is_ok_and(|m| m.is_dir() || m.file_type().is_symlink())
            });
        self.dir_memo.insert(memo, found);
        Ok(found)
    }
}

/// A command as the config holds it: exec form as is, shell form in the
/// stage's SHELL.
fn argv(c: &Command, state: &State) -> Vec<String> {
    match c {
        Command::Exec(v) => v.clone(),
        Command::Shell(s) => {
            let mut v = state.shell();
            v.push(s.clone());
            v
        }
    }
}

/// The variables an instruction used, with their values, for its key.
fn used_vars(used: &std::collections::BTreeSet<String>, vars: &[(String, String)]) -> String {
    let mut out = String::new();
    for name in used {
        let value = vars.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v);
        match value {
            Some(v) => out.push_str(&format!("{name}={v}\n")),
            None => out.push_str(&format!("{name}\n")),
        }
    }
    out
}
