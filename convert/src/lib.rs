//! o1-convert: a Qwen2.5-O1 Hugging Face checkpoint (safetensors shards,
//! `config.json`, `tokenizer.json` with the added `<|reasoning|>` token)
//! into a GGUF file that llama.cpp loads, quantized with llama.cpp's own
//! arithmetic. The GGUF format, ggml's types and the llama.cpp backend come
//! from `o1-gguf`, shared with the runtime.
//!
//! The crate has no terminal and no async code: the `o1` binary drives it
//! and draws the progress it reports.

pub mod checkpoint;
pub mod config;
pub mod convert;
pub mod error;
pub mod imatrix;
pub mod metadata;
pub mod output;
pub mod plan;
mod progress;
pub mod safetensors;
mod stream;
/// Test fixtures, for this workspace's tests, examples and benchmarks.
#[cfg(any(test, feature = "synthetic"))]
pub mod synthetic;
pub mod verify;
pub mod vocab;

pub use convert::{
    convert, plan_only, write_skeleton, CalibrateFn, Calibration, ConvertOptions, ConvertReport,
    Pipeline, PlanReport,
};
pub use error::{ConvertError, Result};
pub use imatrix::ImportanceMatrix;
pub use o1_gguf::ggml::OutputType;
pub use progress::{NoProgress, Progress};
