//! Pull progress as Docker users know it: one line per layer (short
//! digest, state, bar, bytes) and a total line, redrawn in place on a
//! terminal. When stdout is not a terminal nothing is drawn at all (the
//! command prints its one-line result instead), so logs and pipes stay
//! clean. Built on `indicatif`.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

const LAYER_TEMPLATE: &str = "{prefix}: {msg:<17} [{bar:20}] {bytes:>9}/{total_bytes:<9}";
const TOTAL_TEMPLATE: &str = "{prefix:<12}  {msg:<17} [{bar:20}] {bytes:>9}/{total_bytes:<9}";

/// The progress display of one pull; a no-op when hidden.
pub struct PullProgress {
    multi: Option<MultiProgress>,
    total: Option<ProgressBar>,
}

/// One layer's line.
pub struct LayerBar {
    bar: Option<ProgressBar>,
    total: Option<ProgressBar>,
}

impl PullProgress {
    /// Draws on stdout when `visible` (the caller decides: stdout is a
    /// terminal), else draws nothing.
    pub fn new(visible: bool) -> PullProgress {
        if !visible {
            return PullProgress::hidden();
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
        PullProgress {
            multi: Some(multi),
            total: None,
        }
    }

    pub fn hidden() -> PullProgress {
        PullProgress {
            multi: None,
            total: None,
        }
    }

    /// Prints a line above the bars (nothing when hidden).
    pub fn println(&self, line: &str) {
        if let Some(m) = &self.multi {
            let _ = m.println(line);
        }
    }

    /// Starts the total line, once the bytes to download are known.
    pub fn start_total(&mut self, bytes: u64) {
        let Some(m) = &self.multi else { return };
        let bar = m.add(ProgressBar::new(bytes));
        if let Ok(style) = ProgressStyle::with_template(TOTAL_TEMPLATE) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix("Total");
        bar.set_message("Downloading");
        self.total = Some(bar);
    }

    /// Adds a layer line; `digest` is `sha256:<hex>`.
    pub fn layer(&self, digest: &str, size: u64) -> LayerBar {
        let Some(m) = &self.multi else {
            return LayerBar {
                bar: None,
                total: None,
            };
        };
        let bar = match &self.total {
            Some(total) => m.insert_before(total, ProgressBar::new(size)),
            None => m.add(ProgressBar::new(size)),
        };
        if let Ok(style) = ProgressStyle::with_template(LAYER_TEMPLATE) {
            bar.set_style(style.progress_chars("=> "));
        }
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        bar.set_prefix(hex[..hex.len().min(12)].to_string());
        bar.set_message("Waiting");
        LayerBar {
            bar: Some(bar),
            total: self.total.clone(),
        }
    }

    /// Sets the total line's state ("Unpacking", "Building disk", …).
    pub fn stage(&self, msg: &'static str) {
        if let Some(t) = &self.total {
            t.set_message(msg);
        }
    }

    /// Leaves the bars on screen in their final state.
    pub fn finish(&self) {
        if let Some(t) = &self.total {
            t.finish_with_message("Done");
        }
    }
}

impl LayerBar {
    pub fn set_message(&self, msg: &'static str) {
        if let Some(b) = &self.bar {
            b.set_message(msg);
        }
    }

    /// `n` more bytes arrived.
    pub fn advance(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
        if let Some(t) = &self.total {
            t.inc(n);
        }
    }

    /// Starts over at `pos` bytes (a resumed or restarted download).
    pub fn reset_to(&self, pos: u64) {
        if let Some(b) = &self.bar {
            let before = b.position();
            b.set_position(pos);
            if let Some(t) = &self.total {
                t.set_position((t.position() + pos).saturating_sub(before));
            }
        }
    }

    pub fn finish(&self, msg: &'static str) {
        if let Some(b) = &self.bar {
            b.finish_with_message(msg);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_progress_is_a_no_op() {
        let mut p = PullProgress::new(false);
        p.start_total(100);
        let l = p.layer("sha256:abcdef0123456789", 100);
        l.advance(50);
        l.reset_to(10);
        l.finish("Pull complete");
        p.stage("Unpacking");
        p.println("x");
        p.finish();
        assert!(p.multi.is_none() && l.bar.is_none());
    }
}
