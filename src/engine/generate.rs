//! A phase's token generation, after its prompt is in the cache: sample a
//! token, stream its text in whole characters, feed it back, until a stop.
//! How tokens are produced (the sampler chain, one token per decode) lives
//! here and only here.

use std::time::Instant;

use llama_cpp_2::sampling::LlamaSampler;

use super::config::Sampling;
use super::event::Stop;
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
}

/// Generates up to `limit` tokens from the runner's last logits.
/// `interrupted` is polled before every token (a cancel, answer now);
/// `emit` receives the text as it completes.
pub(super) fn generate(
    runner: &mut Runner<'_>,
    sampling: &Sampling,
    limit: usize,
    interrupted: impl Fn() -> Option<Stop>,
    mut emit: impl FnMut(String),
) -> Result<Generation, RunError> {
    let model = runner.model();
    let vocab = model.vocab();
    let mut sampler = sampler(sampling, model.n_vocab());
    let mut utf8 = Utf8Stream::default();
    let (mut text, mut tokens) = (String::new(), Vec::new());
    let mut first_token = None;
    let started = Instant::now();
    let stop = loop {
        if let Some(stop) = interrupted() {
            break stop;
        }
        if tokens.len() >= limit {
            break Stop::Limit;
        }
        let token = runner.sample(&mut sampler);
        first_token.get_or_insert_with(Instant::now);
        tokens.push(token.0 as u32);
        if vocab.is_eog(token) {
            break Stop::EndOfTurn;
        }
        // Control tokens (e.g. a stray <|im_start|>) render as nothing.
        let delta = utf8.push(&vocab.token_to_piece(token, false, None));
        if !delta.is_empty() {
            text.push_str(&delta);
            emit(delta);
        }
        match runner.push(token) {
            Ok(()) => {}
            Err(RunError::ContextFull(_)) => break Stop::ContextFull,
            Err(e) => return Err(e),
        }
    };
    let tail = utf8.finish();
    if !tail.is_empty() {
        text.push_str(&tail);
        emit(tail);
    }
    Ok(Generation {
        text,
        tokens,
        stop,
        first_token,
        seconds: started.elapsed().as_secs_f64(),
    })
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
