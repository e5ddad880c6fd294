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
use crate::memory;
use crate::model::{KvType, ModelError, ModelInfo};

/// What the engine settled on when it loaded the model.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub info: ModelInfo,
    pub n_ctx: usize,
    pub n_batch: usize,
    pub kv_type: KvType,
    /// The memory this was predicted to take, and the budget it fits.
    pub memory: memory::Footprint,
    pub max_memory: u64,
    /// The most threads; fewer while other programs keep the cores busy
    /// when `shares_cpu`.
    pub threads: usize,
    pub shares_cpu: bool,
    pub gpu_layers: u32,
    /// Where the model runs, in words (e.g. `CPU`, or the GPU and its layers).
    pub device: String,
    /// llama.cpp's CPU path and how it was chosen (see `o1_gguf::cpu`).
    pub cpu_path: String,
    pub sampling: Sampling,
    /// Things the user should know (e.g. a GPU option ignored on a CPU build).
    pub notes: Vec<String>,
}

/// The model's weights in memory and the offload they were loaded with.
pub(super) struct Weights {
    model: LlamaModel,
    gpu_layers: u32,
    /// Where the model runs, in words (see [`Loaded::device`]).
    device: String,
    notes: Vec<String>,
}

impl Weights {
    /// Loads the weights; `progress` receives the load fraction (0..=1) and
    /// aborts the load by returning false.
    pub(super) fn load(
        config: &EngineConfig,
        info: &ModelInfo,
        shape: memory::Shape,
        progress: impl FnMut(f32) -> bool + Send + 'static,
    ) -> Result<Self, EngineError> {
        let backend = o1_gguf::llama::backend()?;
        let mut notes = Vec::new();
        let devices = crate::device::devices()?;
        let gpu_layers = choose_gpu_layers(config, info, shape, &devices, &mut notes);
        let device = devices.running_on(gpu_layers, info.n_layer + 1);
        let mut progress = progress;
        let release = config.mmap;
        let path = config.model.clone();
        let params = LlamaModelParams::default()
            .with_n_gpu_layers(gpu_layers)
            .with_use_mmap(config.mmap)
            .with_progress_callback(move |p| {
                // As the weights load, not only at the end: the load's peak
                // would otherwise hold both copies.
                if release {
                    release_mapped_pages(&path);
                }
                progress(p)
            });
        o1_gguf::llama::clear_recent_errors();
        let model = LlamaModel::load_from_file(backend, &config.model, &params).map_err(|e| {
            ModelError::LoadFailed {
                path: config.model.clone(),
                detail: llama_failure(e),
            }
        })?;
        if config.mmap {
            settle_mapping(&config.model, &info.read_every_token);
        }
        o1_gguf::fault::inject_at("load");
        Ok(Weights {
            model,
            gpu_layers,
            device,
            notes,
        })
    }

    /// A context over these weights, shaped by the memory plan, with the
    /// runner that owns it and what was settled (size, batch, threads,
    /// sampling).
    pub(super) fn context(
        &self,
        config: &EngineConfig,
        info: ModelInfo,
        plan: memory::Plan,
    ) -> Result<(Runner<'_>, Loaded), EngineError> {
        let n_ctx = plan.shape.n_ctx.max(64) as usize;
        let threads = config.threads.unwrap_or_else(o1_gguf::default_threads);
        let n_batch = (plan.shape.n_batch as usize).clamp(1, n_ctx);
        let kv_type = plan.shape.kv_type;
        let kv = match kv_type {
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
        // A turn reads one row of logits per decode, or one per token of a
        // lookup draft: llama.cpp would otherwise reserve a row per batch
        // token (300 MiB at a batch of 512 over a 151,666-token vocabulary).
        // Without this bound the logits buffer takes a row per batch token
        // (about 300 MiB at 512) and the memory plan would be wrong: a
        // binding whose layout changed is an error, not a silent fallback.
        raw_context_params(&mut params)
            .ok_or_else(|| EngineError::Context {
                n_ctx,
                detail: "llama-cpp-2's context parameters no longer wrap llama.cpp's struct as o1 expects (its layout changed in an upgrade): o1 cannot bound the logits buffer"
                    .into(),
            })?
            .n_outputs_max = memory::LOGIT_ROWS;
        // Flash attention: no attention matrix in the compute buffer (the
        // memory plan counts on it), and a quantized V cache needs it.
        params = params.with_flash_attention_policy(llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED);
        let ctx = self
            .model
            .new_context(o1_gguf::llama::backend()?, params)
            .map_err(|e| EngineError::Context {
                n_ctx,
                detail: llama_failure(e),
            })?;
        let mut runner = Runner::new(&self.model, ctx, threads);
        let shares_cpu = config.share_cpu && runner.share_cpu();
        if config.share_cpu && !shares_cpu {
            tracing::warn!("this system does not show CPU use: the thread count stays {threads}");
        }
        // The vocabulary must have the reasoning token as one special token.
        if runner
            .tokenize(&[chat::Segment::Special(chat::REASONING)])
            .is_err()
        {
            return Err(ModelError::NoReasoningToken(config.model.clone()).into());
        }
        let sampling = Sampling::resolve(&info.generation, &config.sampling);
        let mut notes = self.notes.clone();
        if plan.constrained {
            notes.push(format!(
                "to fit --max-memory {} MiB: a context of {n_ctx} tokens, a {} KV cache, batches of {n_batch} ({})",
                config.max_memory >> 20,
                kv_type.name(),
                plan.footprint
            ));
        }
        let loaded = Loaded {
            info,
            n_ctx,
            n_batch,
            kv_type,
            memory: plan.footprint,
            max_memory: config.max_memory,
            threads,
            shares_cpu,
            gpu_layers: self.gpu_layers,
            device: self.device.clone(),
            cpu_path: cpu_path_summary(),
            sampling,
            notes,
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
fn choose_gpu_layers(
    config: &EngineConfig,
    info: &ModelInfo,
    shape: memory::Shape,
    devices: &crate::device::Devices,
    notes: &mut Vec<String>,
) -> u32 {
    let all = info.n_layer + 1;
    let Some(gpu) = devices.best_gpu() else {
        // A CUDA build says where it runs unless told to use the CPU; a
        // CPU build only when a GPU was asked for.
        let cpu_asked = config.gpu_layers == GpuLayers::Count(0);
        if crate::device::GPU_BACKEND_BUILT && !cpu_asked {
            notes.push(
                "no CUDA device found (no GPU, no driver, or no CUDA runtime): running on the CPU"
                    .into(),
            );
        } else if config.gpu_layers != GpuLayers::Auto && !cpu_asked {
            notes.push(
                "this build has no GPU backend (build with -F cuda): running on the CPU".into(),
            );
        }
        return 0;
    };
    match config.gpu_layers {
        GpuLayers::All => all,
        GpuLayers::Count(n) => n.min(all),
        GpuLayers::Auto => {
            let free = gpu.free;
            let fit = memory::gpu_layers_that_fit(info, free, shape);
            notes.push(format!(
                "offloading {} of {} layers to the GPU ({} of {} MiB free)",
                fit.layers,
                fit.all,
                fit.vram >> 20,
                free >> 20
            ));
            fit.layers
        }
    }
}

/// The raw `llama_context_params` behind the binding's wrapper, for the
/// fields the binding has no setter for. The wrapper holds nothing else;
/// the view is checked (size, and a field written through the binding read
/// back through it) and `None` when it does not hold (a test fails then).
fn raw_context_params(
    params: &mut LlamaContextParams,
) -> Option<&mut llama_cpp_sys_2::llama_context_params> {
    use std::mem::{align_of, size_of};
    if size_of::<LlamaContextParams>() != size_of::<llama_cpp_sys_2::llama_context_params>()
        || align_of::<LlamaContextParams>() != align_of::<llama_cpp_sys_2::llama_context_params>()
    {
        return None;
    }
    let n_ctx = params.n_ctx();
    let probe = params.clone().with_n_ctx(NonZeroU32::new(0x5eed_1234));
    // SAFETY: same size and alignment, and the wrapper's only field is the
    // raw struct; the probe below confirms it sits at offset 0.
    let probe_raw = unsafe {
        &*(&probe as *const LlamaContextParams as *const llama_cpp_sys_2::llama_context_params)
    };
    if probe_raw.n_ctx != 0x5eed_1234 {
        return None;
    }
    debug_assert_eq!(params.n_ctx(), n_ctx);
    Some(unsafe {
        &mut *(params as *mut LlamaContextParams as *mut llama_cpp_sys_2::llama_context_params)
    })
}

/// The read-only mappings of the model file in this process: address,
/// length and the file offset they start at. Matched by device and inode,
/// and only shared read-only mappings (llama.cpp's): dropping the pages of
/// a private or writable one could lose data.
#[cfg(target_os = "linux")]
fn model_mappings(model: &std::path::Path) -> Vec<(usize, usize, u64)> {
    use std::os::unix::fs::MetadataExt;
    let (Ok(meta), Ok(maps)) = (
        std::fs::metadata(model),
        std::fs::read_to_string("/proc/self/maps"),
    ) else {
        return Vec::new();
    };
    let device = format!(
        "{:02x}:{:02x}",
        libc::major(meta.dev()),
        libc::minor(meta.dev())
    );
    let mut found = Vec::new();
    for line in maps.lines() {
        // start-end perms offset dev inode path
        let fields: Vec<&str> = line.split_whitespace().take(5).collect();
        let [range, perms, offset, dev, inode] = fields[..] else {
            continue;
        };
        if inode.parse::<u64>().ok() != Some(meta.ino()) || dev != device || perms != "r--s" {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        if let (Ok(start), Ok(end), Ok(offset)) = (
            usize::from_str_radix(start, 16),
            usize::from_str_radix(end, 16),
            u64::from_str_radix(offset, 16),
        ) {
            found.push((start, end.saturating_sub(start), offset));
        }
    }
    found
}

/// Drops this process's page-table entries for the memory-mapped model
/// file. llama.cpp copies the weights it repacks out of the mapping into a
/// buffer of its own but keeps the mapping, so their original pages would
/// stay resident beside the copy (about 600 MB for the 1.5B q4_k_m). After
/// this, only the pages a turn reads again come back, from the page cache.
/// The mapping is read-only and shared, so nothing is lost.
#[cfg(target_os = "linux")]
fn release_mapped_pages(model: &std::path::Path) {
    for (start, len, _) in model_mappings(model) {
        // SAFETY: a whole read-only shared mapping of the model file:
        // MADV_DONTNEED only drops page-table entries, and a later read
        // faults the same bytes back in from the file.
        unsafe {
            libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED);
        }
    }
}

/// Once the model is loaded, leaves in memory only what a turn reads.
/// llama.cpp read the whole file with a large readahead, so the page cache
/// holds it in large folios that straddle tensors: mapping one page of a
/// tensor a turn needs maps the repacked originals beside it (180 MiB for
/// the 1.5B q4_k_m). So: unmap everything, drop the file's cached pages,
/// read back exactly the ranges every token reads (in 2 MiB requests: the
/// kernel caps one), and mark the mapping random, so that a page evicted
/// under a memory cap comes back alone rather than with megabytes of
/// readahead that would push out pages the next token needs.
#[cfg(target_os = "linux")]
fn settle_mapping(model: &std::path::Path, read_every_token: &[std::ops::Range<u64>]) {
    use std::os::fd::AsRawFd;
    release_mapped_pages(model);
    let Ok(file) = std::fs::File::open(model) else {
        return;
    };
    let fd = file.as_raw_fd();
    // SAFETY: advice on a file this process opened and on whole mappings of
    // it (read-only, shared); none of it changes data.
    unsafe {
        libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_DONTNEED);
        for r in read_every_token {
            let mut at = r.start;
            while at < r.end {
                let n = (r.end - at).min(2 << 20);
                libc::posix_fadvise(fd, at as i64, n as i64, libc::POSIX_FADV_WILLNEED);
                at += n;
            }
        }
        for (start, len, _) in model_mappings(model) {
            libc::madvise(start as *mut libc::c_void, len, libc::MADV_RANDOM);
        }
        // The loader's freed heap (the file's metadata, the vocabulary's
        // strings as read) back to the system.
        #[cfg(target_env = "gnu")]
        libc::malloc_trim(0);
    }
}

#[cfg(not(target_os = "linux"))]
fn release_mapped_pages(_model: &std::path::Path) {}

#[cfg(not(target_os = "linux"))]
fn settle_mapping(_model: &std::path::Path, _read_every_token: &[std::ops::Range<u64>]) {}

/// The CPU path in use, in a line (`icelake (proven on this CPU)`).
pub fn cpu_path_summary() -> String {
    o1_gguf::cpu::chosen().map_or_else(|| "not chosen yet".into(), |p| p.summary())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bindings_context_parameters_are_llama_cpps_struct() {
        let mut params = LlamaContextParams::default().with_n_ctx(NonZeroU32::new(4096));
        let raw = raw_context_params(&mut params)
            .expect("llama-cpp-2's LlamaContextParams no longer wraps llama_context_params alone");
        raw.n_outputs_max = 7;
        assert_eq!(raw.n_ctx, 4096);
        assert_eq!(params.n_ctx(), NonZeroU32::new(4096));
    }
}
