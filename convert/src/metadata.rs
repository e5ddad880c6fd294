//! The GGUF key/value metadata of a converted O1 model: llama.cpp's Qwen2
//! keys, the vocabulary, a chat template for stock llama.cpp tools, and
//! o1's own keys (`o1.*`, named in [`o1_gguf::keys`]) that the runtime reads.

use o1_gguf::format::Value;
use o1_gguf::ggml::OutputType;
use o1_gguf::keys::{
    GENERATION_PREFIX, KEY_FORMAT, KEY_REASONING_TOKEN_ID, KEY_SOURCE, O1_FORMAT_VERSION,
};

use crate::config::{GenerationConfig, ModelConfig};
use crate::vocab::Vocab;

/// Everything the metadata is built from.
pub struct ModelMeta<'a> {
    pub name: &'a str,
    pub source: &'a str,
    pub config: &'a ModelConfig,
    pub generation: &'a GenerationConfig,
    pub vocab: &'a Vocab,
    pub out_type: OutputType,
}

pub fn build(m: &ModelMeta) -> Vec<(String, Value)> {
    let c = m.config;
    let v = m.vocab;
    let mut kv: Vec<(String, Value)> = Vec::new();
    let mut put = |k: &str, val: Value| kv.push((k.to_string(), val));
    let u32_of = |n: usize| Value::U32(n as u32);

    put("general.architecture", Value::String("qwen2".into()));
    put("general.name", Value::String(m.name.into()));
    put("general.file_type", Value::U32(m.out_type.ftype()));
    put("general.quantization_version", Value::U32(2));
    put("qwen2.block_count", u32_of(c.num_hidden_layers));
    put("qwen2.context_length", u32_of(c.max_position_embeddings));
    put("qwen2.embedding_length", u32_of(c.hidden_size));
    put("qwen2.feed_forward_length", u32_of(c.intermediate_size));
    put("qwen2.attention.head_count", u32_of(c.num_attention_heads));
    put("qwen2.attention.head_count_kv", u32_of(c.n_kv_heads()));
    if c.head_dim.is_some() {
        put("qwen2.attention.key_length", u32_of(c.head_dim()));
        put("qwen2.attention.value_length", u32_of(c.head_dim()));
    }
    put("qwen2.rope.freq_base", Value::F32(c.rope_theta as f32));
    put(
        "qwen2.attention.layer_norm_rms_epsilon",
        Value::F32(c.rms_norm_eps as f32),
    );
    if let Some(s) = &c.rope_scaling {
        put("qwen2.rope.scaling.type", Value::String(s.kind.clone()));
        put("qwen2.rope.scaling.factor", Value::F32(s.factor as f32));
        if let Some(orig) = s.original_max_position_embeddings {
            put("qwen2.rope.scaling.original_context_length", u32_of(orig));
        }
    }

    put("tokenizer.ggml.model", Value::String("gpt2".into()));
    put("tokenizer.ggml.pre", Value::String("qwen2".into()));
    put(
        "tokenizer.ggml.tokens",
        Value::strings(v.tokens.iter().cloned()),
    );
    put(
        "tokenizer.ggml.token_type",
        Value::i32s(v.token_types.iter().copied()),
    );
    put(
        "tokenizer.ggml.merges",
        Value::strings(v.merges.iter().cloned()),
    );
    for (key, id) in [
        ("tokenizer.ggml.bos_token_id", v.bos_id),
        ("tokenizer.ggml.eos_token_id", v.eos_id),
        ("tokenizer.ggml.padding_token_id", v.pad_id),
    ] {
        if let Some(id) = id {
            put(key, Value::U32(id));
        }
    }
    put("tokenizer.ggml.add_bos_token", Value::Bool(v.add_bos));
    put(
        "tokenizer.chat_template",
        Value::String(o1_gguf::prompt::chat_template()),
    );

    put(KEY_FORMAT, Value::U32(O1_FORMAT_VERSION));
    put(KEY_REASONING_TOKEN_ID, Value::U32(v.reasoning_id));
    put(KEY_SOURCE, Value::String(m.source.into()));
    let g = m.generation;
    let gen = |k: &str| format!("{GENERATION_PREFIX}{k}");
    if let Some(x) = g.do_sample {
        put(&gen("do_sample"), Value::Bool(x));
    }
    for (k, x) in [
        ("temperature", g.temperature),
        ("top_p", g.top_p),
        ("min_p", g.min_p),
        ("repetition_penalty", g.repetition_penalty),
    ] {
        if let Some(x) = x {
            put(&gen(k), Value::F32(x as f32));
        }
    }
    for (k, x) in [("top_k", g.top_k), ("max_new_tokens", g.max_new_tokens)] {
        if let Some(x) = x {
            put(&gen(k), Value::U32(x));
        }
    }
    kv
}
