//! A phase's token generation, after its prompt is in the cache: sample a
//! token, stream its text in whole characters, feed it back, until a stop.
//! How tokens are produced (the sampler chain one token per decode, or
//! greedy with lookup drafts) lives here and only here.

use std::time::Instant;

use llama_cpp_2::sampling::LlamaSampler;

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use super::config::Sampling;
use super::event::Stop;
use super::lookup::{self, Acceptance, CostCurve};
use super::runner::{RunError, Runner};
use super::text::Utf8Stream;

/// What a phase generated.
pub(super) struct Generation {
    pub text: String,
    pub tokens: Vec<u32>,
    pub stop: Stop,
    /// When the first token was sampled.
    pub first_token: Option<Instant>,
    pub seconds: f64,
    /// Tokens guessed by lookup, and how many of them the model kept.
    pub drafted: usize,
    pub accepted: usize,
}

/// How a phase's tokens are decoded.
pub(super) enum Decoding<'a> {
    /// One token per decode, from the sampler chain.
    Plain,
    /// Greedy with lookup drafts (see `lookup`) of at most `max_draft`
    /// tokens, priced by `costs`, which each decode updates; without costs,
    /// every match is drafted (measurements and tests).
    Lookup {
        costs: Option<&'a mut CostCurve>,
        max_draft: usize,
    },
}

/// Generates up to `limit` tokens from the runner's last logits.
/// `interrupted` is polled before every decode (a cancel, answer now);
/// `emit` receives the text as it completes.
pub(super) fn generate(
    runner: &mut Runner<'_>,
    sampling: &Sampling,
    decoding: Decoding<'_>,
    limit: usize,
    interrupted: impl Fn() -> Option<Stop>,
    emit: impl FnMut(String),
) -> Result<Generation, RunError> {
    let mut out = Output::new(runner, emit);
    let stop = match decoding {
        Decoding::Lookup { costs, max_draft } if is_greedy(sampling) => {
            lookup_loop(runner, costs, max_draft, limit, &interrupted, &mut out)?
        }
        _ => plain_loop(runner, sampling, limit, &interrupted, &mut out)?,
    };
    Ok(out.finish(stop))
}

/// Whether the sampler chain is plain greedy: the choice is the argmax of
/// the logits alone, which lookup reproduces.
pub(super) fn is_greedy(sampling: &Sampling) -> bool {
    #[cfg(feature = "testing")]
    if !sampling.logit_bias.is_empty() {
        return false;
    }
    sampling.temperature <= 0.0 && sampling.repeat_penalty == 1.0
}

/// The generated tokens and their text, streamed as whole characters.
struct Output<'m, F> {
    model: &'m LlamaModel,
    utf8: Utf8Stream,
    text: String,
    tokens: Vec<u32>,
    first_token: Option<Instant>,
    started: Instant,
    drafted: usize,
    accepted: usize,
    emit: F,
}

impl<'m, F: FnMut(String)> Output<'m, F> {
    fn new(runner: &Runner<'m>, emit: F) -> Self {
        Output {
            model: runner.model(),
            utf8: Utf8Stream::default(),
            text: String::new(),
            tokens: Vec::new(),
            first_token: None,
            started: Instant::now(),
            drafted: 0,
            accepted: 0,
            emit,
        }
    }

    /// Why the phase stops before its next token, if it does: a cancel or
    /// an answer-now first, then the limit.
    fn must_stop(&self, limit: usize, interrupted: &impl Fn() -> Option<Stop>) -> Option<Stop> {
        interrupted().or((self.tokens.len() >= limit).then_some(Stop::Limit))
    }

    /// Takes a chosen token; `Some(EndOfTurn)` when it ends the phase.
    fn push(&mut self, token: LlamaToken) -> Option<Stop> {
        #[cfg(feature = "testing")]
        injected_delay();
        self.first_token.get_or_insert_with(Instant::now);
        self.tokens.push(token.0 as u32);
        let vocab = self.model.vocab();
        if vocab.is_eog(token) {
            return Some(Stop::EndOfTurn);
        }
        // Control tokens (e.g. a stray <|im_start|>) render as nothing.
        let delta = self.utf8.push(&vocab.token_to_piece(token, false, None));
        if !delta.is_empty() {
            self.text.push_str(&delta);
            (self.emit)(delta);
        }
        None
    }

    fn finish(mut self, stop: Stop) -> Generation {
        let tail = self.utf8.finish();
        if !tail.is_empty() {
            self.text.push_str(&tail);
            (self.emit)(tail);
        }
        Generation {
            text: self.text,
            tokens: self.tokens,
            stop,
            first_token: self.first_token,
            seconds: self.started.elapsed().as_secs_f64(),
            drafted: self.drafted,
            accepted: self.accepted,
        }
    }
}

/// With `O1_TEST_TOKEN_DELAY_MS=N`, every token takes N ms more, as on a
/// slow machine: for the tests of what happens while a phase runs.
#[cfg(feature = "testing")]
fn injected_delay() {
    static DELAY: std::sync::OnceLock<Option<std::time::Duration>> = std::sync::OnceLock::new();
    let delay = DELAY.get_or_init(|| {
        let ms = std::env::var("O1_TEST_TOKEN_DELAY_MS").ok()?.parse().ok()?;
        Some(std::time::Duration::from_millis(ms))
    });
    if let Some(d) = delay {
        std::thread::sleep(*d);
    }
}

/// A decode's outcome for the phase: a full context ends it, as a stop;
/// other failures are errors.
fn full_context_stops(decoded: Result<(), RunError>) -> Result<Option<Stop>, RunError> {
    match decoded {
        Ok(()) => Ok(None),
        Err(RunError::ContextFull(_)) => Ok(Some(Stop::ContextFull)),
        Err(e) => Err(e),
    }
}

/// One token per decode, chosen by the sampler chain.
fn plain_loop<F: FnMut(String)>(
    runner: &mut Runner<'_>,
    sampling: &Sampling,
    limit: usize,
    interrupted: &impl Fn() -> Option<Stop>,
    out: &mut Output<'_, F>,
) -> Result<Stop, RunError> {
    let mut sampler = sampler(sampling, runner.model().n_vocab());
    // Greedy without penalties is the first highest logit, as llama.cpp's
    // greedy sampler picks it, without copying the vocabulary's logits
    // into a candidate array at every token.
    let greedy = is_greedy(sampling);
    loop {
        if let Some(stop) = out.must_stop(limit, interrupted) {
            return Ok(stop);
        }
        let token = if greedy {
            runner.argmax_last()
        } else {
            runner.sample(&mut sampler)
        };
        if let Some(stop) = out.push(token) {
            return Ok(stop);
        }
        if let Some(stop) = full_context_stops(runner.push(token))? {
            return Ok(stop);
        }
    }
}

/// Greedy decoding with lookup drafts. Each decode feeds the chosen token
/// and a draft after it; the model's argmax after each fed token either
/// confirms the next drafted one or is the next token itself. Rejected
/// drafts leave the cache, so it ends exactly as plain decoding leaves it:
/// every chosen token but an end-of-turn one.
fn lookup_loop<F: FnMut(String)>(
    runner: &mut Runner<'_>,
    mut costs: Option<&mut CostCurve>,
    max_draft: usize,
    limit: usize,
    interrupted: &impl Fn() -> Option<Stop>,
    out: &mut Output<'_, F>,
) -> Result<Stop, RunError> {
    let mut acceptance = Acceptance::default();
    // The context as tokens, kept beside the cache for matching.
    let mut context: Vec<u32> = runner.cached().iter().map(|t| t.0 as u32).collect();
    let mut next = runner.argmax_last();
    loop {
        if let Some(stop) = out.must_stop(limit, interrupted) {
            return Ok(stop);
        }
        if let Some(stop) = out.push(next) {
            return Ok(stop);
        }
        context.push(next.0 as u32);
        // Room for the draft: the phase's limit and the context's.
        let room = (limit - out.tokens.len())
            .min(runner.n_ctx().saturating_sub(runner.cached().len() + 1));
        // What followed the last tokens before: drafted when it pays, and
        // otherwise still compared with the model's choice, to learn how
        // often it is right.
        let found = lookup::draft(&context, room.min(max_draft));
        let k = match &costs {
            _ if found.is_empty() => {
                acceptance.no_match();
                0
            }
            Some(costs) => costs.best_draft(acceptance.p(), found.len()),
            None => found.len(),
        };
        let unchecked = (k == 0).then(|| found.first().copied()).flatten();
        let guess: Vec<LlamaToken> = found[..k].iter().map(|&t| LlamaToken(t as i32)).collect();
        let base = runner.cached().len();
        let mut batch = Vec::with_capacity(guess.len() + 1);
        batch.push(next);
        batch.extend_from_slice(&guess);
        let started = Instant::now();
        if let Some(stop) = full_context_stops(runner.decode_all(&batch))? {
            return Ok(stop);
        }
        next = runner.argmax(0);
        if let Some(costs) = costs.as_deref_mut() {
            costs.observe(batch.len(), started.elapsed().as_secs_f64());
        }
        if guess.is_empty() {
            if let Some(t) = unchecked {
                acceptance.guess(t == next.0 as u32);
            }
            continue;
        }
        // Keep the drafted tokens the model agrees with, as they come.
        let mut kept = 0;
        let mut stop = None;
        // (The draft is never longer than the phase has room for.)
        while kept < guess.len() && next == guess[kept] {
            kept += 1;
            if let Some(s) = out.push(next) {
                stop = Some(s);
                break;
            }
            context.push(next.0 as u32);
            next = runner.argmax(kept);
        }
        out.drafted += guess.len();
        out.accepted += kept;
        acceptance.record(guess.len(), kept);
        // The cache keeps the fed token and the accepted drafts, but for an
        // end-of-turn one, which plain decoding never feeds either.
        let pushed = if stop.is_some() { kept - 1 } else { kept };
        runner.truncate(base + 1 + pushed)?;
        if let Some(stop) = stop {
            return Ok(stop);
        }
    }
}

/// llama.cpp's sampler chain for `sampling`.
fn sampler(sampling: &Sampling, n_vocab: i32) -> LlamaSampler {
    let mut chain = Vec::new();
    #[cfg(feature = "testing")]
    if !sampling.logit_bias.is_empty() {
        use llama_cpp_2::token::{logit_bias::LlamaLogitBias, LlamaToken};
        let biases: Vec<LlamaLogitBias> = sampling
            .logit_bias
            .iter()
            .map(|&(t, b)| LlamaLogitBias::new(LlamaToken(t as i32), b))
            .collect();
        chain.push(LlamaSampler::logit_bias(n_vocab, &biases));
    }
    if sampling.repeat_penalty != 1.0 {
        chain.push(LlamaSampler::penalties(
            n_vocab,
            64,
            sampling.repeat_penalty,
            0.0,
            0.0,
        ));
    }
    if sampling.temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
    } else {
        if sampling.top_k > 0 {
            chain.push(LlamaSampler::top_k(sampling.top_k as i32));
        }
        if sampling.top_p < 1.0 {
            chain.push(LlamaSampler::top_p(sampling.top_p, 1));
        }
        if sampling.min_p > 0.0 {
            chain.push(LlamaSampler::min_p(sampling.min_p, 1));
        }
        chain.push(LlamaSampler::temp(sampling.temperature));
        chain.push(LlamaSampler::dist(sampling.seed));
    }
    LlamaSampler::chain_simple(chain)
}
