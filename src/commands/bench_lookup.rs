//! `o1 bench --lookup-set`: lookup decoding against one token per decode,
//! on a set of prompts whose answers restate their reasoning (code to edit,
//! derivations, a text to summarize, conversions) and two controls with
//! nothing to match. Each prompt runs both ways on the same engine,
//! [`ROUNDS`] times in alternating order: each phase's median rate both
//! ways, and the median of the rounds' ratios. The text must be the same
//! every time.

use std::io::Write;
use std::sync::mpsc;

use anyhow::Result;
use o1::chat::{self, Message, Phase};
use o1::engine::{follow_turn, Engine, Event, Lookup, LookupStatus, PhaseStats};
use serde::Serialize;

/// (name, kind, prompt). Kind: "restates" (the answer restates the
/// reasoning), "quotes code" (the reasoning quotes code to edit too), or
/// "control" (nothing to match).
const PROMPTS: [(&str, &str, &str); 10] = [
    (
        "type-hints",
        "quotes code",
        "Add type hints to this function and return the full code:\n\
         def total(items, tax):\n    subtotal = 0\n    for item in items:\n        \
         subtotal += item.price * item.quantity\n    return subtotal * (1 + tax)",
    ),
    (
        "rename",
        "quotes code",
        "Rename the variables of this function to descriptive names and return the full code:\n\
         def f(a, b):\n    c = []\n    for d in a:\n        if d % b == 0:\n            \
         c.append(d)\n    return c",
    ),
    (
        "comprehension",
        "quotes code",
        "Rewrite this loop as a list comprehension and show the final code:\n\
         squares = []\nfor n in range(20):\n    if n % 3 == 0:\n        squares.append(n * n)",
    ),
    (
        "train-speed",
        "restates",
        "A train travels 120 km in 1.5 hours, then 80 km in 1 hour. What is its average \
         speed? Show the calculation.",
    ),
    (
        "interest",
        "restates",
        "What is 2,000 dollars after 3 years at 5% interest compounded yearly? Show each year.",
    ),
    (
        "summary",
        "restates",
        "Summarize this text in three sentences:\nThe city council met on Tuesday to discuss \
         the new bicycle lanes on Main Street. Several shop owners said the lanes removed \
         parking that their customers need. Cyclists said the lanes made the street safer, \
         and the number of accidents fell by a third since they were built. The council \
         decided to keep the lanes and to open a new car park two blocks away.",
    ),
    (
        "json-to-yaml",
        "restates",
        "Convert this JSON to YAML:\n{\"name\": \"o1\", \"version\": 3, \"features\": \
         [\"reasoning\", \"lookup\", \"memory\"], \"limits\": {\"context\": 32768, \
         \"answer\": 3000}}",
    ),
    (
        "celsius",
        "restates",
        "Convert 0, 25, 37, 100 and -40 degrees Celsius to Fahrenheit, showing the formula \
         for each.",
    ),
    ("poem-zh", "control", "写一首关于秋天的七言绝句。"),
    (
        "random-words",
        "control",
        "Write a list of 30 random unrelated English words, one per line.",
    ),
];

#[derive(Serialize)]
struct PhaseRow {
    prompt: &'static str,
    kind: &'static str,
    phase: Phase,
    tokens: usize,
    plain_tokens_per_second: f64,
    lookup_tokens_per_second: f64,
    ratio: f64,
    drafted: usize,
    accepted: usize,
    same_text: bool,
    /// The phase's whole prompt (the plain run's history, rendered): for
    /// running llama.cpp's own drafting on the same text.
    prompt_text: String,
}

#[derive(Serialize)]
pub struct LookupReport {
    rows: Vec<PhaseRow>,
    /// Geometric mean of the answer phase's ratio over the prompts that
    /// restate or quote.
    answer_ratio: f64,
    /// Geometric mean of the reasoning phase's ratio on the code prompts.
    code_reasoning_ratio: f64,
    /// The lowest ratio of any phase of at least 16 tokens.
    lowest_ratio: f64,
    /// What lookup probed (decode costs, batched against single logits)
    /// and the costs it ended with; absent when it never probed.
    lookup: Option<LookupStatus>,
}

/// How many times each prompt runs each way: this machine's speed drifts
/// by several percent between runs.
const ROUNDS: usize = 3;

/// A phase's text and figures.
type PhaseRun = (Phase, String, PhaseStats);

/// One turn from a fresh conversation: each phase's text and figures, and
/// the conversation it leaves.
fn turn(engine: &Engine, lookup: Lookup, prompt: &str) -> Result<(Vec<PhaseRun>, Vec<Message>)> {
    engine.reset()?;
    // The same cache before both runs (the system message, prefilled from
    // empty): a prompt re-used from the run before would be read in other
    // batches, whose sums round differently and can flip a near-tie.
    engine.bench_prefill(Vec::new(), Phase::Reasoning)?;
    engine.set_lookup(lookup)?;
    let (tx, rx) = mpsc::channel();
    engine.turn(prompt, tx)?;
    let mut phases = Vec::new();
    follow_turn(rx, |event| {
        if let Event::PhaseFinished {
            phase, text, stats, ..
        } = event
        {
            phases.push((phase, text, stats));
        }
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((phases, engine.history()?))
}

/// The prompt `phase` was run on: the history before its message, rendered.
fn prompt_text(history: &[Message], phase: Phase) -> String {
    let before = history
        .iter()
        .position(|m| m.role == phase.role())
        .unwrap_or(history.len());
    chat::to_text(&chat::render(&history[..before], phase))
}

fn geometric_mean(xs: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = xs.fold((0.0, 0), |(s, n), x| (s + x.ln(), n + 1));
    if n == 0 {
        f64::NAN
    } else {
        (sum / n as f64).exp()
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

pub fn run(engine: &Engine) -> Result<LookupReport> {
    let mut rows = Vec::new();
    for &(name, kind, prompt) in &PROMPTS {
        let mut plain_runs = Vec::new();
        let mut lookup_runs = Vec::new();
        let mut history = Vec::new();
        for round in 0..ROUNDS {
            // Alternate which goes first, so that neither always meets a
            // warmer (or busier) machine.
            let ((plain, h), (lookup, _)) = if round % 2 == 0 {
                let p = turn(engine, Lookup::Off, prompt)?;
                (p, turn(engine, Lookup::On, prompt)?)
            } else {
                let l = turn(engine, Lookup::On, prompt)?;
                (turn(engine, Lookup::Off, prompt)?, l)
            };
            history = h;
            plain_runs.push(plain);
            lookup_runs.push(lookup);
        }
        for (i, (phase, text, p)) in plain_runs[0].iter().enumerate() {
            let rate = |runs: &[Vec<PhaseRun>]| {
                median(runs.iter().map(|r| r[i].2.tokens_per_second).collect())
            };
            let (plain_rate, lookup_rate) = (rate(&plain_runs), rate(&lookup_runs));
            // Each round's two runs are next to each other: the ratio is
            // taken within rounds, so that the machine's drift between
            // rounds cancels out.
            let ratio = median(
                plain_runs
                    .iter()
                    .zip(&lookup_runs)
                    .map(|(p, l)| {
                        l[i].2.tokens_per_second / p[i].2.tokens_per_second.max(f64::MIN_POSITIVE)
                    })
                    .collect(),
            );
            let same_text = plain_runs
                .iter()
                .chain(&lookup_runs)
                .all(|r| r.len() == plain_runs[0].len() && &r[i].1 == text);
            let lookups = lookup_runs.iter().map(|r| &r[i].2);
            rows.push(PhaseRow {
                prompt: name,
                kind,
                phase: *phase,
                tokens: p.generated_tokens,
                plain_tokens_per_second: plain_rate,
                lookup_tokens_per_second: lookup_rate,
                ratio,
                drafted: lookups.clone().map(|s| s.drafted_tokens).sum::<usize>() / ROUNDS,
                accepted: lookups.map(|s| s.accepted_tokens).sum::<usize>() / ROUNDS,
                same_text,
                prompt_text: prompt_text(&history, *phase),
            });
        }
    }
    let answer_ratio = geometric_mean(
        rows.iter()
            .filter(|r| r.kind != "control" && r.phase == Phase::Answer)
            .map(|r| r.ratio),
    );
    let code_reasoning_ratio = geometric_mean(
        rows.iter()
            .filter(|r| r.kind == "quotes code" && r.phase == Phase::Reasoning)
            .map(|r| r.ratio),
    );
    let lowest_ratio = rows
        .iter()
        .filter(|r| r.tokens >= 16)
        .map(|r| r.ratio)
        .fold(f64::INFINITY, f64::min);
    Ok(LookupReport {
        rows,
        answer_ratio,
        code_reasoning_ratio,
        lowest_ratio,
        lookup: engine.lookup_status()?,
    })
}

pub fn print(out: &mut impl Write, r: &LookupReport) -> Result<()> {
    writeln!(
        out,
        "{:14} {:11} {:9} {:>6} {:>9} {:>9} {:>6} {:>7} {:>8} {:>6}  text",
        "prompt",
        "kind",
        "phase",
        "tokens",
        "plain t/s",
        "lookup t/s",
        "ratio",
        "drafted",
        "accepted",
        "rate"
    )?;
    for row in &r.rows {
        writeln!(
            out,
            "{:14} {:11} {:9} {:>6} {:>9.2} {:>10.2} {:>6.2} {:>7} {:>8} {:>5.0}%  {}",
            row.prompt,
            row.kind,
            format!("{:?}", row.phase).to_lowercase(),
            row.tokens,
            row.plain_tokens_per_second,
            row.lookup_tokens_per_second,
            row.ratio,
            row.drafted,
            row.accepted,
            100.0 * row.accepted as f64 / row.drafted.max(1) as f64,
            if row.same_text { "same" } else { "DIFFERS" }
        )?;
    }
    writeln!(
        out,
        "answer phase (restating prompts): {:.2}x geometric mean; reasoning on code prompts: {:.2}x; lowest phase: {:.2}x",
        r.answer_ratio, r.code_reasoning_ratio, r.lowest_ratio
    )?;
    match r.lookup.as_ref().and_then(|l| Some((l, l.probe.as_ref()?))) {
        Some((l, probe)) => {
            let ms = |s: &[f64]| {
                s.iter()
                    .map(|s| format!("{:.1}", s * 1e3))
                    .collect::<Vec<_>>()
                    .join(" / ")
            };
            writeln!(
                out,
                "decodes of 1 / 2 / … tokens: {} ms probed, {} ms by the end",
                ms(&probe.seconds),
                ms(&l.seconds)
            )?;
            let errors: Vec<String> = probe.logit_error.iter().map(|e| format!("{e}")).collect();
            writeln!(
                out,
                "largest difference of a batched decode's logits from single ones: {}; drafts of up to {} tokens",
                errors.join(" / "),
                l.max_draft
            )?;
        }
        None => writeln!(
            out,
            "lookup did not probe this machine (sampling, or an f16 KV cache): it stayed off"
        )?,
    }
    Ok(())
}
