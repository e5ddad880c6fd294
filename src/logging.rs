//! Diagnostics go to a log file, never to the terminal: llama.cpp alone
//! writes hundreds of lines while loading a model.

use std::fs::OpenOptions;

use tracing_subscriber::EnvFilter;

/// Starts logging; a log that cannot be opened is not an error (o1 runs
/// without one). The level comes from `O1_LOG` (default `info`).
pub fn init() {
    let path = o1::paths::log_file();
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let Ok(file) = OpenOptions::new().create(true).append(true).open(&path) else {
        return;
    };
    let filter = EnvFilter::try_from_env("O1_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init();
}
