//! The appending side of the log: splits output into lines, encodes each as
//! one JSON entry and rotates the files by size (moby
//! `daemon/logger/copier.go` for the splitting,
//! `daemon/logger/loggerutils/logfile.go` for the rotation).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;

use super::{rotated, rotations, time, LogStream, MAX_LINE};

/// One entry as written, field order as Docker's.
#[derive(Serialize)]
struct Entry<'a> {
    log: &'a str,
    stream: LogStream,
    time: &'a str,
}

/// The unfinished line of one stream.
#[derive(Default)]
struct Partial {
    bytes: Vec<u8>,
    /// When its first byte arrived; every entry of the line carries this
    /// time, as Docker stamps the pieces of a split line with the first's.
    since: Option<SystemTime>,
}

/// Appends a container's output to its log as JSON lines, one entry per
/// line of output; see the [module documentation](super).
///
/// A trailing partial line is kept per stream until its newline comes, or
/// until [`flush_partial`](Self::flush_partial) or drop, which write it
/// without `"\n"`. When an entry would take the file past `max_size` bytes
/// the file rotates: `container.log` → `container.log.1` → …, keeping
/// `max_files` files in all. The entries of one [`write`](Self::write) go to
/// the file in one append, whole lines only, so a reader never meets a line
/// it should not wait for.
pub struct LogWriter {
    path: PathBuf,
    file: File,
    /// Bytes in `file`.
    size: u64,
    /// 0: never rotate.
    max_size: u64,
    max_files: u32,
    partial: [Partial; 2],
    /// Encoded entries not yet appended.
    batch: Vec<u8>,
    /// The file may end in a torn entry (a crash, a failed write): start
    /// the next append on a new line so the torn one stays alone.
    torn: bool,
}

impl LogWriter {
    /// Opens (or creates) the log at `path` for appending. `max_size` 0
    /// means no rotation; `max_files` 0 is taken as 1 (the file is replaced
    /// when full).
    pub fn open(path: &Path, max_size: u64, max_files: u32) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(crate::private::FILE_MODE)
            .open(path)?;
        let size = file.metadata()?.len();
        let mut last = [b'\n'];
        if size > 0 {
            file.read_exact_at(&mut last, size - 1)?;
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
            size,
            max_size,
            max_files: max_files.max(1),
            partial: Default::default(),
            batch: Vec::new(),
            torn: last[0] != b'\n',
        })
    }

    /// Appends `bytes` of output from `stream`, stamping its lines with the
    /// current time.
    pub fn write(&mut self, stream: LogStream, bytes: &[u8]) -> io::Result<()> {
        self.write_at(stream, bytes, SystemTime::now())
    }

    /// [`write`](Self::write) with the arrival time given.
    pub fn write_at(&mut self, stream: LogStream, bytes: &[u8], now: SystemTime) -> io::Result<()> {
        let mut rest = bytes;
        while !rest.is_empty() {
            let partial = &mut self.partial[stream as usize];
            if partial.bytes.is_empty() {
                partial.since = Some(now);
            }
            // Look one byte past MAX_LINE: a line of exactly MAX_LINE bytes
            // keeps its newline in the same entry.
            let room = MAX_LINE + 1 - partial.bytes.len();
            let window = &rest[..rest.len().min(room)];
            match window.iter().position(|&b| b == b'\n') {
                Some(newline) => {
                    partial.bytes.extend_from_slice(&window[..=newline]);
                    rest = &rest[newline + 1..];
                    let line = std::mem::take(&mut partial.bytes);
                    let since = partial.since.take().unwrap_or(now);
                    self.push_entry(stream, &line, since)?;
                }
                None => {
                    partial.bytes.extend_from_slice(window);
                    rest = &rest[window.len()..];
                    if partial.bytes.len() > MAX_LINE {
                        let cut = utf8_cut(&partial.bytes, MAX_LINE);
                        let tail = partial.bytes.split_off(cut);
                        let piece = std::mem::replace(&mut partial.bytes, tail);
                        let since = partial.since.unwrap_or(now);
                        self.push_entry(stream, &piece, since)?;
                    }
                }
            }
        }
        self.append_batch()
    }

    /// Writes each stream's unfinished line as an entry without `"\n"`.
    pub fn flush_partial(&mut self) -> io::Result<()> {
        for stream in [LogStream::Stdout, LogStream::Stderr] {
            let partial = &mut self.partial[stream as usize];
            if partial.bytes.is_empty() {
                continue;
            }
            let piece = std::mem::take(&mut partial.bytes);
            let since = partial.since.take().unwrap_or_else(SystemTime::now);
            self.push_entry(stream, &piece, since)?;
        }
        self.append_batch()
    }

    /// Encodes one entry into the batch, rotating first if it would not
    /// fit in the current file.
    fn push_entry(&mut self, stream: LogStream, text: &[u8], at: SystemTime) -> io::Result<()> {
        let time = time::rfc3339_nano(at);
        let entry = Entry {
            log: &String::from_utf8_lossy(text),
            stream,
            time: &time,
        };
        let mut line = serde_json::to_vec(&entry)?;
        line.push(b'\n');
        let used = self.size + self.batch.len() as u64;
        if self.max_size > 0 && used > 0 && used + line.len() as u64 > self.max_size {
            self.append_batch()?;
            self.rotate()?;
        }
        self.batch.extend_from_slice(&line);
        Ok(())
    }

    /// Appends the batch to the file in one write.
    fn append_batch(&mut self) -> io::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        if self.torn {
            self.batch.insert(0, b'\n');
        }
        let result = self.file.write_all(&self.batch);
        self.batch.clear();
        match result {
            Ok(()) => {
                self.torn = false;
                self.size = self.file.metadata()?.len();
                Ok(())
            }
            Err(e) => {
                self.torn = true;
                if let Ok(meta) = self.file.metadata() {
                    self.size = meta.len();
                }
                Err(e)
            }
        }
    }

    /// Shifts `path.N` to `path.N+1`, dropping what falls past
    /// `max_files` (leftovers of a larger `max_files` too), and starts a
    /// new, empty `path`. Readers holding the old files keep reading them:
    /// nothing is truncated in place.
    fn rotate(&mut self) -> io::Result<()> {
        let keep = self.max_files;
        for (index, old) in rotations(&self.path).into_iter().rev() {
            if index + 1 < keep {
                fs::rename(&old, rotated(&self.path, index + 1))?;
            } else {
                remove_if_exists(&old)?;
            }
        }
        if keep > 1 {
            fs::rename(&self.path, rotated(&self.path, 1))?;
        } else {
            fs::remove_file(&self.path)?;
        }
        self.file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(crate::private::FILE_MODE)
            .open(&self.path)?;
        self.size = 0;
        self.torn = false;
        Ok(())
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        if let Err(e) = self.flush_partial() {
            tracing::warn!(path = %self.path.display(), "could not write the last partial log lines: {e}");
        }
    }
}

/// Where to cut `bytes` (longer than `max`) at or just before `max` so that
/// a multi-byte UTF-8 character is not split between two entries.
fn utf8_cut(bytes: &[u8], max: usize) -> usize {
    let is_continuation = |b: u8| b & 0xC0 == 0x80;
    (0..4)
        .map(|back| max - back)
        .find(|&cut| cut > 0 && !is_continuation(bytes[cut]))
        .unwrap_or(max)
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::files;
    use serde_json::Value;
    use std::time::{Duration, UNIX_EPOCH};

    /// The entries of one file as (stream, log, time).
    fn entries(path: &Path) -> Vec<(String, String, String)> {
        fs::read_to_string(path)
            .unwrap()
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                let field = |k: &str| v[k].as_str().unwrap().to_owned();
                (field("stream"), field("log"), field("time"))
            })
            .collect()
    }

    fn logs(path: &Path) -> Vec<(String, String)> {
        entries(path)
            .into_iter()
            .map(|(stream, log, _)| (stream, log))
            .collect()
    }

    fn out(s: &str) -> (String, String) {
        ("stdout".into(), s.into())
    }

    fn err(s: &str) -> (String, String) {
        ("stderr".into(), s.into())
    }

    #[test]
    fn splits_lines_and_keeps_partial_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        let mut w = LogWriter::open(&path, 0, 1).unwrap();
        w.write(LogStream::Stdout, b"a\nb").unwrap();
        assert_eq!(logs(&path), vec![out("a\n")]);
        w.write(LogStream::Stdout, b"c\n\nd").unwrap();
        assert_eq!(logs(&path), vec![out("a\n"), out("bc\n"), out("\n")]);
        w.flush_partial().unwrap();
        w.flush_partial().unwrap();
        assert_eq!(
            logs(&path),
            vec![out("a\n"), out("bc\n"), out("\n"), out("d")]
        );
        w.write(LogStream::Stdout, b"e").unwrap();
        drop(w);
        assert_eq!(logs(&path).last(), Some(&out("e")));
    }

    #[test]
    fn entry_is_docker_json() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        let mut w = LogWriter::open(&path, 0, 1).unwrap();
        let at = UNIX_EPOCH + Duration::new(1_795_366_501, 123_456_789);
        w.write_at(LogStream::Stderr, b"say \"hi\"\t\n", at)
            .unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "{\"log\":\"say \\\"hi\\\"\\t\\n\",\"stream\":\"stderr\",\
             \"time\":\"2026-11-22T16:55:01.123456789Z\"}\n"
        );
    }

    #[test]
    fn long_lines_are_split_at_16_kib() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        let mut w = LogWriter::open(&path, 0, 1).unwrap();
        let exact = format!("{}\n", "x".repeat(MAX_LINE));
        w.write(LogStream::Stdout, exact.as_bytes()).unwrap();
        let long = format!("{}\n", "y".repeat(2 * MAX_LINE + 10));
        // Fed in small pieces, as a pipe would deliver it.
        for piece in long.as_bytes().chunks(1000) {
            w.write(LogStream::Stdout, piece).unwrap();
        }
        // A cut must not split the two bytes of "é".
        let accented = format!("{}é\n", "z".repeat(MAX_LINE - 1));
        w.write(LogStream::Stdout, accented.as_bytes()).unwrap();
        let found = entries(&path);
        let logs: Vec<&str> = found.iter().map(|(_, log, _)| log.as_str()).collect();
        assert_eq!(
            logs,
            vec![
                exact.as_str(),
                &"y".repeat(MAX_LINE),
                &"y".repeat(MAX_LINE),
                &format!("{}\n", "y".repeat(10)),
                &"z".repeat(MAX_LINE - 1),
                "é\n",
            ]
        );
        // The pieces of one line carry the time of its first byte.
        assert_eq!(found[1].2, found[3].2);
    }

    #[test]
    fn streams_keep_their_own_partial_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        let mut w = LogWriter::open(&path, 0, 1).unwrap();
        w.write(LogStream::Stdout, b"out ").unwrap();
        w.write(LogStream::Stderr, b"err ").unwrap();
        w.write(LogStream::Stderr, b"one\n").unwrap();
        w.write(LogStream::Stdout, b"one\nout two\n").unwrap();
        w.write(LogStream::Stderr, b"err two").unwrap();
        drop(w);
        assert_eq!(
            logs(&path),
            vec![
                err("err one\n"),
                out("out one\n"),
                out("out two\n"),
                err("err two"),
            ]
        );
    }

    #[test]
    fn invalid_utf8_is_stored_lossily() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        let mut w = LogWriter::open(&path, 0, 1).unwrap();
        w.write(LogStream::Stdout, b"a\xffb\xe2\x82\n").unwrap();
        assert_eq!(logs(&path), vec![out("a\u{fffd}b\u{fffd}\n")]);
    }

    #[test]
    fn rotation_keeps_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        let max_size = 300;
        let mut w = LogWriter::open(&path, max_size, 3).unwrap();
        for i in 0..40 {
            w.write(LogStream::Stdout, format!("line {i}\n").as_bytes())
                .unwrap();
        }
        let all = files(&path);
        assert_eq!(
            all,
            vec![path.clone(), rotated(&path, 1), rotated(&path, 2)]
        );
        let mut kept = Vec::new();
        for file in all.iter().rev() {
            assert!(fs::metadata(file).unwrap().len() <= max_size);
            kept.extend(logs(file));
        }
        // What is kept is the newest lines, in order, without a gap.
        let first: usize = kept[0].1["line ".len()..].trim().parse().unwrap();
        let expected: Vec<_> = (first..40).map(|i| out(&format!("line {i}\n"))).collect();
        assert_eq!(kept, expected);
        assert!(first > 0);

        // Reopened with fewer files, the surplus goes at the next rotation.
        drop(w);
        let mut w = LogWriter::open(&path, max_size, 1).unwrap();
        for i in 0..10 {
            w.write(LogStream::Stdout, format!("again {i}\n").as_bytes())
                .unwrap();
        }
        assert_eq!(files(&path), vec![path.clone()]);
    }

    #[test]
    fn reopening_after_a_torn_entry_starts_a_new_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        fs::write(&path, "{\"log\":\"lost").unwrap();
        let mut w = LogWriter::open(&path, 0, 1).unwrap();
        w.write(LogStream::Stdout, b"kept\n").unwrap();
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], "{\"log\":\"lost");
        assert!(lines[1].starts_with("{\"log\":\"kept\\n\""));
    }
}
