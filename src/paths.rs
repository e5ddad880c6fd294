//! Where o1 keeps its files: the config file, the model store, saved
//! conversations and the log. One place decides the platform folders and
//! what to use when there is no home directory.

use std::path::PathBuf;

/// The platform's data folder for o1 (`~/.local/share/o1` on Linux), or
/// `.o1` in the current folder when the platform has none (no `$HOME`).
pub fn data_dir() -> PathBuf {
    project_dirs()
        .map(|d| d.data_local_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from(".o1"))
}

/// `$O1_CONFIG`, else `config.toml` in the platform's config folder
/// (`~/.config/o1` on Linux).
pub fn config_file() -> PathBuf {
    if let Some(p) = std::env::var_os("O1_CONFIG") {
        return PathBuf::from(p);
    }
    project_dirs()
        .map(|d| d.config_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from(".o1"))
        .join("config.toml")
}

/// The model store: `$O1_MODELS_DIR`, else `models` in the data folder.
pub fn models_dir() -> PathBuf {
    std::env::var_os("O1_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| data_dir().join("models"))
}

/// Saved conversations of `o1 tui`.
pub fn sessions_dir() -> PathBuf {
    data_dir().join("sessions")
}

/// Measurements worth keeping between runs (`~/.cache/o1` on Linux):
/// `$O1_CACHE_DIR` overrides it.
pub fn cache_dir() -> PathBuf {
    o1_gguf::cache_dir()
}

/// The log: `$O1_LOG_FILE`, else `o1.log` in the data folder.
pub fn log_file() -> PathBuf {
    std::env::var_os("O1_LOG_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| data_dir().join("o1.log"))
}

fn project_dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "o1")
}
