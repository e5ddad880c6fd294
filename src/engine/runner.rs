//! One llama.cpp context and the exact tokens its KV cache holds.
//!
//! Every prompt is matched against the cached tokens: the longest common
//! prefix is kept, the rest of the cache is dropped and only the new tail is
//! prefilled, in `n_batch` chunks (a larger batch aborts llama.cpp).

use std::time::Instant;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;

use super::cpu_share::CpuShare;
use super::event::TimelineSecond;
use super::lookup::BatchProbe;
use crate::chat::Segment;

/// Why a decode could not go on.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the context is full ({0} tokens)")]
    ContextFull(usize),
    #[error("llama.cpp decode failed: {0}")]
    Decode(String),
    #[error("stopped")]
    Cancelled,
    #[error("template marker {0} is not a single token in this model")]
    BadMarker(&'static str),
}

/// How a prefill went.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Prefill {
    pub prompt_tokens: usize,
    /// Tokens of the prompt already in the cache.
    pub reused: usize,
    /// Tokens decoded now (the tail, or the last token again when the whole
    /// prompt was cached, to get its logits).
    pub prefilled: usize,
    pub seconds: f64,
}

fn max_abs_difference(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max)
}

pub struct Runner<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    /// The tokens in KV sequence 0, in order.
    cached: Vec<LlamaToken>,
    batch: LlamaBatch<'static>,
    n_batch: usize,
    /// The threads the context was made with: the most it uses.
    threads: usize,
    /// Adapts the thread count to other programs' use of the CPU.
    share: Option<CpuShare>,
}

impl<'m> Runner<'m> {
    /// The runner of `ctx`, made with `threads` threads.
    pub fn new(model: &'m LlamaModel, ctx: LlamaContext<'m>, threads: usize) -> Self {
        let n_batch = ctx.n_batch() as usize;
        Self {
            model,
            ctx,
            cached: Vec::new(),
            batch: LlamaBatch::new(n_batch, 1),
            n_batch,
            threads,
            share: None,
        }
    }

    /// From now on, uses fewer of its threads while other programs keep
    /// the cores busy (see `cpu_share`). Returns whether it can.
    pub fn share_cpu(&mut self) -> bool {
        self.share = CpuShare::new(&self.ctx, self.threads);
        self.share.is_some()
    }

    /// The threads the next decode uses.
    pub fn threads(&self) -> usize {
        self.share.as_ref().map_or(self.threads, CpuShare::threads)
    }

    pub fn model(&self) -> &'m LlamaModel {
        self.model
    }

    pub fn n_ctx(&self) -> usize {
        self.ctx.n_ctx() as usize
    }

    /// Tokens in the cache.
    pub fn cached(&self) -> &[LlamaToken] {
        &self.cached
    }

    /// Tokenizes a rendered prompt: markers as special tokens, text as text.
    pub fn tokenize(&self, segments: &[Segment]) -> Result<Vec<LlamaToken>, RunError> {
        let vocab = self.model.vocab();
        let mut out = Vec::new();
        for s in segments {
            match s {
                Segment::Special(marker) => {
                    let t = vocab.tokenize(marker.as_bytes(), false, true);
                    if t.len() != 1 {
                        return Err(RunError::BadMarker(marker));
                    }
                    out.push(t[0]);
                }
                Segment::Text(text) => out.extend(vocab.tokenize(text.as_bytes(), false, false)),
            }
        }
        Ok(out)
    }

    /// Empties the cache.
    pub fn clear(&mut self) {
        self.ctx.clear_kv_cache();
        self.cached.clear();
    }

    /// Brings the cache to exactly `prompt`, decoding only what is not
    /// cached yet; afterwards the logits of the prompt's last token are
    /// ready to sample. `progress(done, total)` is called after each chunk;
    /// `stop()` is polled between chunks.
    pub fn prefill(
        &mut self,
        prompt: &[LlamaToken],
        mut progress: impl FnMut(usize, usize),
        stop: impl Fn() -> bool,
    ) -> Result<Prefill, RunError> {
        assert!(!prompt.is_empty(), "empty prompt");
        if prompt.len() > self.n_ctx() {
            return Err(RunError::ContextFull(self.n_ctx()));
        }
        let started = Instant::now();
        let common = self
            .cached
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count();
        // The last prompt token is always decoded: its logits start the generation.
        let keep = common.min(prompt.len() - 1);
        self.truncate(keep)?;
        let tail = &prompt[keep..];
        let mut done = 0;
        for chunk in tail.chunks(self.n_batch) {
            if stop() {
                return Err(RunError::Cancelled);
            }
            let last_chunk = done + chunk.len() == tail.len();
            self.decode(chunk, last_chunk)?;
            done += chunk.len();
            progress(done, tail.len());
        }
        Ok(Prefill {
            prompt_tokens: prompt.len(),
            reused: keep,
            prefilled: tail.len(),
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Drops cached tokens from position `n` on.
    pub fn truncate(&mut self, n: usize) -> Result<(), RunError> {
        if n < self.cached.len() {
            self.ctx
                .clear_kv_cache_seq(Some(0), Some(n as u32), None)
                .map_err(|e| RunError::Decode(e.to_string()))?;
            self.cached.truncate(n);
        }
        Ok(())
    }

    /// Decodes `tokens` after the cache; logits only for the last one if asked.
    fn decode(&mut self, tokens: &[LlamaToken], logits_last: bool) -> Result<(), RunError> {
        self.decode_with(tokens, |i| logits_last && i + 1 == tokens.len())
    }

    /// Decodes `tokens` (at most `n_batch`) after the cache with logits for
    /// every one of them: [`Runner::argmax`] then reads the model's choice
    /// after each.
    pub fn decode_all(&mut self, tokens: &[LlamaToken]) -> Result<(), RunError> {
        self.decode_with(tokens, |_| true)
    }

    fn decode_with(
        &mut self,
        tokens: &[LlamaToken],
        logits: impl Fn(usize) -> bool,
    ) -> Result<(), RunError> {
        if self.cached.len() + tokens.len() > self.n_ctx() {
            return Err(RunError::ContextFull(self.n_ctx()));
        }
        self.batch.clear();
        let base = self.cached.len();
        for (i, &t) in tokens.iter().enumerate() {
            self.batch
                .add(t, (base + i) as i32, &[0], logits(i))
                .map_err(|e| RunError::Decode(e.to_string()))?;
        }
        o1_gguf::fault::inject_at("decode");
        if let Some(share) = &mut self.share {
            share.before_decode();
        }
        match self.ctx.decode(&mut self.batch) {
            Ok(()) => {
                self.cached.extend_from_slice(tokens);
                Ok(())
            }
            Err(llama_cpp_2::DecodeError::NoKvCacheSlot) => {
                Err(RunError::ContextFull(self.n_ctx()))
            }
            Err(e) => Err(RunError::Decode(e.to_string())),
        }
    }

    /// Feeds one generated token.
    pub fn push(&mut self, token: LlamaToken) -> Result<(), RunError> {
        self.decode(&[token], true)
    }

    /// The greedy choice after the `i`-th token of the last `decode_all`:
    /// the first token of highest logit, as llama.cpp's greedy sampler picks.
    pub fn argmax(&self, i: usize) -> LlamaToken {
        self.argmax_ith(i as i32)
    }

    /// The greedy choice from the last logits (after a prefill or a push).
    pub fn argmax_last(&self) -> LlamaToken {
        self.argmax_ith(-1)
    }

    fn argmax_ith(&self, i: i32) -> LlamaToken {
        let logits = self.ctx.get_logits_ith(i);
        let mut best = 0;
        for (t, &l) in logits.iter().enumerate() {
            if l > logits[best] {
                best = t;
            }
        }
        LlamaToken(best as i32)
    }

    /// What batched decodes of 1, 2, … `max` tokens after the cache cost,
    /// and how far their logits are from those of the same tokens decoded
    /// one at a time (the cache is left as it was). The tokens are the
    /// cache's own last ones: any would do, but real text is what lookup
    /// will decode.
    pub fn probe_batches(&mut self, max: usize) -> Result<BatchProbe, RunError> {
        let keep = self.cached.len();
        let probe = self.probe_after(keep, max);
        // Whatever happened (a full context), the cache is as it was.
        self.truncate(keep)?;
        probe
    }

    fn probe_after(&mut self, keep: usize, max: usize) -> Result<BatchProbe, RunError> {
        let max = max.clamp(1, self.n_batch);
        let tokens: Vec<LlamaToken> = (0..max)
            .map(|i| {
                let at = keep.saturating_sub(max) + i;
                self.cached.get(at).copied().unwrap_or(LlamaToken(i as i32))
            })
            .collect();
        let mut single = Vec::with_capacity(max);
        for &t in &tokens {
            self.decode(&[t], true)?;
            single.push(self.ctx.get_logits_ith(-1).to_vec());
        }
        self.truncate(keep)?;
        let mut logit_error = vec![0.0f32];
        for b in 2..=max {
            self.decode_all(&tokens[..b])?;
            let worst = (0..b)
                .map(|i| max_abs_difference(self.ctx.get_logits_ith(i as i32), &single[i]))
                .fold(0.0f32, f32::max);
            logit_error.push(worst);
            self.truncate(keep)?;
        }
        // Every batch size once per round, so that drift and other load
        // touch all of them alike; a round to warm up first (the first
        // decodes after a load still fault weights in); the median of the
        // rest.
        const ROUNDS: usize = 5;
        let mut samples = vec![Vec::with_capacity(ROUNDS); max];
        for round in 0..=ROUNDS {
            for b in 1..=max {
                let started = Instant::now();
                self.decode_all(&tokens[..b])?;
                self.ctx.synchronize();
                if round > 0 {
                    samples[b - 1].push(started.elapsed().as_secs_f64());
                }
                self.truncate(keep)?;
            }
        }
        let seconds = samples
            .into_iter()
            .map(|mut s| {
                s.sort_by(f64::total_cmp);
                s[s.len() / 2]
            })
            .collect();
        Ok(BatchProbe {
            seconds,
            logit_error,
        })
    }

    /// Samples the next token from the last logits (the sampler accepts it).
    pub fn sample(&mut self, sampler: &mut LlamaSampler) -> LlamaToken {
        sampler.sample(&self.ctx, -1)
    }

    /// The logits of the last decoded token.
    #[cfg(feature = "testing")]
    pub fn logits(&self) -> &[f32] {
        self.ctx.get_logits_ith(self.batch.n_tokens() - 1)
    }

    /// Decodes `tokens` from an empty cache without keeping them: the
    /// prompt-processing measurement of `o1 bench`.
    pub fn bench_prompt(&mut self, tokens: &[LlamaToken]) -> Result<f64, RunError> {
        self.clear();
        let started = Instant::now();
        for chunk in tokens.chunks(self.n_batch) {
            self.decode(chunk, true)?;
        }
        self.ctx.synchronize();
        Ok(started.elapsed().as_secs_f64())
    }

    /// Generates one token at a time for `seconds` (from an empty cache
    /// every 128 tokens, so the context stays as short as `bench_generate`'s),
    /// counting each second's tokens and the threads at its end:
    /// `o1 bench --timeline`.
    pub fn bench_timeline(
        &mut self,
        token: LlamaToken,
        seconds: u64,
    ) -> Result<Vec<TimelineSecond>, RunError> {
        let started = Instant::now();
        let mut timeline: Vec<TimelineSecond> = Vec::new();
        self.clear();
        loop {
            if self.cached.len() >= 128 {
                self.clear();
            }
            self.decode(&[token], true)?;
            self.ctx.synchronize();
            let second = started.elapsed().as_secs();
            if second >= seconds {
                return Ok(timeline);
            }
            let threads = self.threads();
            match timeline.last_mut() {
                Some(last) if last.second == second => {
                    last.tokens += 1;
                    last.threads = threads;
                }
                _ => timeline.push(TimelineSecond {
                    second,
                    tokens: 1,
                    threads,
                }),
            }
        }
    }

    /// Decodes `n` tokens one at a time after an empty cache: the
    /// generation measurement of `o1 bench`.
    pub fn bench_generate(&mut self, token: LlamaToken, n: usize) -> Result<f64, RunError> {
        self.clear();
        let started = Instant::now();
        for _ in 0..n {
            self.decode(&[token], true)?;
        }
        self.ctx.synchronize();
        Ok(started.elapsed().as_secs_f64())
    }
}
