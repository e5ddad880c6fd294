//! Helpers shared by the integration tests: synthetic checkpoints, quiet
//! conversions, reading tensors back and running llama.cpp on a file.

#![allow(dead_code)]

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use llama_cpp_2::context::params::{KvCacheType, LlamaContextParams};
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use o1_convert::synthetic::{self, Spec, Written};
use o1_convert::{ConvertOptions, ConvertReport, NoProgress, OutputType, Pipeline, Result};

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub written: Written,
}

impl Fixture {
    pub fn new(spec: &Spec) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let written = synthetic::write(&dir.path().join("ckpt"), spec).unwrap();
        Fixture { dir, written }
    }

    pub fn tiny() -> Self {
        Self::new(&Spec::tiny())
    }

    pub fn ckpt(&self) -> PathBuf {
        self.dir.path().join("ckpt")
    }

    pub fn out(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

pub fn options(input: &Path, output: &Path, ty: OutputType) -> ConvertOptions {
    let mut o = ConvertOptions::new(input, output, ty);
    o.threads = 2;
    o
}

pub fn convert(input: &Path, output: &Path, ty: OutputType) -> Result<ConvertReport> {
    o1_convert::convert(
        &options(input, output, ty),
        &mut NoProgress,
        &AtomicBool::new(false),
    )
}

pub fn convert_with(
    input: &Path,
    output: &Path,
    ty: OutputType,
    pipeline: Pipeline,
) -> Result<ConvertReport> {
    convert_calibrated(input, output, ty, pipeline, None)
}

pub fn convert_calibrated(
    input: &Path,
    output: &Path,
    ty: OutputType,
    pipeline: Pipeline,
    calibration: Option<o1_convert::Calibration>,
) -> Result<ConvertReport> {
    let mut o = options(input, output, ty);
    o.pipeline = pipeline;
    o.calibration = calibration;
    o.force = true;
    o1_convert::convert(&o, &mut NoProgress, &AtomicBool::new(false))
}

/// Files left in a folder, sorted.
pub fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Loads a GGUF in llama.cpp (CPU, f32 KV cache, no flash attention) and
/// returns the logits of every position of `tokens`.
pub fn llama_logits(path: &Path, tokens: &[u32]) -> Vec<Vec<f32>> {
    let backend = o1_gguf::llama::backend().unwrap();
    let model = LlamaModel::load_from_file(
        backend,
        path,
        &LlamaModelParams::default().with_n_gpu_layers(0),
    )
    .unwrap();
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(512))
        .with_n_batch(512)
        .with_n_threads(2)
        .with_n_threads_batch(2)
        .with_type_k(KvCacheType::F32)
        .with_type_v(KvCacheType::F32)
        .with_flash_attention_policy(llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED);
    let mut ctx = model.new_context(backend, params).unwrap();
    let mut batch = LlamaBatch::new(tokens.len(), 1);
    for (i, &t) in tokens.iter().enumerate() {
        batch
            .add(LlamaToken(t as i32), i as i32, &[0], true)
            .unwrap();
    }
    ctx.decode(&mut batch).unwrap();
    (0..tokens.len())
        .map(|i| ctx.get_logits_ith(i as i32).to_vec())
        .collect()
}

/// Tokenizes with llama.cpp, parsing special tokens.
pub fn llama_tokenize(path: &Path, text: &str) -> Vec<u32> {
    let backend = o1_gguf::llama::backend().unwrap();
    let params = LlamaModelParams::default().with_vocab_only(true);
    let model = LlamaModel::load_from_file(backend, path, &params).unwrap();
    model
        .vocab()
        .tokenize(text.as_bytes(), false, true)
        .iter()
        .map(|t| t.0 as u32)
        .collect()
}

pub fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0
}
