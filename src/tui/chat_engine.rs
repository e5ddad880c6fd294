//! How the UI talks to the engine: the few calls it makes, as a trait the
//! real [`Engine`] and a server's [`RemoteEngine`] implement and the tests
//! replace with a scripted fake, and the model summary each shows.

use std::sync::mpsc::Sender;

use crate::chat::Message;
use crate::engine::{Engine, EngineError, Event};
use crate::remote::{Kind, RemoteEngine};

use super::transcript::ModelSummary;

/// What the UI needs from the engine; the tests drive a scripted fake.
pub trait ChatEngine: Send + Sync {
    fn turn(&self, user: String, events: Sender<Event>) -> Result<(), EngineError>;
    fn cancel(&self);
    fn answer_now(&self);
    fn reset(&self) -> Result<(), EngineError>;
    /// Replaces the conversation and rebuilds its KV cache (resuming a
    /// session); returns when the cache is rebuilt.
    fn restore(&self, history: Vec<Message>) -> Result<(), EngineError>;
}

impl ChatEngine for Engine {
    fn turn(&self, user: String, events: Sender<Event>) -> Result<(), EngineError> {
        Engine::turn(self, user, events)
    }
    fn cancel(&self) {
        Engine::cancel(self)
    }
    fn answer_now(&self) {
        Engine::answer_now(self)
    }
    fn reset(&self) -> Result<(), EngineError> {
        Engine::reset(self)
    }
    fn restore(&self, history: Vec<Message>) -> Result<(), EngineError> {
        self.set_history(history)?;
        self.warm()?;
        // Served after the warm-up: its answer says the warm-up is done.
        self.history().map(drop)
    }
}

impl ChatEngine for RemoteEngine {
    fn turn(&self, user: String, events: Sender<Event>) -> Result<(), EngineError> {
        RemoteEngine::turn(self, user, events)
    }
    fn cancel(&self) {
        RemoteEngine::cancel(self)
    }
    fn answer_now(&self) {
        RemoteEngine::answer_now(self)
    }
    fn reset(&self) -> Result<(), EngineError> {
        RemoteEngine::reset(self);
        Ok(())
    }
    fn restore(&self, history: Vec<Message>) -> Result<(), EngineError> {
        self.set_history(history);
        Ok(())
    }
}

/// A server's model as the status line shows it; `notes`: shown once.
pub fn remote_summary(engine: &RemoteEngine, notes: Vec<String>) -> ModelSummary {
    let info = engine.info();
    // llama-server names its model by the file's path: the name is enough.
    let file = info.model.rsplit('/').next().unwrap_or(&info.model);
    ModelSummary {
        name: file.strip_suffix(".gguf").unwrap_or(file).to_string(),
        file_type: String::new(),
        gpu_layers: 0,
        n_layers: 0,
        n_ctx: info.n_ctx.unwrap_or(0),
        chosen: vec![
            match &info.kind {
                Kind::O1(version) => format!("served by o1 serve {version} at {}", info.root),
                _ => format!("served by {}", info.describe()),
            },
            match info.n_ctx {
                Some(n) => format!("context {n} tokens (the server's)"),
                None => "context size not stated by the server".to_string(),
            },
        ],
        notes,
        server: Some(info.describe()),
    }
}

/// The loaded model as the status line shows it (the file's name when the
/// model has none).
pub fn model_summary(engine: &Engine) -> ModelSummary {
    let loaded = engine.loaded();
    let info = &loaded.info;
    let name = if info.name.is_empty() {
        info.path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        info.name.clone()
    };
    ModelSummary {
        name,
        file_type: info.file_type.clone(),
        gpu_layers: loaded.gpu_layers,
        n_layers: info.n_layer,
        n_ctx: loaded.n_ctx,
        chosen: vec![
            format!(
                "context {} tokens · {} KV cache · batches of {} · {} threads{}",
                loaded.n_ctx,
                loaded.kv_type.name(),
                loaded.n_batch,
                loaded.threads,
                if loaded.shares_cpu {
                    " at most (fewer while other programs keep the cores busy)"
                } else {
                    ""
                }
            ),
            format!(
                "memory ≈ {} MiB of {} MiB allowed (--max-memory)",
                loaded.memory.total() >> 20,
                loaded.max_memory >> 20
            ),
            format!("CPU path {} (--cpu-path)", loaded.cpu_path),
        ],
        notes: loaded.notes.clone(),
        server: None,
    }
}
