//! `.dockerignore`: which context paths a build does not see.
//!
//! Model: moby's `patternmatcher` as the Docker CLI and BuildKit use it.
//! One pattern a line; `#` starts a comment line; patterns are cleaned
//! (`./a/` is `a`) and a leading `/` is dropped, so every pattern is
//! relative to the context root; `*`, `?`, `[…]` and `\` as in Go's
//! `filepath.Match` within one path component, `**` for any number of
//! components; `!` re-includes what an earlier pattern excluded. The last
//! pattern that matches a path, or any of its parent directories, decides.

/// The patterns of one `.dockerignore`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    /// `!pattern`: a match re-includes.
    exception: bool,
    components: Vec<String>,
}

impl Ignore {
    /// Parses the text of a `.dockerignore`.
    pub fn parse(text: &str) -> Ignore {
        let mut patterns = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exception, body) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let components = clean(body);
            if components.is_empty() {
                continue;
            }
            patterns.push(Pattern {
                exception,
                components,
            });
        }
        Ignore { patterns }
    }

    /// Whether the context path `rel` (relative, `/`-separated) is
    /// excluded.
    pub fn excludes(&self, rel: &str) -> bool {
        let path: Vec<&str> = rel
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        if path.is_empty() {
            return false;
        }
        let mut excluded = false;
        for p in &self.patterns {
            // The path itself or any of its parents.
            let hit = (1..=path.len()).any(|n| match_components(&p.components, &path[..n]));
            if hit {
                excluded = !p.exception;
            }
        }
        excluded
    }

    /// Whether an excluded directory may still hold a re-included path
    /// (then the walk has to look inside it).
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exception)
    }
}

/// `filepath.Clean` of a pattern, as components, without a leading `/`.
fn clean(pattern: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in pattern.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c.to_string()),
        }
    }
    out
}

/// Whether the whole path matches the whole pattern.
fn match_components(pattern: &[String], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => {
            // Zero or more components.
            (0..=path.len()).any(|skip| match_components(rest, &path[skip..]))
        }
        Some((first, rest)) => match path.split_first() {
            Some((head, tail)) => glob(first, head) && match_components(rest, tail),
            None => false,
        },
    }
}

/// Go's `filepath.Match` on one component: `*`, `?`, `[a-z]`, `[^x]`,
/// `\` escapes.
pub(crate) fn glob(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    glob_at(&p, &n)
}

fn glob_at(p: &[char], n: &[char]) -> bool {
    let Some((&c, rest)) = p.split_first() else {
        return n.is_empty();
    };
    match c {
        '*' => (0..=n.len()).any(|i| glob_at(rest, &n[i..])),
        '?' => !n.is_empty() && glob_at(rest, &n[1..]),
        '[' => {
            let Some((&ch, tail)) = n.split_first() else {
                return false;
            };
            match class(rest, ch) {
                Some((true, after)) => glob_at(after, tail),
                _ => false,
            }
        }
        '\\' if !rest.is_empty() => {
            !n.is_empty() && n[0] == rest[0] && glob_at(&rest[1..], &n[1..])
        }
        _ => !n.is_empty() && n[0] == c && glob_at(rest, &n[1..]),
    }
}

/// Matches `ch` against the class starting after `[`: whether it matched
/// and the pattern after `]`; `None` for a class without its `]`.
fn class(p: &[char], ch: char) -> Option<(bool, &[char])> {
    let (negate, mut i) = match p.first() {
        Some('^') | Some('!') => (true, 1),
        _ => (false, 0),
    };
    let mut matched = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == ']' && !first {
            return Some((matched != negate, &p[i + 1..]));
        }
        first = false;
        let mut lo = p[i];
        if lo == '\\' && i + 1 < p.len() {
            i += 1;
            lo = p[i];
        }
        let mut hi = lo;
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            hi = p[i + 2];
            i += 2;
        }
        if lo <= ch && ch <= hi {
            matched = true;
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("*.txt", "a.txt"));
        assert!(!glob("*.txt", "a.txt.bak"));
        assert!(glob("a?c", "abc"));
        assert!(glob("[a-c]x", "bx"));
        assert!(!glob("[^a-c]x", "bx"));
        assert!(glob("\\*", "*"));
        assert!(!glob("\\*", "a"));
    }

    #[test]
    fn docker_rules() {
        let ig = Ignore::parse(
            "# comment\n\n*.log\n/build/\n**/node_modules\nsecret*\n!secret-ok.txt\ndocs/**/*.md\n./tmp\n",
        );
        for (path, excluded) in [
            ("a.log", true),
            ("sub/a.log", false), // `*.log` is rooted: one component
            ("build", true),
            ("build/out/x", true), // a parent matches
            ("src/build", false),
            ("node_modules/x/y.js", true),
            ("a/b/node_modules", true),
            ("secret.key", true),
            ("secret-ok.txt", false),
            ("docs/a.md", true),
            ("docs/x/y/z.md", true),
            ("docs/a.txt", false),
            ("tmp/file", true),
            ("main.c", false),
        ] {
            assert_eq!(ig.excludes(path), excluded, "{path}");
        }
        assert!(ig.has_exceptions());
    }

    #[test]
    fn last_match_wins() {
        let ig = Ignore::parse("*\n!keep\nkeep/drop\n");
        assert!(ig.excludes("x"));
        assert!(!ig.excludes("keep"));
        assert!(!ig.excludes("keep/a"));
        assert!(ig.excludes("keep/drop"));
        assert!(!Ignore::parse("").excludes("x"));
    }
}
