//! The second pass: one logical line to one instruction, its flags and
//! arguments split as Docker splits them, values kept unexpanded (the
//! executor expands them against the stage's variables when it gets
//! there).
//!
//! Model: BuildKit's `frontend/dockerfile/instructions/parse.go` and the
//! line parsers of `parser/line_parsers.go` (`parseMaybeJSON`,
//! `parseNameVal`, `parseStringsWhitespaceDelimited`).

use super::{Command, Copy, Healthcheck, Instruction, Kind, SyntaxError};

/// Parses one logical line (its keyword in any case).
pub(crate) fn parse(text: &str, escape: char) -> Result<(String, Kind), SyntaxError> {
    let (keyword, rest) = match text.split_once(char::is_whitespace) {
        Some((k, r)) => (k, r.trim()),
        None => (text, ""),
    };
    let keyword = keyword.to_ascii_uppercase();
    let kind = match keyword.as_str() {
        "FROM" => from(rest)?,
        "RUN" => {
            let (flags, rest) = flags(rest, &["mount", "network", "security"])?;
            Kind::Run {
                flags,
                command: command(rest, "RUN")?,
            }
        }
        "CMD" => Kind::Cmd(command(rest, "CMD")?),
        "ENTRYPOINT" => Kind::Entrypoint(command(rest, "ENTRYPOINT")?),
        "COPY" => Kind::Copy(copy(rest, "COPY", escape)?),
        "ADD" => Kind::Add(copy(rest, "ADD", escape)?),
        "ENV" => Kind::Env(name_values(rest, "ENV", escape)?),
        "LABEL" => Kind::Label(name_values(rest, "LABEL", escape)?),
        "ARG" => Kind::Arg(args(rest, escape)?),
        "WORKDIR" => Kind::Workdir(one(rest, "WORKDIR")?),
        "USER" => Kind::User(one(rest, "USER")?),
        "STOPSIGNAL" => Kind::StopSignal(one(rest, "STOPSIGNAL")?),
        "EXPOSE" => Kind::Expose(some_words(rest, "EXPOSE", escape)?),
        "VOLUME" => Kind::Volume(match json_array(rest) {
            Some(v) => v,
            None => some_words(rest, "VOLUME", escape)?,
        }),
        "SHELL" => match json_array(rest) {
            Some(v) if !v.is_empty() => Kind::Shell(v),
            _ => return Err(SyntaxError::ShellNotJson),
        },
        "HEALTHCHECK" => Kind::Healthcheck(healthcheck(rest)?),
        "ONBUILD" => {
            let trigger = rest.trim();
            let (kw, _) = trigger
                .split_once(char::is_whitespace)
                .unwrap_or((trigger, ""));
            match kw.to_ascii_uppercase().as_str() {
                "" => return Err(SyntaxError::MissingArguments("ONBUILD")),
                "ONBUILD" | "FROM" | "MAINTAINER" => {
                    return Err(SyntaxError::BadOnbuild(kw.to_ascii_uppercase()))
                }
                _ => {}
            }
            // A trigger must itself be a valid instruction.
            parse(trigger, escape)?;
            Kind::Onbuild(trigger.to_string())
        }
        "MAINTAINER" => {
            if rest.is_empty() {
                return Err(SyntaxError::MissingArguments("MAINTAINER"));
            }
            Kind::Maintainer(rest.to_string())
        }
        _ => return Err(SyntaxError::UnknownInstruction(keyword)),
    };
    Ok((keyword, kind))
}

impl Instruction {
    /// The keyword, upper-cased, e.g. `COPY`.
    pub fn keyword(&self) -> &str {
        self.text.split_whitespace().next().unwrap_or_default()
    }
}

fn from(rest: &str) -> Result<Kind, SyntaxError> {
    let (flags, rest) = flags(rest, &["platform"])?;
    let platform = flags
        .into_iter()
        .find(|(k, _)| k == "platform")
        .map(|(_, v)| v);
    let words: Vec<&str> = rest.split_whitespace().collect();
    let (image, name) = match words.as_slice() {
        [image] => (*image, None),
        [image, as_, name] if as_.eq_ignore_ascii_case("as") => {
            let ok = name.starts_with(|c: char| c.is_ascii_alphabetic())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !ok {
                return Err(SyntaxError::BadStageName(name.to_string()));
            }
            (*image, Some(name.to_ascii_lowercase()))
        }
        [] => return Err(SyntaxError::MissingArguments("FROM")),
        _ => return Err(SyntaxError::BadFrom),
    };
    Ok(Kind::From {
        image: image.to_string(),
        name,
        platform,
    })
}

/// `--name=value` pairs, in order.
type Flags = Vec<(String, String)>;

/// The leading `--name[=value]` flags among `allowed`, and the rest.
fn flags<'a>(mut rest: &'a str, allowed: &[&str]) -> Result<(Flags, &'a str), SyntaxError> {
    let mut out = Vec::new();
    loop {
        rest = rest.trim_start();
        let Some(flag) = rest.strip_prefix("--") else {
            break;
        };
        let end = flag.find(char::is_whitespace).unwrap_or(flag.len());
        let (word, after) = flag.split_at(end);
        if word.is_empty() {
            // `--` alone ends the flags.
            rest = after;
            break;
        }
        let (name, value) = match word.split_once('=') {
            Some((n, v)) => (n, v),
            None => (word, "true"),
        };
        if !allowed.contains(&name) {
            return Err(SyntaxError::UnknownFlag(name.to_string()));
        }
        out.push((name.to_string(), value.to_string()));
        rest = after;
    }
    Ok((out, rest.trim()))
}

/// `["a", "b"]` as its strings; `None` when `s` is not a JSON array of
/// strings (then it is shell form, as Docker decides).
fn json_array(s: &str) -> Option<Vec<String>> {
    let t = s.trim();
    if !t.starts_with('[') {
        return None;
    }
    serde_json::from_str(t).ok()
}

fn command(rest: &str, what: &'static str) -> Result<Command, SyntaxError> {
    if let Some(v) = json_array(rest) {
        return Ok(Command::Exec(v));
    }
    if rest.is_empty() && what == "RUN" {
        return Err(SyntaxError::MissingArguments(what));
    }
    Ok(Command::Shell(rest.to_string()))
}

fn copy(rest: &str, what: &'static str, escape: char) -> Result<Copy, SyntaxError> {
    let allowed: &[&str] = if what == "COPY" {
        &["from", "chown", "chmod", "link"]
    } else {
        &["chown", "chmod", "link", "checksum"]
    };
    let (flags, rest) = flags(rest, allowed)?;
    let mut c = Copy::default();
    for (k, v) in flags {
        match k.as_str() {
            "from" => c.from = Some(v),
            "chown" => c.chown = Some(v),
            "chmod" => c.chmod = Some(v),
            "checksum" => c.checksum = Some(v),
            _ => c.link = v != "false",
        }
    }
    let mut words = match json_array(rest) {
        Some(v) => {
            c.json = true;
            v
        }
        None => quoted_words(rest, escape)?,
    };
    if words.len() < 2 {
        return Err(SyntaxError::CopyArguments(what));
    }
    c.dest = words.pop().unwrap_or_default();
    c.sources = words;
    Ok(c)
}

/// `ENV`/`LABEL`: `k=v k2="v 2"`, or the legacy `ENV k some value`.
fn name_values(
    rest: &str,
    what: &'static str,
    escape: char,
) -> Result<Vec<(String, String)>, SyntaxError> {
    let words = quoted_words(rest, escape)?;
    let Some(first) = words.first() else {
        return Err(SyntaxError::MissingArguments(what));
    };
    if !first.contains('=') {
        // Legacy form: one name, the rest of the line is its value.
        let value = rest[first.len()..].trim();
        if value.is_empty() && what == "ENV" {
            return Err(SyntaxError::EnvWithoutValue(first.clone()));
        }
        return Ok(vec![(first.clone(), value.to_string())]);
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some(("", _)) => Err(SyntaxError::EmptyName(what)),
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => Err(SyntaxError::NotNameValue { what, word: w }),
        })
        .collect()
}

fn args(rest: &str, escape: char) -> Result<Vec<(String, Option<String>)>, SyntaxError> {
    let words = quoted_words(rest, escape)?;
    if words.is_empty() {
        return Err(SyntaxError::MissingArguments("ARG"));
    }
    words
        .into_iter()
        .map(|w| {
            let (k, v) = match w.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (w, None),
            };
            if k.is_empty() {
                return Err(SyntaxError::EmptyName("ARG"));
            }
            Ok((k, v))
        })
        .collect()
}

/// The whole rest as one (unexpanded) value.
fn one(rest: &str, what: &'static str) -> Result<String, SyntaxError> {
    if rest.is_empty() {
        return Err(SyntaxError::MissingArguments(what));
    }
    Ok(rest.to_string())
}

fn some_words(rest: &str, what: &'static str, escape: char) -> Result<Vec<String>, SyntaxError> {
    let words = quoted_words(rest, escape)?;
    if words.is_empty() {
        return Err(SyntaxError::MissingArguments(what));
    }
    Ok(words)
}

/// Splits on whitespace outside quotes, keeping quotes and escapes in the
/// words (the expansion removes them).
fn quoted_words(s: &str, escape: char) -> Result<Vec<String>, SyntaxError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            (None, '\'' | '"') => {
                quote = Some(c);
                cur.push(c);
            }
            (Some(q), c) if c == q => {
                quote = None;
                cur.push(c);
            }
            (q, c) if c == escape && q != Some('\'') => {
                // The next character belongs to the word, whatever it is.
                cur.push(c);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            _ => cur.push(c),
        }
    }
    if quote.is_some() {
        return Err(SyntaxError::UnterminatedQuote);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

fn healthcheck(rest: &str) -> Result<Healthcheck, SyntaxError> {
    let (flags, rest) = flags(
        rest,
        &[
            "interval",
            "timeout",
            "start-period",
            "start-interval",
            "retries",
        ],
    )?;
    let (kw, cmd) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let mut h = Healthcheck::default();
    match kw.to_ascii_uppercase().as_str() {
        "NONE" if cmd.trim().is_empty() && flags.is_empty() => {
            h.test = vec!["NONE".to_string()];
            return Ok(h);
        }
        "NONE" => return Err(SyntaxError::BadHealthcheck),
        "CMD" => {}
        _ => return Err(SyntaxError::BadHealthcheck),
    }
    h.test = match command(cmd.trim(), "HEALTHCHECK")? {
        Command::Exec(v) => std::iter::once("CMD".to_string()).chain(v).collect(),
        Command::Shell(s) if s.is_empty() => return Err(SyntaxError::BadHealthcheck),
        Command::Shell(s) => vec!["CMD-SHELL".to_string(), s],
    };
    for (k, v) in flags {
        if k == "retries" {
            h.retries = Some(v.parse().map_err(|_| SyntaxError::BadFlagValue {
                flag: k.clone(),
                value: v.clone(),
            })?);
            continue;
        }
        let ns = duration_ns(&v).ok_or_else(|| SyntaxError::BadFlagValue {
            flag: k.clone(),
            value: v.clone(),
        })?;
        match k.as_str() {
            "interval" => h.interval = Some(ns),
            "timeout" => h.timeout = Some(ns),
            "start-period" => h.start_period = Some(ns),
            _ => h.start_interval = Some(ns),
        }
    }
    Ok(h)
}

/// A Go duration (`30s`, `1m30s`, `500ms`, `1h`) in nanoseconds.
pub(crate) fn duration_ns(s: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n_end = rest.find(|c: char| !c.is_ascii_digit())?;
        let n: u64 = rest[..n_end].parse().ok()?;
        rest = &rest[n_end..];
        let u_end = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit: u64 = match &rest[..u_end] {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
        rest = &rest[u_end..];
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_words_keep_quotes() {
        assert_eq!(
            quoted_words(r#"a="x y" b='c d' e\ f"#, '\\').unwrap(),
            vec![r#"a="x y""#, "b='c d'", r"e\ f"]
        );
        assert_eq!(
            quoted_words("\"a", '\\').unwrap_err(),
            SyntaxError::UnterminatedQuote
        );
    }

    #[test]
    fn env_forms() {
        assert_eq!(
            name_values("A=1 B=\"two words\"", "ENV", '\\').unwrap(),
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "\"two words\"".into())
            ]
        );
        assert_eq!(
            name_values("A  some value", "ENV", '\\').unwrap(),
            vec![("A".into(), "some value".into())]
        );
        assert_eq!(
            name_values("A", "ENV", '\\').unwrap_err(),
            SyntaxError::EnvWithoutValue("A".into())
        );
        assert!(matches!(
            name_values("A=1 B", "LABEL", '\\').unwrap_err(),
            SyntaxError::NotNameValue { .. }
        ));
    }

    #[test]
    fn copy_flags_and_forms() {
        let Kind::Copy(c) = parse("copy --from=build --chown=1:2 --chmod=755 a b /d/", '\\')
            .unwrap()
            .1
        else {
            panic!()
        };
        assert_eq!(c.from.as_deref(), Some("build"));
        assert_eq!(c.chown.as_deref(), Some("1:2"));
        assert_eq!(c.chmod.as_deref(), Some("755"));
        assert_eq!(c.sources, vec!["a", "b"]);
        assert_eq!(c.dest, "/d/");
        let Kind::Copy(c) = parse(r#"COPY ["a b", "/d"]"#, '\\').unwrap().1 else {
            panic!()
        };
        assert!(c.json);
        assert_eq!(c.sources, vec!["a b"]);
        assert_eq!(
            parse("COPY --form=x a b", '\\').unwrap_err(),
            SyntaxError::UnknownFlag("form".into())
        );
        assert_eq!(
            parse("COPY a", '\\').unwrap_err(),
            SyntaxError::CopyArguments("COPY")
        );
        assert_eq!(
            parse("ADD --from=x a b", '\\').unwrap_err(),
            SyntaxError::UnknownFlag("from".into())
        );
    }

    #[test]
    fn commands() {
        assert_eq!(
            parse("RUN [\"sh\", \"-c\", \"x\"]", '\\').unwrap().1,
            Kind::Run {
                flags: vec![],
                command: Command::Exec(vec!["sh".into(), "-c".into(), "x".into()])
            }
        );
        // Not valid JSON: shell form.
        assert_eq!(
            parse("CMD [not json", '\\').unwrap().1,
            Kind::Cmd(Command::Shell("[not json".into()))
        );
        assert_eq!(
            parse("SHELL sh -c", '\\').unwrap_err(),
            SyntaxError::ShellNotJson
        );
        assert_eq!(
            parse("FORM x", '\\').unwrap_err(),
            SyntaxError::UnknownInstruction("FORM".into())
        );
    }

    #[test]
    fn from_forms() {
        assert_eq!(
            parse("from --platform=linux/amd64 busybox AS Build", '\\')
                .unwrap()
                .1,
            Kind::From {
                image: "busybox".into(),
                name: Some("build".into()),
                platform: Some("linux/amd64".into())
            }
        );
        assert_eq!(parse("FROM a b", '\\').unwrap_err(), SyntaxError::BadFrom);
        assert_eq!(
            parse("FROM a AS 1x", '\\').unwrap_err(),
            SyntaxError::BadStageName("1x".into())
        );
    }

    #[test]
    fn healthchecks() {
        let Kind::Healthcheck(h) = parse(
            "HEALTHCHECK --interval=5s --retries=3 CMD wget -q localhost",
            '\\',
        )
        .unwrap()
        .1
        else {
            panic!()
        };
        assert_eq!(h.test, vec!["CMD-SHELL", "wget -q localhost"]);
        assert_eq!(h.interval, Some(5_000_000_000));
        assert_eq!(h.retries, Some(3));
        let Kind::Healthcheck(h) = parse("HEALTHCHECK NONE", '\\').unwrap().1 else {
            panic!()
        };
        assert_eq!(h.test, vec!["NONE"]);
        assert_eq!(duration_ns("1m30s"), Some(90_000_000_000));
        assert_eq!(duration_ns("5x"), None);
        assert_eq!(
            parse("HEALTHCHECK wget", '\\').unwrap_err(),
            SyntaxError::BadHealthcheck
        );
    }

    #[test]
    fn onbuild() {
        assert_eq!(
            parse("ONBUILD COPY . /app", '\\').unwrap().1,
            Kind::Onbuild("COPY . /app".into())
        );
        assert_eq!(
            parse("ONBUILD FROM x", '\\').unwrap_err(),
            SyntaxError::BadOnbuild("FROM".into())
        );
    }
}
