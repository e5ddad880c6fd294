//! `o1 serve`: the model behind the HTTP APIs existing clients speak,
//! OpenAI's chat completions and ollama's chat, with the reasoning kept
//! apart from the answer.
//!
//! - `guard`: errors, the access log, the origin check, the API key, bodies;
//! - `queue`: one generation at a time, in order, on the engine thread;
//! - `listen`: connections, their timeouts and their cap;
//! - `remember`: the reasoning behind this server's answers, per conversation;
//! - `openai`: `/v1/models`, `/v1/chat/completions`, `/v1/completions`;
//! - `responses`: `/v1/responses`, OpenAI's newer API;
//! - `ollama`: `/api/chat`, `/api/generate`, `/api/tags`, `/api/ps`,
//!   `/api/show`, `/api/version`.
//!
//! The HTTP side runs on a small tokio runtime; the engine keeps its own
//! thread, and a dispatcher thread passes each request's events from one to
//! the other. The server listens at once and loads the model behind it:
//! `/health` says `loading`, then `ok`, and requests wait in the queue.

mod guard;
mod listen;
mod ollama;
mod openai;
mod queue;
mod remember;
mod responses;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{header, Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::mpsc;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use guard::MAX_BODY_BYTES;
use guard::{ApiError, Caller};
use queue::{Job, Queue, Shared, Summary, Update, Work};

use crate::chat::{Message, Role};
use crate::engine::{
    Completion, Engine, EngineConfig, EngineError, Limits, Loaded, RawCompletion, Sampling,
};
use crate::model::ModelInfo;

/// The port `o1 serve` listens on unless told otherwise (one above ollama's).
pub const DEFAULT_PORT: u16 = 11435;

/// The server's version, as `/api/version` and the `Server` header give it:
/// o1's, with the commit it was built from as semver build metadata.
pub static VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let commit: String = env!("O1_GIT_COMMIT")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '.' })
        .collect();
    format!("{}+{commit}", env!("CARGO_PKG_VERSION"))
});

/// How long a shutdown waits for running requests before it exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How the server listens and whom it serves.
#[derive(Clone, Debug)]
pub struct Options {
    pub host: String,
    pub port: u16,
    /// When any are set, requests need `Authorization: Bearer KEY` with one
    /// of them.
    pub api_keys: Vec<String>,
    /// Browser origins allowed besides loopback pages (`*`: any).
    pub allow_origins: Vec<String>,
    /// Host names allowed besides this machine's (`*`: any).
    pub allow_hosts: Vec<String>,
    /// Put the server's reasoning back before answers it wrote.
    pub remember_reasoning: bool,
    /// Requests that may wait while one runs.
    pub queue: usize,
    /// Connections served at once (`None`: what the open-file limit allows).
    pub max_connections: Option<usize>,
}

/// The model this server runs, as the APIs describe it.
pub struct ServedModel {
    /// The name clients ask for: the file's name without `.gguf`.
    pub id: String,
    pub info: ModelInfo,
    /// Seconds since 1970 of the file's last change.
    pub created: u64,
    /// The server's settings, which a request's fields override.
    pub sampling: Sampling,
    pub limits: Limits,
    pub system: String,
    /// The context asked for, if any.
    pub n_ctx: Option<u32>,
}

impl ServedModel {
    fn new(config: &EngineConfig, info: ModelInfo) -> Self {
        let id = config
            .model
            .file_stem()
            .map_or_else(|| "o1".into(), |s| s.to_string_lossy().into_owned());
        let created = std::fs::metadata(&config.model)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        ServedModel {
            id,
            sampling: Sampling::resolve(&info.generation, &config.sampling),
            info,
            created,
            limits: config.limits,
            system: config.system.clone(),
            n_ctx: config.n_ctx,
        }
    }

    /// Whether a request's `model` names this one: its id, with or without
    /// an ollama-style `:latest` tag.
    fn answers_to(&self, name: &str) -> bool {
        name == self.id || name.strip_suffix(":latest") == Some(self.id.as_str())
    }
}

#[derive(Clone)]
pub struct AppState {
    options: Arc<Options>,
    model: Arc<ServedModel>,
    shared: Arc<Shared>,
    queue: Queue,
}

/// How much a request lets the model reason, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effort {
    None,
    Minimal,
    Low,
    Medium,
    High,
}

impl Effort {
    pub fn parse(s: &str) -> Option<Effort> {
        Some(match s {
            "none" => Effort::None,
            "minimal" => Effort::Minimal,
            "low" => Effort::Low,
            "medium" => Effort::Medium,
            "high" => Effort::High,
            _ => return None,
        })
    }

    /// The reasoning budget, as a share of the server's own (`high` is all
    /// of it, as is a request that names no effort).
    pub fn budget(self, full: usize) -> usize {
        match self {
            Effort::None => 0,
            Effort::Minimal => full / 16,
            Effort::Low => full / 4,
            Effort::Medium => full / 2,
            Effort::High => full,
        }
    }
}

/// What a request sets, in either API's words, before it is checked.
#[derive(Debug, Default)]
pub struct Knobs {
    pub answer_tokens: Option<u64>,
    pub reasoning_tokens: Option<u64>,
    pub effort: Option<Effort>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<u32>,
    pub min_p: Option<f32>,
    pub repeat_penalty: Option<f32>,
    pub seed: Option<i64>,
    pub stops: Vec<String>,
}

/// The role names an API gives messages, besides `user` and `assistant`.
pub struct RoleNames {
    pub system: &'static [&'static str],
    /// Tool results, which o1 cannot have.
    pub tool: &'static [&'static str],
    /// Every accepted name, for the error.
    pub listed: &'static str,
}

/// Message `i`'s role in the model's terms; tool calls and tool results
/// are refused by name.
pub fn message_role(
    i: usize,
    role: &str,
    calls_tools: bool,
    names: &RoleNames,
) -> Result<Role, ApiError> {
    if calls_tools {
        return Err(ApiError::unsupported(
            &format!("messages[{i}].tool_calls"),
            "o1 does not call tools",
        ));
    }
    match role {
        "user" => Ok(Role::User),
        "assistant" => Ok(Role::Assistant),
        r if names.system.contains(&r) => Ok(Role::System),
        r if names.tool.contains(&r) => Err(ApiError::unsupported(
            &format!("messages[{i}].role"),
            "o1 does not call tools, so there are no tool results",
        )),
        other => Err(ApiError::invalid_value(
            &format!("messages[{i}].role"),
            format!("is `{other}`: must be {}", names.listed),
        )),
    }
}

/// Appends a message; an assistant message's reasoning goes before it as
/// that turn's `<|reasoning|>` message.
pub fn push_message(
    out: &mut Vec<Message>,
    role: Role,
    content: String,
    reasoning: Option<String>,
) {
    if let Some(reasoning) = reasoning.filter(|_| role == Role::Assistant) {
        out.push(Message::new(Role::Reasoning, reasoning));
    }
    out.push(Message::new(role, content));
}

/// The most stop sequences a request may give, and the longest one (each
/// is looked for in every piece of the answer).
const MAX_STOPS: usize = 16;
const MAX_STOP_BYTES: usize = 1024;

impl AppState {
    /// The context this server serves: the loaded one, or before the load
    /// the one asked for (else the trained length).
    fn served_context(&self) -> usize {
        match self.shared.engine.get() {
            Some(engine) => engine.loaded().n_ctx,
            None => self
                .model
                .n_ctx
                .map_or(self.model.info.n_ctx_train as usize, |n| n as usize),
        }
    }

    fn check_model(&self, name: &str) -> Result<(), ApiError> {
        if self.model.answers_to(name) {
            Ok(())
        } else {
            Err(ApiError::unknown_model(name, &self.model.id))
        }
    }

    /// Queues the generation for `messages` under `knobs` (see
    /// [`Self::completion`]); returns its updates.
    fn start(
        &self,
        messages: Vec<Message>,
        knobs: Knobs,
        caller: Caller,
    ) -> Result<mpsc::UnboundedReceiver<Update>, ApiError> {
        let (request, stops, thread) = self.completion(messages, knobs, caller)?;
        let (out, updates) = mpsc::unbounded_channel();
        self.queue.push(Job {
            request: Work::Chat(request),
            stops,
            caller,
            thread,
            out,
        })?;
        Ok(updates)
    }

    /// The engine request for `messages` under `knobs`: the server's system
    /// message when the request has none, remembered reasoning put back (in
    /// this caller's conversation only), sampling and budgets checked.
    /// Returns it with the stop sequences and the conversation's thread.
    fn completion(
        &self,
        messages: Vec<Message>,
        knobs: Knobs,
        caller: Caller,
    ) -> Result<(Completion, Vec<String>, Option<remember::Thread>), ApiError> {
        if messages.is_empty() {
            return Err(ApiError::invalid_value("messages", "is empty"));
        }
        match messages.last() {
            Some(m) if m.role == Role::User && !m.content.trim().is_empty() => {}
            _ => {
                return Err(ApiError::invalid_value(
                    "messages",
                    "must end with a user message that has some text",
                ))
            }
        }
        let mut all = Vec::with_capacity(messages.len() + 1);
        if !messages.iter().any(|m| m.role == Role::System) && !self.model.system.is_empty() {
            all.push(Message::new(Role::System, self.model.system.clone()));
        }
        let thread = if self.options.remember_reasoning {
            let (messages, thread) = self.shared.remembered.restore(messages, caller);
            all.extend(messages);
            Some(thread)
        } else {
            all.extend(messages);
            None
        };
        let (sampling, limits, stops) = self.checked(knobs)?;
        Ok((
            Completion {
                messages: all,
                sampling,
                limits,
                fresh: false,
            },
            stops,
            thread,
        ))
    }

    /// Queues the continuation of a raw `prompt` (no template, one
    /// generation of up to the answer budget); returns its updates.
    fn start_raw(
        &self,
        prompt: String,
        knobs: Knobs,
        caller: Caller,
    ) -> Result<mpsc::UnboundedReceiver<Update>, ApiError> {
        if prompt.is_empty() {
            return Err(ApiError::invalid_value("prompt", "is empty"));
        }
        let (sampling, limits, stops) = self.checked(knobs)?;
        let (out, updates) = mpsc::unbounded_channel();
        self.queue.push(Job {
            request: Work::Raw(RawCompletion {
                prompt,
                sampling,
                limit: limits.answer,
                fresh: false,
            }),
            stops,
            caller,
            thread: None,
            out,
        })?;
        Ok(updates)
    }

    /// The sampling, budgets and stop sequences `knobs` ask for, checked.
    fn checked(&self, knobs: Knobs) -> Result<(Sampling, Limits, Vec<String>), ApiError> {
        let mut s = self.model.sampling.clone();
        let within = |name: &str, v: f32, min: f32, max: f32| {
            if v >= min && v <= max {
                Ok(v)
            } else {
                Err(ApiError::invalid_value(
                    name,
                    format!("is {v}: must be from {min} to {max}"),
                ))
            }
        };
        if let Some(t) = knobs.temperature {
            s.temperature = within("temperature", t, 0.0, 100.0)?;
        }
        if let Some(p) = knobs.top_p {
            s.top_p = within("top_p", p, 0.0, 1.0)?;
        }
        if let Some(p) = knobs.min_p {
            s.min_p = within("min_p", p, 0.0, 1.0)?;
        }
        if let Some(p) = knobs.repeat_penalty {
            s.repeat_penalty = within("repeat_penalty", p, 0.01, 100.0)?;
        }
        if let Some(k) = knobs.top_k {
            s.top_k = k;
        }
        if let Some(seed) = knobs.seed {
            // Any 64-bit seed; llama.cpp's sampler takes 32 bits.
            s.seed = (seed as u64 ^ (seed as u64 >> 32)) as u32;
        }

        let budget = |name: &str, v: u64| {
            usize::try_from(v)
                .ok()
                .filter(|&n| n <= 1 << 20)
                .ok_or_else(|| ApiError::invalid_value(name, format!("is {v}: too large")))
        };
        let mut limits = self.model.limits;
        if let Some(n) = knobs.answer_tokens {
            if n == 0 {
                return Err(ApiError::invalid_value("max_tokens", "must be at least 1"));
            }
            limits.answer = budget("max_tokens", n)?;
        }
        if let Some(effort) = knobs.effort {
            limits.reasoning = effort.budget(self.model.limits.reasoning);
        }
        if let Some(n) = knobs.reasoning_tokens {
            limits.reasoning = budget("max_reasoning_tokens", n)?;
        }
        if knobs.stops.len() > MAX_STOPS {
            return Err(ApiError::invalid_value(
                "stop",
                format!("has {} sequences: at most {MAX_STOPS}", knobs.stops.len()),
            ));
        }
        if let Some(long) = knobs.stops.iter().find(|s| s.len() > MAX_STOP_BYTES) {
            return Err(ApiError::invalid_value(
                "stop",
                format!(
                    "has a sequence of {} bytes: at most {MAX_STOP_BYTES}",
                    long.len()
                ),
            ));
        }
        Ok((s, limits, knobs.stops))
    }
}

/// Waits for a request's end: its summary, or the error it failed with.
async fn finished(mut updates: mpsc::UnboundedReceiver<Update>) -> Result<Summary, ApiError> {
    while let Some(update) = updates.recv().await {
        match update {
            Update::Done(s) if s.finish == queue::Finish::Cancelled => return Err(cancelled()),
            Update::Done(s) => return Ok(s),
            Update::Failed(e) => return Err(e),
            Update::Reasoning(_) | Update::Answer(_) => {}
        }
    }
    Err(cancelled())
}

fn cancelled() -> ApiError {
    ApiError::unavailable(
        "the generation was cancelled: the server is shutting down",
        5,
    )
    .with_code("shutting_down")
}

/// A response id: unique within this server's life, and across restarts.
fn response_id(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    format!("{prefix}-{t:x}{n:04x}")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn health(State(state): State<AppState>) -> impl IntoResponse {
    use std::sync::atomic::Ordering::SeqCst;
    if state.shared.shutting_down.load(SeqCst) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "shutting_down"})),
        )
    } else if state.shared.ready() {
        (StatusCode::OK, Json(json!({"status": "ok"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "loading"})),
        )
    }
}

/// What ollama's clients probe to find a server.
async fn root() -> &'static str {
    "o1 is running"
}

fn router(state: AppState) -> Router {
    let allowed = state.options.allow_origins.clone();
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin, _| {
            origin
                .to_str()
                .is_ok_and(|o| guard::origin_allowed(o, &allowed))
        }))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]);
    Router::new()
        .route("/", get(root))
        .route("/health", get(health))
        .route("/v1/models", get(openai::models))
        .route("/v1/models/{id}", get(openai::model))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/responses", post(responses::create))
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/api/chat", post(ollama::chat))
        .route("/api/generate", post(ollama::generate))
        .route("/api/embed", post(ollama::embed))
        .route("/api/embeddings", post(ollama::embed))
        .route("/api/ps", get(ollama::ps))
        .route("/api/tags", get(ollama::tags))
        .route("/api/show", post(ollama::show))
        .route("/api/version", get(ollama::version))
        .fallback(guard::no_route)
        .method_not_allowed_fallback(guard::wrong_method)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::api_key,
        ))
        .layer(cors)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::screen_and_log,
        ))
        .with_state(state)
}

/// What the server tells its caller as it starts.
pub trait Report: Send + 'static {
    /// The address it listens on (the model is not loaded yet).
    fn listening(&mut self, addr: SocketAddr);
    /// The model's load progress, 0..=1.
    fn loading(&mut self, fraction: f32);
    fn ready(&mut self, loaded: &Loaded);
    fn stopping(&mut self);
}

/// Runs the server until Ctrl+C or SIGTERM: listens, loads the model behind
/// it, serves. A model that fails to load ends it with that error.
pub fn run(config: EngineConfig, options: Options, report: impl Report) -> Result<(), ServeError> {
    let info = ModelInfo::read(&config.model).map_err(EngineError::from)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("o1-http")
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    runtime.block_on(serve(config, options, info, report))
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot start the HTTP runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

async fn serve(
    config: EngineConfig,
    options: Options,
    info: ModelInfo,
    report: impl Report,
) -> Result<(), ServeError> {
    let addr = format!("{}:{}", options.host, options.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|source| ServeError::Listen {
            addr: addr.clone(),
            source,
        })?;
    let local = listener.local_addr().map_err(|source| ServeError::Listen {
        addr: addr.clone(),
        source,
    })?;
    let report = Arc::new(std::sync::Mutex::new(report));
    report.lock().unwrap().listening(local);

    let shared = Arc::new(Shared::default());
    let queue = Queue::new(options.queue);
    let state = AppState {
        model: Arc::new(ServedModel::new(&config, info)),
        options: Arc::new(options),
        shared: shared.clone(),
        queue: queue.clone(),
    };

    // The engine loads and serves on threads of its own; a failed load
    // ends the server with its error.
    let (failed_tx, mut failed_rx) = mpsc::channel::<EngineError>(1);
    {
        let (shared, report, queue) = (shared.clone(), report.clone(), queue.clone());
        std::thread::Builder::new()
            .name("o1-dispatch".into())
            .spawn(move || {
                let progress_report = report.clone();
                let started = Engine::start(config, move |p| {
                    progress_report.lock().unwrap().loading(p);
                    true
                });
                match started {
                    Ok(engine) => {
                        report.lock().unwrap().ready(engine.loaded());
                        let engine = Arc::new(engine);
                        let _ = shared.engine.set(engine.clone());
                        queue::dispatch(&shared, &engine, &queue);
                    }
                    Err(e) => {
                        let _ = failed_tx.blocking_send(e);
                    }
                }
            })
            .map_err(ServeError::Runtime)?;
    }

    let stop = Arc::new(tokio::sync::Notify::new());
    let load_error = Arc::new(std::sync::Mutex::new(None));
    {
        let (stop, shared, load_error, report, queue) = (
            stop.clone(),
            shared.clone(),
            load_error.clone(),
            report.clone(),
            queue.clone(),
        );
        tokio::spawn(async move {
            tokio::select! {
                _ = signalled() => report.lock().unwrap().stopping(),
                Some(e) = failed_rx.recv() => *load_error.lock().unwrap() = Some(e),
            }
            shared.shut_down();
            queue.close();
            stop.notify_waiters();
            // A second signal does not wait for the running requests.
            signalled().await;
            std::process::exit(130);
        });
    }

    let caps = match state.options.max_connections {
        Some(n) => listen::Caps::of(n),
        None => listen::Caps::from_file_limit(),
    };
    let served = {
        let stop = stop.clone();
        listen::serve(listener, router(state), caps, async move {
            stop.notified().await
        })
    };
    let deadline = async {
        stop.notified().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        _ = served => {}
        _ = deadline => tracing::warn!("requests still running after the shutdown grace; exiting"),
    }
    let failed = load_error.lock().unwrap().take();
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// Ctrl+C or SIGTERM.
async fn signalled() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install the SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn efforts_share_the_reasoning_budget() {
        assert_eq!(Effort::parse("high").unwrap().budget(3000), 3000);
        assert_eq!(Effort::parse("medium").unwrap().budget(3000), 1500);
        assert_eq!(Effort::parse("low").unwrap().budget(3000), 750);
        assert_eq!(Effort::parse("none").unwrap().budget(3000), 0);
        assert!(Effort::parse("max").is_none());
    }
}
