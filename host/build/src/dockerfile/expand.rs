//! Variable expansion and word splitting as Docker does them for the
//! instructions it expands (`ADD COPY ENV EXPOSE FROM LABEL STOPSIGNAL
//! USER VOLUME WORKDIR ARG` and the flags of `COPY`/`ADD`): `$V`, `${V}`,
//! `${V:-word}`, `${V-word}`, `${V:+word}`, `${V+word}`, `${V:?msg}`,
//! `${V?msg}`; single quotes are literal, double quotes expand, the
//! escape character makes the next character literal (inside double
//! quotes only before `"`, `$` and itself, as Docker's lexer).
//!
//! Model: BuildKit's `frontend/dockerfile/shell/lex.go`. Words are split
//! on unquoted whitespace after substitution, so `COPY $SRCS /d` with
//! `SRCS="a b"` copies two sources. The names a word used are recorded:
//! the step cache keys on the build args a step uses.

use std::collections::BTreeSet;

/// Stands for `""` or `''` in the expanded characters, so an empty quoted
/// word survives splitting; never part of a result.
const EMPTY_QUOTES: char = '\u{0}';

/// Why a word could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    #[error("unterminated quote in {0:?}")]
    UnterminatedQuote(String),
    #[error("unterminated ${{ in {0:?}")]
    UnterminatedBrace(String),
    #[error("bad substitution in {0:?}")]
    BadSubstitution(String),
    #[error("{name}: {message}")]
    Required { name: String, message: String },
}

/// The variables an expansion can see.
pub trait Vars {
    fn get(&self, name: &str) -> Option<&str>;
}

impl Vars for [(String, String)] {
    fn get(&self, name: &str) -> Option<&str> {
        // Later definitions win, as in an environment list.
        self.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Vars for Vec<(String, String)> {
    fn get(&self, name: &str) -> Option<&str> {
        Vars::get(self.as_slice(), name)
    }
}

/// Expands words against variables.
pub struct Expander<'a, V: Vars + ?Sized> {
    pub vars: &'a V,
    pub escape: char,
    /// Every variable name looked up, set or not.
    pub used: BTreeSet<String>,
}

impl<'a, V: Vars + ?Sized> Expander<'a, V> {
    pub fn new(vars: &'a V, escape: char) -> Self {
        Expander {
            vars,
            escape,
            used: BTreeSet::new(),
        }
    }

    /// One word: quotes removed, variables substituted, no splitting.
    pub fn word(&mut self, input: &str) -> Result<String, ExpandError> {
        let chars = self.process(input)?;
        Ok(chars
            .into_iter()
            .map(|(c, _)| c)
            .filter(|&c| c != EMPTY_QUOTES)
            .collect())
    }

    /// Several words: substituted, then split on unquoted whitespace.
    pub fn words(&mut self, input: &str) -> Result<Vec<String>, ExpandError> {
        let chars = self.process(input)?;
        let mut out = Vec::new();
        let mut cur = String::new();
        let mut in_word = false;
        for (c, quoted) in chars {
            if !quoted && c.is_whitespace() {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            } else {
                if c != EMPTY_QUOTES {
                    cur.push(c);
                }
                in_word = true;
            }
        }
        if in_word {
            out.push(cur);
        }
        Ok(out)
    }

    /// The expanded characters, each marked quoted (it came from inside
    /// quotes or was escaped) or not.
    fn process(&mut self, input: &str) -> Result<Vec<(char, bool)>, ExpandError> {
        let chars: Vec<char> = input.chars().collect();
        let mut out = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            match c {
                '\'' => {
                    let end = chars[i + 1..]
                        .iter()
                        .position(|&x| x == '\'')
                        .ok_or_else(|| ExpandError::UnterminatedQuote(input.to_string()))?;
                    out.extend(chars[i + 1..i + 1 + end].iter().map(|&x| (x, true)));
                    // An empty '' still makes a word.
                    if end == 0 {
                        out.push((EMPTY_QUOTES, true));
                    }
                    i += end + 2;
                }
                '"' => {
                    i += 1;
                    let start_len = out.len();
                    loop {
                        let Some(&d) = chars.get(i) else {
                            return Err(ExpandError::UnterminatedQuote(input.to_string()));
                        };
                        if d == '"' {
                            i += 1;
                            break;
                        }
                        if d == self.escape {
                            match chars.get(i + 1) {
                                Some(&n) if n == '"' || n == '$' || n == self.escape => {
                                    out.push((n, true));
                                    i += 2;
                                }
                                Some(_) => {
                                    out.push((d, true));
                                    i += 1;
                                }
                                None => i += 1,
                            }
                        } else if d == '$' {
                            let (value, next) = self.dollar(input, &chars, i)?;
                            out.extend(value.chars().map(|x| (x, true)));
                            i = next;
                        } else {
                            out.push((d, true));
                            i += 1;
                        }
                    }
                    if out.len() == start_len {
                        out.push((EMPTY_QUOTES, true));
                    }
                }
                '$' => {
                    let (value, next) = self.dollar(input, &chars, i)?;
                    out.extend(value.chars().map(|x| (x, false)));
                    i = next;
                }
                _ if c == self.escape => {
                    if let Some(&n) = chars.get(i + 1) {
                        out.push((n, true));
                    }
                    i += 2;
                }
                _ => {
                    out.push((c, false));
                    i += 1;
                }
            }
        }
        Ok(out)
    }

    /// Expands the `$` at `chars[at]`: the value and the index after it.
    fn dollar(
        &mut self,
        input: &str,
        chars: &[char],
        at: usize,
    ) -> Result<(String, usize), ExpandError> {
        let mut i = at + 1;
        match chars.get(i) {
            Some('{') => {
                i += 1;
                let start = i;
                while i < chars.len() && is_name_char(chars[i]) {
                    i += 1;
                }
                let name: String = chars[start..i].iter().collect();
                if name.is_empty() {
                    return Err(ExpandError::BadSubstitution(input.to_string()));
                }
                self.used.insert(name.clone());
                let value = self.vars.get(&name).map(str::to_string);
                match chars.get(i) {
                    Some('}') => Ok((value.unwrap_or_default(), i + 1)),
                    Some(&op) if op == ':' || op == '-' || op == '+' || op == '?' => {
                        let (colon, op, j) = if op == ':' {
                            match chars.get(i + 1) {
                                Some(&o) if o == '-' || o == '+' || o == '?' => (true, o, i + 2),
                                _ => return Err(ExpandError::BadSubstitution(input.to_string())),
                            }
                        } else {
                            (false, op, i + 1)
                        };
                        let close = matching_brace(chars, j)
                            .ok_or_else(|| ExpandError::UnterminatedBrace(input.to_string()))?;
                        let raw: String = chars[j..close].iter().collect();
                        let word = self.word(&raw)?;
                        let set = match (&value, colon) {
                            (Some(v), true) => !v.is_empty(),
                            (Some(_), false) => true,
                            (None, _) => false,
                        };
                        let result = match op {
                            '-' if set => value.unwrap_or_default(),
                            '-' => word,
                            '+' if set => word,
                            '+' => String::new(),
                            _ if set => value.unwrap_or_default(),
                            _ => {
                                return Err(ExpandError::Required {
                                    name,
                                    message: if word.is_empty() {
                                        "is not allowed to be unset".to_string()
                                    } else {
                                        word
                                    },
                                })
                            }
                        };
                        Ok((result, close + 1))
                    }
                    None => Err(ExpandError::UnterminatedBrace(input.to_string())),
                    Some(_) => Err(ExpandError::BadSubstitution(input.to_string())),
                }
            }
            Some(&c) if is_name_start(c) => {
                let start = i;
                while i < chars.len() && is_name_char(chars[i]) {
                    i += 1;
                }
                let name: String = chars[start..i].iter().collect();
                self.used.insert(name.clone());
                Ok((self.vars.get(&name).unwrap_or_default().to_string(), i))
            }
            // A `$` before anything else is itself.
            _ => Ok(("$".to_string(), at + 1)),
        }
    }
}

/// The index of the `}` closing a `${…}` whose word starts at `from`,
/// with nested `${…}` inside.
fn matching_brace(chars: &[char], from: usize) -> Option<usize> {
    let mut depth = 0;
    let mut i = from;
    while i < chars.len() {
        match chars[i] {
            '$' if chars.get(i + 1) == Some(&'{') => {
                depth += 1;
                i += 1;
            }
            '}' if depth == 0 => return Some(i),
            '}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vec<(String, String)> {
        [("A", "a"), ("EMPTY", ""), ("SP", "x y"), ("P", "/usr/bin")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn word(s: &str) -> String {
        let v = vars();
        Expander::new(&v, '\\').word(s).unwrap()
    }

    fn words(s: &str) -> Vec<String> {
        let v = vars();
        Expander::new(&v, '\\').words(s).unwrap()
    }

    #[test]
    fn substitutions() {
        assert_eq!(word("$A"), "a");
        assert_eq!(word("${A}b"), "ab");
        assert_eq!(word("$Ab"), "");
        assert_eq!(word("${NOPE:-d}"), "d");
        assert_eq!(word("${EMPTY:-d}"), "d");
        assert_eq!(word("${EMPTY-d}"), "");
        assert_eq!(word("${A:-d}"), "a");
        assert_eq!(word("${A:+set}"), "set");
        assert_eq!(word("${EMPTY:+set}"), "");
        assert_eq!(word("${EMPTY+set}"), "set");
        assert_eq!(word("${NOPE:+set}"), "");
        assert_eq!(word("${NOPE:-${A}x}"), "ax");
        assert_eq!(word("$P:/bin"), "/usr/bin:/bin");
        assert_eq!(word("a$"), "a$");
        assert_eq!(word("$1"), "$1");
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(word("'$A'"), "$A");
        assert_eq!(word("\"$A b\""), "a b");
        assert_eq!(word("\\$A"), "$A");
        assert_eq!(word("\"\\$A\""), "$A");
        assert_eq!(word("\"a\\nb\""), "a\\nb");
        assert_eq!(word("\"say \\\"hi\\\"\""), "say \"hi\"");
        assert_eq!(word("a\\ b"), "a b");
        let v = vars();
        assert_eq!(Expander::new(&v, '`').word("`$A").unwrap(), "$A");
    }

    #[test]
    fn words_split_after_substitution() {
        assert_eq!(words("$SP /d"), vec!["x", "y", "/d"]);
        assert_eq!(words("\"$SP\" /d"), vec!["x y", "/d"]);
        assert_eq!(words("  a\\ b   c "), vec!["a b", "c"]);
        assert_eq!(words("'' x"), vec!["", "x"]);
    }

    #[test]
    fn errors_and_used_names() {
        let v = vars();
        let mut e = Expander::new(&v, '\\');
        assert_eq!(
            e.word("${NOPE:?needed}").unwrap_err(),
            ExpandError::Required {
                name: "NOPE".into(),
                message: "needed".into()
            }
        );
        assert!(matches!(
            e.word("${A"),
            Err(ExpandError::UnterminatedBrace(_))
        ));
        assert!(matches!(
            e.word("\"a"),
            Err(ExpandError::UnterminatedQuote(_))
        ));
        assert!(matches!(
            e.word("${}"),
            Err(ExpandError::BadSubstitution(_))
        ));
        assert!(e.used.contains("NOPE") && e.used.contains("A"));
    }
}
