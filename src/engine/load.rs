//! Loading: the model's weights, with the GPU offload chosen for this
//! machine, and a llama.cpp context sized for the config, checked to hold
//! the reasoning token.

use std::fmt::Display;
use std::num::NonZeroU32;

use llama_cpp_2::context::params::{KvCacheType, LlamaContextParams};
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;

use super::config::{EngineConfig, GpuLayers, Sampling};
use super::event::EngineError;
use super::runner::Runner;
use crate::chat;
use crate::model::{self, KvType, ModelError, ModelInfo};

/// What the engine settled on when it loaded the model.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub info: ModelInfo,
    pub n_ctx: usize,
    pub n_batch: usize,
    pub threads: usize,
    pub gpu_layers: u32,
    pub sampling: Sampling,
    /// Things the user should know (e.g. a GPU option ignored on a CPU build).
    pub notes: Vec<String>,
}

/// The model's weights in memory and the offload they were loaded with.
pub(super) struct Weights {
    model: LlamaModel,
    gpu_layers: u32,
    notes: Vec<String>,
}

impl Weights {
    /// Loads the weights; `progress` receives the load fraction (0..=1) and
    /// aborts the load by returning false.
    pub(super) fn load(
        config: &EngineConfig,
        info: &ModelInfo,
        progress: impl FnMut(f32) -> bool + Send + 'static,
    ) -> Result<Self, EngineError> {
        let backend = o1_gguf::llama::backend();
        let mut notes = Vec::new();
        let gpu_layers = choose_gpu_layers(config, info, &mut notes);
        let params = LlamaModelParams::default()
            .with_n_gpu_layers(gpu_layers)
            .with_use_mmap(config.mmap)
            .with_progress_callback(progress);
        o1_gguf::llama::clear_recent_errors();
        let model = LlamaModel::load_from_file(backend, &config.model, &params).map_err(|e| {
            ModelError::LoadFailed {
                path: config.model.clone(),
                detail: llama_failure(e),
            }
        })?;
        Ok(Weights {
            model,
            gpu_layers,
            notes,
        })
    }

    /// A context over these weights, with the runner that owns it and what
    /// was settled (size, batch, threads, sampling).
    pub(super) fn context(
        &self,
        config: &EngineConfig,
        info: ModelInfo,
    ) -> Result<(Runner<'_>, Loaded), EngineError> {
        let n_ctx = config
            .n_ctx
            .unwrap_or_else(|| model::default_n_ctx(&info, config.kv_type, model::total_memory()))
            .max(64) as usize;
        let threads = config
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let n_batch = (config.n_batch as usize).clamp(1, n_ctx);
        let kv = match config.kv_type {
            KvType::F16 => KvCacheType::F16,
            KvType::Q8_0 => KvCacheType::Q8_0,
        };
        let mut params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx as u32))
            .with_n_batch(n_batch as u32)
            .with_n_ubatch(n_batch as u32)
            .with_n_threads(threads as i32)
            .with_n_threads_batch(threads as i32)
            .with_type_k(kv)
            .with_type_v(kv);
        if config.kv_type == KvType::Q8_0 {
            // llama.cpp needs flash attention for a quantized V cache.
            params =
                params.with_flash_attention_policy(llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED);
        }
        let ctx = self
            .model
            .new_context(o1_gguf::llama::backend(), params)
            .map_err(|e| EngineError::Context {
                n_ctx,
                detail: llama_failure(e),
            })?;
        let runner = Runner::new(&self.model, ctx);
        // The vocabulary must have the reasoning token as one special token.
        if runner
            .tokenize(&[chat::Segment::Special(chat::REASONING)])
            .is_err()
        {
            return Err(ModelError::NoReasoningToken(config.model.clone()).into());
        }
        let sampling = Sampling::resolve(&info.generation, &config.sampling);
        let loaded = Loaded {
            info,
            n_ctx,
            n_batch,
            threads,
            gpu_layers: self.gpu_layers,
            sampling,
            notes: self.notes.clone(),
        };
        Ok((runner, loaded))
    }
}

/// Why a llama.cpp call failed: the errors llama.cpp logged, or the
/// binding's own error when it logged none.
fn llama_failure(error: impl Display) -> String {
    let logged = o1_gguf::llama::recent_errors().join("; ");
    if logged.is_empty() {
        error.to_string()
    } else {
        logged
    }
}

/// Offload: none on a CPU build; `auto` fits layers in the GPU's free memory.
fn choose_gpu_layers(config: &EngineConfig, info: &ModelInfo, notes: &mut Vec<String>) -> u32 {
    let all = info.n_layer + 1;
    let gpus: Vec<_> = llama_cpp_2::list_llama_ggml_backend_devices()
        .into_iter()
        .filter(|d| matches!(d.device_type, llama_cpp_2::LlamaBackendDeviceType::Gpu))
        .collect();
    if gpus.is_empty() {
        if config.gpu_layers != GpuLayers::Auto && config.gpu_layers != GpuLayers::Count(0) {
            notes.push("no GPU backend in this build (or no GPU found): running on the CPU".into());
        }
        return 0;
    }
    match config.gpu_layers {
        GpuLayers::All => all,
        GpuLayers::Count(n) => n.min(all),
        GpuLayers::Auto => {
            let free = gpus.iter().map(|d| d.memory_free as u64).max().unwrap_or(0);
            let headroom = 512 << 20;
            let n_ctx = u64::from(config.n_ctx.unwrap_or(4096));
            let per_layer = info.file_bytes / u64::from(all)
                + info.kv_bytes_per_token(config.kv_type) * n_ctx / u64::from(info.n_layer);
            let fit = (free.saturating_sub(headroom) / per_layer.max(1)) as u32;
            let n = fit.min(all);
            notes.push(format!(
                "offloading {n} of {all} layers to the GPU ({} MiB free)",
                free >> 20
            ));
            n
        }
    }
}
