//! Diagnostics go to a log file, never to the terminal: llama.cpp alone
//! writes hundreds of lines while loading a model.

use std::fs::OpenOptions;
use std::path::PathBuf;

use tracing_subscriber::EnvFilter;

/// Where the log goes: `$O1_LOG_FILE`, else `o1.log` in the data directory.
pub fn log_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("O1_LOG_FILE") {
        return Some(PathBuf::from(p));
    }
    directories::ProjectDirs::from("", "", "o1").map(|d| d.data_local_dir().join("o1.log"))
}

/// Starts logging; a log that cannot be opened is not an error (o1 runs
/// without one). The level comes from `O1_LOG` (default `info`).
pub fn init() {
    let Some(path) = log_path() else { return };
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
