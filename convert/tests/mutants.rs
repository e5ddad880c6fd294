//! Mutation testing of what a conversion reads from a checkpoint: the
//! safetensors header, config.json, tokenizer.json, tokenizer_config.json
//! and generation_config.json.
//! Every mutant must give a plan or an error with a message: never a panic,
//! never an allocation beyond the bound (a config.json size once sized the
//! vocabulary before anything checked it).

#[global_allocator]
static ALLOC: o1_fuzz::BoundedAlloc = o1_fuzz::BoundedAlloc;

use std::fs;
use std::path::{Path, PathBuf};

use o1_convert::safetensors::{Weights, SINGLE_FILE};
use o1_convert::synthetic::{self, Spec};
use o1_convert::{ConvertOptions, OutputType};

/// A tiny checkpoint whose files the mutants replace one at a time.
struct Checkpoint {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Checkpoint {
    fn new(spec: &Spec) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ckpt");
        synthetic::write(&path, spec).unwrap();
        Checkpoint { _dir: dir, path }
    }

    fn read(&self, file: &str) -> Vec<u8> {
        fs::read(self.path.join(file)).unwrap()
    }

    /// Writes `input` as `file` and plans a conversion (`--dry-run`).
    fn plan_with(&self, file: &str, input: &[u8]) -> Result<(), String> {
        fs::write(self.path.join(file), input).unwrap();
        let opts = ConvertOptions::new(&self.path, self.path.join("out.gguf"), OutputType::Q4KM);
        o1_convert::plan_only(&opts)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// Seeds for a JSON file: the tiny checkpoint's, and one of a checkpoint
/// with a tied embedding, padded vocabulary, f16 weights and grouped heads.
fn json_seeds(file: &str) -> (Checkpoint, Vec<Vec<u8>>) {
    let other = Checkpoint::new(&Spec {
        tie: true,
        vocab_size: Some(640),
        dtype: o1_convert::safetensors::SourceDtype::F16,
        kv_heads: 1,
        ..Spec::tiny()
    });
    let ckpt = Checkpoint::new(&Spec::tiny());
    let seeds = vec![ckpt.read(file), other.read(file)];
    // Mutants of the other checkpoint's file are tried in the tiny one:
    // most then disagree with its weights, which is an error to report too.
    (ckpt, seeds)
}

#[test]
fn mutants_config_json() {
    let (ckpt, seeds) = json_seeds("config.json");
    let mut extra = seeds[0].clone();
    // The optional keys too: head_dim and rope scaling.
    let mut v: serde_json::Value = serde_json::from_slice(&extra).unwrap();
    v["head_dim"] = 16.into();
    v["rope_scaling"] = serde_json::json!({"type": "yarn", "factor": 4.0,
        "original_max_position_embeddings": 4096});
    extra = serde_json::to_vec(&v).unwrap();
    let seeds = [&seeds[..1], &[extra]].concat();
    o1_fuzz::json("config.json", &seeds, o1_fuzz::cases(4000), |input| {
        ckpt.plan_with("config.json", input)
    });
}

#[test]
fn mutants_tokenizer_config_json() {
    let (ckpt, seeds) = json_seeds("tokenizer_config.json");
    o1_fuzz::json(
        "tokenizer_config.json",
        &seeds,
        o1_fuzz::cases(4000),
        |input| ckpt.plan_with("tokenizer_config.json", input),
    );
}

#[test]
fn mutants_generation_config_json() {
    let (ckpt, seeds) = json_seeds("generation_config.json");
    o1_fuzz::json(
        "generation_config.json",
        &seeds,
        o1_fuzz::cases(2000),
        |input| ckpt.plan_with("generation_config.json", input),
    );
}

/// The tiny tokenizer.json, and variants with the components a
/// tokenizer.json may carry (normalizers, pre-tokenizers, a template, BPE
/// options) for the tokenizers crate's side of verification.
fn tokenizer_seeds(tiny: &[u8]) -> Vec<Vec<u8>> {
    use serde_json::json;
    let base: serde_json::Value = serde_json::from_slice(tiny).unwrap();
    let variant = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = base.clone();
        f(&mut v);
        serde_json::to_vec(&v).unwrap()
    };
    vec![
        tiny.to_vec(),
        variant(&|v| {
            v["normalizer"] = json!({"type": "Sequence", "normalizers": [
                {"type": "NFKC"},
                {"type": "Replace", "pattern": {"String": "a"}, "content": "bb"},
                {"type": "Strip", "strip_left": true, "strip_right": true},
                {"type": "Prepend", "prepend": "▁"},
                {"type": "Lowercase"}
            ]})
        }),
        variant(&|v| {
            v["pre_tokenizer"] = json!({"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true},
                {"type": "Punctuation", "behavior": "Isolated"},
                {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithNext",
                 "invert": false},
                {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
                 "use_regex": true}
            ]})
        }),
        variant(&|v| {
            v["post_processor"] = json!({"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}},
                           {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"Sequence": {"id": "A", "type_id": 0}},
                         {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>",
                    "ids": [501], "tokens": ["<|endoftext|>"]}}})
        }),
        variant(&|v| {
            v["model"]["byte_fallback"] = true.into();
            v["model"]["dropout"] = 0.5.into();
            v["model"]["unk_token"] = "<|endoftext|>".into();
            v["added_tokens"][0]["normalized"] = true.into();
            v["added_tokens"][1]["lstrip"] = true.into();
            v["added_tokens"][2]["single_word"] = true.into();
        }),
    ]
}

#[test]
fn mutants_tokenizer_json() {
    let ckpt = Checkpoint::new(&Spec::tiny());
    let seeds = tokenizer_seeds(&ckpt.read("tokenizer.json"));
    let path = ckpt.path.join("tokenizer.json");
    // o1's own reading (the GGUF vocabulary), then the tokenizers crate's,
    // which verification compares llama.cpp with.
    o1_fuzz::json("tokenizer.json", &seeds, o1_fuzz::cases(2000), |input| {
        let planned = ckpt.plan_with("tokenizer.json", input);
        let reference = o1_convert::verify::reference_tokens(&path).map(|_| ());
        planned.and(reference)
    });
}

/// A small safetensors file: the header is most of it, so most mutants hit it.
fn small_safetensors(with_metadata: bool) -> Vec<u8> {
    use safetensors::tensor::TensorView;
    use safetensors::Dtype;
    let data: Vec<u8> = (0..64u8).collect();
    let tensors = vec![
        (
            "a.weight",
            TensorView::new(Dtype::F32, vec![2, 3], &data[..24]).unwrap(),
        ),
        (
            "b.bias",
            TensorView::new(Dtype::BF16, vec![4], &data[24..32]).unwrap(),
        ),
        (
            "c",
            TensorView::new(Dtype::F16, vec![1, 2, 2], &data[32..40]).unwrap(),
        ),
        (
            "empty",
            TensorView::new(Dtype::F32, vec![0, 8], &[]).unwrap(),
        ),
    ];
    let metadata = with_metadata.then(|| [("format".to_string(), "pt".to_string())].into());
    safetensors::serialize(tensors, metadata).unwrap()
}

fn open_weights(dir: &Path, input: &[u8]) -> Result<(), String> {
    fs::write(dir.join(SINGLE_FILE), input).unwrap();
    let weights = Weights::open(dir).map_err(|e| e.to_string())?;
    for t in weights.tensors() {
        let bytes = weights.bytes(t);
        assert_eq!(bytes.len(), t.n_elements() * t.dtype.size(), "{}", t.name);
    }
    weights.total_bytes();
    Ok(())
}

#[test]
fn mutants_safetensors_header() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = Checkpoint::new(&Spec {
        layers: 1,
        hidden: 16,
        heads: 2,
        kv_heads: 1,
        ffn: 32,
        ..Spec::tiny()
    });
    let seeds = [
        small_safetensors(false),
        small_safetensors(true),
        tiny.read(SINGLE_FILE),
    ];
    o1_fuzz::bytes("safetensors", &seeds, o1_fuzz::cases(4000), |input| {
        open_weights(dir.path(), input)
    });
}
