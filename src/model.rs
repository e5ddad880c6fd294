//! What a GGUF file holds, read from its header without loading it: the
//! checks that give clear errors before llama.cpp sees the file, the
//! figures `o1 info` prints, and the memory a context needs.

use std::collections::BTreeMap;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use o1_gguf::format::{GgufFile, Value};
use o1_gguf::ggml::OutputType;
use o1_gguf::keys::{
    GENERATION_PREFIX, KEY_REASONING_TOKEN_ID, KEY_SOURCE, OUTPUT_TENSOR, REASONING_TOKEN,
    TOKEN_EMBD_TENSOR,
};

/// Why a model file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{}: no such model file (o1 ls lists the stored models)", .0.display())]
    NotFound(PathBuf),
    #[error(
        "{0:?} is not a stored model's name: a name is a plain file name as `o1 ls` lists it, \
         with no folder in it"
    )]
    NotAStoreName(String),
    #[error(
        "no model yet: {name} is not in the model store ({}); run `o1 pull {repo}` and \
         `o1 convert {repo}`, or pass a .gguf file", store.display()
    )]
    NoDefaultModel {
        name: String,
        repo: String,
        store: PathBuf,
    },
    #[error("{}: {error}", path.display())]
    Unreadable {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: not a GGUF model file ({reason})", path.display())]
    NotGguf { path: PathBuf, reason: String },
    #[error("{}: a {arch} model; o1 runs Qwen2.5-O1 models (architecture qwen2)", path.display())]
    WrongArchitecture { path: PathBuf, arch: String },
    #[error("{}: this model has no <|reasoning|> token; convert it with o1 convert", .0.display())]
    NoReasoningToken(PathBuf),
    #[error("{}: llama.cpp cannot load it: {detail}", path.display())]
    LoadFailed { path: PathBuf, detail: String },
}

/// The generation defaults a checkpoint ships (`o1.generation.*`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GenerationDefaults {
    pub do_sample: Option<bool>,
    pub temperature: Option<f32>,
    pub top_k: Option<u32>,
    pub top_p: Option<f32>,
    pub min_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
}

#[derive(Clone, Debug)]
pub struct ModelInfo {
    pub path: PathBuf,
    pub name: String,
    pub architecture: String,
    /// `q4_k_m`, `bf16`, … or `ftype N` for types o1 does not write.
    pub file_type: String,
    pub file_bytes: u64,
    pub n_params: u64,
    pub n_layer: u32,
    pub n_embd: u32,
    pub n_head: u32,
    pub n_head_kv: u32,
    pub head_dim: u32,
    pub n_ctx_train: u32,
    pub n_vocab: u32,
    pub reasoning_token_id: Option<u32>,
    /// Where the checkpoint came from (`o1.source`).
    pub source: Option<String>,
    /// The importance matrix the file was quantized with: its dataset, or
    /// its file when the dataset is not named.
    pub calibration: Option<String>,
    pub generation: GenerationDefaults,
    /// Tensors per ggml type.
    pub tensor_types: BTreeMap<String, usize>,
    /// The feed-forward width (the compute buffer grows with it).
    pub n_ff: u32,
    pub weights: WeightBytes,
    /// Where in the file the weights every token reads from the mapping lie.
    pub read_every_token: Vec<Range<u64>>,
}

/// The weights' bytes, by how llama.cpp holds them on the CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WeightBytes {
    /// Every tensor.
    pub total: u64,
    /// The token embedding (a turn reads only its tokens' rows, unless it is
    /// also the output matrix).
    pub embedding: u64,
    /// Whether the embedding is also the output matrix (no `output.weight`).
    pub tied_embeddings: bool,
    /// The output matrix (`output.weight`; the embedding when tied).
    pub output: u64,
    /// The tensors llama.cpp's CPU backend repacks into a buffer of its own
    /// (on x86 with AVX2: q4_0, q4_K and iq4_nl matrices of whole 8-row
    /// groups, but the embedding).
    pub repacked: u64,
}

/// Whether llama.cpp's CPU backend repacks this tensor into a buffer of its
/// own (on x86 with AVX2: q4_0, q4_K and iq4_nl matrices of whole 8-row
/// groups, but the embedding, which is looked up by row).
fn is_repacked(t: &o1_gguf::format::TensorInfo) -> bool {
    use o1_gguf::ggml::GgmlType;
    t.name != TOKEN_EMBD_TENSOR
        && [GgmlType::Q4_0, GgmlType::Q4_K, GgmlType::IQ4_NL].contains(&t.ty)
        && t.dims.len() == 2
        && t.dims[1].is_multiple_of(8)
}

impl WeightBytes {
    fn of<'t>(tensors: impl Iterator<Item = &'t o1_gguf::format::TensorInfo> + Clone) -> Self {
        let mut w = WeightBytes {
            tied_embeddings: !tensors.clone().any(|t| t.name == OUTPUT_TENSOR),
            ..Default::default()
        };
        for t in tensors {
            let bytes = t.n_bytes();
            w.total += bytes;
            if t.name == TOKEN_EMBD_TENSOR {
                w.embedding = bytes;
            } else if t.name == OUTPUT_TENSOR {
                w.output = bytes;
            }
            if is_repacked(t) {
                w.repacked += bytes;
            }
        }
        if w.tied_embeddings {
            w.output = w.embedding;
        }
        w
    }
}

/// The byte ranges of the file every token reads from the mapping: the
/// tensors that are not repacked, and the embedding when it is also the
/// output matrix. Adjacent ranges are merged.
fn read_every_token<'t>(
    tensors: impl Iterator<Item = (&'t o1_gguf::format::TensorInfo, Range<u64>)>,
    tied_embeddings: bool,
) -> Vec<Range<u64>> {
    let mut ranges: Vec<Range<u64>> = tensors
        .filter(|(t, _)| !is_repacked(t) && (t.name != TOKEN_EMBD_TENSOR || tied_embeddings))
        .map(|(_, r)| r)
        .collect();
    ranges.sort_by_key(|r| r.start);
    let mut merged: Vec<Range<u64>> = Vec::new();
    for r in ranges {
        match merged.last_mut() {
            // Tensors are aligned to 32 bytes: gaps below that are padding.
            Some(last) if r.start <= last.end + 32 => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    merged
}

impl ModelInfo {
    /// Reads the header of `path`, checking it is a usable O1 model.
    pub fn read(path: &Path) -> Result<Self, ModelError> {
        if !path.exists() {
            return Err(ModelError::NotFound(path.to_path_buf()));
        }
        let file = File::open(path).map_err(|e| ModelError::Unreadable {
            path: path.to_path_buf(),
            error: e,
        })?;
        let file_bytes = file
            .metadata()
            .map_err(|e| ModelError::Unreadable {
                path: path.to_path_buf(),
                error: e,
            })?
            .len();
        // SAFETY: read-only map of a model file nobody modifies while o1 reads it.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| ModelError::Unreadable {
            path: path.to_path_buf(),
            error: e,
        })?;
        let gguf = GgufFile::parse(&map).map_err(|e| ModelError::NotGguf {
            path: path.to_path_buf(),
            reason: e.0,
        })?;
        Self::from_gguf(path, &gguf, file_bytes)
    }

    fn from_gguf(path: &Path, g: &GgufFile, file_bytes: u64) -> Result<Self, ModelError> {
        let architecture = g
            .get("general.architecture")
            .and_then(Value::as_str)
            .unwrap_or("(none)")
            .to_string();
        if architecture != "qwen2" {
            return Err(ModelError::WrongArchitecture {
                path: path.to_path_buf(),
                arch: architecture,
            });
        }
        let missing = |k: &str| ModelError::NotGguf {
            path: path.to_path_buf(),
            reason: format!("metadata key {k} is missing"),
        };
        // Every size o1 computes from (memory, layers to offload) is checked
        // here, against bounds far above any released model: a hostile file
        // must not reach a division by zero or an overflow later.
        let bounded = |k: &str, v: u64, max: u64| -> Result<u32, ModelError> {
            if (1..=max).contains(&v) {
                Ok(v as u32)
            } else {
                Err(ModelError::NotGguf {
                    path: path.to_path_buf(),
                    reason: format!("{k} is {v}: must be from 1 to {max}"),
                })
            }
        };
        let u32_key = |k: &str, max: u64| -> Result<u32, ModelError> {
            let v = g.get(k).and_then(Value::as_u64).ok_or_else(|| missing(k))?;
            bounded(k, v, max)
        };
        let n_layer = u32_key("qwen2.block_count", 1024)?;
        let n_embd = u32_key("qwen2.embedding_length", 65536)?;
        let n_head = u32_key("qwen2.attention.head_count", 1024)?;
        let n_head_kv = match g
            .get("qwen2.attention.head_count_kv")
            .and_then(Value::as_u64)
        {
            Some(v) => bounded("qwen2.attention.head_count_kv", v, u64::from(n_head))?,
            None => n_head,
        };
        let head_dim = match g.get("qwen2.attention.key_length").and_then(Value::as_u64) {
            Some(v) => bounded("qwen2.attention.key_length", v, 1024)?,
            None => bounded(
                "qwen2.embedding_length / head_count",
                u64::from(n_embd / n_head),
                1024,
            )?,
        };
        let tokens = g
            .get("tokenizer.ggml.tokens")
            .and_then(Value::as_array)
            .ok_or_else(|| missing("tokenizer.ggml.tokens"))?;
        let reasoning_token_id = g
            .get(KEY_REASONING_TOKEN_ID)
            .and_then(Value::as_u64)
            .map(|v| v as u32)
            .or_else(|| {
                tokens
                    .iter()
                    .position(|t| t.as_str() == Some(REASONING_TOKEN))
                    .map(|i| i as u32)
            });
        let Some(reasoning_token_id) = reasoning_token_id else {
            return Err(ModelError::NoReasoningToken(path.to_path_buf()));
        };
        let gen_f32 = |k: &str| {
            g.get(&format!("{GENERATION_PREFIX}{k}"))
                .and_then(Value::as_f64)
                .map(|v| v as f32)
        };
        let generation = GenerationDefaults {
            do_sample: g
                .get(&format!("{GENERATION_PREFIX}do_sample"))
                .and_then(Value::as_bool),
            temperature: gen_f32("temperature"),
            top_k: g
                .get(&format!("{GENERATION_PREFIX}top_k"))
                .and_then(Value::as_u64)
                .map(|v| v as u32),
            top_p: gen_f32("top_p"),
            min_p: gen_f32("min_p"),
            repetition_penalty: gen_f32("repetition_penalty"),
        };
        let ftype = g.get("general.file_type").and_then(Value::as_u64);
        let file_type = ftype
            .and_then(|f| {
                OutputType::ALL
                    .into_iter()
                    .find(|t| u64::from(t.ftype()) == f)
            })
            .map(|t| t.name().to_string())
            .unwrap_or_else(|| ftype.map_or("unknown".into(), |f| format!("ftype {f}")));
        let mut tensor_types = BTreeMap::new();
        for t in &g.tensors {
            *tensor_types.entry(t.ty.name().to_string()).or_insert(0) += 1;
        }
        Ok(Self {
            path: path.to_path_buf(),
            name: g
                .get("general.name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            architecture,
            file_type,
            file_bytes,
            n_params: g.tensors.iter().map(|t| t.n_elements()).sum(),
            n_layer,
            n_embd,
            n_head,
            n_head_kv,
            head_dim,
            n_ctx_train: u32_key("qwen2.context_length", 1 << 24)?,
            n_vocab: tokens.len() as u32,
            reasoning_token_id: Some(reasoning_token_id),
            source: g
                .get(KEY_SOURCE)
                .and_then(Value::as_str)
                .map(str::to_string),
            calibration: [
                o1_convert::imatrix::KEY_QUANTIZE_DATASET,
                o1_convert::imatrix::KEY_QUANTIZE_FILE,
            ]
            .iter()
            .find_map(|k| g.get(k).and_then(Value::as_str))
            .map(str::to_string),
            generation,
            tensor_types,
            n_ff: g
                .get("qwen2.feed_forward_length")
                .and_then(Value::as_u64)
                .map(|v| v as u32)
                .or_else(|| {
                    g.tensors
                        .iter()
                        .find(|t| t.name == "blk.0.ffn_up.weight")
                        .and_then(|t| t.dims.get(1))
                        .map(|&d| d as u32)
                })
                .unwrap_or(0),
            weights: WeightBytes::of(g.tensors.iter()),
            read_every_token: read_every_token(
                g.tensor_ranges(),
                !g.tensors.iter().any(|t| t.name == OUTPUT_TENSOR),
            ),
        })
    }

    /// KV cache bytes per token of context: keys and values, every layer.
    pub fn kv_bytes_per_token(&self, kv: KvType) -> u64 {
        let elements =
            2 * u64::from(self.n_layer) * u64::from(self.n_head_kv) * u64::from(self.head_dim);
        kv.bytes_for(elements)
    }
}

/// The KV cache element type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum KvType {
    #[default]
    F16,
    /// Half the memory of f16; needs flash attention (turned on with it).
    #[value(name = "q8_0")]
    Q8_0,
}

impl KvType {
    /// Bytes of `n` elements (`n` a multiple of 32).
    /// Bytes of `n` cache elements, as ggml lays them out.
    pub fn bytes_for(self, n: u64) -> u64 {
        self.ggml_type().row_bytes(n)
    }

    pub fn ggml_type(self) -> o1_gguf::ggml::GgmlType {
        match self {
            KvType::F16 => o1_gguf::ggml::GgmlType::F16,
            KvType::Q8_0 => o1_gguf::ggml::GgmlType::Q8_0,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            KvType::F16 => "f16",
            KvType::Q8_0 => "q8_0",
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The 1.5B q4_k_m as o1 converts it, with llama.cpp's figures.
    pub(crate) fn info_15b() -> ModelInfo {
        ModelInfo {
            path: PathBuf::new(),
            name: String::new(),
            architecture: "qwen2".into(),
            file_type: "q4_k_m".into(),
            file_bytes: 0,
            n_params: 0,
            n_layer: 28,
            n_embd: 1536,
            n_head: 12,
            n_head_kv: 2,
            head_dim: 128,
            n_ctx_train: 32768,
            n_vocab: 151666,
            reasoning_token_id: Some(151665),
            source: None,
            calibration: None,
            generation: GenerationDefaults::default(),
            tensor_types: BTreeMap::new(),
            n_ff: 8960,
            weights: WeightBytes {
                total: 1_103_058_944,
                embedding: 131_035_424,
                tied_embeddings: false,
                // 151,666 × 1536 at q6_K.
                output: 191_099_160,
                repacked: 625_504_256,
            },
            read_every_token: Vec::new(),
        }
    }

    #[test]
    fn kv_bytes_of_the_15b_model() {
        let i = info_15b();
        // 2 (K and V) × 28 layers × 2 heads × 128 × 2 bytes.
        assert_eq!(i.kv_bytes_per_token(KvType::F16), 28672);
        assert_eq!(i.kv_bytes_per_token(KvType::Q8_0), 28672 / 2 / 32 * 34);
    }
}
