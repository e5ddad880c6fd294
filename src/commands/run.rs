//! `o1 run`: one question, one two-phase turn. The reasoning streams to
//! stderr (dim on a terminal), the answer to stdout; `--json` prints both
//! with the statistics at the end instead.

use std::io::{IsTerminal, Read, Write};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use o1::chat::Phase;
use o1::engine::{Event, PhaseStats, Stop};
use o1::settings::Settings;
use o1::store::Store;
use serde::Serialize;

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
    let model = super::first_run::model_or_first_run(model.as_deref(), &settings, args.yes)?;
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

    let config = settings.engine_config(model, &args.engine, Some(&args.chat))?;
    let engine = super::start_engine(config, args.json)?;
    let interrupted = super::interrupt_flag();
    let (tx, rx) = mpsc::channel();
    engine.turn(question, tx)?;

    let show_reasoning = !args.hide_reasoning && !args.json;
    let dim = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut stdout = std::io::stdout().lock();
    let mut report = Report::default();
    let mut cancelled = false;
    loop {
        let event = match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(e) => e,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if interrupted.load(Ordering::SeqCst) && !cancelled {
                    engine.cancel();
                    cancelled = true;
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        match event {
            Event::Text {
                phase: Phase::Reasoning,
                text,
            } if show_reasoning => {
                let mut err = std::io::stderr().lock();
                if dim {
                    write!(err, "\x1b[2m{text}\x1b[0m")?;
                } else {
                    write!(err, "{text}")?;
                }
                err.flush()?;
            }
            Event::Text {
                phase: Phase::Answer,
                text,
            } if !args.json => {
                write!(stdout, "{text}")?;
                stdout.flush()?;
            }
            Event::PhaseFinished {
                phase,
                text,
                stop,
                stats,
                ..
            } => {
                if phase == Phase::Reasoning && show_reasoning {
                    eprintln!(
                        "{}",
                        if stop.is_cut() {
                            format!(" [reasoning cut: {stop}]")
                        } else {
                            String::new()
                        }
                    );
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
                eprintln!("o1: dropped {dropped_reasoning} reasoning message(s) and {dropped_turns} turn(s) to fit the context");
            }
            Event::TurnFinished { usage } => {
                report.stats.context_used = usage.used;
                report.stats.context_size = usage.n_ctx;
                break;
            }
            Event::Error(e) => return Err(super::SharedEngineError(e).into()),
            _ => {}
        }
    }
    if args.json {
        serde_json::to_writer_pretty(&mut stdout, &report)?;
        writeln!(stdout)?;
    } else if !report.answer.ends_with('\n') {
        writeln!(stdout)?;
    }
    if cancelled {
        return Err(super::Interrupted.into());
    }
    Ok(())
}
