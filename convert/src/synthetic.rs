//! Synthetic Qwen2 checkpoints with deterministic random weights, written
//! exactly as `save_pretrained` writes a real one: safetensors (one file or
//! shards with an index), `config.json`, `tokenizer.json` (a small
//! byte-level BPE trained here, with Qwen's special tokens and
//! `<|reasoning|>`), `tokenizer_config.json` and `generation_config.json`.
//!
//! Tests use the tiny preset so that they run anywhere without downloads;
//! the `0.5b` and `1.5b` presets have the real models' shapes for speed and
//! memory measurements on machines that cannot download anything.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use o1_gguf::keys::REASONING_TOKEN;
use serde_json::json;

use crate::safetensors::SourceDtype;

/// The shape and storage of a synthetic checkpoint.
#[derive(Clone, Debug)]
pub struct Spec {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub ffn: usize,
    /// Embedding rows; `None` uses exactly the tokenizer's size.
    pub vocab_size: Option<usize>,
    pub tie: bool,
    pub dtype: SourceDtype,
    pub shards: usize,
    pub context: usize,
    pub rope_theta: f64,
    pub eps: f64,
    pub seed: u64,
    /// BPE merges to learn for the tokenizer.
    pub merges: usize,
}

impl Spec {
    /// A model small enough for unit tests: 2 layers, hidden 64.
    pub fn tiny() -> Self {
        Spec {
            hidden: 64,
            layers: 2,
            heads: 4,
            kv_heads: 2,
            ffn: 96,
            vocab_size: None,
            tie: false,
            dtype: SourceDtype::Bf16,
            shards: 1,
            context: 4096,
            rope_theta: 1_000_000.0,
            eps: 1e-6,
            seed: 42,
            merges: 300,
        }
    }

    /// `tiny`, `0.5b` (Qwen2.5-0.5B's shape) or `1.5b` (Qwen2.5-1.5B-O1's).
    pub fn preset(name: &str) -> Option<Self> {
        let base = Self::tiny();
        Some(match name {
            "tiny" => base,
            "0.5b" => Spec {
                hidden: 896,
                layers: 24,
                heads: 14,
                kv_heads: 2,
                ffn: 4864,
                vocab_size: Some(151_666),
                context: 32768,
                ..base
            },
            "1.5b" => Spec {
                hidden: 1536,
                layers: 28,
                heads: 12,
                kv_heads: 2,
                ffn: 8960,
                vocab_size: Some(151_666),
                context: 32768,
                ..base
            },
            _ => return None,
        })
    }

    fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }
}

/// What was written.
#[derive(Debug)]
pub struct Written {
    pub vocab_size: usize,
    pub tokenizer_len: usize,
    pub reasoning_id: u32,
    pub tensors: usize,
    pub bytes: u64,
}

/// Special tokens in Qwen's order; `special: false` ones are USER_DEFINED.
const ADDED: &[(&str, bool)] = &[
    ("<|endoftext|>", true),
    ("<|im_start|>", true),
    ("<|im_end|>", true),
    ("<tool_call>", false),
    ("</tool_call>", false),
    ("<|fim_prefix|>", false),
    (REASONING_TOKEN, true),
];

const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Text the tokenizer's merges are learned from.
const CORPUS: &str =
    "The quick brown fox jumps over the lazy dog. A reasoning model thinks before it answers: \
first it writes its reasoning, then the answer. Let me think about the question step by step. \
The answer is the square of the number. def square(number):\n    return number * number\n\
fn main() { println!(\"hello world\"); } for i in range(10): print(i) \
You are a helpful assistant. What is the capital of France? The capital of France is Paris. \
Hello, how are you? I am fine, thank you. This is a test of the tokenizer and the model. \
Numbers like 12345 and 2026 appear in the text, and so do prices such as $4.99. \
The user asks a question and the assistant answers it with care and with a short explanation.";

/// Writes a synthetic checkpoint into `dir` (created if needed).
pub fn write(dir: &Path, spec: &Spec) -> io::Result<Written> {
    std::fs::create_dir_all(dir)?;
    let tok = Tokenizer::train(CORPUS, spec.merges);
    let tokenizer_len = tok.vocab.len() + ADDED.len();
    let vocab_size = spec.vocab_size.unwrap_or(tokenizer_len);
    if vocab_size < tokenizer_len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("vocab size {vocab_size} is below the tokenizer's {tokenizer_len} tokens"),
        ));
    }
    let id_of =
        |name: &str| (tok.vocab.len() + ADDED.iter().position(|(t, _)| *t == name).unwrap()) as u32;
    write_json(&dir.join("tokenizer.json"), &tok.to_json())?;
    write_json(
        &dir.join("config.json"),
        &json!({
            "architectures": ["Qwen2ForCausalLM"],
            "model_type": "qwen2",
            "hidden_act": "silu",
            "hidden_size": spec.hidden,
            "intermediate_size": spec.ffn,
            "num_hidden_layers": spec.layers,
            "num_attention_heads": spec.heads,
            "num_key_value_heads": spec.kv_heads,
            "max_position_embeddings": spec.context,
            "rms_norm_eps": spec.eps,
            "rope_theta": spec.rope_theta,
            "rope_scaling": null,
            "tie_word_embeddings": spec.tie,
            "vocab_size": vocab_size,
            "bos_token_id": id_of("<|endoftext|>"),
            "eos_token_id": id_of("<|endoftext|>"),
            "torch_dtype": match spec.dtype { SourceDtype::Bf16 => "bfloat16", SourceDtype::F16 => "float16", SourceDtype::F32 => "float32" },
        }),
    )?;
    let added_decoder: BTreeMap<String, serde_json::Value> = ADDED
        .iter()
        .map(|(t, special)| {
            (
                id_of(t).to_string(),
                json!({"content": t, "special": special}),
            )
        })
        .collect();
    write_json(
        &dir.join("tokenizer_config.json"),
        &json!({
            "add_bos_token": false,
            "bos_token": null,
            "eos_token": "<|endoftext|>",
            "pad_token": "<|endoftext|>",
            "added_tokens_decoder": added_decoder,
            "model_max_length": spec.context,
        }),
    )?;
    write_json(
        &dir.join("generation_config.json"),
        &json!({
            "bos_token_id": id_of("<|endoftext|>"),
            "eos_token_id": id_of("<|endoftext|>"),
            "do_sample": false,
            "max_new_tokens": 2048,
        }),
    )?;

    let tensors = tensor_shapes(spec, vocab_size);
    let bytes = write_weights(dir, spec, &tensors)?;
    Ok(Written {
        vocab_size,
        tokenizer_len,
        reasoning_id: id_of(REASONING_TOKEN),
        tensors: tensors.len(),
        bytes,
    })
}

fn write_json(path: &Path, value: &serde_json::Value) -> io::Result<()> {
    std::fs::write(path, serde_json::to_vec_pretty(value)?)
}

/// (name, torch shape, init scale) for every tensor.
fn tensor_shapes(spec: &Spec, vocab: usize) -> Vec<(String, Vec<usize>, Init)> {
    let (h, f) = (spec.hidden, spec.ffn);
    let q = spec.heads * spec.head_dim();
    let kv = spec.kv_heads * spec.head_dim();
    let lin = |fan_in: usize| Init::Uniform((3.0 / fan_in as f32).sqrt());
    let mut t = vec![
        (
            "model.embed_tokens.weight".to_string(),
            vec![vocab, h],
            Init::Uniform(1.0),
        ),
        ("model.norm.weight".to_string(), vec![h], Init::AroundOne),
    ];
    if !spec.tie {
        t.push((
            "lm_head.weight".into(),
            vec![vocab, h],
            Init::Uniform(4.0 * (3.0 / h as f32).sqrt()),
        ));
    }
    for l in 0..spec.layers {
        let p = |s: &str| format!("model.layers.{l}.{s}");
        t.extend([
            (p("input_layernorm.weight"), vec![h], Init::AroundOne),
            (
                p("post_attention_layernorm.weight"),
                vec![h],
                Init::AroundOne,
            ),
            (p("self_attn.q_proj.weight"), vec![q, h], lin(h)),
            (p("self_attn.q_proj.bias"), vec![q], Init::Uniform(0.1)),
            (p("self_attn.k_proj.weight"), vec![kv, h], lin(h)),
            (p("self_attn.k_proj.bias"), vec![kv], Init::Uniform(0.1)),
            (p("self_attn.v_proj.weight"), vec![kv, h], lin(h)),
            (p("self_attn.v_proj.bias"), vec![kv], Init::Uniform(0.1)),
            (p("self_attn.o_proj.weight"), vec![h, q], lin(q)),
            (p("mlp.gate_proj.weight"), vec![f, h], lin(h)),
            (p("mlp.up_proj.weight"), vec![f, h], lin(h)),
            (p("mlp.down_proj.weight"), vec![h, f], lin(f)),
        ]);
    }
    t.sort_by(|a, b| a.0.cmp(&b.0));
    t
}

#[derive(Clone, Copy)]
enum Init {
    /// Uniform in (-a, a).
    Uniform(f32),
    /// 1 ± 0.2, like trained norm weights.
    AroundOne,
}

/// SplitMix64: small, fast, and the same on every platform.
struct Rng(u64);

impl Rng {
    fn for_tensor(seed: u64, name: &str) -> Self {
        let mut h = seed ^ 0x9E37_79B9_7F4A_7C15;
        for b in name.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3);
        }
        Rng(h)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    fn symmetric(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

fn write_weights(
    dir: &Path,
    spec: &Spec,
    tensors: &[(String, Vec<usize>, Init)],
) -> io::Result<u64> {
    let elem = spec.dtype.size();
    let (dtype_name, shards) = (
        match spec.dtype {
            SourceDtype::Bf16 => "BF16",
            SourceDtype::F16 => "F16",
            SourceDtype::F32 => "F32",
        },
        spec.shards.max(1).min(tensors.len()),
    );
    let total: u64 = tensors
        .iter()
        .map(|(_, s, _)| (s.iter().product::<usize>() * elem) as u64)
        .sum();
    // Contiguous groups of roughly equal size, one per shard.
    let mut groups: Vec<Vec<usize>> = vec![Vec::new(); shards];
    let mut acc = 0u64;
    for (i, (_, shape, _)) in tensors.iter().enumerate() {
        let g = ((acc * shards as u64) / total.max(1)) as usize;
        groups[g.min(shards - 1)].push(i);
        acc += (shape.iter().product::<usize>() * elem) as u64;
    }
    groups.retain(|g| !g.is_empty());
    let n = groups.len();
    let mut weight_map = BTreeMap::new();
    for (s, group) in groups.iter().enumerate() {
        let file_name = if n == 1 {
            crate::safetensors::SINGLE_FILE.to_string()
        } else {
            format!("model-{:05}-of-{:05}.safetensors", s + 1, n)
        };
        let mut header = serde_json::Map::new();
        header.insert("__metadata__".into(), json!({"format": "pt"}));
        let mut offset = 0usize;
        for &i in group {
            let (name, shape, _) = &tensors[i];
            let len = shape.iter().product::<usize>() * elem;
            header.insert(name.clone(), json!({"dtype": dtype_name, "shape": shape, "data_offsets": [offset, offset + len]}));
            offset += len;
            weight_map.insert(name.clone(), file_name.clone());
        }
        let mut header = serde_json::to_vec(&header)?;
        header.resize(header.len().div_ceil(8) * 8, b' ');
        let mut out = BufWriter::new(File::create(dir.join(&file_name))?);
        out.write_all(&(header.len() as u64).to_le_bytes())?;
        out.write_all(&header)?;
        for &i in group {
            let (name, shape, init) = &tensors[i];
            let mut rng = Rng::for_tensor(spec.seed, name);
            let mut buf = Vec::with_capacity(64 << 10);
            for _ in 0..shape.iter().product::<usize>() {
                let v = match *init {
                    Init::Uniform(a) => a * rng.symmetric(),
                    Init::AroundOne => 1.0 + 0.2 * rng.symmetric(),
                };
                match spec.dtype {
                    SourceDtype::F32 => buf.extend_from_slice(&v.to_le_bytes()),
                    SourceDtype::F16 => {
                        buf.extend_from_slice(&half::f16::from_f32(v).to_le_bytes())
                    }
                    SourceDtype::Bf16 => {
                        buf.extend_from_slice(&half::bf16::from_f32(v).to_le_bytes())
                    }
                }
                if buf.len() >= 64 << 10 {
                    out.write_all(&buf)?;
                    buf.clear();
                }
            }
            out.write_all(&buf)?;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    }
    if n > 1 {
        write_json(
            &dir.join(crate::safetensors::INDEX_FILE),
            &json!({"metadata": {"total_size": total}, "weight_map": weight_map}),
        )?;
    }
    Ok(total)
}

/// A byte-level BPE tokenizer learned from a small corpus.
struct Tokenizer {
    /// Byte-level strings in id order: the 256 bytes, then one per merge.
    vocab: Vec<String>,
    merges: Vec<(String, String)>,
}

/// GPT-2's reversible map from bytes to printable characters.
fn byte_chars() -> Vec<char> {
    let printable =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut extra = 0;
    (0..256u32)
        .map(|b| {
            if printable(b) {
                char::from_u32(b).unwrap()
            } else {
                extra += 1;
                char::from_u32(255 + extra).unwrap()
            }
        })
        .collect()
}

impl Tokenizer {
    fn train(corpus: &str, n_merges: usize) -> Self {
        let chars = byte_chars();
        let vocab: Vec<String> = chars.iter().map(|c| c.to_string()).collect();
        // Words with their leading space, as the Qwen2 pre-tokenizer splits prose.
        let mut words: HashMap<Vec<String>, usize> = HashMap::new();
        // A word starts at every byte that is not a letter or digit.
        let mut word: Vec<String> = Vec::new();
        for &b in corpus.as_bytes() {
            if !b.is_ascii_alphanumeric() && !word.is_empty() {
                *words.entry(std::mem::take(&mut word)).or_insert(0) += 1;
            }
            word.push(chars[b as usize].to_string());
        }
        if !word.is_empty() {
            *words.entry(word).or_insert(0) += 1;
        }
        let mut tok = Tokenizer {
            vocab,
            merges: Vec::new(),
        };
        for _ in 0..n_merges {
            let mut pairs: HashMap<(String, String), usize> = HashMap::new();
            for (word, count) in &words {
                for w in word.windows(2) {
                    *pairs.entry((w[0].clone(), w[1].clone())).or_insert(0) += count;
                }
            }
            // Most frequent pair; ties broken by the pair itself, for determinism.
            let Some(((a, b), _)) = pairs
                .into_iter()
                .max_by(|x, y| x.1.cmp(&y.1).then_with(|| y.0.cmp(&x.0)))
            else {
                break;
            };
            let joined = format!("{a}{b}");
            words = words
                .into_iter()
                .map(|(word, count)| {
                    let mut merged = Vec::with_capacity(word.len());
                    let mut i = 0;
                    while i < word.len() {
                        if i + 1 < word.len() && word[i] == a && word[i + 1] == b {
                            merged.push(joined.clone());
                            i += 2;
                        } else {
                            merged.push(word[i].clone());
                            i += 1;
                        }
                    }
                    (merged, count)
                })
                .fold(HashMap::new(), |mut m, (w, c)| {
                    *m.entry(w).or_insert(0) += c;
                    m
                });
            if !tok.vocab.contains(&joined) {
                tok.vocab.push(joined);
            }
            tok.merges.push((a, b));
        }
        tok
    }

    fn to_json(&self) -> serde_json::Value {
        let vocab: serde_json::Map<String, serde_json::Value> = self
            .vocab
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), json!(i)))
            .collect();
        let added: Vec<_> = ADDED
            .iter()
            .enumerate()
            .map(|(i, (t, special))| {
                json!({
                    "id": self.vocab.len() + i, "content": t, "single_word": false, "lstrip": false,
                    "rstrip": false, "normalized": false, "special": special
                })
            })
            .collect();
        let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false});
        json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": {"type": "NFC"},
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT}, "behavior": "Isolated", "invert": false},
                byte_level,
            ]},
            "post_processor": byte_level,
            "decoder": byte_level,
            "model": {
                "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
                "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                "vocab": vocab,
                "merges": self.merges.iter().map(|(a, b)| format!("{a} {b}")).collect::<Vec<_>>(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_map_is_a_bijection() {
        let chars = byte_chars();
        let unique: std::collections::HashSet<_> = chars.iter().collect();
        assert_eq!(unique.len(), 256);
        assert_eq!(chars[b' ' as usize], 'Ġ');
        assert_eq!(chars[b'\n' as usize], 'Ċ');
        assert_eq!(chars[b'a' as usize], 'a');
    }

    #[test]
    fn training_is_deterministic_and_merges_are_in_the_vocab() {
        let a = Tokenizer::train(CORPUS, 100);
        let b = Tokenizer::train(CORPUS, 100);
        assert_eq!(a.merges, b.merges);
        assert_eq!(a.merges.len(), 100);
        for (x, y) in &a.merges {
            assert!(a.vocab.contains(&format!("{x}{y}")));
        }
        assert!(
            a.vocab.iter().any(|t| t == "Ġthe"),
            "common words get merged"
        );
    }

    #[test]
    fn the_tokenizers_crate_loads_the_tokenizer() {
        let dir = tempfile::tempdir().unwrap();
        let w = write(dir.path(), &Spec::tiny()).unwrap();
        let tok = tokenizers::Tokenizer::from_file(dir.path().join("tokenizer.json")).unwrap();
        let ids = tok
            .encode("<|im_start|>user\nthe answer<|reasoning|>", false)
            .unwrap();
        assert_eq!(ids.get_ids()[0] as usize, w.tokenizer_len - ADDED.len() + 1);
        assert_eq!(*ids.get_ids().last().unwrap(), w.reasoning_id);
        let text = tok.decode(ids.get_ids(), false).unwrap();
        assert_eq!(text, "<|im_start|>user\nthe answer<|reasoning|>");
    }
}
