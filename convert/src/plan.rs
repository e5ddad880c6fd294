//! Which GGUF tensors a Qwen2 checkpoint becomes, in which order, with which
//! shapes and ggml types.
//!
//! The per-tensor type choice is llama.cpp's (`llama_tensor_get_type` in
//! `llama-quant.cpp`) restricted to what a Qwen2 model can meet: the Q4_K_M
//! and Q5_K_M mixes, the output/tied-embedding rule, and the fallbacks for
//! rows that are not a multiple of a type's block size. The single-pass
//! converter must choose exactly what `llama_model_quantize` would; the
//! tests compare the two on every output type.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::path::Path;

use o1_gguf::format::TensorInfo;
use o1_gguf::ggml::{GgmlType, OutputType};
use o1_gguf::keys::{OUTPUT_TENSOR as OUTPUT, TOKEN_EMBD_TENSOR as TOKEN_EMBD};

use crate::config::ModelConfig;
use crate::error::{ConvertError, Result};
use crate::safetensors::{SourceTensor, Weights};

/// One output tensor and where its data comes from.
#[derive(Clone, Debug)]
pub struct PlannedTensor {
    pub info: TensorInfo,
    pub source: SourceTensor,
    /// The importance of each column, when quantizing with a matrix.
    pub importance: Option<std::sync::Arc<[f32]>>,
}

/// A tensor dimension, in terms of config.json.
#[derive(Clone, Copy)]
enum Dim {
    Vocab,
    Hidden,
    /// Query heads × head size.
    Q,
    /// Key/value heads × head size.
    Kv,
    Ffn,
}

/// One Qwen2 tensor: its Hugging Face name, its GGUF name and its torch
/// shape. Layer tensors' names are relative to `model.layers.{i}.` and
/// `blk.{i}.`.
struct Qwen2Tensor {
    hf: &'static str,
    gguf: &'static str,
    shape: &'static [Dim],
}

const fn tensor(hf: &'static str, gguf: &'static str, shape: &'static [Dim]) -> Qwen2Tensor {
    Qwen2Tensor { hf, gguf, shape }
}

/// The tensors outside the layers; the output head is absent from tied
/// checkpoints.
#[rustfmt::skip]
const GLOBAL_TENSORS: [Qwen2Tensor; 3] = [
    tensor("model.embed_tokens.weight", TOKEN_EMBD,           &[Dim::Vocab, Dim::Hidden]),
    tensor("model.norm.weight",         "output_norm.weight", &[Dim::Hidden]),
    tensor("lm_head.weight",            OUTPUT,               &[Dim::Vocab, Dim::Hidden]),
];

/// The tensors of every layer.
#[rustfmt::skip]
const LAYER_TENSORS: [Qwen2Tensor; 12] = [
    tensor("input_layernorm.weight",          "attn_norm.weight",   &[Dim::Hidden]),
    tensor("post_attention_layernorm.weight", "ffn_norm.weight",    &[Dim::Hidden]),
    tensor("self_attn.q_proj.weight",         "attn_q.weight",      &[Dim::Q, Dim::Hidden]),
    tensor("self_attn.q_proj.bias",           "attn_q.bias",        &[Dim::Q]),
    tensor("self_attn.k_proj.weight",         "attn_k.weight",      &[Dim::Kv, Dim::Hidden]),
    tensor("self_attn.k_proj.bias",           "attn_k.bias",        &[Dim::Kv]),
    tensor("self_attn.v_proj.weight",         "attn_v.weight",      &[Dim::Kv, Dim::Hidden]),
    tensor("self_attn.v_proj.bias",           "attn_v.bias",        &[Dim::Kv]),
    tensor("self_attn.o_proj.weight",         "attn_output.weight", &[Dim::Hidden, Dim::Q]),
    tensor("mlp.gate_proj.weight",            "ffn_gate.weight",    &[Dim::Ffn, Dim::Hidden]),
    tensor("mlp.up_proj.weight",              "ffn_up.weight",      &[Dim::Ffn, Dim::Hidden]),
    tensor("mlp.down_proj.weight",            "ffn_down.weight",    &[Dim::Hidden, Dim::Ffn]),
];

/// Maps a Hugging Face tensor name to its GGUF name. `Some(None)` means the
/// tensor is dropped on purpose, `None` that it is not a Qwen2 tensor.
fn gguf_name(hf: &str, tied: bool) -> Option<Option<String>> {
    if hf.ends_with(".rotary_emb.inv_freq") {
        return Some(None);
    }
    if let Some(t) = GLOBAL_TENSORS.iter().find(|t| t.hf == hf) {
        // Tied checkpoints sometimes still carry the (identical) head.
        let dropped = tied && t.gguf == OUTPUT;
        return Some((!dropped).then(|| t.gguf.to_string()));
    }
    let (layer, part) = hf.strip_prefix("model.layers.")?.split_once('.')?;
    let layer = layer_number(layer)?;
    let t = LAYER_TENSORS.iter().find(|t| t.hf == part)?;
    Some(Some(format!("blk.{layer}.{}", t.gguf)))
}

/// A layer number as `save_pretrained` writes it: `7`, never `07` or `+7`,
/// which would name the same GGUF tensor twice.
fn layer_number(text: &str) -> Option<usize> {
    text.parse().ok().filter(|n: &usize| n.to_string() == text)
}

/// The table entry of a GGUF name, with the layer for a layer tensor.
fn by_gguf_name(gguf: &str) -> Option<(&'static Qwen2Tensor, Option<&str>)> {
    if let Some(t) = GLOBAL_TENSORS.iter().find(|t| t.gguf == gguf) {
        return Some((t, None));
    }
    let (layer, part) = gguf.strip_prefix("blk.")?.split_once('.')?;
    let t = LAYER_TENSORS.iter().find(|t| t.gguf == part)?;
    Some((t, Some(layer)))
}

/// The torch shape config.json implies for a GGUF tensor name.
fn expected_shape(config: &ModelConfig, gguf: &str) -> Option<Vec<usize>> {
    let (t, layer) = by_gguf_name(gguf)?;
    if let Some(layer) = layer {
        if layer.parse::<usize>().ok()? >= config.num_hidden_layers {
            return None;
        }
    }
    let size = |d: &Dim| match d {
        Dim::Vocab => config.vocab_size,
        Dim::Hidden => config.hidden_size,
        Dim::Q => config.q_dim(),
        Dim::Kv => config.kv_dim(),
        Dim::Ffn => config.intermediate_size,
    };
    Some(t.shape.iter().map(size).collect())
}

/// The GGUF names every Qwen2 checkpoint must provide.
fn required_names(config: &ModelConfig) -> Vec<String> {
    let global = GLOBAL_TENSORS
        .iter()
        .filter(|t| !(config.tie_word_embeddings && t.gguf == OUTPUT))
        .map(|t| t.gguf.to_string());
    let layers = (0..config.num_hidden_layers).flat_map(|l| {
        LAYER_TENSORS
            .iter()
            .map(move |t| format!("blk.{l}.{}", t.gguf))
    });
    global.chain(layers).collect()
}

/// llama.cpp's loader order: tensors outside blocks first, then by layer
/// number, then by name. `llama_model_quantize` walks tensors in this order
/// and its per-layer counters depend on it.
fn loader_order(a: &str, b: &str) -> Ordering {
    let layer = |n: &str| -> i64 {
        n.strip_prefix("blk.")
            .and_then(|r| r.split('.').next())
            .and_then(|l| l.parse().ok())
            .unwrap_or(-1)
    };
    layer(a).cmp(&layer(b)).then_with(|| a.cmp(b))
}

/// Checks config.json against the weights: the vocabulary and layer count
/// by name first (both size what is built next), then every tensor's shape.
/// Nothing is allocated from config.json before this passes.
pub fn check(config: &ModelConfig, config_path: &Path, weights: &Weights) -> Result<()> {
    let bad = |field: &str, problem: String| ConvertError::BadField {
        path: config_path.to_path_buf(),
        field: field.to_string(),
        problem,
    };
    let embed = GLOBAL_TENSORS[0].hf;
    if let Some(&[rows, cols]) = weights.get(embed).map(|t| &t.shape[..]) {
        if rows != config.vocab_size {
            return Err(bad(
                "vocab_size",
                format!("is {} but {embed} has {rows} rows", config.vocab_size),
            ));
        }
        if cols != config.hidden_size {
            return Err(bad(
                "hidden_size",
                format!("is {} but {embed} has {cols} columns", config.hidden_size),
            ));
        }
    }
    let layers: BTreeSet<usize> = weights
        .tensors()
        .filter_map(|t| t.name.strip_prefix("model.layers.")?.split_once('.'))
        .filter_map(|(layer, _)| layer_number(layer))
        .collect();
    if layers.len() != config.num_hidden_layers {
        return Err(bad(
            "num_hidden_layers",
            format!(
                "is {} but the weights hold {} layers",
                config.num_hidden_layers,
                layers.len()
            ),
        ));
    }
    shaped(config, weights).map(|_| ())
}

/// Builds the output tensor list for `weights`, checking every shape.
/// `calibrated`: an importance matrix will steer the rounding, which
/// changes a few of llama.cpp's choices (as `llama-quantize --imatrix`).
pub fn plan(
    config: &ModelConfig,
    weights: &Weights,
    out_type: OutputType,
    calibrated: bool,
) -> Result<Vec<PlannedTensor>> {
    let mut planned = shaped(config, weights)?;
    planned.sort_by(|a, b| loader_order(&a.info.name, &b.info.name));
    let chooser = TypeChooser {
        out_type,
        n_layer: config.num_hidden_layers,
        n_gqa: config.num_attention_heads / config.n_kv_heads(),
        tied: !planned.iter().any(|p| p.info.name == OUTPUT),
        calibrated,
    };
    chooser.assign(&mut planned);
    Ok(planned)
}

/// The output tensors of `weights` (all F32 for now), each shape checked
/// against config.json, every required tensor present.
fn shaped(config: &ModelConfig, weights: &Weights) -> Result<Vec<PlannedTensor>> {
    let tied = config.tie_word_embeddings;
    let mut planned = Vec::new();
    for src in weights.tensors() {
        let path = weights.shard_path(src).to_path_buf();
        let name = match gguf_name(&src.name, tied) {
            Some(Some(name)) => name,
            Some(None) => continue,
            None => {
                return Err(ConvertError::UnexpectedTensor {
                    path,
                    tensor: src.name.clone(),
                })
            }
        };
        let Some(expected) = expected_shape(config, &name) else {
            return Err(ConvertError::UnexpectedTensor {
                path,
                tensor: src.name.clone(),
            });
        };
        if src.shape != expected {
            return Err(ConvertError::ShapeMismatch {
                path,
                tensor: src.name.clone(),
                found: src.shape.clone(),
                expected,
            });
        }
        let dims = src.shape.iter().rev().map(|&d| d as u64).collect();
        planned.push(PlannedTensor {
            info: TensorInfo {
                name,
                dims,
                ty: GgmlType::F32,
            },
            source: src.clone(),
            importance: None,
        });
    }
    let present: BTreeSet<&str> = planned.iter().map(|p| p.info.name.as_str()).collect();
    for name in required_names(config) {
        if !present.contains(name.as_str()) {
            return Err(ConvertError::MissingTensor {
                tensor: hf_name(&name),
            });
        }
    }
    Ok(planned)
}

/// The HF name of a GGUF tensor name, for messages about missing tensors.
fn hf_name(gguf: &str) -> String {
    match by_gguf_name(gguf) {
        Some((t, None)) => t.hf.to_string(),
        Some((t, Some(layer))) => format!("model.layers.{layer}.{}", t.hf),
        None => gguf.to_string(),
    }
}

/// llama.cpp's per-tensor type choice for one output type.
struct TypeChooser {
    out_type: OutputType,
    n_layer: usize,
    /// Query heads per KV head (`n_gqa`).
    n_gqa: usize,
    tied: bool,
    calibrated: bool,
}

#[derive(PartialEq, Eq)]
enum Category {
    Output,
    TokenEmbd,
    AttnV,
    AttnOutput,
    FfnDown,
    Other,
}

fn category(name: &str) -> Category {
    if name == OUTPUT {
        Category::Output
    } else if name == TOKEN_EMBD {
        Category::TokenEmbd
    } else if name.contains("attn_v.weight") {
        Category::AttnV
    } else if name.contains("attn_output.weight") {
        Category::AttnOutput
    } else if name.contains("ffn_down") {
        Category::FfnDown
    } else {
        Category::Other
    }
}

/// llama.cpp's "more bits" layers: the first and last eighth, and every
/// third layer in between.
fn use_more_bits(i_layer: usize, n_layers: usize) -> bool {
    i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2
}

impl TypeChooser {
    /// Sets `info.ty` of every tensor; `planned` must be in loader order.
    fn assign(&self, planned: &mut [PlannedTensor]) {
        let n_attn_v = planned
            .iter()
            .filter(|p| category(&p.info.name) == Category::AttnV)
            .count();
        let (mut i_attn_v, mut i_ffn_down) = (0, 0);
        for p in planned {
            let info = &mut p.info;
            let quantizable = info.dims.len() >= 2
                && info.name.ends_with("weight")
                && !info.name.contains("_norm.weight");
            if !quantizable {
                info.ty = GgmlType::F32;
                continue;
            }
            let default = self.out_type.default_type();
            if !default.is_quantized() {
                info.ty = default;
                continue;
            }
            let cat = category(&info.name);
            let chosen = self.mix_type(default, &cat, info.dims[0], i_attn_v, n_attn_v, i_ffn_down);
            match cat {
                Category::AttnV => i_attn_v += 1,
                Category::FfnDown => i_ffn_down += 1,
                _ => {}
            }
            info.ty = fallback(chosen, info.dims[0]);
        }
    }

    /// `llama_tensor_get_type_impl` for the types o1 offers.
    fn mix_type(
        &self,
        default: GgmlType,
        cat: &Category,
        ne0: u64,
        i_attn_v: usize,
        n_attn_v: usize,
        i_ffn_down: usize,
    ) -> GgmlType {
        use OutputType::*;
        let ftype = self.out_type;
        let (q4, q5, q6) = (GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K);
        match cat {
            Category::Output => output_type(default, ne0),
            Category::TokenEmbd if self.tied => output_type(default, ne0),
            Category::AttnV => match ftype {
                Iq3M => q4,
                Q3KM if i_attn_v < 2 => q5,
                Q3KM => q4,
                Q3KL => q5,
                Iq4Xs if self.n_gqa >= 4 => q5,
                Q4KM | Q5KM if use_more_bits(i_attn_v, n_attn_v) => q6,
                Q4KS if i_attn_v < 4 => q5,
                _ => default,
            },
            Category::FfnDown => {
                let (i, n) = (i_ffn_down, self.n_layer);
                match ftype {
                    Q3KM if i < n / 16 => q5,
                    Q3KM => q4,
                    Iq3M if i < n / 8 => q4,
                    Q3KL => q5,
                    Q4KM | Q5KM if use_more_bits(i, n) => q6,
                    Iq4Xs if i < n / 8 && !self.calibrated => q5,
                    Q4KS if i < n / 8 => q5,
                    // llama.cpp's guard for the first layers, taken only with a matrix.
                    Q4_0 if i < n / 8 && self.calibrated => GgmlType::Q4_1,
                    _ => default,
                }
            }
            Category::AttnOutput => match ftype {
                Q3KM | Iq3M => q4,
                Q3KL => q5,
                _ => default,
            },
            _ => default,
        }
    }
}

/// The output head (or the tied embedding): Q6_K unless the file is Q8_0,
/// Q8_0 when its rows do not fit the default type's blocks.
fn output_type(default: GgmlType, ne0: u64) -> GgmlType {
    if !ne0.is_multiple_of(default.block_size()) {
        GgmlType::Q8_0
    } else if default != GgmlType::Q8_0 {
        GgmlType::Q6_K
    } else {
        default
    }
}

/// llama.cpp's `tensor_type_fallback`: a type whose block does not divide
/// the row length falls back to a 32-element-block type, then to F16.
fn fallback(ty: GgmlType, ncols: u64) -> GgmlType {
    if ncols.is_multiple_of(ty.block_size()) {
        return ty;
    }
    let to = match ty {
        GgmlType::IQ4_XS | GgmlType::IQ3_S => GgmlType::IQ4_NL,
        GgmlType::Q3_K => GgmlType::Q4_0,
        GgmlType::Q4_K => GgmlType::Q5_0,
        GgmlType::Q5_K => GgmlType::Q5_1,
        GgmlType::Q6_K => GgmlType::Q8_0,
        other => other,
    };
    if !ncols.is_multiple_of(to.block_size()) {
        GgmlType::F16
    } else {
        to
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loader_order_sorts_by_layer_number() {
        let mut names = vec![
            "blk.10.a",
            "blk.2.b",
            "token_embd.weight",
            "blk.2.a",
            "output.weight",
        ];
        names.sort_by(|a, b| loader_order(a, b));
        assert_eq!(
            names,
            [
                "output.weight",
                "token_embd.weight",
                "blk.2.a",
                "blk.2.b",
                "blk.10.a"
            ]
        );
    }

    #[test]
    fn more_bits_layers_of_a_28_layer_model() {
        let layers: Vec<usize> = (0..28).filter(|&i| use_more_bits(i, 28)).collect();
        assert_eq!(layers, [0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 24, 25, 26, 27]);
    }

    #[test]
    fn fallbacks_for_rows_that_do_not_fit_the_block() {
        assert_eq!(fallback(GgmlType::Q4_K, 896), GgmlType::Q5_0);
        assert_eq!(fallback(GgmlType::Q5_K, 896), GgmlType::Q5_1);
        assert_eq!(fallback(GgmlType::Q6_K, 896), GgmlType::Q8_0);
        assert_eq!(fallback(GgmlType::IQ4_XS, 896), GgmlType::IQ4_NL);
        assert_eq!(fallback(GgmlType::IQ3_S, 896), GgmlType::IQ4_NL);
        assert_eq!(fallback(GgmlType::Q3_K, 896), GgmlType::Q4_0);
        assert_eq!(fallback(GgmlType::Q4_K, 1536), GgmlType::Q4_K);
        assert_eq!(fallback(GgmlType::Q8_0, 40), GgmlType::F16);
        assert_eq!(output_type(GgmlType::Q4_K, 896), GgmlType::Q8_0);
        assert_eq!(output_type(GgmlType::Q4_0, 896), GgmlType::Q6_K);
        assert_eq!(output_type(GgmlType::Q8_0, 1536), GgmlType::Q8_0);
    }

    #[test]
    fn hf_names_map_both_ways() {
        for gguf in required_names(&test_config(false)) {
            let hf = hf_name(&gguf);
            assert_eq!(gguf_name(&hf, false), Some(Some(gguf.clone())), "{hf}");
        }
        assert_eq!(gguf_name("lm_head.weight", true), Some(None));
        assert_eq!(
            gguf_name("model.layers.0.self_attn.rotary_emb.inv_freq", false),
            Some(None)
        );
        assert_eq!(
            gguf_name("model.layers.0.mlp.experts.0.weight", false),
            None
        );
        // One layer, one spelling: `00` and `+0` would duplicate `blk.0`.
        for odd in ["00", "+0", "-0", " 0"] {
            let hf = format!("model.layers.{odd}.input_layernorm.weight");
            assert_eq!(gguf_name(&hf, false), None, "{hf}");
        }
    }

    fn test_config(tied: bool) -> ModelConfig {
        serde_json::from_value(serde_json::json!({
            "architectures": ["Qwen2ForCausalLM"], "vocab_size": 100, "hidden_size": 64,
            "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "tie_word_embeddings": tied
        }))
        .unwrap()
    }
}
