//! Docker's plain progress output (`docker build --progress=plain`):
//! every step a numbered vertex, `#N [stage k/n] INSTRUCTION`, its output
//! lines as `#N 0.123 line`, then `#N CACHED` or `#N DONE 1.2s` (or
//! `#N ERROR: …`), a blank line between steps.

use std::io::{self, Write};
use std::time::Instant;

/// Writes the progress of one build.
pub struct Progress<'a> {
    out: &'a mut (dyn Write + Send),
    next: usize,
}

/// One step under way.
#[derive(Debug)]
pub struct Step {
    pub number: usize,
    pub label: String,
    started: Instant,
}

impl<'a> Progress<'a> {
    pub fn new(out: &'a mut (dyn Write + Send)) -> Self {
        Progress { out, next: 1 }
    }

    /// Starts step `label` (e.g. `[2/4] COPY a /a`).
    pub fn start(&mut self, label: &str) -> Step {
        let number = self.next;
        self.next += 1;
        let _ = writeln!(self.out, "#{number} {label}");
        let _ = self.out.flush();
        Step {
            number,
            label: label.to_string(),
            started: Instant::now(),
        }
    }

    /// A line said about a step (`#N text`).
    pub fn note(&mut self, step: &Step, text: &str) {
        let _ = writeln!(self.out, "#{} {text}", step.number);
    }

    pub fn cached(&mut self, step: &Step) {
        let _ = writeln!(self.out, "#{} CACHED\n", step.number);
        let _ = self.out.flush();
    }

    pub fn done(&mut self, step: &Step) {
        let secs = step.started.elapsed().as_secs_f64();
        let _ = writeln!(self.out, "#{} DONE {secs:.1}s\n", step.number);
        let _ = self.out.flush();
    }

    pub fn error(&mut self, step: &Step, message: &str) {
        let _ = writeln!(self.out, "#{} ERROR: {message}\n", step.number);
        let _ = self.out.flush();
    }

    /// A writer for a step's output: each line prefixed with the step
    /// number and the seconds since the step started.
    pub fn output<'s>(&'s mut self, step: &'s Step) -> StepOutput<'s> {
        StepOutput {
            out: &mut *self.out,
            step,
            partial: Vec::new(),
        }
    }
}

/// The output of one step, as `#N 0.123 line` lines.
pub struct StepOutput<'s> {
    out: &'s mut (dyn Write + Send),
    step: &'s Step,
    partial: Vec<u8>,
}

impl StepOutput<'_> {
    fn emit(&mut self, line: &[u8]) -> io::Result<()> {
        let secs = self.step.started.elapsed().as_secs_f64();
        write!(self.out, "#{} {secs:.3} ", self.step.number)?;
        self.out.write_all(line)?;
        self.out.write_all(b"\n")
    }
}

impl Write for StepOutput<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.partial.extend_from_slice(buf);
        while let Some(i) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=i).collect();
            self.emit(&line[..line.len() - 1])?;
        }
        // A line longer than this is shown in pieces, not buffered forever.
        if self.partial.len() > 64 << 10 {
            let line = std::mem::take(&mut self.partial);
            self.emit(&line)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl Drop for StepOutput<'_> {
    fn drop(&mut self) {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            let _ = self.emit(&line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_format() {
        let mut buf = Vec::new();
        {
            let mut p = Progress::new(&mut buf);
            let s = p.start("[1/2] FROM busybox");
            p.done(&s);
            let s = p.start("[2/2] RUN echo hi");
            {
                let mut o = p.output(&s);
                o.write_all(b"hi\nth").unwrap();
                o.write_all(b"ere").unwrap();
            }
            p.cached(&s);
        }
        let text = String::from_utf8(buf).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "#1 [1/2] FROM busybox");
        assert!(lines[1].starts_with("#1 DONE ") && lines[1].ends_with('s'));
        assert_eq!(lines[2], "");
        assert_eq!(lines[3], "#2 [2/2] RUN echo hi");
        assert!(
            lines[4].starts_with("#2 0.") && lines[4].ends_with(" hi"),
            "{}",
            lines[4]
        );
        assert!(lines[5].ends_with(" there"), "{}", lines[5]);
        assert_eq!(lines[6], "#2 CACHED");
    }
}
