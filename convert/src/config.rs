//! The checkpoint's JSON files: `config.json`, `tokenizer_config.json` and
//! `generation_config.json`, read into the few fields a conversion needs.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::error::{ConvertError, Result};

/// Reads and parses a JSON file, naming the file in every error.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read(path).map_err(|source| ConvertError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&text).map_err(|source| ConvertError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// The largest `config.json` values o1 accepts: far above any released
/// model (the largest in parentheses), low enough that nothing sized from
/// them can overflow or exhaust memory before they are checked against the
/// tensors.
pub mod bounds {
    /// Vocabulary rows (Gemma 3: 262,144).
    pub const VOCAB: usize = 1 << 20;
    /// Hidden size (Llama 3.1 405B: 16,384).
    pub const HIDDEN: usize = 1 << 16;
    /// Feed-forward size (Llama 3.1 405B: 53,248).
    pub const FFN: usize = 1 << 20;
    /// Layers (Llama 3.1 405B: 126).
    pub const LAYERS: usize = 1024;
    /// Attention heads, query or key/value (Llama 3.1 405B: 128).
    pub const HEADS: usize = 1024;
    /// Size of one head (Gemma 2: 256).
    pub const HEAD_DIM: usize = 1024;
    /// Trained context (Llama 4 Scout: 10,485,760).
    pub const CONTEXT: usize = 1 << 24;
}

/// `config.json`: the model's shape.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelConfig {
    #[serde(default)]
    pub architectures: Vec<String>,
    #[serde(default)]
    pub model_type: Option<String>,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default)]
    pub head_dim: Option<usize>,
    #[serde(default = "default_context")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    #[serde(default)]
    pub rope_scaling: Option<RopeScaling>,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    #[serde(default)]
    pub eos_token_id: Option<OneOrMany>,
    #[serde(default)]
    pub hidden_act: Option<String>,
}

fn default_context() -> usize {
    32768
}
fn default_eps() -> f64 {
    1e-6
}
fn default_rope_theta() -> f64 {
    10000.0
}

#[derive(Debug, Clone, Deserialize)]
pub struct RopeScaling {
    #[serde(alias = "rope_type")]
    #[serde(rename = "type")]
    pub kind: String,
    pub factor: f64,
    #[serde(default)]
    pub original_max_position_embeddings: Option<usize>,
}

/// A token id given as one number or a list (`eos_token_id: [151643, 151645]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(u32),
    Many(Vec<u32>),
}

impl OneOrMany {
    pub fn first(&self) -> Option<u32> {
        match self {
            OneOrMany::One(id) => Some(*id),
            OneOrMany::Many(ids) => ids.first().copied(),
        }
    }

    pub fn all(&self) -> Vec<u32> {
        match self {
            OneOrMany::One(id) => vec![*id],
            OneOrMany::Many(ids) => ids.clone(),
        }
    }
}

impl ModelConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let config: Self = read_json(path)?;
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let is_qwen2 = self.architectures.iter().any(|a| a == "Qwen2ForCausalLM")
            || (self.architectures.is_empty() && self.model_type.as_deref() == Some("qwen2"));
        if !is_qwen2 {
            let found = if self.architectures.is_empty() {
                format!(
                    "model_type {:?}",
                    self.model_type.as_deref().unwrap_or("(none)")
                )
            } else {
                self.architectures.join(", ")
            };
            return Err(ConvertError::UnsupportedArchitecture {
                path: path.to_path_buf(),
                found,
            });
        }
        let bad = |field: &str, problem: String| ConvertError::BadField {
            path: path.to_path_buf(),
            field: field.to_string(),
            problem,
        };
        let in_bounds = |field: &str, value: usize, max: usize| {
            if value == 0 || value > max {
                Err(bad(
                    field,
                    format!("is {value}; expected a positive number at most {max}"),
                ))
            } else {
                Ok(())
            }
        };
        for (field, value, max) in [
            ("vocab_size", self.vocab_size, bounds::VOCAB),
            ("hidden_size", self.hidden_size, bounds::HIDDEN),
            ("intermediate_size", self.intermediate_size, bounds::FFN),
            ("num_hidden_layers", self.num_hidden_layers, bounds::LAYERS),
            (
                "num_attention_heads",
                self.num_attention_heads,
                bounds::HEADS,
            ),
            (
                "max_position_embeddings",
                self.max_position_embeddings,
                bounds::CONTEXT,
            ),
        ] {
            in_bounds(field, value, max)?;
        }
        if let Some(kv) = self.num_key_value_heads {
            in_bounds("num_key_value_heads", kv, bounds::HEADS)?;
        }
        match self.head_dim {
            Some(d) => in_bounds("head_dim", d, bounds::HEAD_DIM)?,
            None if !self.hidden_size.is_multiple_of(self.num_attention_heads) => {
                return Err(bad(
                    "hidden_size",
                    format!(
                        "({}) is not a multiple of num_attention_heads ({})",
                        self.hidden_size, self.num_attention_heads
                    ),
                ))
            }
            None => {}
        }
        let kv = self.n_kv_heads();
        if !self.num_attention_heads.is_multiple_of(kv) {
            return Err(bad(
                "num_key_value_heads",
                format!(
                    "({kv}) must divide num_attention_heads ({})",
                    self.num_attention_heads
                ),
            ));
        }
        if let Some(act) = &self.hidden_act {
            if act != "silu" {
                return Err(bad(
                    "hidden_act",
                    format!("is {act:?}; Qwen2 uses \"silu\""),
                ));
            }
        }
        // Stored as f32 in the GGUF: it must stay positive and finite there.
        let positive = |x: f64| (x as f32).is_finite() && (x as f32) > 0.0;
        for (field, value) in [
            ("rms_norm_eps", self.rms_norm_eps),
            ("rope_theta", self.rope_theta),
        ] {
            if !positive(value) {
                return Err(bad(
                    field,
                    format!("is {value:?}; expected a positive number within f32 range"),
                ));
            }
        }
        if let Some(s) = &self.rope_scaling {
            if !matches!(s.kind.as_str(), "linear" | "yarn") {
                return Err(bad(
                    "rope_scaling",
                    format!("type {:?} is not supported (linear or yarn are)", s.kind),
                ));
            }
            if !positive(s.factor) {
                return Err(bad(
                    "rope_scaling.factor",
                    format!(
                        "is {:?}; expected a positive number within f32 range",
                        s.factor
                    ),
                ));
            }
            if let Some(n) = s.original_max_position_embeddings {
                in_bounds(
                    "rope_scaling.original_max_position_embeddings",
                    n,
                    bounds::CONTEXT,
                )?;
            }
        }
        Ok(())
    }

    pub fn n_kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// Rows of the query projection: heads × head size. Saturates on a
    /// config that skipped validation, which then matches no tensor.
    pub fn q_dim(&self) -> usize {
        self.num_attention_heads.saturating_mul(self.head_dim())
    }

    /// Rows of the key and value projections.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads().saturating_mul(self.head_dim())
    }
}

/// A special token in `tokenizer_config.json`: a string or `{"content": ...}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum TokenRef {
    Text(String),
    Object { content: String },
}

impl TokenRef {
    pub fn content(&self) -> &str {
        match self {
            TokenRef::Text(s) => s,
            TokenRef::Object { content } => content,
        }
    }
}

/// `tokenizer_config.json`: special tokens and BOS behaviour.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TokenizerConfig {
    #[serde(default)]
    pub add_bos_token: Option<bool>,
    #[serde(default)]
    pub bos_token: Option<TokenRef>,
    #[serde(default)]
    pub eos_token: Option<TokenRef>,
    #[serde(default)]
    pub pad_token: Option<TokenRef>,
}

/// `generation_config.json`: the decoding defaults the checkpoint ships.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct GenerationConfig {
    #[serde(default)]
    pub do_sample: Option<bool>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_k: Option<u32>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub min_p: Option<f64>,
    #[serde(default)]
    pub repetition_penalty: Option<f64>,
    #[serde(default)]
    pub max_new_tokens: Option<u32>,
}

impl GenerationConfig {
    /// Loads `generation_config.json` if present; its values become the
    /// runtime's sampling defaults, so each must be one a sampler can use.
    pub fn load(path: PathBuf) -> Result<Self> {
        let config: Self = load_optional(path.clone())?;
        let in_range =
            |field: &str, value: Option<f64>, ok: fn(f64) -> bool, expected: &str| match value {
                Some(v) if !ok(v) || !(v as f32).is_finite() => Err(ConvertError::BadField {
                    path: path.clone(),
                    field: field.to_string(),
                    problem: format!("is {v:?}; expected {expected}"),
                }),
                _ => Ok(()),
            };
        let probability = |p: f64| (0.0..=1.0).contains(&p);
        in_range(
            "temperature",
            config.temperature,
            |t| t >= 0.0,
            "a finite number, 0 or more",
        )?;
        in_range("top_p", config.top_p, probability, "0 to 1")?;
        in_range("min_p", config.min_p, probability, "0 to 1")?;
        in_range(
            "repetition_penalty",
            config.repetition_penalty,
            |r| r > 0.0,
            "a finite positive number",
        )?;
        Ok(config)
    }
}

/// Loads an optional JSON file: absent gives the default.
pub fn load_optional<T: DeserializeOwned + Default>(path: PathBuf) -> Result<T> {
    if path.exists() {
        read_json(&path)
    } else {
        Ok(T::default())
    }
}
