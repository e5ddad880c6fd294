//! o1-gguf: the base that o1's converter and its runtime both stand on.
//!
//! - [`format`]: GGUF v3, a streaming writer and a bounds-checked reader;
//! - [`keys`]: o1's own metadata keys and its reasoning token;
//! - [`ggml`]: ggml's tensor types and llama.cpp's file types;
//! - [`llama`]: the process-wide llama.cpp backend and its captured log.

pub mod format;
pub mod ggml;
pub mod keys;
pub mod llama;
