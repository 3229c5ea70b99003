//! The Dockerfile parser: text to stages of instructions, each with the
//! line it starts on. Values stay unexpanded: [`expand`] substitutes them
//! when the executor reaches the instruction, with the variables in force
//! there.
//!
//! Written here rather than taken from crates.io: `dockerfile-parser`
//! (pest) is unmaintained since 2021 and has no escape directive,
//! `dockerfile-parser-rs` and `parse-dockerfile` parse but expand nothing,
//! and none gives Docker's word splitting; the rules are BuildKit's
//! (`frontend/dockerfile/parser`, `instructions`, `shell`).

pub mod expand;
mod instruction;
mod lines;

pub use expand::{ExpandError, Expander, Vars};

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The `# syntax=` directive, recorded (we build with our own rules).
    pub syntax: Option<String>,
    /// The escape character (`\` unless `# escape=` says `` ` ``).
    pub escape: char,
    /// `ARG`s before the first `FROM`: visible to `FROM` lines only, and
    /// inside a stage once it declares them again.
    pub global_args: Vec<Instruction>,
    pub stages: Vec<Stage>,
}

/// One `FROM` and the instructions up to the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// `AS name`, lowercased.
    pub name: Option<String>,
    /// The image as written (may hold `$ARG`s).
    pub image: String,
    pub platform: Option<String>,
    /// The `FROM` line's own instruction.
    pub from: Instruction,
    pub instructions: Vec<Instruction>,
}

impl Stage {
    /// The name progress output shows: `AS name`, else `stage-N`.
    pub fn display_name(&self, index: usize) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("stage-{index}"))
    }
}

/// One instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// 1-based line it starts on.
    pub line: usize,
    /// The logical line, continuations joined: what progress output and
    /// image history show.
    pub text: String,
    pub kind: Kind,
}

/// What an instruction says, its values unexpanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    From {
        image: String,
        name: Option<String>,
        platform: Option<String>,
    },
    Run {
        /// `--mount`, `--network`, `--security`: recorded; the executor
        /// refuses what it does not do.
        flags: Vec<(String, String)>,
        command: Command,
    },
    Cmd(Command),
    Entrypoint(Command),
    Copy(Copy),
    Add(Copy),
    Env(Vec<(String, String)>),
    Label(Vec<(String, String)>),
    Arg(Vec<(String, Option<String>)>),
    Workdir(String),
    User(String),
    StopSignal(String),
    Expose(Vec<String>),
    Volume(Vec<String>),
    Shell(Vec<String>),
    Healthcheck(Healthcheck),
    /// The trigger instruction's text, recorded in the image.
    Onbuild(String),
    Maintainer(String),
}

/// A command in exec (JSON) or shell form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Exec(Vec<String>),
    Shell(String),
}

/// `COPY`/`ADD` arguments, unexpanded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Copy {
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub checksum: Option<String>,
    pub link: bool,
    /// Written in JSON form (no word splitting of the sources).
    pub json: bool,
    pub sources: Vec<String>,
    pub dest: String,
}

/// `HEALTHCHECK`, as the image config records it (durations in ns).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Healthcheck {
    pub test: Vec<String>,
    pub interval: Option<u64>,
    pub timeout: Option<u64>,
    pub start_period: Option<u64>,
    pub start_interval: Option<u64>,
    pub retries: Option<u64>,
}

/// What is wrong with a line (the caller names the file and line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyntaxError {
    #[error("unknown instruction: {0}")]
    UnknownInstruction(String),
    #[error("{0} needs at least one argument")]
    MissingArguments(&'static str),
    #[error("{0} needs a source and a destination")]
    CopyArguments(&'static str),
    #[error("unknown flag: --{0}")]
    UnknownFlag(String),
    #[error("invalid value {value:?} for --{flag}")]
    BadFlagValue { flag: String, value: String },
    #[error("FROM takes an image and optionally AS name")]
    BadFrom,
    #[error("invalid stage name {0:?} (a letter, then letters, digits, -, _ or .)")]
    BadStageName(String),
    #[error("duplicate stage name {0:?}")]
    DuplicateStage(String),
    #[error("ENV {0} has no value")]
    EnvWithoutValue(String),
    #[error("{what}: {word:?} is not name=value")]
    NotNameValue { what: &'static str, word: String },
    #[error("{0} with an empty name")]
    EmptyName(&'static str),
    #[error("SHELL needs a JSON array, e.g. [\"/bin/sh\", \"-c\"]")]
    ShellNotJson,
    #[error("HEALTHCHECK takes NONE or [flags] CMD command")]
    BadHealthcheck,
    #[error("{0} is not allowed as an ONBUILD trigger")]
    BadOnbuild(String),
    #[error("unterminated quote")]
    UnterminatedQuote,
    #[error("invalid escape directive {0:?} (\\ or `)")]
    BadEscape(String),
    #[error("parser directive {0} given twice")]
    RepeatedDirective(String),
    #[error("{0} before the first FROM (only ARG may come before it)")]
    BeforeFrom(String),
    #[error("no FROM instruction")]
    NoFrom,
}

/// A syntax error and the 1-based line it is on (0: the file as a whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub error: SyntaxError,
}

/// Parses a whole Dockerfile.
pub fn parse(source: &str) -> Result<Dockerfile, LineError> {
    let (directives, logical) =
        lines::split(source).map_err(|(line, error)| LineError { line, error })?;
    let escape = directives.escape;
    let mut file = Dockerfile {
        syntax: directives.syntax,
        escape,
        global_args: Vec::new(),
        stages: Vec::new(),
    };
    for l in logical {
        let at = |error| LineError {
            line: l.line,
            error,
        };
        let (keyword, kind) = instruction::parse(&l.text, escape).map_err(at)?;
        let ins = Instruction {
            line: l.line,
            text: normalize(&keyword, &l.text),
            kind,
        };
        match (&ins.kind, file.stages.last_mut()) {
            (
                Kind::From {
                    image,
                    name,
                    platform,
                },
                _,
            ) => {
                if let Some(n) = name {
                    if file.stages.iter().any(|s| s.name.as_ref() == Some(n)) {
                        return Err(at(SyntaxError::DuplicateStage(n.clone())));
                    }
                }
                file.stages.push(Stage {
                    name: name.clone(),
                    image: image.clone(),
                    platform: platform.clone(),
                    from: ins.clone(),
                    instructions: Vec::new(),
                });
            }
            (Kind::Arg(_), None) => file.global_args.push(ins),
            (_, None) => return Err(at(SyntaxError::BeforeFrom(keyword))),
            (_, Some(stage)) => stage.instructions.push(ins),
        }
    }
    if file.stages.is_empty() {
        return Err(LineError {
            line: 0,
            error: SyntaxError::NoFrom,
        });
    }
    Ok(file)
}

/// Parses one instruction on its own (an ONBUILD trigger), line 0.
pub fn parse_instruction(text: &str, escape: char) -> Result<Instruction, SyntaxError> {
    let (keyword, kind) = instruction::parse(text.trim(), escape)?;
    if matches!(kind, Kind::From { .. }) {
        return Err(SyntaxError::BadOnbuild(keyword));
    }
    Ok(Instruction {
        line: 0,
        text: normalize(&keyword, text.trim()),
        kind,
    })
}

/// The line with its keyword upper-cased, as Docker shows it.
fn normalize(keyword: &str, text: &str) -> String {
    match text.split_once(char::is_whitespace) {
        Some((_, rest)) => format!("{keyword} {}", rest.trim()),
        None => keyword.to_string(),
    }
}

#[cfg(test)]
mod tests;
