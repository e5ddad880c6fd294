//! ollama's API, which many desktop clients speak alone: `/api/chat` and
//! `/api/generate` (NDJSON when streamed, the reasoning in `thinking`),
//! `/api/tags`, `/api/ps`, `/api/show` and `/api/version`; the embedding
//! routes answer that this model has none.
//!
//! The model always reasons (its format has the reasoning phase): `think:
//! false` leaves the reasoning out of the reply, and `"low"`, `"medium"` or
//! `"high"` set its budget as `reasoning_effort` does.

use std::convert::Infallible;
use std::time::SystemTime;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::stream::{self, StreamExt};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::guard::{ApiError, Caller, JsonBody, Shape};
use super::queue::{Finish, Summary, Update};
use super::request::{self, Effort, Knobs, RoleNames};
use super::{wire, AppState};
use crate::chat::{Message, Role};

pub async fn version() -> Json<Value> {
    Json(json!({"version": *super::VERSION}))
}

/// "1.5B", "494M": the parameter count as ollama shows it.
fn parameter_size(n: u64) -> String {
    if n >= 1_000_000_000 {
        format!("{:.1}B", n as f64 / 1e9)
    } else {
        format!("{}M", n / 1_000_000)
    }
}

fn details(state: &AppState) -> Value {
    let info = &state.model.info;
    json!({
        "parent_model": "",
        "format": "gguf",
        "family": info.architecture,
        "families": [info.architecture],
        "parameter_size": parameter_size(info.n_params),
        "quantization_level": info.file_type.to_uppercase(),
    })
}

fn modified_at(state: &AppState) -> String {
    let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(state.model.created);
    humantime::format_rfc3339_seconds(t).to_string()
}

pub async fn tags(State(state): State<AppState>) -> Json<Value> {
    let name = format!("{}:latest", state.model.id);
    Json(json!({"models": [{
        "name": name,
        "model": name,
        "modified_at": modified_at(&state),
        "size": state.model.info.file_bytes,
        "digest": state.model.digest,
        "details": details(&state),
    }]}))
}

/// `/api/ps`: the model in memory (none while it loads), its size and the
/// context it serves. It stays loaded while the server runs.
pub async fn ps(State(state): State<AppState>) -> Json<Value> {
    let Some(engine) = state.shared.engine.get() else {
        return Json(json!({"models": []}));
    };
    let loaded = engine.loaded();
    let name = format!("{}:latest", state.model.id);
    let size_vram = if loaded.gpu_layers > 0 {
        loaded.memory.total()
    } else {
        0
    };
    Json(json!({"models": [{
        "name": name,
        "model": name,
        "size": loaded.memory.total(),
        "digest": state.model.digest,
        "details": details(&state),
        "expires_at": "2318-01-01T00:00:00Z",
        "size_vram": size_vram,
        "context_length": loaded.n_ctx,
    }]}))
}

/// The embedding routes: this model writes text and has no embeddings.
pub async fn embed() -> ApiError {
    ApiError::unsupported_capability("embeddings").shaped(Shape::Ollama)
}

#[derive(Deserialize)]
pub struct ShowRequest {
    model: Option<String>,
    name: Option<String>,
}

pub async fn show(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<ShowRequest>,
) -> Result<Json<Value>, ApiError> {
    let name = req
        .model
        .or(req.name)
        .ok_or_else(|| ApiError::invalid_value("model", "is required").shaped(Shape::Ollama))?;
    state
        .check_model(&name)
        .map_err(|e| e.shaped(Shape::Ollama))?;
    let info = &state.model.info;
    let s = &state.model.sampling;
    let arch = &info.architecture;
    let n_ctx = state.served_context();
    let mut parameters = format!(
        "num_ctx {n_ctx}\ntemperature {}\ntop_k {}\ntop_p {}\nmin_p {}\nrepeat_penalty {}\nnum_predict {}",
        s.temperature, s.top_k, s.top_p, s.min_p, s.repeat_penalty, state.model.limits.answer
    );
    for stop in o1_gguf::prompt::STOPS {
        parameters.push_str(&format!("\nstop \"{stop}\""));
    }
    Ok(Json(json!({
        "license": "",
        "modelfile": format!("# o1 serves {}\nFROM {}", state.model.id, info.path.display()),
        "parameters": parameters,
        "template": go_template(),
        "details": details(&state),
        "model_info": {
            "general.architecture": arch,
            "general.parameter_count": info.n_params,
            "general.file_type": info.file_type,
            // What this server serves (clients size prompts by it), not the trained length.
            format!("{arch}.context_length"): n_ctx,
            format!("{arch}.block_count"): info.n_layer,
            format!("{arch}.embedding_length"): info.n_embd,
            format!("{arch}.attention.head_count"): info.n_head,
            format!("{arch}.attention.head_count_kv"): info.n_head_kv,
            format!("{arch}.vocab_size"): info.n_vocab,
        },
        "capabilities": ["completion", "thinking"],
        "modified_at": modified_at(&state),
    })))
}

/// The format in the Go template syntax ollama shows (its two phases: the
/// reasoning opener is the generation prompt; the answer's follows the
/// reasoning message).
fn go_template() -> String {
    use crate::chat::{IM_END, IM_START, REASONING};
    format!(
        "{{{{ range .Messages }}}}{IM_START}{{{{ .Role }}}}\n{{{{ .Content }}}}{IM_END}\n{{{{ end }}}}{IM_START}{REASONING}\n"
    )
}

#[derive(Deserialize)]
pub struct ChatRequest {
    model: Option<String>,
    #[serde(default)]
    messages: Vec<InMessage>,
    stream: Option<bool>,
    think: Option<Value>,
    format: Option<Value>,
    options: Option<Map<String, Value>>,
    tools: Option<Value>,
    keep_alive: Option<Value>,
}

#[derive(Deserialize)]
struct InMessage {
    role: String,
    #[serde(default)]
    content: String,
    thinking: Option<String>,
    images: Option<Vec<Value>>,
    tool_calls: Option<Value>,
}

/// The knobs of `think` and `options`, and whether the reply shows the
/// reasoning.
fn knobs(
    think: &Option<Value>,
    options: &Option<Map<String, Value>>,
) -> Result<(Knobs, bool), ApiError> {
    let mut knobs = Knobs::default();
    let show_thinking = match think {
        None | Some(Value::Null) | Some(Value::Bool(true)) => true,
        Some(Value::Bool(false)) => false,
        Some(Value::String(level)) => {
            knobs.effort = Some(
                Effort::parse(level)
                    .filter(|e| matches!(e, Effort::Low | Effort::Medium | Effort::High))
                    .ok_or_else(|| {
                        ApiError::invalid_value("think", "must be true, false, low, medium or high")
                    })?,
            );
            true
        }
        Some(_) => {
            return Err(ApiError::invalid_value(
                "think",
                "must be true, false, low, medium or high",
            ))
        }
    };
    let Some(options) = options else {
        return Ok((knobs, show_thinking));
    };
    let number = |key: &str| -> Result<Option<f64>, ApiError> {
        match options.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| {
                ApiError::invalid_value(&format!("options.{key}"), "must be a number")
            }),
        }
    };
    knobs.temperature = number("temperature")?.map(|v| v as f32);
    knobs.top_p = number("top_p")?.map(|v| v as f32);
    knobs.min_p = number("min_p")?.map(|v| v as f32);
    knobs.repeat_penalty = number("repeat_penalty")?.map(|v| v as f32);
    knobs.top_k = number("top_k")?.map(|v| v.max(0.0) as u32);
    knobs.seed = number("seed")?.map(|v| v as i64);
    // -1 (no limit) and -2 (fill the context) leave the server's budget.
    knobs.answer_tokens = number("num_predict")?.and_then(|v| (v >= 0.0).then_some(v as u64));
    match options.get("stop") {
        None | Some(Value::Null) => {}
        Some(Value::Array(stops)) => {
            for s in stops {
                let s = s.as_str().ok_or_else(|| {
                    ApiError::invalid_value("options.stop", "must be a list of strings")
                })?;
                knobs.stops.push(s.to_string());
            }
        }
        Some(Value::String(s)) => knobs.stops.push(s.clone()),
        Some(_) => {
            return Err(ApiError::invalid_value(
                "options.stop",
                "must be a list of strings",
            ))
        }
    }
    // Other options (num_ctx, num_gpu, num_thread, …) are the server's,
    // set when it starts.
    Ok((knobs, show_thinking))
}

/// Whether a field is given: not absent, null, "" or [].
fn given(v: &Option<Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(_) => true,
    }
}

fn refuse_format(format: &Option<Value>) -> Result<(), ApiError> {
    if given(format) {
        return Err(ApiError::unsupported(
            "format",
            "o1 does not constrain the answer to a format",
        ));
    }
    Ok(())
}

/// A request with nothing to generate loads the model, or with
/// `keep_alive: 0` unloads it: ollama answers with an empty, done reply.
/// o1 keeps its one model loaded while it serves.
fn load_or_unload(keep_alive: &Option<Value>) -> &'static str {
    let zero = match keep_alive {
        Some(Value::Number(n)) => n.as_f64() == Some(0.0),
        Some(Value::String(s)) => s.trim_end_matches(|c: char| c.is_ascii_alphabetic()) == "0",
        _ => false,
    };
    if zero {
        "unload"
    } else {
        "load"
    }
}

fn messages(input: Vec<InMessage>) -> Result<Vec<Message>, ApiError> {
    const NAMES: RoleNames = RoleNames {
        system: &["system"],
        tool: &["tool"],
        listed: "system, user or assistant",
    };
    let mut out = Vec::with_capacity(input.len() + 1);
    for (i, m) in input.into_iter().enumerate() {
        if m.images.as_ref().is_some_and(|v| !v.is_empty()) {
            return Err(ApiError::unsupported(
                &format!("messages[{i}].images"),
                "o1's model reads text only",
            ));
        }
        let calls_tools = m.tool_calls.as_ref().is_some_and(|t| !t.is_null());
        let role = request::message_role(i, &m.role, calls_tools, &NAMES)?;
        request::push_message(&mut out, role, m.content, m.thinking);
    }
    Ok(out)
}

pub async fn chat(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(req): JsonBody<ChatRequest>,
) -> Result<Response, ApiError> {
    chat_inner(state, caller, req)
        .await
        .map_err(|e| e.shaped(Shape::Ollama))
}

fn model_name(state: &AppState, model: &Option<String>) -> Result<String, ApiError> {
    state.require_model(model)?;
    Ok(format!("{}:latest", state.model.id))
}

async fn chat_inner(
    state: AppState,
    caller: Caller,
    req: ChatRequest,
) -> Result<Response, ApiError> {
    let model = model_name(&state, &req.model)?;
    if given(&req.tools) {
        return Err(ApiError::unsupported("tools", "o1 does not call tools"));
    }
    refuse_format(&req.format)?;
    let (knobs, show_thinking) = knobs(&req.think, &req.options)?;
    if req.messages.is_empty() {
        let reply = wire::OllamaResponse::line(&model, true, String::new(), None)
            .done(load_or_unload(&req.keep_alive), None);
        return Ok(Json(reply).into_response());
    }
    let messages = messages(req.messages)?;
    let updates = state.start(messages, knobs, caller)?;
    let reply = Reply {
        model,
        show_thinking,
        kind: Kind::Chat,
    };
    Ok(reply.respond(updates, req.stream.unwrap_or(true)).await)
}

/// `/api/generate`: a prompt, and optionally a system message, in the
/// two-phase format; or with `raw`, the prompt continued as it is.
#[derive(Deserialize)]
pub struct GenerateRequest {
    model: Option<String>,
    #[serde(default)]
    prompt: String,
    system: Option<String>,
    stream: Option<bool>,
    think: Option<Value>,
    format: Option<Value>,
    options: Option<Map<String, Value>>,
    keep_alive: Option<Value>,
    raw: Option<bool>,
    suffix: Option<String>,
    template: Option<String>,
    context: Option<Value>,
    images: Option<Value>,
}

pub async fn generate(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(req): JsonBody<GenerateRequest>,
) -> Result<Response, ApiError> {
    generate_inner(state, caller, req)
        .await
        .map_err(|e| e.shaped(Shape::Ollama))
}

async fn generate_inner(
    state: AppState,
    caller: Caller,
    req: GenerateRequest,
) -> Result<Response, ApiError> {
    let model = model_name(&state, &req.model)?;
    refuse_format(&req.format)?;
    if given(&req.images) {
        return Err(ApiError::unsupported(
            "images",
            "o1's model reads text only",
        ));
    }
    if req.suffix.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::unsupported(
            "suffix",
            "o1's model does not fill in the middle",
        ));
    }
    if req.template.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(ApiError::unsupported(
            "template",
            "o1 renders the format the model was trained on",
        ));
    }
    if given(&req.context) {
        return Err(ApiError::unsupported(
            "context",
            "send the conversation's messages to /api/chat instead",
        ));
    }
    let (knobs, show_thinking) = knobs(&req.think, &req.options)?;
    if req.prompt.trim().is_empty() {
        let mut reply = wire::OllamaResponse::line(&model, false, String::new(), None)
            .done(load_or_unload(&req.keep_alive), None);
        reply.context = None;
        return Ok(Json(reply).into_response());
    }
    let stream = req.stream.unwrap_or(true);
    if req.raw == Some(true) {
        let updates = state.start_raw(req.prompt, knobs, caller)?;
        let reply = Reply {
            model,
            show_thinking: false,
            kind: Kind::Generate,
        };
        return Ok(reply.respond(updates, stream).await);
    }
    let mut messages = Vec::with_capacity(2);
    if let Some(system) = req.system.filter(|s| !s.is_empty()) {
        messages.push(Message::new(Role::System, system));
    }
    messages.push(Message::new(Role::User, req.prompt));
    let updates = state.start(messages, knobs, caller)?;
    let reply = Reply {
        model,
        show_thinking,
        kind: Kind::Generate,
    };
    Ok(reply.respond(updates, stream).await)
}

/// Which route's shape a reply takes.
#[derive(Clone, Copy)]
enum Kind {
    /// `/api/chat`: the text in `message.content`, the reasoning in
    /// `message.thinking`.
    Chat,
    /// `/api/generate`: the text in `response`, the reasoning in `thinking`.
    Generate,
}

struct Reply {
    model: String,
    show_thinking: bool,
    kind: Kind,
}

impl Reply {
    /// A line with this text and reasoning (either may be empty).
    fn line(&self, content: &str, thinking: &str) -> wire::OllamaResponse<'_> {
        let shown = (self.show_thinking && !thinking.is_empty()).then(|| thinking.to_string());
        let chat = matches!(self.kind, Kind::Chat);
        wire::OllamaResponse::line(&self.model, chat, content.to_string(), shown)
    }

    fn last(&self, s: &Summary, content: &str, thinking: &str) -> wire::OllamaResponse<'_> {
        self.line(content, thinking)
            .done(s.finish.reason(), Some(s))
    }

    /// One JSON reply, or NDJSON lines as the text comes.
    async fn respond(self, updates: mpsc::UnboundedReceiver<Update>, stream: bool) -> Response {
        if !stream {
            return match super::finished(updates).await {
                Ok(s) => Json(self.last(&s, &s.answer, &s.reasoning)).into_response(),
                Err(e) => e.shaped(Shape::Ollama).into_response(),
            };
        }
        let lines = stream::unfold(
            (updates, self, false),
            |(mut updates, me, over)| async move {
                if over {
                    return None;
                }
                let (value, over) = match updates.recv().await? {
                    Update::ReasoningCut => (None, false),
                    Update::Reasoning(_) if !me.show_thinking => (None, false),
                    Update::Reasoning(t) => (Some(ndjson(&me.line("", &t))), false),
                    Update::Answer(t) => (Some(ndjson(&me.line(&t, ""))), false),
                    Update::Done(s) if s.finish == Finish::Cancelled => (
                        Some(ndjson(&super::cancelled().shaped(Shape::Ollama).body())),
                        true,
                    ),
                    Update::Done(s) => (Some(ndjson(&me.last(&s, "", ""))), true),
                    Update::Failed(e) => (Some(ndjson(&e.shaped(Shape::Ollama).body())), true),
                };
                let bytes = value.map(Bytes::from);
                Some((bytes, (updates, me, over)))
            },
        )
        .filter_map(|b| async move { b.map(Ok::<_, Infallible>) });
        (
            [(header::CONTENT_TYPE, "application/x-ndjson")],
            Body::from_stream(lines),
        )
            .into_response()
    }
}

/// A reply or an error body as a line of NDJSON.
fn ndjson(value: &impl serde::Serialize) -> String {
    let mut line = serde_json::to_string(value).unwrap_or_default();
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_sizes_read_as_ollama_shows_them() {
        assert_eq!(parameter_size(1_543_714_304), "1.5B");
        assert_eq!(parameter_size(494_032_768), "494M");
    }
}
