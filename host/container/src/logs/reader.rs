//! The reading side of the log, for `hull logs`: `--tail` across rotated
//! files, `--since`, `-t`, and `-f` following the log through rotations
//! (moby `daemon/logger/loggerutils/logfile.go` `ReadLogs` and
//! `follow.go`).

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use super::{files, time, LogStream};

/// How often a follower looks for new entries.
const POLL: Duration = Duration::from_millis(100);
/// Bytes read at a time, forwards and backwards.
const BLOCK: usize = 64 * 1024;
/// No entry the writer makes comes near this (16 KiB of text, escaped):
/// a longer line is garbage and is dropped unread.
const MAX_ENTRY: usize = 1024 * 1024;

/// What `hull logs` asked for.
#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    /// Only the last this many entries (across rotated files); `Some(0)`
    /// prints none of the existing ones.
    pub tail: Option<usize>,
    /// Prefix each entry with its time, as `docker logs -t`.
    pub timestamps: bool,
    /// Keep printing new entries while the container runs.
    pub follow: bool,
    /// Only entries stamped at or after this time. `tail` counts among
    /// these.
    pub since: Option<SystemTime>,
}

/// One entry as read; unknown fields (Docker's `attrs`) are ignored.
#[derive(Deserialize)]
struct Entry {
    log: String,
    stream: LogStream,
    time: String,
}

/// Prints the log at `path`: stdout entries to `out`, stderr entries to
/// `err`, each as the original text (with `timestamps`, after its
/// RFC 3339 time with nine fraction digits and a space, as `docker logs
/// -t`). Lines that are not entries (a crash mid-write) are skipped.
///
/// With `follow`, keeps polling for new entries, in the current file and,
/// after a rotation, in the files that replaced it, until
/// `still_running()` returns false; then prints what is left and returns.
pub fn read(
    path: &Path,
    opts: &ReadOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
    still_running: &mut dyn FnMut() -> bool,
) -> io::Result<()> {
    let mut printer = Printer { opts, out, err };
    let mut sources = Source::open_all(path)?;
    if let Some(tail) = opts.tail {
        skip_to_tail(&mut sources, tail, &printer)?;
    }
    let mut current = match sources.last() {
        Some(last) if last.is_current => sources.pop(),
        _ => None,
    };
    // The newest file read so far: where to pick up after a rotation.
    let mut newest = current.as_ref().or(sources.last()).map(|s| s.id);
    for mut source in sources {
        source.finish(&mut printer)?;
    }
    if !opts.follow {
        if let Some(mut source) = current {
            source.finish(&mut printer)?;
        }
        return printer.flush();
    }

    loop {
        // Asked before reading, so that everything written before the
        // container stopped is read in this last round.
        let running = still_running();
        if let Some(source) = current.as_mut() {
            source.drain(&mut printer)?;
        }
        let on_disk = fs::metadata(path).ok().map(|m| FileId::of(&m));
        if on_disk.is_some() && on_disk != current.as_ref().map(|s| s.id) {
            // Rotated (or created): finish the old file, then read the
            // ones written after it, oldest first.
            if let Some(mut source) = current.take() {
                source.finish(&mut printer)?;
            }
            let mut sources = Source::open_all(path)?;
            if let Some(seen) = newest {
                // Missing means deleted by rotation, and with it every
                // older file: then all that is there is new.
                if let Some(at) = sources.iter().position(|s| s.id == seen) {
                    sources.drain(..=at);
                }
            }
            current = match sources.last() {
                Some(last) if last.is_current => sources.pop(),
                _ => None,
            };
            newest = current.as_ref().or(sources.last()).map(|s| s.id).or(newest);
            for mut source in sources {
                source.finish(&mut printer)?;
            }
            if let Some(source) = current.as_mut() {
                source.drain(&mut printer)?;
            }
        }
        printer.flush()?;
        if !running {
            if let Some(mut source) = current {
                source.finish(&mut printer)?;
            }
            return printer.flush();
        }
        std::thread::sleep(POLL);
    }
}

/// Where `hull logs` prints, and the filters it applies.
struct Printer<'a> {
    opts: &'a ReadOptions,
    out: &'a mut dyn Write,
    err: &'a mut dyn Write,
}

impl Printer<'_> {
    /// The entry in `line` if it is one and passes `since`.
    fn parse(&self, line: &[u8]) -> Option<(Entry, SystemTime)> {
        let entry: Entry = serde_json::from_slice(line).ok()?;
        let time = time::parse_rfc3339(&entry.time)?;
        match self.opts.since {
            Some(since) if time < since => None,
            _ => Some((entry, time)),
        }
    }

    fn print(&mut self, line: &[u8]) -> io::Result<()> {
        let Some((entry, time)) = self.parse(line) else {
            return Ok(());
        };
        let to: &mut dyn Write = match entry.stream {
            LogStream::Stdout => &mut *self.out,
            LogStream::Stderr => &mut *self.err,
        };
        if self.opts.timestamps {
            write!(to, "{} ", time::rfc3339_nano_fixed(time))?;
        }
        to.write_all(entry.log.as_bytes())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()?;
        self.err.flush()
    }
}

/// A file's identity, which survives renames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(meta: &fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// One open file of the log, read forwards.
struct Source {
    file: File,
    id: FileId,
    /// Whether it was the log's current file (not a rotation) when opened.
    is_current: bool,
    /// Read bytes of a line whose newline has not been read yet.
    pending: Vec<u8>,
    /// Inside an over-long line: drop bytes up to the next newline.
    skipping: bool,
}

impl Source {
    /// Every file of the log, oldest first, as they were at one instant.
    /// A rotation while they are listed or opened shifts the names (and a
    /// directory listing taken during a rename may miss the file), so the
    /// set is taken again until a second listing finds every name still
    /// naming the file opened under it. (A writer rotating again and again
    /// faster than that holds the reader here until it pauses.)
    fn open_all(path: &Path) -> io::Result<Vec<Self>> {
        loop {
            let names = files(path);
            let mut sources = Vec::new();
            let mut vanished = false;
            for name in names.iter().rev() {
                match File::open(name) {
                    Ok(file) => sources.push(Self {
                        id: FileId::of(&file.metadata()?),
                        file,
                        is_current: name == path,
                        pending: Vec::new(),
                        skipping: false,
                    }),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => vanished = true,
                    Err(e) => return Err(e),
                }
            }
            // The open files keep their inode numbers from reuse, so an
            // equal id is the same file.
            let unchanged = !vanished
                && files(path) == names
                && names.iter().rev().zip(&sources).all(|(name, source)| {
                    fs::metadata(name).is_ok_and(|m| FileId::of(&m) == source.id)
                });
            if unchanged {
                return Ok(sources);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Prints the complete lines that can be read now; keeps an
    /// incomplete last one for later.
    fn drain(&mut self, printer: &mut Printer) -> io::Result<()> {
        let mut block = vec![0; BLOCK];
        loop {
            let n = match self.file.read(&mut block) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let mut rest = &block[..n];
            while let Some(newline) = rest.iter().position(|&b| b == b'\n') {
                if self.skipping {
                    self.skipping = false;
                } else {
                    self.pending.extend_from_slice(&rest[..newline]);
                    printer.print(&self.pending)?;
                }
                self.pending.clear();
                rest = &rest[newline + 1..];
            }
            if !self.skipping {
                self.pending.extend_from_slice(rest);
                if self.pending.len() > MAX_ENTRY {
                    self.pending.clear();
                    self.skipping = true;
                }
            }
        }
    }

    /// Prints the rest of a file that will not grow any more, its last
    /// line too if it is a whole entry without the newline.
    fn finish(&mut self, printer: &mut Printer) -> io::Result<()> {
        self.drain(printer)?;
        if !self.skipping && !self.pending.is_empty() {
            printer.print(&std::mem::take(&mut self.pending))?;
        }
        Ok(())
    }
}

/// Positions `sources` (oldest first) so that only the last `tail`
/// entries that pass the filters are read; older files are dropped.
fn skip_to_tail(sources: &mut Vec<Source>, tail: usize, printer: &Printer) -> io::Result<()> {
    let mut wanted = tail;
    for at in (0..sources.len()).rev() {
        let (offset, found) = tail_offset(&sources[at].file, wanted, printer)?;
        if found >= wanted {
            sources[at].file.seek(SeekFrom::Start(offset))?;
            sources.drain(..at);
            return Ok(());
        }
        wanted -= found;
    }
    Ok(())
}

/// Scans `file` backwards for its last `wanted` entries that pass the
/// filters: the offset where the earliest of them starts, and how many
/// there are (fewer than `wanted` if the file has fewer; offset 0 then).
/// A torn last line is not counted. With `wanted` 0, the offset is the end
/// of the last whole line.
fn tail_offset(file: &File, wanted: usize, printer: &Printer) -> io::Result<(u64, usize)> {
    let mut pos = file.metadata()?.len();
    // The bytes [pos, pos + carry.len()) of the file not yet split into lines.
    let mut carry: Vec<u8> = Vec::new();
    let mut past_last_newline = false;
    let mut found = 0;
    loop {
        while let Some(newline) = carry.iter().rposition(|&b| b == b'\n') {
            let line_start = pos + newline as u64 + 1;
            if !past_last_newline {
                past_last_newline = true;
                if wanted == 0 {
                    return Ok((line_start, 0));
                }
            } else if printer.parse(&carry[newline + 1..]).is_some() {
                found += 1;
                if found == wanted {
                    return Ok((line_start, found));
                }
            }
            carry.truncate(newline);
        }
        if pos == 0 {
            break;
        }
        if carry.len() > MAX_ENTRY {
            // Garbage; what is left of it cannot be an entry either.
            carry.clear();
        }
        let start = pos.saturating_sub(BLOCK as u64);
        let mut block = vec![0; (pos - start) as usize];
        file.read_exact_at(&mut block, start)?;
        block.extend_from_slice(&carry);
        carry = block;
        pos = start;
    }
    // The first line of the file.
    if past_last_newline && printer.parse(&carry).is_some() {
        found += 1;
    }
    Ok((0, found))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::LogWriter;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::UNIX_EPOCH;

    /// Reads the whole log once: (stdout, stderr).
    fn read_all(path: &Path, opts: &ReadOptions) -> (String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        read(path, opts, &mut out, &mut err, &mut || false).unwrap();
        (
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    fn tail(n: usize) -> ReadOptions {
        ReadOptions {
            tail: Some(n),
            ..Default::default()
        }
    }

    fn write_lines(w: &mut LogWriter, range: std::ops::Range<usize>) {
        for i in range {
            w.write(LogStream::Stdout, format!("line {i}\n").as_bytes())
                .unwrap();
        }
    }

    fn lines(range: std::ops::Range<usize>) -> String {
        range.map(|i| format!("line {i}\n")).collect()
    }

    #[test]
    fn splits_streams_and_prints_original_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        let mut w = LogWriter::open(&path, 0, 1).unwrap();
        w.write(LogStream::Stdout, b"out 1\n").unwrap();
        w.write(LogStream::Stderr, b"err 1\n").unwrap();
        w.write(LogStream::Stdout, b"out 2\nno newline").unwrap();
        drop(w);
        let (out, err) = read_all(&path, &ReadOptions::default());
        assert_eq!(out, "out 1\nout 2\nno newline");
        assert_eq!(err, "err 1\n");
        assert_eq!(read_all(&dir.path().join("missing.log"), &tail(3)).0, "");
    }

    #[test]
    fn tail_counts_entries_from_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        let mut w = LogWriter::open(&path, 0, 1).unwrap();
        write_lines(&mut w, 0..10);
        w.write(LogStream::Stderr, b"err\n").unwrap();
        assert_eq!(read_all(&path, &tail(0)), (String::new(), String::new()));
        assert_eq!(read_all(&path, &tail(1)), (String::new(), "err\n".into()));
        assert_eq!(read_all(&path, &tail(3)).0, lines(8..10));
        assert_eq!(read_all(&path, &tail(11)).0, lines(0..10));
        assert_eq!(read_all(&path, &tail(100)).0, lines(0..10));
    }

    #[test]
    fn tail_spans_rotated_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        let mut w = LogWriter::open(&path, 400, 5).unwrap();
        write_lines(&mut w, 0..30);
        assert_eq!(files(&path).len(), 5);
        // 400-byte files hold 5 entries each: the last 12 span three files.
        assert_eq!(read_all(&path, &tail(12)).0, lines(18..30));
        assert_eq!(read_all(&path, &tail(0)).0, "");
        let all = read_all(&path, &ReadOptions::default()).0;
        assert!(all.ends_with(&lines(10..30)), "{all}");
        assert_eq!(read_all(&path, &tail(1000)).0, all);
    }

    #[test]
    fn skips_corrupt_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        let good = |log: &str| {
            format!(
                "{{\"log\":\"{log}\\n\",\"stream\":\"stdout\",\"time\":\"2026-11-22T16:55:01Z\"}}\n"
            )
        };
        let text = [
            good("one"),
            "{\"log\":\"torn\\n\",\"str\n".into(),
            "\n".into(),
            "not json at all \u{0}\u{7f}\n".into(),
            "{\"log\":\"x\\n\",\"stream\":\"stdin\",\"time\":\"2026-11-22T16:55:01Z\"}\n".into(),
            "{\"log\":\"x\\n\",\"stream\":\"stdout\",\"time\":\"yesterday\"}\n".into(),
            "[1,2]\n".into(),
            good("two"),
            "{\"log\":\"cut off by a cr".into(),
        ]
        .concat();
        fs::write(&path, text).unwrap();
        assert_eq!(read_all(&path, &ReadOptions::default()).0, "one\ntwo\n");
        assert_eq!(read_all(&path, &tail(1)).0, "two\n");
        assert_eq!(read_all(&path, &tail(2)).0, "one\ntwo\n");
        // Invalid UTF-8 in the file itself is no entry either.
        fs::write(
            &path,
            [good("a").as_bytes(), b"\xff\xfe\n", good("b").as_bytes()].concat(),
        )
        .unwrap();
        assert_eq!(read_all(&path, &ReadOptions::default()).0, "a\nb\n");
    }

    #[test]
    fn timestamps_and_since() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        let mut w = LogWriter::open(&path, 0, 1).unwrap();
        let at = |secs: u64| UNIX_EPOCH + Duration::new(1_795_366_500 + secs, 500);
        for i in 0..4 {
            w.write_at(LogStream::Stdout, format!("{i}\n").as_bytes(), at(i))
                .unwrap();
        }
        let stamped = ReadOptions {
            timestamps: true,
            tail: Some(2),
            ..Default::default()
        };
        assert_eq!(
            read_all(&path, &stamped).0,
            "2026-11-22T16:55:02.000000500Z 2\n2026-11-22T16:55:03.000000500Z 3\n"
        );
        let since = ReadOptions {
            since: Some(at(1)),
            ..Default::default()
        };
        assert_eq!(read_all(&path, &since).0, "1\n2\n3\n");
        let since_tail = ReadOptions {
            since: Some(at(2)),
            tail: Some(5),
            ..Default::default()
        };
        assert_eq!(read_all(&path, &since_tail).0, "2\n3\n");
    }

    /// Follows the log at `path` in this thread while `writer` runs in
    /// another; the writer starts once the follower has read what was
    /// there (its first poll), and the follower stops once `writer` has
    /// returned.
    fn follow_while(
        path: &Path,
        opts: ReadOptions,
        writer: impl FnOnce() + Send + 'static,
    ) -> String {
        let done = Arc::new(AtomicBool::new(false));
        let polled = Arc::new(AtomicBool::new(false));
        let thread = {
            let (done, polled) = (done.clone(), polled.clone());
            std::thread::spawn(move || {
                while !polled.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                writer();
                done.store(true, Ordering::SeqCst);
            })
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut polls = 0;
        let mut still_running = || {
            polls += 1;
            polled.store(true, Ordering::SeqCst);
            !done.load(Ordering::SeqCst)
        };
        let opts = ReadOptions {
            follow: true,
            ..opts
        };
        read(path, &opts, &mut out, &mut err, &mut still_running).unwrap();
        thread.join().unwrap();
        assert!(polls > 1, "the follower never waited");
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn follow_sees_new_lines_across_rotations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        let mut w = LogWriter::open(&path, 500, 100).unwrap();
        write_lines(&mut w, 0..3);
        let out = follow_while(&path, tail(1), move || {
            for i in 3..200 {
                write_lines(&mut w, i..i + 1);
                if i % 10 == 0 {
                    std::thread::sleep(Duration::from_millis(30));
                }
            }
            w.write(LogStream::Stdout, b"partial").unwrap();
            std::thread::sleep(Duration::from_millis(150));
            drop(w);
        });
        assert!(files(&path).len() > 10);
        assert_eq!(out, lines(2..200) + "partial");
    }

    #[test]
    fn follow_waits_for_the_log_to_appear() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        let writer_path = path.clone();
        let out = follow_while(&path, ReadOptions::default(), move || {
            std::thread::sleep(Duration::from_millis(250));
            let mut w = LogWriter::open(&writer_path, 0, 1).unwrap();
            write_lines(&mut w, 0..3);
        });
        assert_eq!(out, lines(0..3));
    }

    #[test]
    fn follow_from_tail_zero_prints_only_new_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        let mut w = LogWriter::open(&path, 0, 1).unwrap();
        write_lines(&mut w, 0..5);
        let out = follow_while(&path, tail(0), move || {
            std::thread::sleep(Duration::from_millis(150));
            write_lines(&mut w, 5..7);
        });
        assert_eq!(out, lines(5..7));
    }
}
