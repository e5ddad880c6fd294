//! `o1 serve`: the model behind the HTTP APIs existing clients speak,
//! OpenAI's chat completions and ollama's chat, with the reasoning kept
//! apart from the answer.
//!
//! - `guard`: errors, the access log, the host and origin checks, the API
//!   key, bodies;
//! - `request`: a request's fields checked and translated for the engine;
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
mod request;
mod responses;
mod wire;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{header, Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tower_http::cors::{AllowOrigin, CorsLayer};

use guard::ApiError;
pub use guard::MAX_BODY_BYTES;
use queue::{Queue, Shared, Summary, Update};

use crate::engine::{Engine, EngineConfig, EngineError, Limits, Loaded, Sampling};
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

/// A model file's name (without `.gguf`) and the seconds since 1970 of its
/// last change.
fn file_identity(path: &Path) -> (String, u64) {
    let id = path
        .file_stem()
        .map_or_else(|| "o1".into(), |s| s.to_string_lossy().into_owned());
    let created = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    (id, created)
}

/// What names a model file across processes: a hash of its name, size and
/// time (hashing gigabytes per listing would be slow). The `digest` of
/// ollama's listings, and how `o1 tui` knows that a running server has its file.
fn file_digest(id: &str, bytes: u64, created: u64) -> String {
    let digest = Sha256::digest(format!("{id}\0{bytes}\0{created}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// [`file_digest`] of the file at `path`.
pub fn digest_of_file(path: &Path) -> Option<String> {
    let bytes = std::fs::metadata(path).ok()?.len();
    let (id, created) = file_identity(path);
    Some(file_digest(&id, bytes, created))
}

/// The model this server runs, as the APIs describe it.
pub struct ServedModel {
    /// The name clients ask for: the file's name without `.gguf`.
    pub id: String,
    pub info: ModelInfo,
    /// Seconds since 1970 of the file's last change.
    pub created: u64,
    /// See [`file_digest`].
    pub digest: String,
    /// The server's settings, which a request's fields override.
    pub sampling: Sampling,
    pub limits: Limits,
    pub system: String,
    /// The context asked for, if any.
    pub n_ctx: Option<u32>,
}

impl ServedModel {
    fn new(config: &EngineConfig, info: ModelInfo) -> Self {
        let (id, created) = file_identity(&config.model);
        let digest = file_digest(&id, info.file_bytes, created);
        ServedModel {
            id,
            digest,
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

/// Waits for a request's end: its summary, or the error it failed with.
async fn finished(mut updates: mpsc::UnboundedReceiver<Update>) -> Result<Summary, ApiError> {
    while let Some(update) = updates.recv().await {
        match update {
            Update::Done(s) if s.finish == queue::Finish::Cancelled => return Err(cancelled()),
            Update::Done(s) => return Ok(s),
            Update::Failed(e) => return Err(e),
            Update::Reasoning(_) | Update::ReasoningCut | Update::Answer(_) => {}
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
