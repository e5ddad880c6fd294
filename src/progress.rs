//! Progress bars on stderr for long work, hidden when stderr is not a
//! terminal or when the user asked for quiet.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Draws `o1_convert` progress: one bar per stage, bytes and ETA.
pub struct ConvertProgress {
    bar: Option<ProgressBar>,
    visible: bool,
    tensors_done: usize,
    current: String,
}

impl ConvertProgress {
    pub fn new(quiet: bool) -> Self {
        Self {
            bar: None,
            visible: !quiet && std::io::stderr().is_terminal(),
            tensors_done: 0,
            current: String::new(),
        }
    }
}

impl o1_convert::Progress for ConvertProgress {
    fn stage(&mut self, name: &str, total: u64) {
        if !self.visible {
            return;
        }
        let bar = if total > 0 {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30.cyan/blue}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar
        } else {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{prefix} {spinner} {elapsed}")
                    .expect("valid template"),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        };
        bar.set_prefix(name.to_string());
        self.tensors_done = 0;
        self.current.clear();
        self.bar = Some(bar);
    }

    fn advance(&mut self, bytes: u64, tensor: &str) {
        if let Some(bar) = &self.bar {
            if tensor != self.current {
                self.tensors_done += 1;
                self.current = tensor.to_string();
                bar.set_message(format!("tensor {} {tensor}", self.tensors_done));
            }
            bar.inc(bytes);
        }
    }

    fn finish_stage(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
