//! ollama's API, which many desktop clients speak alone: `/api/chat`
//! (NDJSON when streamed, the reasoning in `thinking`), `/api/tags`,
//! `/api/show` and `/api/version`.
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
use axum::Json;
use futures_util::stream::{self, StreamExt};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::guard::{ApiError, JsonBody, Shape};
use super::queue::{Finish, Job, Summary, Update};
use super::{AppState, Effort, Knobs, RoleNames};
use crate::chat::Message;

pub async fn version() -> Json<Value> {
    Json(json!({"version": env!("CARGO_PKG_VERSION")}))
}

fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
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
    // Names the file by name, size and time (hashing gigabytes per listing would be slow).
    let digest = Sha256::digest(
        format!(
            "{}\0{}\0{}",
            state.model.id, state.model.info.file_bytes, state.model.created
        )
        .as_bytes(),
    );
    let digest: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Json(json!({"models": [{
        "name": name,
        "model": name,
        "modified_at": modified_at(&state),
        "size": state.model.info.file_bytes,
        "digest": digest,
        "details": details(&state),
    }]}))
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
    let mut parameters = format!(
        "temperature {}\ntop_k {}\ntop_p {}\nmin_p {}\nrepeat_penalty {}\nnum_predict {}",
        s.temperature, s.top_k, s.top_p, s.min_p, s.repeat_penalty, state.model.limits.answer
    );
    for stop in ["<|im_end|>", "<|endoftext|>"] {
        parameters.push_str(&format!("\nstop \"{stop}\""));
    }
    Ok(Json(json!({
        "license": "",
        "modelfile": format!("# o1 serves {}\nFROM {}", state.model.id, info.path.display()),
        "parameters": parameters,
        "template": "{{ range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}\
                     <|im_start|><|reasoning|>\n … <|im_end|>\n<|im_start|>assistant\n",
        "details": details(&state),
        "model_info": {
            "general.architecture": arch,
            "general.parameter_count": info.n_params,
            "general.file_type": info.file_type,
            format!("{arch}.context_length"): info.n_ctx_train,
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

#[derive(Deserialize)]
pub struct ChatRequest {
    model: Option<String>,
    messages: Vec<InMessage>,
    stream: Option<bool>,
    think: Option<Value>,
    format: Option<Value>,
    options: Option<Map<String, Value>>,
    tools: Option<Value>,
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

impl ChatRequest {
    /// The knobs, and whether the reply shows the reasoning.
    fn knobs(&self) -> Result<(Knobs, bool), ApiError> {
        let mut knobs = Knobs::default();
        let show_thinking = match &self.think {
            None | Some(Value::Null) | Some(Value::Bool(true)) => true,
            Some(Value::Bool(false)) => false,
            Some(Value::String(level)) => {
                knobs.effort = Some(
                    Effort::parse(level)
                        .filter(|e| matches!(e, Effort::Low | Effort::Medium | Effort::High))
                        .ok_or_else(|| {
                            ApiError::invalid_value(
                                "think",
                                "must be true, false, low, medium or high",
                            )
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
        let Some(options) = &self.options else {
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

    fn refuse_unsupported(&self) -> Result<(), ApiError> {
        let set = |v: &Option<Value>| match v {
            None | Some(Value::Null) => false,
            Some(Value::String(s)) => !s.is_empty(),
            Some(Value::Array(a)) => !a.is_empty(),
            Some(_) => true,
        };
        if set(&self.tools) {
            return Err(ApiError::unsupported("tools", "o1 does not call tools"));
        }
        if set(&self.format) {
            return Err(ApiError::unsupported(
                "format",
                "o1 does not constrain the answer to a format",
            ));
        }
        Ok(())
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
        let role = super::message_role(i, &m.role, calls_tools, &NAMES)?;
        super::push_message(&mut out, role, m.content, m.thinking);
    }
    Ok(out)
}

pub async fn chat(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<ChatRequest>,
) -> Result<Response, ApiError> {
    chat_inner(state, req)
        .await
        .map_err(|e| e.shaped(Shape::Ollama))
}

async fn chat_inner(state: AppState, req: ChatRequest) -> Result<Response, ApiError> {
    let model = req
        .model
        .clone()
        .ok_or_else(|| ApiError::invalid_value("model", "is required"))?;
    state.check_model(&model)?;
    req.refuse_unsupported()?;
    let (knobs, show_thinking) = req.knobs()?;
    let stream = req.stream.unwrap_or(true);
    let messages = messages(req.messages)?;
    let (request, stops) = state.completion(messages, knobs)?;
    let (out, updates) = mpsc::unbounded_channel();
    state.queue.push(Job {
        request,
        stops,
        out,
    })?;
    let model = format!("{}:latest", state.model.id);
    if !stream {
        let s = super::finished(updates).await?;
        let mut message = json!({"role": "assistant", "content": s.answer});
        if show_thinking {
            message["thinking"] = json!(s.reasoning);
        }
        let mut reply = json!({"model": model, "created_at": now(), "message": message});
        done_fields(&mut reply, &s);
        return Ok(Json(reply).into_response());
    }
    let lines = stream::unfold((updates, false), move |(mut updates, over)| {
        let model = model.clone();
        async move {
            if over {
                return None;
            }
            let line = |message: Value| json!({"model": model, "created_at": now(), "message": message, "done": false});
            let (value, over) = match updates.recv().await? {
                Update::Reasoning(_) if !show_thinking => (None, false),
                Update::Reasoning(t) => (
                    Some(line(json!({"role": "assistant", "content": "", "thinking": t}))),
                    false,
                ),
                Update::Answer(t) => (Some(line(json!({"role": "assistant", "content": t}))), false),
                Update::Done(s) if s.finish == Finish::Cancelled => {
                    (Some(super::cancelled().shaped(Shape::Ollama).body()), true)
                }
                Update::Done(s) => {
                    let mut last = line(json!({"role": "assistant", "content": ""}));
                    done_fields(&mut last, &s);
                    (Some(last), true)
                }
                Update::Failed(e) => (Some(e.shaped(Shape::Ollama).body()), true),
            };
            let bytes = value.map(|v| Bytes::from(format!("{v}\n")));
            Some((bytes, (updates, over)))
        }
    })
    .filter_map(|b| async move { b.map(Ok::<_, Infallible>) });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response())
}

/// The last message's fields: why it ended and the figures, in nanoseconds.
fn done_fields(reply: &mut Value, s: &Summary) {
    let ns = |seconds: f64| (seconds * 1e9) as u64;
    reply["done"] = json!(true);
    reply["done_reason"] = json!(s.finish.reason());
    reply["total_duration"] = json!(ns(s.total_seconds));
    reply["load_duration"] = json!(0);
    reply["prompt_eval_count"] = json!(s.prompt_tokens - s.cached_tokens);
    reply["prompt_eval_duration"] = json!(ns(s.prompt_seconds));
    reply["eval_count"] = json!(s.reasoning_tokens + s.answer_tokens);
    reply["eval_duration"] = json!(ns(s.generation_seconds));
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
