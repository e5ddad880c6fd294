//! The process-wide llama.cpp backend, initialised once, with llama.cpp's
//! logging sent to `tracing` (target `llama.cpp`) instead of stderr. The
//! last error lines are kept so a failure can say what llama.cpp reported.

use std::ffi::{c_char, c_void, CStr};
use std::sync::{Mutex, OnceLock};

use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_sys_2 as sys;

static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
static LOG: Mutex<LogState> = Mutex::new(LogState {
    line: String::new(),
    level: 0,
    errors: Vec::new(),
});

const KEPT_ERRORS: usize = 8;

struct LogState {
    /// A line still being assembled (llama.cpp logs in pieces).
    line: String,
    level: sys::ggml_log_level,
    /// The last error and warning lines, oldest first.
    errors: Vec<String>,
}

/// llama.cpp could not start (no CPU path works, or the installation is incomplete).
#[derive(Clone, Debug, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(pub String);

/// The llama.cpp backend; the first call initialises it: it loads the CPU
/// path chosen for this machine ([`crate::cpu`]), then any GPU backend
/// whose libraries are here (one whose driver is missing is skipped).
pub fn backend() -> Result<&'static LlamaBackend, BackendError> {
    BACKEND
        .get_or_init(|| {
            // SAFETY: the callback is a plain function that never unwinds.
            unsafe { sys::llama_log_set(Some(log_callback), std::ptr::null_mut()) };
            let dir = backends_dir();
            crate::cpu::load(&dir).map_err(|e| e.to_string())?;
            crate::fault::inject_at("backend");
            load_gpu_backends(&dir);
            LlamaBackend::init().map_err(|e| format!("starting llama.cpp: {e}"))
        })
        .as_ref()
        .map_err(|e| BackendError(e.clone()))
}

/// Loads the non-CPU backends in `dir` (`libggml-cuda.so`, ...).
fn load_gpu_backends(dir: &std::path::Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Some(kind) = name
            .strip_prefix("libggml-")
            .and_then(|n| n.strip_suffix(".so"))
        else {
            continue;
        };
        if kind == "base" || kind.starts_with("cpu") {
            continue;
        }
        let Ok(path) = std::ffi::CString::new(entry.path().as_os_str().as_encoded_bytes()) else {
            continue;
        };
        // SAFETY: a NUL-terminated path; ggml returns null (and logs why)
        // when the library or its driver cannot load.
        unsafe { sys::ggml_backend_load(path.as_ptr()) };
    }
}

/// Where ggml's backend libraries are: `$O1_BACKENDS_DIR`, else the
/// binary's own folder when it holds them (an installed o1), else the
/// folder the build put them in.
pub fn backends_dir() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("O1_BACKENDS_DIR") {
        return dir.into();
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(std::path::Path::to_path_buf))
        .filter(|dir| {
            std::fs::read_dir(dir).is_ok_and(|entries| {
                entries
                    .flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with("libggml-cpu"))
            })
        });
    beside
        .or_else(|| sys::BACKENDS_DIR.map(Into::into))
        .unwrap_or_default()
}

/// The error and warning lines llama.cpp logged most recently.
pub fn recent_errors() -> Vec<String> {
    LOG.lock().map(|s| s.errors.clone()).unwrap_or_default()
}

/// Forgets the kept error lines (before an operation whose errors matter).
pub fn clear_recent_errors() {
    if let Ok(mut s) = LOG.lock() {
        s.errors.clear();
    }
}

extern "C" fn log_callback(level: sys::ggml_log_level, text: *const c_char, _: *mut c_void) {
    if text.is_null() {
        return;
    }
    // SAFETY: llama.cpp passes a NUL-terminated string.
    let text = unsafe { CStr::from_ptr(text) }.to_string_lossy();
    let Ok(mut state) = LOG.lock() else { return };
    if level != sys::GGML_LOG_LEVEL_CONT {
        state.level = level;
    }
    state.line.push_str(&text);
    if !state.line.ends_with('\n') {
        return;
    }
    let line = std::mem::take(&mut state.line);
    let line = line.trim_end();
    match state.level {
        sys::GGML_LOG_LEVEL_ERROR => tracing::error!(target: "llama.cpp", "{line}"),
        sys::GGML_LOG_LEVEL_WARN => tracing::warn!(target: "llama.cpp", "{line}"),
        sys::GGML_LOG_LEVEL_INFO => tracing::info!(target: "llama.cpp", "{line}"),
        _ => tracing::debug!(target: "llama.cpp", "{line}"),
    }
    if matches!(
        state.level,
        sys::GGML_LOG_LEVEL_ERROR | sys::GGML_LOG_LEVEL_WARN
    ) {
        if state.errors.len() == KEPT_ERRORS {
            state.errors.remove(0);
        }
        state.errors.push(line.to_string());
    }
}
