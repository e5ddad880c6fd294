//! Progress on stderr for long work: bars on a terminal, a plain line per
//! step otherwise (logs, pipes), nothing when the user asked for quiet.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use o1::terminal_text::for_terminal_line;

/// Draws `o1_convert` progress: one bar per stage, bytes and ETA; without a
/// terminal, a line when a stage starts and at every tenth of its bytes.
pub struct ConvertProgress {
    mode: Mode,
    /// The stage's counter: drawn in `Bars` mode, hidden in `Lines` mode.
    bar: Option<ProgressBar>,
    tensors_done: usize,
    current: String,
    /// `Lines` mode: tenths of the stage already reported.
    tenths_reported: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Quiet,
    Bars,
    Lines,
}

impl ConvertProgress {
    pub fn new(quiet: bool) -> Self {
        let mode = if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bars
        } else {
            Mode::Lines
        };
        Self {
            mode,
            bar: None,
            tensors_done: 0,
            current: String::new(),
            tenths_reported: 0,
        }
    }
}

impl o1_convert::Progress for ConvertProgress {
    fn stage(&mut self, name: &str, total: u64) {
        let target = match self.mode {
            Mode::Quiet => return,
            Mode::Bars => ProgressDrawTarget::stderr(),
            Mode::Lines => {
                eprintln!("o1: {name}");
                ProgressDrawTarget::hidden()
            }
        };
        let bar = if total > 0 {
            let bar = ProgressBar::with_draw_target(Some(total), target);
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30.cyan/blue}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar
        } else {
            let bar = ProgressBar::with_draw_target(None, target);
            bar.set_style(
                ProgressStyle::with_template("{prefix} {spinner} {elapsed}")
                    .expect("valid template"),
            );
            if self.mode == Mode::Bars {
                bar.enable_steady_tick(Duration::from_millis(120));
            }
            bar
        };
        bar.set_prefix(name.to_string());
        self.tensors_done = 0;
        self.current.clear();
        self.tenths_reported = 0;
        self.bar = Some(bar);
    }

    fn advance(&mut self, bytes: u64, tensor: &str) {
        let Some(bar) = &self.bar else { return };
        if tensor != self.current {
            self.tensors_done += 1;
            self.current = tensor.to_string();
            bar.set_message(format!(
                "tensor {} {}",
                self.tensors_done,
                shown_name(tensor)
            ));
        }
        bar.inc(bytes);
        if self.mode == Mode::Lines {
            let (done, total) = (bar.position(), bar.length().unwrap_or(0));
            let tenths = (done * 10).checked_div(total).unwrap_or(0).min(10);
            if tenths > self.tenths_reported {
                self.tenths_reported = tenths;
                eprintln!(
                    "o1: {}: {}% ({:.2} of {:.2} GB)",
                    bar.prefix(),
                    tenths * 10,
                    done as f64 / 1e9,
                    total as f64 / 1e9
                );
            }
        }
    }

    fn finish_stage(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// Draws `o1_hub` progress: a bar for the file being downloaded and one for
/// the whole pull; plain lines when stderr is not a terminal.
pub struct PullProgress {
    bars: Option<(indicatif::MultiProgress, ProgressBar, Option<ProgressBar>)>,
    quiet: bool,
}

impl PullProgress {
    pub fn new(quiet: bool) -> Self {
        let bars = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let multi = indicatif::MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let total = multi.add(ProgressBar::new(0));
            total.set_style(
                ProgressStyle::with_template("total   [{bar:30.green/blue}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            (multi, total, None)
        });
        Self { bars, quiet }
    }
}

impl o1_hub::PullProgress for PullProgress {
    fn totals(&mut self, files: usize, total_bytes: u64, cached_bytes: u64) {
        match &self.bars {
            Some((_, total, _)) => {
                total.set_length(total_bytes);
                total.set_position(cached_bytes);
            }
            None if !self.quiet => eprintln!(
                "o1: {files} files, {:.2} GB ({:.2} GB already cached)",
                total_bytes as f64 / 1e9,
                cached_bytes as f64 / 1e9
            ),
            None => {}
        }
    }

    fn file_started(&mut self, path: &str, size: u64, already: u64) {
        match &mut self.bars {
            Some((multi, _, file)) => {
                if let Some(old) = file.take() {
                    old.finish_and_clear();
                }
                let bar = multi.insert(0, ProgressBar::new(size));
                bar.set_style(
                    ProgressStyle::with_template("{msg:30!} [{bar:30.cyan/blue}] {bytes}/{total_bytes} {binary_bytes_per_sec}")
                        .expect("valid template")
                        .progress_chars("=> "),
                );
                bar.set_message(shown_name(path));
                bar.set_position(already);
                *file = Some(bar);
            }
            None if !self.quiet => eprintln!("{}", started_line(path, size, already)),
            None => {}
        }
    }

    fn file_advanced(&mut self, _path: &str, bytes: u64) {
        if let Some((_, total, file)) = &self.bars {
            total.inc(bytes);
            if let Some(f) = file {
                f.inc(bytes);
            }
        }
    }

    fn file_done(&mut self, path: &str) {
        match &mut self.bars {
            Some((_, _, file)) => {
                if let Some(f) = file.take() {
                    f.finish_and_clear();
                }
            }
            None if !self.quiet => eprintln!("o1: done {}", shown_name(path)),
            None => {}
        }
    }

    fn message(&mut self, msg: &str) {
        let line = message_line(msg);
        match &self.bars {
            Some((multi, _, _)) => {
                let _ = multi.println(line);
            }
            None => eprintln!("{line}"),
        }
    }
}

/// A hub file or tensor name as drawn: it comes from a server or a
/// checkpoint, so its controls are escaped.
fn shown_name(path: &str) -> String {
    for_terminal_line(path).into_owned()
}

/// The line for a file whose download starts (without bars).
fn started_line(path: &str, size: u64, already: u64) -> String {
    let resumed = if already > 0 {
        format!(", resuming at {:.2} GB", already as f64 / 1e9)
    } else {
        String::new()
    };
    format!(
        "o1: downloading {} ({:.2} GB{resumed})",
        shown_name(path),
        size as f64 / 1e9
    )
}

/// A notice from the hub client; it can quote file names from the server.
fn message_line(msg: &str) -> String {
    format!("o1: {}", for_terminal_line(msg))
}

impl Drop for PullProgress {
    fn drop(&mut self) {
        if let Some((multi, total, file)) = self.bars.take() {
            if let Some(f) = file {
                f.finish_and_clear();
            }
            total.finish_and_clear();
            let _ = multi.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "\u{1b}]0;pwned\u{7}\u{1b}[2Jmodel\u{9b}.safetensors\n";

    #[test]
    fn hub_file_names_reach_the_terminal_without_control_characters() {
        for line in [
            shown_name(HOSTILE),
            started_line(HOSTILE, 10, 5),
            message_line(&format!("{HOSTILE}: retrying")),
        ] {
            assert!(!line.chars().any(char::is_control), "{line:?}");
            assert!(line.contains("\\x1b]0;pwned\\x07"), "{line:?}");
        }
    }
}
