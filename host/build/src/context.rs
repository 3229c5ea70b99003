//! A tree COPY and ADD read from: the build context (with its
//! `.dockerignore`), or another stage's or image's root filesystem for
//! `COPY --from`. Finds the sources a COPY names (globs as Go's
//! `filepath.Match`, one component at a time), walks them in a sorted,
//! stable order, and hashes what they hold for the step cache.
//!
//! Paths are confined: a source is cleaned as if the tree were `/`
//! (`../x` is `x`), and symlinks on the way to it are resolved inside the
//! tree, never outside. A source that is itself a symlink is followed
//! (inside the tree), as BuildKit does; symlinks below a copied directory
//! are copied as symlinks.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::dockerignore::{glob, Ignore};

/// Symlinks followed while resolving one path (Linux's MAXSYMLINKS).
const MAX_HOPS: usize = 40;

/// Why a source could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("{0}: not found in the build context")]
    NotFoundInContext(String),
    #[error("{0}: not found")]
    NotFound(String),
    #[error("{0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ContextError + '_ {
    move |source| ContextError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A tree to copy from.
#[derive(Debug, Clone)]
pub struct Tree {
    root: PathBuf,
    ignore: Ignore,
    /// The build context (not a stage): errors say so.
    is_context: bool,
}

/// One source a COPY names: the path in the tree (relative, cleaned) and
/// where it is on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub rel: String,
    pub path: PathBuf,
    pub is_dir: bool,
}

/// One entry under a source, in walk order.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Relative to the source (empty for the source itself).
    pub rel: String,
    pub path: PathBuf,
    pub meta: fs::Metadata,
}

impl Tree {
    /// The build context at `root`, with its `.dockerignore` if it has one.
    pub fn context(root: &Path) -> Result<Tree, ContextError> {
        if !root.is_dir() {
            return Err(ContextError::NotADirectory(root.to_path_buf()));
        }
        let ignore_file = root.join(".dockerignore");
        let ignore = match fs::read_to_string(&ignore_file) {
            Ok(text) => Ignore::parse(&text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ignore::default(),
            Err(e) => return Err(io_err(&ignore_file)(e)),
        };
        Ok(Tree {
            root: root.to_path_buf(),
            ignore,
            is_context: true,
        })
    }

    /// A root filesystem (a stage's or an image's), nothing ignored.
    pub fn rootfs(root: &Path) -> Tree {
        Tree {
            root: root.to_path_buf(),
            ignore: Ignore::default(),
            is_context: false,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The sources `pattern` names, sorted; an error if it names none.
    pub fn sources(&self, pattern: &str) -> Result<Vec<Source>, ContextError> {
        let comps = clean(pattern);
        let mut found = Vec::new();
        self.expand(&self.root.clone(), String::new(), &comps, &mut found)?;
        found.retain(|s: &Source| !self.ignore.excludes(&s.rel));
        found.sort_by(|a, b| a.rel.cmp(&b.rel));
        found.dedup();
        if found.is_empty() {
            let shown = format!("/{}", comps.join("/"));
            return Err(if self.is_context {
                ContextError::NotFoundInContext(shown)
            } else {
                ContextError::NotFound(shown)
            });
        }
        Ok(found)
    }

    fn expand(
        &self,
        dir: &Path,
        rel: String,
        comps: &[String],
        out: &mut Vec<Source>,
    ) -> Result<(), ContextError> {
        let Some((first, rest)) = comps.split_first() else {
            let meta = fs::symlink_metadata(dir).map_err(io_err(dir))?;
            out.push(Source {
                rel,
                path: dir.to_path_buf(),
                is_dir: meta.is_dir(),
            });
            return Ok(());
        };
        let names: Vec<String> = if has_magic(first) {
            let mut names = Vec::new();
            let Ok(rd) = fs::read_dir(dir) else {
                return Ok(());
            };
            for e in rd {
                let e = e.map_err(io_err(dir))?;
                let name = e.file_name().to_string_lossy().into_owned();
                if glob(first, &name) {
                    names.push(name);
                }
            }
            names.sort();
            names
        } else {
            vec![unescape(first)]
        };
        for name in names {
            let child_rel = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let child = dir.join(&name);
            let Ok(meta) = fs::symlink_metadata(&child) else {
                continue;
            };
            if rest.is_empty() {
                // A source that is a symlink is followed (inside the
                // tree), as BuildKit's COPY does; a dangling one is
                // copied as the link it is.
                let path = match meta.file_type().is_symlink() {
                    true => self.resolve(&child_rel).filter(|p| p.exists()),
                    false => None,
                }
                .unwrap_or(child);
                let is_dir = fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
                out.push(Source {
                    rel: child_rel,
                    path,
                    is_dir,
                });
                continue;
            }
            // More components follow: a symlink here is resolved inside
            // the tree.
            let next = if meta.file_type().is_symlink() {
                match self.resolve(&child_rel) {
                    Some(p) => p,
                    None => continue,
                }
            } else {
                child
            };
            if next.is_dir() {
                self.expand(&next, child_rel, rest, out)?;
            }
        }
        Ok(())
    }

    /// The host path of `rel` with every symlink on the way (the last
    /// one too) resolved inside the tree.
    pub fn resolve(&self, rel: &str) -> Option<PathBuf> {
        let mut pending: Vec<String> = clean_keep_dotdot(rel);
        pending.reverse();
        let mut at: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(name) = pending.pop() {
            if name == ".." {
                at.pop();
                continue;
            }
            let here = at
                .iter()
                .fold(self.root.clone(), |p, n| p.join(n))
                .join(&name);
            let meta = fs::symlink_metadata(&here).ok()?;
            if !meta.file_type().is_symlink() {
                at.push(name);
                continue;
            }
            hops += 1;
            if hops > MAX_HOPS {
                return None;
            }
            let target = fs::read_link(&here).ok()?;
            let target = target.to_string_lossy();
            if target.starts_with('/') {
                at.clear();
            }
            let mut more = clean_keep_dotdot(&target);
            more.reverse();
            pending.extend(more);
        }
        Some(at.iter().fold(self.root.clone(), |p, n| p.join(n)))
    }

    /// Every entry of `source`, itself first, then (for a directory) its
    /// descendants in sorted order; ignored paths left out.
    pub fn walk(&self, source: &Source) -> Result<Vec<Entry>, ContextError> {
        let meta = fs::symlink_metadata(&source.path).map_err(io_err(&source.path))?;
        let mut out = vec![Entry {
            rel: String::new(),
            path: source.path.clone(),
            meta: meta.clone(),
        }];
        if meta.is_dir() {
            self.walk_dir(&source.path, &source.rel, "", &mut out)?;
        }
        Ok(out)
    }

    fn walk_dir(
        &self,
        dir: &Path,
        tree_rel: &str,
        rel: &str,
        out: &mut Vec<Entry>,
    ) -> Result<(), ContextError> {
        let mut names: Vec<String> = Vec::new();
        for e in fs::read_dir(dir).map_err(io_err(dir))? {
            let e = e.map_err(io_err(dir))?;
            names.push(e.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let child_tree = join(tree_rel, &name);
            let child_rel = join(rel, &name);
            let meta = fs::symlink_metadata(&path).map_err(io_err(&path))?;
            let excluded = self.ignore.excludes(&child_tree);
            if meta.is_dir() {
                if excluded && !self.ignore.has_exceptions() {
                    continue;
                }
                let at = out.len();
                out.push(Entry {
                    rel: child_rel.clone(),
                    path: path.clone(),
                    meta,
                });
                self.walk_dir(&path, &child_tree, &child_rel, out)?;
                // An excluded directory stays only for what it re-includes.
                if excluded && out.len() == at + 1 {
                    out.pop();
                }
            } else if !excluded {
                out.push(Entry {
                    rel: child_rel,
                    path,
                    meta,
                });
            }
        }
        Ok(())
    }
}

/// Hashes what `entries` hold (names, kinds, modes, contents, symlink
/// targets, and owners when `owners`): the part of a COPY step's cache
/// key that is its sources. Times are left out, as BuildKit does.
pub fn hash_entries(
    hasher: &mut Sha256,
    base: &str,
    entries: &[Entry],
    owners: bool,
) -> Result<(), ContextError> {
    for e in entries {
        let m = &e.meta;
        hasher.update(format!("{base}/{}\0", e.rel).as_bytes());
        hasher.update(format!("{:o}\0", m.permissions().mode()).as_bytes());
        if owners {
            hasher.update(format!("{}:{}\0", m.uid(), m.gid()).as_bytes());
        }
        if m.file_type().is_symlink() {
            let target = fs::read_link(&e.path).map_err(io_err(&e.path))?;
            hasher.update(b"l");
            hasher.update(target.as_os_str().as_encoded_bytes());
        } else if m.is_file() {
            let mut f = fs::File::open(&e.path).map_err(io_err(&e.path))?;
            let mut file_hash = Sha256::new();
            let mut buf = vec![0u8; 64 << 10];
            loop {
                let n = f.read(&mut buf).map_err(io_err(&e.path))?;
                if n == 0 {
                    break;
                }
                file_hash.update(&buf[..n]);
            }
            hasher.update(b"f");
            hasher.update(file_hash.finalize());
        } else if m.is_dir() {
            hasher.update(b"d");
        }
        hasher.update(b"\n");
    }
    Ok(())
}

fn join(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else {
        format!("{a}/{b}")
    }
}

/// A path as components, cleaned as if relative to `/` (`..` stops at
/// the root).
pub fn clean(path: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in path.split('/') {
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

fn clean_keep_dotdot(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_string)
        .collect()
}

fn has_magic(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// A component without glob magic, its `\` escapes removed.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn context() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("src/sub")).unwrap();
        fs::create_dir_all(r.join("node_modules/x")).unwrap();
        fs::write(r.join("a.txt"), "a").unwrap();
        fs::write(r.join("b.txt"), "b").unwrap();
        fs::write(r.join("c.log"), "c").unwrap();
        fs::write(r.join("src/main.c"), "int main(){}").unwrap();
        fs::write(r.join("src/sub/x.h"), "x").unwrap();
        fs::write(r.join("src/sub/debug.log"), "x").unwrap();
        fs::write(r.join("node_modules/x/i.js"), "x").unwrap();
        symlink("../a.txt", r.join("src/link")).unwrap();
        symlink("src", r.join("srclink")).unwrap();
        fs::write(r.join(".dockerignore"), "node_modules\n**/*.log\n!c.log\n").unwrap();
        d
    }

    fn rels(v: &[Source]) -> Vec<&str> {
        v.iter().map(|s| s.rel.as_str()).collect()
    }

    #[test]
    fn sources_glob_and_ignore() {
        let d = context();
        let t = Tree::context(d.path()).unwrap();
        assert_eq!(rels(&t.sources("*.txt").unwrap()), ["a.txt", "b.txt"]);
        assert_eq!(rels(&t.sources("/a.txt").unwrap()), ["a.txt"]);
        assert_eq!(rels(&t.sources("../../a.txt").unwrap()), ["a.txt"]);
        assert_eq!(rels(&t.sources("*.log").unwrap()), ["c.log"]);
        assert_eq!(rels(&t.sources("src/*/x.h").unwrap()), ["src/sub/x.h"]);
        // A source that is a symlink: its target (inside the context).
        let linked = t.sources("src/link").unwrap();
        assert_eq!(linked[0].path, d.path().join("a.txt"));
        assert_eq!(linked[0].rel, "src/link");
        // Through a symlinked directory, resolved inside the context.
        assert_eq!(
            t.sources("srclink/main.c").unwrap()[0].path,
            d.path().join("src/main.c")
        );
        let e = t.sources("node_modules").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/node_modules: not found in the build context"
        );
        assert!(t.sources("nope*").is_err());
        assert_eq!(rels(&t.sources(".").unwrap()), [""]);
    }

    #[test]
    fn walk_is_sorted_and_filtered() {
        let d = context();
        let t = Tree::context(d.path()).unwrap();
        let src = &t.sources("src").unwrap()[0];
        let walked: Vec<String> = t.walk(src).unwrap().into_iter().map(|e| e.rel).collect();
        assert_eq!(walked, ["", "link", "main.c", "sub", "sub/x.h"]);
        let all: Vec<String> = t
            .walk(&t.sources(".").unwrap()[0])
            .unwrap()
            .into_iter()
            .map(|e| e.rel)
            .collect();
        assert!(
            !all.iter().any(|p| p.starts_with("node_modules")),
            "{all:?}"
        );
        assert!(all.contains(&"c.log".to_string()));
    }

    #[test]
    fn hashes_follow_content_not_times() {
        let d = context();
        let t = Tree::context(d.path()).unwrap();
        let h = |t: &Tree| {
            let mut hasher = Sha256::new();
            for s in t.sources("src").unwrap() {
                hash_entries(&mut hasher, &s.rel, &t.walk(&s).unwrap(), false).unwrap();
            }
            hex::encode(hasher.finalize())
        };
        let first = h(&t);
        let f = fs::File::options()
            .write(true)
            .open(d.path().join("src/main.c"))
            .unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(h(&t), first);
        fs::write(d.path().join("src/main.c"), "int main(){return 1;}").unwrap();
        assert_ne!(h(&t), first);
    }

    #[test]
    fn resolve_stays_inside() {
        let d = tempfile::tempdir().unwrap();
        symlink("/etc", d.path().join("etc")).unwrap();
        symlink("../../../..", d.path().join("up")).unwrap();
        let t = Tree::rootfs(d.path());
        assert_eq!(t.resolve("up"), Some(d.path().to_path_buf()));
        // `/etc` inside the tree does not exist: no escape to the host's.
        assert_eq!(t.resolve("etc/passwd"), None);
    }
}
