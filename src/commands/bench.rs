//! `o1 bench`: prompt processing (pp) and generation (tg) speed measured
//! through the engine, reported as llama.cpp's llama-bench reports them
//! (tokens per second, mean ± standard deviation over the repetitions).
//! `--chat` adds a multi-turn measurement: how fast the answer of a 5th
//! turn starts when the cache is re-used, against a full re-prefill.
//! `--lookup-set` measures lookup decoding instead (see `bench_lookup`).

use std::io::Write;
use std::sync::mpsc;

use anyhow::{bail, Result};
use o1::chat::{Phase, Role};
use o1::engine::{follow_turn, Engine, Event, Limits, Lookup};
use serde::Serialize;

use crate::cli::BenchArgs;

#[derive(Serialize)]
struct TestResult {
    test: String,
    tokens: usize,
    /// Tokens per second of each repetition.
    samples: Vec<f64>,
    mean: f64,
    sd: f64,
}

impl TestResult {
    fn new(test: String, tokens: usize, seconds: &[f64]) -> Self {
        let samples: Vec<f64> = seconds.iter().map(|s| tokens as f64 / s).collect();
        let n = samples.len() as f64;
        let mean = samples.iter().sum::<f64>() / n;
        let sd = if samples.len() > 1 {
            (samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        TestResult {
            test,
            tokens,
            samples,
            mean,
            sd,
        }
    }
}

#[derive(Serialize)]
struct ChatResult {
    turns: usize,
    prompt_tokens: usize,
    reused_tokens: usize,
    prefilled_tokens: usize,
    /// Time to the first answer token with the cache re-used.
    time_to_first_token: f64,
    /// Prefilling the same prompt from an empty cache.
    full_prefill_seconds: f64,
}

#[derive(Serialize)]
struct Report {
    model: String,
    file_type: String,
    file_bytes: u64,
    params: u64,
    threads: usize,
    gpu_layers: u32,
    /// Where the model ran, in words.
    device: String,
    /// llama.cpp's CPU path and how it was chosen.
    cpu_path: String,
    results: Vec<TestResult>,
    chat: Option<ChatResult>,
}

/// Questions of the multi-turn measurement.
const QUESTIONS: [&str; 5] = [
    "What is the capital of France?",
    "And how many people live there?",
    "Write a Python function that reverses a string.",
    "Now make it handle None.",
    "Summarize our conversation in one sentence.",
];

pub fn run(args: BenchArgs) -> Result<()> {
    if !args.lookup_set
        && args.timeline.is_none()
        && (args.reps == 0 || (args.prompt == 0 && args.generate == 0 && !args.chat))
    {
        bail!("nothing to measure: give -p or -n, and -r of at least 1");
    }
    let settings = o1::settings::Settings::load()?;
    let model = super::resolve_model(args.model.as_deref(), &settings)?;
    let mut config = settings.engine_config(model, &args.engine, None)?;
    if args.lookup_set {
        config.n_ctx = config.n_ctx.or(Some(4096));
        // Loaded as for `--lookup on` (the q8_0 KV cache, unless --kv-type
        // says otherwise); each run then turns lookup off or on.
        config.lookup = Lookup::On;
        config.limits = Limits {
            reasoning: 192,
            answer: 192,
        };
        let engine = super::start_engine(config, args.json)?;
        let report = super::bench_lookup::run(&engine)?;
        let mut out = std::io::stdout().lock();
        if args.json {
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        } else {
            super::bench_lookup::print(&mut out, &report)?;
        }
        return Ok(());
    }
    if let Some(seconds) = args.timeline {
        config.n_ctx = config.n_ctx.or(Some(256));
        let engine = super::start_engine(config, args.json)?;
        let timeline = engine.bench_timeline(seconds)?;
        let mut out = std::io::stdout().lock();
        if args.json {
            serde_json::to_writer_pretty(&mut out, &timeline)?;
            writeln!(out)?;
        } else {
            writeln!(out, "{:>6} {:>9} {:>8}", "second", "tokens/s", "threads")?;
            for s in &timeline {
                writeln!(out, "{:>6} {:>9} {:>8}", s.second, s.tokens, s.threads)?;
            }
        }
        return Ok(());
    }
    if config.n_ctx.is_none() {
        // As llama-bench: a context just large enough for the test.
        let chat_room = if args.chat { 4096 } else { 0 };
        config.n_ctx =
            Some(((args.prompt + args.generate).max(chat_room) as u32).div_ceil(256) * 256);
    }
    config.limits = Limits {
        reasoning: 48,
        answer: 48,
    };
    let engine = super::start_engine(config, args.json)?;
    let loaded = engine.loaded().clone();

    let runs = engine.bench(args.prompt, args.generate, args.reps)?;
    let mut results = Vec::new();
    if args.prompt > 0 {
        results.push(TestResult::new(
            format!("pp{}", args.prompt),
            args.prompt,
            &runs.prompt_seconds,
        ));
    }
    if args.generate > 0 {
        results.push(TestResult::new(
            format!("tg{}", args.generate),
            args.generate,
            &runs.generate_seconds,
        ));
    }
    let chat = if args.chat {
        Some(chat_bench(&engine)?)
    } else {
        None
    };
    let report = Report {
        model: loaded.info.path.display().to_string(),
        file_type: loaded.info.file_type.clone(),
        file_bytes: loaded.info.file_bytes,
        params: loaded.info.n_params,
        threads: loaded.threads,
        gpu_layers: loaded.gpu_layers,
        device: loaded.device.clone(),
        cpu_path: loaded.cpu_path.clone(),
        results,
        chat,
    };
    print(&report, args.json)
}

/// Five turns; the fifth answer phase's start, re-used vs from scratch.
fn chat_bench(engine: &Engine) -> Result<ChatResult> {
    let mut last = None;
    for q in QUESTIONS {
        let (tx, rx) = mpsc::channel();
        engine.turn(q, tx)?;
        follow_turn(rx, |event| {
            if let Event::PhaseFinished {
                phase: Phase::Answer,
                stats,
                ..
            } = event
            {
                last = Some(stats);
            }
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let Some(stats) = last else {
        bail!("the chat produced no answer")
    };
    // The fifth answer's prompt: the history without that answer.
    let mut history = engine.history()?;
    if history.last().is_some_and(|m| m.role == Role::Assistant) {
        history.pop();
    }
    let full = engine.bench_prefill(history, Phase::Answer)?;
    Ok(ChatResult {
        turns: QUESTIONS.len(),
        prompt_tokens: stats.prompt_tokens,
        reused_tokens: stats.reused_tokens,
        prefilled_tokens: stats.prefilled_tokens,
        time_to_first_token: stats.time_to_first_token,
        full_prefill_seconds: full.seconds,
    })
}

fn print(r: &Report, json: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, r)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "model {} ({}, {:.2} GiB, {:.2} B params), {} threads, on {}",
        r.model,
        r.file_type,
        r.file_bytes as f64 / (1u64 << 30) as f64,
        r.params as f64 / 1e9,
        r.threads,
        r.device
    )?;
    writeln!(out, "CPU path {}", r.cpu_path)?;
    writeln!(out, "{:>8}  {:>16}", "test", "t/s")?;
    for t in &r.results {
        writeln!(out, "{:>8}  {:>9.2} ± {:<5.2}", t.test, t.mean, t.sd)?;
    }
    if let Some(c) = &r.chat {
        writeln!(
            out,
            "chat: answer of turn {}: {} prompt tokens, {} re-used, {} prefilled, first token after {:.0} ms; \
             a full re-prefill of that prompt takes {:.0} ms",
            c.turns,
            c.prompt_tokens,
            c.reused_tokens,
            c.prefilled_tokens,
            c.time_to_first_token * 1e3,
            c.full_prefill_seconds * 1e3
        )?;
    }
    Ok(())
}
