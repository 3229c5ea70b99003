//! The first pass over a Dockerfile: parser directives, comments and
//! line continuations, giving one logical line per instruction with the
//! number of the physical line it starts on.
//!
//! Model: BuildKit's `frontend/dockerfile/parser` (`parser.go`): parser
//! directives (`# syntax=`, `# escape=`) are read only before the first
//! comment, blank line or instruction; a comment line inside a
//! continuation is dropped, as is an empty one; the escape character at
//! the end of a line joins the next one without a space.

use super::SyntaxError;

/// One instruction's text, continuations joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Logical {
    /// 1-based number of the line the instruction starts on.
    pub(crate) line: usize,
    pub(crate) text: String,
}

/// What the directives at the top of a file say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Directives {
    pub(crate) escape: char,
    pub(crate) syntax: Option<String>,
}

/// Splits `source` into its directives and logical lines.
pub(crate) fn split(source: &str) -> Result<(Directives, Vec<Logical>), (usize, SyntaxError)> {
    let mut directives = Directives {
        escape: '\\',
        syntax: None,
    };
    let physical: Vec<&str> = source.lines().collect();
    let mut i = 0;
    let mut seen = Vec::new();
    // Directives: `# key=value` lines at the very top.
    while i < physical.len() {
        let Some((key, value)) = directive(physical[i]) else {
            break;
        };
        if seen.contains(&key) {
            return Err((i + 1, SyntaxError::RepeatedDirective(key)));
        }
        match key.as_str() {
            "escape" => {
                directives.escape = match value.as_str() {
                    "\\" => '\\',
                    "`" => '`',
                    _ => return Err((i + 1, SyntaxError::BadEscape(value))),
                }
            }
            "syntax" => directives.syntax = Some(value),
            // `check` and unknown directives are comments to us.
            _ => {}
        }
        seen.push(key);
        i += 1;
    }
    let escape = directives.escape;
    let mut out = Vec::new();
    while i < physical.len() {
        let raw = physical[i];
        i += 1;
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let start = i;
        let (mut text, mut more) = strip_continuation(trimmed, escape);
        while more {
            if i >= physical.len() {
                // A continuation at the end of the file ends the instruction.
                break;
            }
            let next = physical[i];
            i += 1;
            let t = next.trim_start();
            if t.starts_with('#') {
                continue;
            }
            if t.is_empty() {
                // BuildKit warns about empty continuation lines; they join nothing.
                continue;
            }
            let (part, cont) = strip_continuation(next, escape);
            text.push_str(&part);
            more = cont;
        }
        out.push(Logical {
            line: start,
            text: text.trim().to_string(),
        });
    }
    Ok((directives, out))
}

/// `(key, value)` of a `# key=value` parser directive line, key
/// lowercased.
fn directive(line: &str) -> Option<(String, String)> {
    let rest = line.trim_start().strip_prefix('#')?;
    let (key, value) = rest.split_once('=')?;
    let key = key.trim();
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    Some((key.to_ascii_lowercase(), value.trim().to_string()))
}

/// The line without a trailing escape character (and the whitespace after
/// it), and whether it continues on the next line.
fn strip_continuation(line: &str, escape: char) -> (String, bool) {
    let t = line.trim_end();
    // As BuildKit's `\\[ \t]*$`: any escape character at the end, even
    // one after another escape character, continues the line.
    match t.strip_suffix(escape) {
        Some(body) => (body.to_string(), true),
        None => (t.to_string(), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(src: &str) -> Vec<(usize, String)> {
        split(src)
            .unwrap()
            .1
            .into_iter()
            .map(|l| (l.line, l.text))
            .collect()
    }

    #[test]
    fn continuations_comments_and_blank_lines() {
        let src = "FROM a\n\n# comment\nRUN echo 1 \\\n  # inside\n\n  && echo 2\nCMD x\n";
        assert_eq!(
            texts(src),
            vec![
                (1, "FROM a".to_string()),
                (4, "RUN echo 1   && echo 2".to_string()),
                (8, "CMD x".to_string()),
            ]
        );
    }

    #[test]
    fn directives_only_at_the_top() {
        let (d, lines) =
            split("# syntax=docker/dockerfile:1\n# escape=`\nFROM a\nRUN x `\n y\n").unwrap();
        assert_eq!(d.escape, '`');
        assert_eq!(d.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(lines[1].text, "RUN x  y");
        // After an instruction (or a comment) it is a comment.
        let (d, _) = split("# hello\n# escape=`\nFROM a\n").unwrap();
        assert_eq!(d.escape, '\\');
        let (d, _) = split("FROM a\n# escape=`\n").unwrap();
        assert_eq!(d.escape, '\\');
    }

    #[test]
    fn bad_directives() {
        assert_eq!(
            split("# escape=x\nFROM a").unwrap_err(),
            (1, SyntaxError::BadEscape("x".into()))
        );
        assert_eq!(
            split("# escape=\\\n# escape=`\nFROM a").unwrap_err(),
            (2, SyntaxError::RepeatedDirective("escape".into()))
        );
    }

    #[test]
    fn a_continuation_at_the_end_of_the_file_ends_the_instruction() {
        assert_eq!(
            texts("FROM a\nRUN echo \\\n"),
            vec![(1, "FROM a".into()), (2, "RUN echo".into())]
        );
    }
}
