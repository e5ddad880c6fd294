//! o1-gguf: the base that o1's converter and its runtime both stand on.
//!
//! - [`format`]: GGUF v3, a streaming writer and a bounds-checked reader;
//! - [`keys`]: o1's own metadata keys and its reasoning token;
//! - [`prompt`]: the chat format's markers, default system message and template;
//! - [`ggml`]: ggml's tensor types and llama.cpp's file types;
//! - [`llama`]: the process-wide llama.cpp backend and its captured log;
//! - [`cpu`]: which of llama.cpp's CPU paths runs, proven on this machine;
//! - [`fault`]: what a crash in native code says and does;
//! - [`files`]: replacing a file whole;
//! - [`scoring`]: a model run for measurement (all logits, eval callback).

pub mod cpu;
pub mod fault;
pub mod files;
pub mod format;
pub mod ggml;
pub mod keys;
pub mod llama;
pub mod prompt;
pub mod scoring;

/// The threads o1 uses unless told otherwise: every core this process may
/// run on (the converter, the engine, `o1 eval` and the CPU probe alike).
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Measurements worth keeping between runs (`~/.cache/o1` on Linux):
/// `$O1_CACHE_DIR` overrides it.
pub fn cache_dir() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("O1_CACHE_DIR") {
        return std::path::PathBuf::from(p);
    }
    directories::ProjectDirs::from("", "", "o1")
        .map(|d| d.cache_dir().to_path_buf())
        .unwrap_or_else(|| std::path::PathBuf::from(".o1").join("cache"))
}
