//! What an engine is started with: the model, context and offload settings,
//! the sampling (the user's overrides over the checkpoint's defaults) and
//! the per-phase token limits.

use std::path::PathBuf;

use serde::Serialize;

use crate::chat;
use crate::model::{self, KvType};

/// Layers to offload to a GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum GpuLayers {
    /// As many as fit in the device's free memory, leaving headroom.
    #[default]
    Auto,
    All,
    Count(u32),
}

impl std::str::FromStr for GpuLayers {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(GpuLayers::Auto),
            "all" => Ok(GpuLayers::All),
            n => n
                .parse()
                .map(GpuLayers::Count)
                .map_err(|_| format!("`{s}` is not auto, all or a number of layers")),
        }
    }
}

/// What to do when a turn does not fit in the context.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OnFull {
    /// Drop the oldest reasoning, then the oldest turns (never the system message).
    #[default]
    Drop,
    /// End the chat with a message, as the model card's reference loop does.
    Stop,
}

/// Lookup decoding in greedy phases (see `engine::lookup`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Lookup {
    /// Draft from the context where a batched decode gives the same logits
    /// as single ones (measured) and the measured costs say it pays
    #[default]
    Auto,
    /// As auto, and choose the q8_0 KV cache (unless --kv-type is set), with
    /// which a batched decode can give the same logits
    On,
    /// One token per decode
    Off,
    /// Draft at every step whatever it costs or rounds to (measurements and
    /// tests).
    #[value(skip)]
    Always,
}

/// Sampling settings given by the user; unset ones come from the model.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SamplingOverrides {
    pub temperature: Option<f32>,
    pub top_k: Option<u32>,
    pub top_p: Option<f32>,
    pub min_p: Option<f32>,
    pub repeat_penalty: Option<f32>,
    pub seed: Option<u32>,
}

/// The sampling a phase uses. Temperature 0 is greedy decoding.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sampling {
    pub temperature: f32,
    pub top_k: u32,
    pub top_p: f32,
    pub min_p: f32,
    pub repeat_penalty: f32,
    pub seed: u32,
    /// Added to a token's logit before sampling (tests force tokens with it).
    #[cfg(feature = "testing")]
    #[serde(skip)]
    pub logit_bias: Vec<(u32, f32)>,
}

/// The sane values of each sampling knob and budget: the one check that
/// the settings (flags, environment, config file) and the server's request
/// fields both apply.
pub mod bounds {
    use std::ops::RangeInclusive;

    pub const TEMPERATURE: RangeInclusive<f32> = 0.0..=100.0;
    pub const TOP_P: RangeInclusive<f32> = 0.0..=1.0;
    pub const MIN_P: RangeInclusive<f32> = 0.0..=1.0;
    pub const REPEAT_PENALTY: RangeInclusive<f32> = 0.01..=100.0;
    /// A phase's token budget.
    pub const TOKENS: RangeInclusive<usize> = 0..=1 << 20;

    /// `Ok` for a value within `range` (never for NaN); `Err` completes the
    /// sentence "`name` …".
    pub fn check<T: PartialOrd + std::fmt::Display>(
        v: T,
        range: &RangeInclusive<T>,
    ) -> Result<(), String> {
        if range.contains(&v) {
            Ok(())
        } else {
            Err(format!(
                "is {v}: must be from {} to {}",
                range.start(),
                range.end()
            ))
        }
    }
}

impl Sampling {
    /// The checkpoint's defaults (greedy unless it samples) under the user's overrides.
    pub fn resolve(model: &model::GenerationDefaults, o: &SamplingOverrides) -> Self {
        let samples = model.do_sample.unwrap_or(false);
        let model_temp = if samples {
            model.temperature.unwrap_or(1.0)
        } else {
            0.0
        };
        Sampling {
            temperature: o.temperature.unwrap_or(model_temp).max(0.0),
            top_k: o.top_k.or(model.top_k.filter(|_| samples)).unwrap_or(0),
            top_p: o.top_p.or(model.top_p.filter(|_| samples)).unwrap_or(1.0),
            min_p: o.min_p.or(model.min_p.filter(|_| samples)).unwrap_or(0.0),
            repeat_penalty: o.repeat_penalty.or(model.repetition_penalty).unwrap_or(1.0),
            seed: o.seed.unwrap_or(0x5EED),
            #[cfg(feature = "testing")]
            logit_bias: Vec::new(),
        }
    }
}

/// Per-phase token budgets (the reference loop's `max_new_tokens`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub reasoning: usize,
    pub answer: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            reasoning: 3000,
            answer: 3000,
        }
    }
}

/// One request on an explicit history, as a server gets it: the messages
/// (system message included) end with the user's question, or with the
/// reasoning of its turn (cut short by the client: then only the answer is
/// written); the sampling and the phases' budgets are the request's own.
#[derive(Clone, Debug)]
pub struct Completion {
    pub messages: Vec<chat::Message>,
    pub sampling: Sampling,
    pub limits: Limits,
    /// Start from an empty KV cache, re-using nothing of the last request's.
    pub fresh: bool,
}

/// A raw prompt continued as it is, with no template: OpenAI's
/// `/v1/completions`, ollama's `raw` generate. One generation, reported as
/// the answer phase.
#[derive(Clone, Debug)]
pub struct RawCompletion {
    pub prompt: String,
    pub sampling: Sampling,
    pub limit: usize,
    /// Start from an empty KV cache.
    pub fresh: bool,
}

/// Everything needed to start an engine.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub model: PathBuf,
    /// Context size; `None`: the trained length, or what fits `max_memory`.
    pub n_ctx: Option<u32>,
    /// Prompt tokens per batch; `None`: 512, or less to fit `max_memory`.
    pub n_batch: Option<u32>,
    /// `None`: f16, or q8_0 to fit `max_memory`.
    pub kv_type: Option<KvType>,
    /// The memory the engine may use (see [`crate::memory`]).
    pub max_memory: u64,
    /// `None`: every core.
    pub threads: Option<usize>,
    /// Use fewer threads while other programs keep the cores busy (the
    /// `share_cpu` setting; off by default here, so that a library user's
    /// output does not depend on the machine's load: llama.cpp's rounding
    /// depends on the thread count).
    pub share_cpu: bool,
    pub gpu_layers: GpuLayers,
    pub mmap: bool,
    /// The system message; empty for none.
    pub system: String,
    pub sampling: SamplingOverrides,
    pub limits: Limits,
    pub on_full: OnFull,
    pub lookup: Lookup,
}

impl EngineConfig {
    pub fn new(model: impl Into<PathBuf>) -> Self {
        EngineConfig {
            model: model.into(),
            n_ctx: None,
            n_batch: None,
            kv_type: None,
            max_memory: crate::memory::default_max_memory(crate::device::total_memory()),
            threads: None,
            share_cpu: false,
            gpu_layers: GpuLayers::Auto,
            mmap: true,
            system: chat::DEFAULT_SYSTEM.to_string(),
            sampling: SamplingOverrides::default(),
            limits: Limits::default(),
            on_full: OnFull::Drop,
            lookup: Lookup::Auto,
        }
    }

    /// What the memory plan is asked for (see `memory::plan`) for `info`.
    pub fn wanted_memory(&self, info: &model::ModelInfo) -> crate::memory::Wanted {
        crate::memory::Wanted {
            n_ctx: self.n_ctx,
            // With an f16 cache, llama.cpp's attention for one token splits
            // the cache between threads and a batch's does not: lookup asks
            // for q8_0 (see `lookup::cache_allows_drafts`), where the heads
            // are whole q8_0 blocks of 32.
            kv_type: match (self.kv_type, self.lookup) {
                (None, Lookup::On) if info.head_dim.is_multiple_of(32) => Some(KvType::Q8_0),
                (kv_type, _) => kv_type,
            },
            n_batch: self.n_batch,
            max_memory: self.max_memory,
        }
    }
}
