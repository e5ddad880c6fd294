//! What a model takes in memory while it chats, and the settings that fit a
//! budget (`--max-memory`).
//!
//! The parts, as llama.cpp allocates them on the CPU:
//! - the weights llama.cpp repacks for faster matrix products (most of a
//!   q4_k_m file), copied out of the mapped file into memory of their own;
//!   the engine drops the file's pages of these once copied (see
//!   `engine::load`), so they are counted once;
//! - the weights read straight from the mapped file (the rest, but for the
//!   token embedding, of which a turn reads only its tokens' rows);
//! - the KV cache, `n_ctx` tokens of keys and values;
//! - the compute buffer, which grows with the batch of tokens decoded at once
//!   (`n_batch`) and with the context (the attention mask). The engine keeps
//!   a few rows of logits per batch (a lookup draft's), not one per token, which is most of what
//!   llama.cpp would reserve otherwise;
//! - the process itself: code, libraries, the vocabulary, the heap.

use std::fmt;

use crate::model::{KvType, ModelInfo};

/// The process beyond llama.cpp's buffers: code, libraries, the
/// vocabulary, the heap (measured with the 1.5B and the 0.5B: 51 MiB once a
/// turn runs, up to 63 MiB for a moment as loading ends).
const PROCESS_BYTES: u64 = 64 << 20;

/// The batch sizes the engine may choose, fastest prompt reading first.
pub const BATCHES: [u32; 4] = [512, 256, 128, 64];

/// Contexts smaller than this are not offered by `--max-memory` on its own.
const MIN_CONTEXT: u32 = 1024;

const MIB: u64 = 1 << 20;

/// Rows of logits a decode may return: one per token of the longest
/// lookup draft plus the token before it (see `engine::lookup`).
pub const LOGIT_ROWS: u32 = 3;

/// A prediction of the resident memory of a chat, by part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footprint {
    pub repacked_weights: u64,
    pub mapped_weights: u64,
    pub kv_cache: u64,
    pub compute: u64,
    pub process: u64,
}

impl Footprint {
    pub fn total(&self) -> u64 {
        self.weights() + self.kv_cache + self.compute + self.process
    }

    pub fn weights(&self) -> u64 {
        self.repacked_weights + self.mapped_weights
    }
}

impl fmt::Display for Footprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} MiB = {} MiB weights (repacked {} + mapped {}) + {} MiB KV cache + {} MiB compute + {} MiB process",
            self.total() / MIB,
            self.weights() / MIB,
            self.repacked_weights / MIB,
            self.mapped_weights / MIB,
            self.kv_cache / MIB,
            self.compute / MIB,
            self.process / MIB,
        )
    }
}

/// Context, KV type and batch: what decides the memory beyond the weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub n_ctx: u32,
    pub kv_type: KvType,
    pub n_batch: u32,
}

/// The resident memory of a chat with `shape` on the CPU.
pub fn footprint(info: &ModelInfo, shape: Shape) -> Footprint {
    let w = &info.weights;
    let n_ctx = u64::from(shape.n_ctx);
    let n_batch = u64::from(shape.n_batch);
    // Tied embeddings are also the output matrix, which every token reads.
    let embedding = if w.tied_embeddings { w.embedding } else { 0 };
    // Per token of the batch: the feed-forward and attention activations
    // (f32), and the attention mask (f16) over the context; a row of
    // logits. Fitted to llama.cpp's own figures within 0.1 MiB. (The output
    // buffer, `LOGIT_ROWS` rows at most, 1.7 MiB, is in the process's share.)
    let per_batch_token = 4 * (3 * u64::from(info.n_ff) + 5 * u64::from(info.n_embd)) + 2 * n_ctx;
    let compute = n_batch * per_batch_token + 4 * u64::from(info.n_vocab);
    let mapped = w.total - w.repacked - w.embedding + embedding;
    Footprint {
        repacked_weights: w.repacked,
        mapped_weights: mapped,
        kv_cache: info.kv_bytes_per_token(shape.kv_type) * n_ctx,
        compute,
        process: PROCESS_BYTES,
    }
}

/// VRAM kept free beside what the offload needs: the CUDA context, cuBLAS's
/// workspace and the driver's own (about 300–450 MiB on current drivers).
pub const GPU_HEADROOM: u64 = 512 << 20;

/// How many layers `--gpu-layers auto` offloads, and what they take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpuFit {
    /// Layers to offload, in llama.cpp's count: the repeating layers, plus
    /// one for the output layer when all of them fit.
    pub layers: u32,
    /// All there are (`n_layer + 1`).
    pub all: u32,
    /// The VRAM the offload takes, headroom included.
    pub vram: u64,
}

/// The layers that fit in `free` bytes of VRAM with this context, KV type
/// and batch. llama.cpp offloads the repeating layers from the last one
/// backwards, each with its weights and its share of the KV cache; the
/// output layer (the output matrix) goes last, once every repeating layer
/// is there. The compute buffer moves to the GPU with the first layer.
pub fn gpu_layers_that_fit(info: &ModelInfo, free: u64, shape: Shape) -> GpuFit {
    let w = &info.weights;
    let n_layer = u64::from(info.n_layer);
    let all = info.n_layer + 1;
    // The embedding stays on the CPU (its rows are looked up there).
    let untied_output = if w.tied_embeddings { 0 } else { w.output };
    let per_layer = (w.total - w.embedding - untied_output) / n_layer.max(1)
        + info.kv_bytes_per_token(shape.kv_type) * u64::from(shape.n_ctx) / n_layer.max(1);
    let fixed = GPU_HEADROOM + footprint(info, shape).compute;
    let room = free.saturating_sub(fixed);
    let layers = if room >= per_layer * n_layer + w.output {
        all
    } else {
        (room / per_layer.max(1)).min(n_layer) as u32
    };
    let vram = if layers == 0 {
        0
    } else {
        fixed
            + per_layer * u64::from(layers.min(info.n_layer))
            + if layers == all { w.output } else { 0 }
    };
    GpuFit { layers, all, vram }
}

/// What the user asked for; `None` is for o1 to choose.
#[derive(Clone, Copy, Debug, Default)]
pub struct Wanted {
    pub n_ctx: Option<u32>,
    pub kv_type: Option<KvType>,
    pub n_batch: Option<u32>,
    pub max_memory: u64,
}

/// The settings chosen, and why they differ from the defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub shape: Shape,
    pub footprint: Footprint,
    /// Set when the budget made o1 choose less than it would otherwise.
    pub constrained: bool,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FitError {
    #[error(
        "{model} needs {} MiB with {what}, more than the {} MiB allowed \
         (--max-memory); allow {}M or more{hint}",
        .needed.div_ceil(MIB), .max_memory / MIB, .needed.div_ceil(MIB)
    )]
    TooSmall {
        model: String,
        what: String,
        needed: u64,
        max_memory: u64,
        hint: &'static str,
    },
}

/// The context, KV type and batch for a chat within `wanted.max_memory`.
///
/// A context the user set is kept: the KV type (unless set) and then the
/// batch give way. Otherwise the context is the trained length, or as much
/// of it as fits: with an f16 cache when that holds at least 8,192 tokens,
/// else with a q8_0 one (half the memory per token, nearly the same
/// output), then with smaller batches (slower prompt reading, same output).
pub fn plan(info: &ModelInfo, wanted: Wanted) -> Result<Plan, FitError> {
    let kv_types: &[KvType] = match wanted.kv_type {
        Some(KvType::F16) => &[KvType::F16],
        Some(KvType::Q8_0) => &[KvType::Q8_0],
        None => &[KvType::F16, KvType::Q8_0],
    };
    let one_batch;
    let batches: &[u32] = match wanted.n_batch {
        Some(n) => {
            one_batch = [n.max(1)];
            &one_batch
        }
        None => &BATCHES,
    };
    // The prediction is of the peak, as measured: the plan may fill the
    // budget.
    let budget = wanted.max_memory;
    let fits = |shape: Shape| footprint(info, shape).total() <= budget;
    let make = |shape: Shape, constrained| Plan {
        shape,
        footprint: footprint(info, shape),
        constrained,
    };
    let first = Shape {
        n_ctx: wanted.n_ctx.unwrap_or(info.n_ctx_train),
        kv_type: kv_types[0],
        n_batch: batches[0],
    };
    if let Some(n_ctx) = wanted.n_ctx {
        for (i, &kv_type) in kv_types.iter().enumerate() {
            for (j, &n_batch) in batches.iter().enumerate() {
                let shape = Shape {
                    n_ctx,
                    kv_type,
                    n_batch,
                };
                if fits(shape) {
                    return Ok(make(shape, i + j > 0));
                }
            }
        }
        let smallest = Shape {
            n_ctx,
            kv_type: *kv_types.last().unwrap(),
            n_batch: *batches.last().unwrap(),
        };
        return Err(too_small(
            info,
            smallest,
            wanted.max_memory,
            " or a smaller --ctx",
        ));
    }
    if fits(first) {
        return Ok(make(first, false));
    }
    // The largest context of each KV type and batch, in order of preference.
    let floor = MIN_CONTEXT.min(info.n_ctx_train);
    let comfortable = 8192.min(info.n_ctx_train);
    let mut best: Option<Shape> = None;
    for &n_batch in batches {
        for &kv_type in kv_types {
            let n_ctx = largest_context(info, kv_type, n_batch, budget);
            if n_ctx < floor {
                continue;
            }
            let shape = Shape {
                n_ctx,
                kv_type,
                n_batch,
            };
            if n_ctx >= comfortable {
                return Ok(make(shape, true));
            }
            if best.is_none_or(|b| shape.n_ctx > b.n_ctx) {
                best = Some(shape);
            }
        }
    }
    match best {
        Some(shape) => Ok(make(shape, true)),
        None => {
            let smallest = Shape {
                n_ctx: floor,
                kv_type: *kv_types.last().unwrap(),
                n_batch: *batches.last().unwrap(),
            };
            Err(too_small(info, smallest, wanted.max_memory, ""))
        }
    }
}

/// The largest context (a multiple of 256, at most the trained length) that
/// fits `max_memory` with this KV type and batch; 0 when none does.
fn largest_context(info: &ModelInfo, kv_type: KvType, n_batch: u32, max_memory: u64) -> u32 {
    let at = |n_ctx: u32| {
        footprint(
            info,
            Shape {
                n_ctx,
                kv_type,
                n_batch,
            },
        )
        .total()
    };
    let fixed = at(0);
    let per_token = at(1) - fixed;
    if max_memory < fixed || per_token == 0 {
        return 0;
    }
    let n = ((max_memory - fixed) / per_token).min(u64::from(info.n_ctx_train)) as u32;
    n / 256 * 256
}

fn too_small(info: &ModelInfo, shape: Shape, max_memory: u64, hint: &'static str) -> FitError {
    FitError::TooSmall {
        model: if info.name.is_empty() {
            "the model".into()
        } else {
            info.name.clone()
        },
        what: format!(
            "a context of {} tokens, a {} KV cache and a batch of {}",
            shape.n_ctx,
            shape.kv_type.name(),
            shape.n_batch
        ),
        needed: footprint(info, shape).total(),
        max_memory,
        hint,
    }
}

/// The default budget: half the machine's memory, which leaves the other half
/// to the rest of a laptop's work.
pub fn default_max_memory(total_memory: u64) -> u64 {
    total_memory / 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::info_15b;

    const GB: u64 = 1_000_000_000;

    #[test]
    fn the_15b_footprint_matches_what_llama_cpp_allocates() {
        let i = info_15b();
        let f = footprint(
            &i,
            Shape {
                n_ctx: 8192,
                kv_type: KvType::F16,
                n_batch: 512,
            },
        );
        // llama.cpp: KV 224.00 MiB, compute 75.52 MiB at this shape.
        assert_eq!(f.kv_cache, 224 * MIB);
        assert!(f.compute.abs_diff(7552 * MIB / 100) < MIB, "{f:?}");
        let f = footprint(
            &i,
            Shape {
                n_ctx: 2048,
                kv_type: KvType::Q8_0,
                n_batch: 128,
            },
        );
        // llama.cpp: compute 17.46 MiB.
        assert!(f.compute.abs_diff(1746 * MIB / 100) < MIB, "{f:?}");
    }

    #[test]
    fn a_plan_fits_its_budget_and_prefers_context_then_f16_then_big_batches() {
        let i = info_15b();
        let roomy = plan(
            &i,
            Wanted {
                max_memory: 12 * GB,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            roomy.shape,
            Shape {
                n_ctx: 32768,
                kv_type: KvType::F16,
                n_batch: 512
            }
        );
        assert!(!roomy.constrained);
        for budget in [1_200_000_000, 1_500_000_000, 2 * GB] {
            let p = plan(
                &i,
                Wanted {
                    max_memory: budget,
                    ..Default::default()
                },
            )
            .unwrap();
            assert!(p.footprint.total() <= budget, "{budget}: {p:?}");
            assert!(p.constrained);
            assert!(
                p.shape.n_ctx >= 1024 && p.shape.n_ctx.is_multiple_of(256),
                "{p:?}"
            );
        }
        let laptop = plan(
            &i,
            Wanted {
                max_memory: 1_400_000_000,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(laptop.shape.n_ctx >= 8192, "{laptop:?}");
        assert!(plan(
            &i,
            Wanted {
                max_memory: GB,
                ..Default::default()
            }
        )
        .is_err());
    }

    #[test]
    fn a_set_context_is_kept_and_the_rest_gives_way() {
        let i = info_15b();
        let p = plan(
            &i,
            Wanted {
                n_ctx: Some(8192),
                max_memory: 1_200_000_000,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(p.shape.n_ctx, 8192);
        assert_eq!(p.shape.kv_type, KvType::Q8_0);
        assert!(p.shape.n_batch < 512 && p.constrained, "{p:?}");
        // A batch the user set is kept too.
        let p = plan(
            &i,
            Wanted {
                n_ctx: Some(8192),
                n_batch: Some(512),
                max_memory: 1_300_000_000,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!((p.shape.kv_type, p.shape.n_batch), (KvType::Q8_0, 512));
        assert!(plan(
            &i,
            Wanted {
                n_ctx: Some(8192),
                n_batch: Some(512),
                max_memory: 1_200_000_000,
                ..Default::default()
            },
        )
        .is_err());
        let err = plan(
            &i,
            Wanted {
                n_ctx: Some(8192),
                kv_type: Some(KvType::F16),
                max_memory: GB,
                ..Default::default()
            },
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("needs") && msg.contains("smaller --ctx"),
            "{msg}"
        );
        let FitError::TooSmall { needed, .. } = err;
        // The size it names is enough.
        let p = plan(
            &i,
            Wanted {
                n_ctx: Some(8192),
                kv_type: Some(KvType::F16),
                max_memory: needed,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(p.footprint.total() <= needed);
    }

    #[test]
    fn a_budget_below_the_weights_is_a_clear_error() {
        let err = plan(
            &info_15b(),
            Wanted {
                max_memory: 500 * MIB,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("allow"), "{err}");
    }

    #[test]
    fn gpu_layers_for_the_15b_in_2_4_8_and_80_gb() {
        let i = info_15b();
        let shape = |n_ctx| Shape {
            n_ctx,
            kv_type: KvType::F16,
            n_batch: 512,
        };
        let fit = |gib: u64, n_ctx| gpu_layers_that_fit(&i, gib << 30, shape(n_ctx));
        // Everything (28 layers and the output layer) from 2 GiB at 4k;
        // at 32k the KV cache (896 MiB) needs 4 GiB for all of it.
        for (gib, n_ctx) in [
            (2, 4096),
            (4, 4096),
            (8, 4096),
            (80, 4096),
            (4, 32768),
            (8, 32768),
            (80, 32768),
        ] {
            let f = fit(gib, n_ctx);
            assert_eq!((f.layers, f.all), (29, 29), "{gib} GiB at {n_ctx}: {f:?}");
            assert!(f.vram <= gib << 30, "{gib} GiB at {n_ctx}: {f:?}");
        }
        // 2 GiB at 32k: most layers, not the output layer.
        let f = fit(2, 32768);
        assert!((16..28).contains(&f.layers), "{f:?}");
        assert!(f.vram <= 2 << 30, "{f:?}");
        // One layer more would not fit.
        let per_layer =
            (f.vram - GPU_HEADROOM - footprint(&i, shape(32768)).compute) / u64::from(f.layers);
        assert!(f.vram + per_layer > 2 << 30, "{f:?}");
        // Less VRAM, fewer layers; none below the headroom.
        let layers: Vec<u32> = [400 << 20, 1 << 30, 3 << 29, 2 << 30, 3 << 30]
            .iter()
            .map(|&b| gpu_layers_that_fit(&i, b, shape(32768)).layers)
            .collect();
        assert!(layers.windows(2).all(|w| w[0] <= w[1]), "{layers:?}");
        assert_eq!(layers[0], 0);
        // A q8_0 KV cache fits more of them.
        let q8 = gpu_layers_that_fit(
            &i,
            2 << 30,
            Shape {
                kv_type: KvType::Q8_0,
                ..shape(32768)
            },
        );
        assert!(q8.layers > f.layers, "{q8:?} vs {f:?}");
    }
}
