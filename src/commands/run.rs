//! `o1 run`: one question, one two-phase turn. The reasoning streams to
//! stderr (dim on a terminal), the answer to stdout; `--json` prints both
//! with the statistics at the end instead.

use std::io::{IsTerminal, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use o1::chat::Phase;
use o1::engine::{Event, PhaseStats, Stop};
use o1::settings::Settings;
use o1::store::Store;
use o1::terminal_text::for_terminal;
use o1::tui::chat_engine::ChatEngine;
use serde::Serialize;

use super::attach::Chat;
use crate::cli::RunArgs;

#[derive(Serialize, Default)]
struct PhaseReport {
    stop: Option<Stop>,
    #[serde(flatten)]
    stats: PhaseStats,
}

#[derive(Serialize, Default)]
struct Report {
    reasoning: String,
    answer: String,
    stats: Stats,
}

#[derive(Serialize, Default)]
struct Stats {
    reasoning: PhaseReport,
    answer: PhaseReport,
    context_used: usize,
    context_size: usize,
    /// Where the model ran, e.g. `CPU`.
    device: String,
    /// llama.cpp's CPU path, e.g. `icelake (proven on this CPU)`.
    cpu_path: String,
    /// The process's peak resident memory so far, in bytes (Linux).
    peak_memory: Option<u64>,
}

/// Splits `[MODEL] [QUESTION]`: one argument is the model if it names a
/// .gguf file or a stored model, otherwise the question.
fn model_and_question(args: &[String]) -> (Option<String>, Option<String>) {
    let is_model = |a: &str| {
        a.ends_with(".gguf")
            || std::path::Path::new(a).is_file()
            || Store::open_default().find(a).is_some()
    };
    match args {
        [] => (None, None),
        [one] if is_model(one) => (Some(one.clone()), None),
        [one] => (None, Some(one.clone())),
        [model, question, ..] => (Some(model.clone()), Some(question.clone())),
    }
}

pub fn run(args: RunArgs) -> Result<()> {
    let (model, question) = model_and_question(&args.args);
    let settings = Settings::load()?;
    let chat = super::attach::choose(
        &settings,
        &args.at,
        model.as_deref(),
        args.yes,
        &args.engine,
        &args.chat,
    )?;
    let question = match question.as_deref() {
        Some("-") | None => {
            if std::io::stdin().is_terminal() {
                bail!("no question: give it after the model, or on stdin");
            }
            let mut q = String::new();
            std::io::stdin()
                .read_to_string(&mut q)
                .context("reading the question from stdin")?;
            q
        }
        Some(q) => q.to_string(),
    };
    if question.trim().is_empty() {
        bail!(o1::engine::EngineError::EmptyQuestion);
    }

    let (engine, device, cpu_path): (Box<dyn ChatEngine>, String, String) = match chat {
        Chat::Local { config, note } => {
            let engine = super::start_engine(config, args.json)?;
            if let (Some(note), false) = (note, args.json) {
                eprintln!(
                    "o1: {note} ({} MiB more)",
                    engine.loaded().memory.total() >> 20
                );
            }
            let (device, cpu_path) = (
                engine.loaded().device.clone(),
                engine.loaded().cpu_path.clone(),
            );
            (Box::new(engine), device, cpu_path)
        }
        Chat::Server { engine, notes } => {
            if !args.json {
                for note in notes {
                    eprintln!("o1: {note}");
                }
            }
            let device = engine.info().describe();
            (Box::new(engine), device, String::new())
        }
    };
    let interrupted = super::interrupt_flag();
    let (tx, rx) = mpsc::channel();
    engine.turn(question, tx)?;

    let stderr_is_terminal = std::io::stderr().is_terminal();
    let mut printer = Printer {
        json: args.json,
        device,
        cpu_path,
        show_reasoning: !args.hide_reasoning && !args.json,
        dim: stderr_is_terminal && std::env::var_os("NO_COLOR").is_none(),
        escape_out: std::io::stdout().is_terminal(),
        escape_err: stderr_is_terminal,
        out: std::io::stdout().lock(),
        err: std::io::stderr(),
    };
    print_turn(&rx, &interrupted, || engine.cancel(), &mut printer)
}

/// Where and how `o1 run` prints a turn.
struct Printer<O: Write, E: Write> {
    json: bool,
    /// Where the model runs, for the report.
    device: String,
    cpu_path: String,
    show_reasoning: bool,
    dim: bool,
    /// Show control characters instead of sending them (a terminal).
    escape_out: bool,
    escape_err: bool,
    out: O,
    err: E,
}

/// Prints the turn's events as they come, then the report. `interrupted`
/// is read at every event as well as when none comes, so Ctrl+C stops
/// generation within a token even while text streams; the partial text is
/// printed (and the `--json` report) before the interruption is returned.
fn print_turn<O: Write, E: Write>(
    events: &mpsc::Receiver<Event>,
    interrupted: &AtomicBool,
    cancel: impl Fn(),
    p: &mut Printer<O, E>,
) -> Result<()> {
    let mut report = Report::default();
    report.stats.device = p.device.clone();
    report.stats.cpu_path = p.cpu_path.clone();
    let mut cancelled = false;
    let mut finished = false;
    loop {
        if interrupted.load(Ordering::SeqCst) && !cancelled {
            cancel();
            cancelled = true;
        }
        let event = match events.recv_timeout(Duration::from_millis(50)) {
            Ok(e) => e,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        match event {
            Event::Text {
                phase: Phase::Reasoning,
                text,
            } if p.show_reasoning => {
                let text = if p.escape_err {
                    for_terminal(&text)
                } else {
                    text.into()
                };
                if p.dim {
                    write!(p.err, "\x1b[2m{text}\x1b[0m")?;
                } else {
                    write!(p.err, "{text}")?;
                }
                p.err.flush()?;
            }
            Event::Text {
                phase: Phase::Answer,
                text,
            } if !p.json => {
                // On a terminal, control characters are shown, not obeyed;
                // a pipe or file gets the exact text.
                if p.escape_out {
                    write!(p.out, "{}", for_terminal(&text))?;
                } else {
                    write!(p.out, "{text}")?;
                }
                p.out.flush()?;
            }
            Event::PhaseFinished {
                phase,
                text,
                stop,
                stats,
                ..
            } => {
                if phase == Phase::Reasoning && p.show_reasoning {
                    if stop.is_cut() {
                        writeln!(p.err, " [reasoning cut: {stop}]")?;
                    } else {
                        writeln!(p.err)?;
                    }
                }
                let r = PhaseReport {
                    stop: Some(stop),
                    stats,
                };
                match phase {
                    Phase::Reasoning => (report.reasoning, report.stats.reasoning) = (text, r),
                    Phase::Answer => (report.answer, report.stats.answer) = (text, r),
                }
            }
            Event::Trimmed {
                dropped_reasoning,
                dropped_turns,
                ..
            } => {
                writeln!(p.err, "o1: dropped {dropped_reasoning} reasoning message(s) and {dropped_turns} turn(s) to fit the context")?;
            }
            Event::LimitsLowered { limits, n_ctx } => {
                writeln!(
                    p.err,
                    "o1: a context of {n_ctx} tokens holds less than the phase limits: \
                     this turn reasons for at most {} tokens and answers in at most {}",
                    limits.reasoning, limits.answer
                )?;
            }
            Event::TurnFinished { usage } => {
                report.stats.context_used = usage.used;
                report.stats.context_size = usage.n_ctx;
                report.stats.peak_memory = o1::device::peak_resident();
                finished = true;
                break;
            }
            Event::Error(e) => return Err(super::SharedEngineError(e).into()),
            _ => {}
        }
    }
    if p.json {
        serde_json::to_writer_pretty(&mut p.out, &report)?;
        writeln!(p.out)?;
    } else if !report.answer.ends_with('\n') {
        writeln!(p.out)?;
    }
    if cancelled {
        return Err(super::Interrupted.into());
    }
    if !finished {
        // The engine thread ended without finishing the turn (it panicked):
        // what was printed is partial, and the exit code says so.
        return Err(o1::engine::EngineError::Stopped.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use o1::engine::ContextUsage;

    fn printer(json: bool, terminal: bool) -> Printer<Vec<u8>, Vec<u8>> {
        Printer {
            json,
            device: "CPU".into(),
            cpu_path: "icelake (proven on this CPU)".into(),
            show_reasoning: !json,
            dim: false,
            escape_out: terminal,
            escape_err: terminal,
            out: Vec::new(),
            err: Vec::new(),
        }
    }

    fn text(phase: Phase, text: &str) -> Event {
        Event::Text {
            phase,
            text: text.into(),
        }
    }

    fn finished(phase: Phase, text: &str, stop: Stop) -> Event {
        Event::PhaseFinished {
            phase,
            text: text.into(),
            tokens: vec![],
            stop,
            stats: PhaseStats::default(),
        }
    }

    #[test]
    fn an_engine_that_dies_mid_turn_is_an_error() {
        let (tx, rx) = mpsc::channel();
        tx.send(text(Phase::Reasoning, "Let me")).unwrap();
        drop(tx);
        let mut p = printer(false, false);
        let err = print_turn(&rx, &AtomicBool::new(false), || {}, &mut p).unwrap_err();
        assert!(err.to_string().contains("engine"), "{err}");
        assert_eq!(String::from_utf8_lossy(&p.err), "Let me");
    }

    #[test]
    fn an_interrupt_cancels_and_still_prints_the_partial_json() {
        let (tx, rx) = mpsc::channel();
        let interrupted = AtomicBool::new(false);
        let cancels = std::cell::Cell::new(0);
        // Text keeps streaming: the flag must be seen between events.
        for _ in 0..5 {
            tx.send(text(Phase::Reasoning, "x")).unwrap();
        }
        interrupted.store(true, Ordering::SeqCst);
        tx.send(finished(Phase::Reasoning, "xxxxx", Stop::Cancelled))
            .unwrap();
        tx.send(Event::TurnFinished {
            usage: ContextUsage::default(),
        })
        .unwrap();
        let mut p = printer(true, false);
        let err =
            print_turn(&rx, &interrupted, || cancels.set(cancels.get() + 1), &mut p).unwrap_err();
        assert!(err.downcast_ref::<super::super::Interrupted>().is_some());
        assert_eq!(cancels.get(), 1);
        let json: serde_json::Value = serde_json::from_slice(&p.out).unwrap();
        assert_eq!(json["reasoning"], "xxxxx");
        assert_eq!(json["stats"]["reasoning"]["stop"], "cancelled");
    }

    #[test]
    fn control_characters_are_escaped_on_a_terminal_only() {
        let hostile = "a\u{1b}]0;title\u{7}b\n";
        for terminal in [true, false] {
            let (tx, rx) = mpsc::channel();
            tx.send(text(Phase::Reasoning, hostile)).unwrap();
            tx.send(text(Phase::Answer, hostile)).unwrap();
            tx.send(finished(Phase::Answer, hostile, Stop::EndOfTurn))
                .unwrap();
            tx.send(Event::TurnFinished {
                usage: ContextUsage::default(),
            })
            .unwrap();
            let mut p = printer(false, terminal);
            print_turn(&rx, &AtomicBool::new(false), || {}, &mut p).unwrap();
            let (out, err) = (
                String::from_utf8(p.out).unwrap(),
                String::from_utf8(p.err).unwrap(),
            );
            if terminal {
                assert_eq!(out, "a\\x1b]0;title\\x07b\n");
                assert!(!err.contains('\u{1b}'), "{err:?}");
            } else {
                assert_eq!(out, hostile);
                assert_eq!(err, hostile);
            }
        }
    }
}
