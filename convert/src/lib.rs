//! o1-convert: a Qwen2.5-O1 Hugging Face checkpoint (safetensors shards,
//! `config.json`, `tokenizer.json` with the added `<|reasoning|>` token)
//! into a GGUF file that llama.cpp loads, quantized with llama.cpp's own
//! arithmetic.
//!
//! The crate has no terminal and no async code: the `o1` binary drives it
//! and draws the progress it reports.

pub mod checkpoint;
pub mod config;
pub mod convert;
pub mod error;
pub mod ggml;
pub mod gguf;
pub mod llama;
pub mod metadata;
pub mod output;
pub mod plan;
pub mod safetensors;
mod stream;
pub mod synthetic;
pub mod verify;
pub mod vocab;

pub use convert::{
    convert, plan_only, ConvertOptions, ConvertReport, NoProgress, Pipeline, PlanReport, Progress,
};
pub use error::{ConvertError, Result};
pub use ggml::{GgmlType, OutputType};
