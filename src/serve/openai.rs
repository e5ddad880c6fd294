//! OpenAI's chat completions API: `GET /v1/models` and `POST
//! /v1/chat/completions`, streamed (server-sent events) or not. The
//! reasoning travels apart from the answer as `reasoning_content`, the
//! convention of DeepSeek's API, llama-server and LM Studio.

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::guard::{ApiError, Caller, JsonBody};
use super::queue::{Finish, Update};
use super::request::{self, Knobs, RoleNames};
use super::{wire, AppState};
use crate::chat::{Message, Role};

pub async fn models(State(state): State<AppState>) -> Response {
    Json(wire::ModelList {
        object: "list",
        data: vec![wire::Model::new(&state.model.id, state.model.created)],
    })
    .into_response()
}

/// `GET /v1/models/{id}`: the model, if it is this server's.
pub async fn model(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    state.check_model(&id)?;
    Ok(Json(wire::Model::new(&state.model.id, state.model.created)).into_response())
}

/// `/v1/completions`: a raw prompt continued as it is (no template, no
/// reasoning phase). The prompt may spell the model's markers.
#[derive(Deserialize)]
pub struct CompletionRequest {
    model: Option<String>,
    prompt: Option<Value>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    max_tokens: Option<u64>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<u32>,
    min_p: Option<f32>,
    repeat_penalty: Option<f32>,
    seed: Option<i64>,
    stop: Option<Stops>,
    n: Option<u32>,
    best_of: Option<u32>,
    echo: Option<bool>,
    logprobs: Option<Value>,
    suffix: Option<String>,
    logit_bias: Option<Value>,
}

pub async fn completions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(req): JsonBody<CompletionRequest>,
) -> Result<Response, ApiError> {
    state.require_model(&req.model)?;
    let prompt = match req.prompt {
        Some(Value::String(p)) => p,
        Some(Value::Array(mut a)) if a.len() == 1 && a[0].is_string() => {
            a.remove(0).as_str().unwrap_or_default().to_string()
        }
        Some(Value::Array(_)) => {
            return Err(ApiError::unsupported(
                "prompt",
                "one prompt per request (a string, or a list of one string)",
            ))
        }
        _ => return Err(ApiError::invalid_value("prompt", "must be a string")),
    };
    for (name, asked) in [
        ("n", req.n.is_some_and(|n| n != 1)),
        ("best_of", req.best_of.is_some_and(|n| n != 1)),
        ("echo", req.echo == Some(true)),
        (
            "logprobs",
            req.logprobs.as_ref().is_some_and(|v| !v.is_null()),
        ),
        ("suffix", req.suffix.as_ref().is_some_and(|s| !s.is_empty())),
        (
            "logit_bias",
            req.logit_bias
                .as_ref()
                .is_some_and(|v| v.as_object().is_some_and(|o| !o.is_empty())),
        ),
    ] {
        if asked {
            return Err(ApiError::unsupported(
                name,
                "o1 writes one plain continuation",
            ));
        }
    }
    let knobs = Knobs {
        answer_tokens: req.max_tokens,
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req.top_k,
        min_p: req.min_p,
        repeat_penalty: req.repeat_penalty,
        seed: req.seed,
        stops: req.stop.map_or_else(Vec::new, Stops::into_vec),
        ..Knobs::default()
    };
    let updates = state.start_raw(prompt, knobs, caller)?;
    let id = super::response_id("cmpl");
    let created = super::unix_now();
    let model = state.model.id.clone();
    let choice = move |text: &str, finish: Option<&str>| {
        json!({
            "id": id,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": finish}],
        })
    };
    if !req.stream {
        let s = super::finished(updates).await?;
        let mut reply = choice(&s.answer, Some(s.finish.reason()));
        reply["usage"] = json!(wire::Usage::of(&s));
        return Ok(Json(reply).into_response());
    }
    let include_usage = req.stream_options.is_some_and(|o| o.include_usage);
    let data = |v: &Value| SseEvent::default().data(v.to_string());
    let events = stream::unfold((updates, false), move |(mut updates, over)| {
        let choice = choice.clone();
        async move {
            if over {
                return None;
            }
            let (events, over) = match updates.recv().await? {
                Update::Reasoning(_) | Update::ReasoningCut => (vec![], false),
                Update::Answer(t) => (vec![data(&choice(&t, None))], false),
                Update::Done(s) if s.finish == Finish::Cancelled => {
                    (vec![error_event(&super::cancelled())], true)
                }
                Update::Done(s) => {
                    let mut last = choice("", Some(s.finish.reason()));
                    if include_usage {
                        last["usage"] = json!(wire::Usage::of(&s));
                    }
                    (vec![data(&last), SseEvent::default().data("[DONE]")], true)
                }
                Update::Failed(e) => (vec![error_event(&e)], true),
            };
            Some((events, (updates, over)))
        }
    })
    .flat_map(|events| stream::iter(events.into_iter().map(Ok::<_, Infallible>)));
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// `/v1/embeddings`: this model writes text and has no embeddings.
pub async fn embeddings() -> ApiError {
    ApiError::unsupported_capability("embeddings")
}

/// A chat completion request. The fields o1 cannot honour are read only to
/// refuse them by name.
#[derive(Deserialize)]
pub struct ChatRequest {
    model: Option<String>,
    messages: Vec<InMessage>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    /// o1's: the reasoning phase's budget (takes precedence over `reasoning_effort`).
    max_reasoning_tokens: Option<u64>,
    reasoning_effort: Option<String>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    /// llama-server's extensions.
    top_k: Option<u32>,
    min_p: Option<f32>,
    repeat_penalty: Option<f32>,
    seed: Option<i64>,
    stop: Option<Stops>,
    n: Option<u32>,
    tools: Option<Value>,
    tool_choice: Option<Value>,
    functions: Option<Value>,
    function_call: Option<Value>,
    response_format: Option<Value>,
    logprobs: Option<bool>,
    top_logprobs: Option<u32>,
    logit_bias: Option<Value>,
    presence_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
    audio: Option<Value>,
    modalities: Option<Vec<String>>,
    prediction: Option<Value>,
    web_search_options: Option<Value>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Clone, Deserialize)]
#[serde(untagged)]
pub enum Stops {
    One(String),
    Many(Vec<String>),
}

impl Stops {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Stops::One(s) => vec![s],
            Stops::Many(v) => v,
        }
    }
}

#[derive(Deserialize)]
struct InMessage {
    role: String,
    #[serde(default)]
    content: Value,
    reasoning_content: Option<String>,
    tool_calls: Option<Value>,
}

/// The request's messages in the model's terms; a message's
/// `reasoning_content` becomes the `<|reasoning|>` message before it. A
/// last assistant message with reasoning and no content asks for the answer
/// after that reasoning (a client that cut the reasoning short).
fn messages(input: Vec<InMessage>) -> Result<Vec<Message>, ApiError> {
    const NAMES: RoleNames = RoleNames {
        system: &["system", "developer"],
        tool: &["tool", "function"],
        listed: "system, developer, user or assistant",
    };
    let mut out = Vec::with_capacity(input.len() + 1);
    for (i, m) in input.into_iter().enumerate() {
        let calls_tools = m.tool_calls.as_ref().is_some_and(|t| !t.is_null());
        let role = request::message_role(i, &m.role, calls_tools, &NAMES)?;
        request::push_message(
            &mut out,
            role,
            request::text_of(&m.content, &format!("messages[{i}].content"), &["text"])?,
            m.reasoning_content,
        );
    }
    if let [.., Message {
        role: Role::Reasoning,
        ..
    }, last] = out.as_slice()
    {
        if last.role == Role::Assistant && last.content.is_empty() {
            out.pop();
        }
    }
    Ok(out)
}

impl ChatRequest {
    /// Refuses, by name, what o1 cannot honour.
    fn refuse_unsupported(&self) -> Result<(), ApiError> {
        let non_empty = |v: &Option<Value>| match v {
            None | Some(Value::Null) => false,
            Some(Value::Array(a)) => !a.is_empty(),
            Some(Value::Object(o)) => !o.is_empty(),
            Some(_) => true,
        };
        if self.n.is_some_and(|n| n != 1) {
            return Err(ApiError::unsupported(
                "n",
                "o1 writes one choice per request",
            ));
        }
        for (name, value) in [("tools", &self.tools), ("functions", &self.functions)] {
            if non_empty(value) {
                return Err(ApiError::unsupported(name, "o1 does not call tools"));
            }
        }
        for (name, value) in [
            ("tool_choice", &self.tool_choice),
            ("function_call", &self.function_call),
        ] {
            if non_empty(value) && value.as_ref().and_then(Value::as_str) != Some("none") {
                return Err(ApiError::unsupported(name, "o1 does not call tools"));
            }
        }
        if let Some(format) = &self.response_format {
            if format.get("type").and_then(Value::as_str) != Some("text") {
                return Err(ApiError::unsupported(
                    "response_format",
                    "o1 does not constrain the answer to a format; only {\"type\": \"text\"}",
                ));
            }
        }
        if self.logprobs == Some(true) || self.top_logprobs.is_some() {
            let name = if self.logprobs == Some(true) {
                "logprobs"
            } else {
                "top_logprobs"
            };
            return Err(ApiError::unsupported(
                name,
                "o1 does not report log probabilities",
            ));
        }
        if non_empty(&self.logit_bias) {
            return Err(ApiError::unsupported(
                "logit_bias",
                "o1 does not bias tokens",
            ));
        }
        for (name, value) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if value.is_some_and(|v| v != 0.0) {
                return Err(ApiError::unsupported(
                    name,
                    "o1 has `repeat_penalty` (llama.cpp's) instead",
                ));
            }
        }
        if non_empty(&self.audio) {
            return Err(ApiError::unsupported(
                "audio",
                "o1's model writes text only",
            ));
        }
        if self
            .modalities
            .as_ref()
            .is_some_and(|m| m.iter().any(|m| m != "text"))
        {
            return Err(ApiError::unsupported(
                "modalities",
                "o1's model writes text only",
            ));
        }
        if non_empty(&self.prediction) {
            return Err(ApiError::unsupported(
                "prediction",
                "o1 takes no predicted output",
            ));
        }
        if non_empty(&self.web_search_options) {
            return Err(ApiError::unsupported(
                "web_search_options",
                "o1 runs offline",
            ));
        }
        Ok(())
    }

    fn knobs(&self) -> Result<Knobs, ApiError> {
        let answer = self.max_completion_tokens.or(self.max_tokens);
        let effort = match self.reasoning_effort.as_deref() {
            None => None,
            Some(e) => Some(request::Effort::parse(e).ok_or_else(|| {
                ApiError::invalid_value(
                    "reasoning_effort",
                    format!("is `{e}`: must be none, minimal, low, medium or high"),
                )
            })?),
        };
        Ok(Knobs {
            answer_tokens: answer,
            reasoning_tokens: self.max_reasoning_tokens,
            effort,
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            seed: self.seed,
            stops: self.stop.clone().map_or_else(Vec::new, Stops::into_vec),
        })
    }
}

pub async fn chat_completions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(req): JsonBody<ChatRequest>,
) -> Result<Response, ApiError> {
    state.require_model(&req.model)?;
    req.refuse_unsupported()?;
    let knobs = req.knobs()?;
    let (stream, include_usage) = (
        req.stream,
        req.stream_options.as_ref().is_some_and(|o| o.include_usage),
    );
    let messages = messages(req.messages)?;
    let updates = state.start(messages, knobs, caller)?;
    let header = wire::Header {
        id: super::response_id("chatcmpl"),
        created: super::unix_now(),
        model: state.model.id.clone(),
    };
    if stream {
        let chunks = Chunks {
            header,
            include_usage,
        };
        return Ok(Sse::new(chunks.stream(updates))
            .keep_alive(KeepAlive::default())
            .into_response());
    }
    let summary = super::finished(updates).await?;
    Ok(Json(header.reply(&summary)).into_response())
}

/// The chunks of a streamed completion.
struct Chunks {
    header: wire::Header,
    include_usage: bool,
}

impl Chunks {
    fn event(value: &impl serde::Serialize) -> SseEvent {
        SseEvent::default().data(serde_json::to_string(value).unwrap_or_default())
    }

    fn chunk(&self, delta: wire::Delta, finish: Option<&'static str>) -> SseEvent {
        Self::event(&self.header.chunk(delta, finish, self.include_usage))
    }

    /// The role first, then a delta per piece of text (the reasoning's as
    /// `reasoning_content`, then the answer's as `content`), the finish
    /// reason, the usage if asked, and `[DONE]`. A failure is an error
    /// event, after which the stream ends.
    fn stream(
        self,
        updates: mpsc::UnboundedReceiver<Update>,
    ) -> impl Stream<Item = Result<SseEvent, Infallible>> {
        let first = self.chunk(
            wire::Delta {
                role: Some("assistant"),
                content: Some(String::new()),
                ..Default::default()
            },
            None,
        );
        let start = stream::iter([Ok(first)]);
        let rest = stream::unfold(
            (self, updates, false),
            |(me, mut updates, over)| async move {
                if over {
                    return None;
                }
                let events = match updates.recv().await {
                    Some(Update::Reasoning(t)) => vec![me.chunk(
                        wire::Delta {
                            reasoning_content: Some(t),
                            ..Default::default()
                        },
                        None,
                    )],
                    Some(Update::ReasoningCut) => vec![me.chunk(
                        wire::Delta {
                            reasoning_stop: Some("length"),
                            ..Default::default()
                        },
                        None,
                    )],
                    Some(Update::Answer(t)) => vec![me.chunk(
                        wire::Delta {
                            content: Some(t),
                            ..Default::default()
                        },
                        None,
                    )],
                    Some(Update::Done(s)) if s.finish == Finish::Cancelled => {
                        return Some((vec![error_event(&super::cancelled())], (me, updates, true)))
                    }
                    Some(Update::Done(s)) => {
                        let mut last = me.header.chunk(
                            wire::Delta::default(),
                            Some(s.finish.reason()),
                            me.include_usage,
                        );
                        last.timings = Some(wire::Timings::of(&s));
                        let mut events = vec![Self::event(&last)];
                        if me.include_usage {
                            events.push(Self::event(&me.header.usage_chunk(&s)));
                        }
                        events.push(SseEvent::default().data("[DONE]"));
                        return Some((events, (me, updates, true)));
                    }
                    Some(Update::Failed(e)) => {
                        return Some((vec![error_event(&e)], (me, updates, true)))
                    }
                    None => return None,
                };
                Some((events, (me, updates, false)))
            },
        )
        .flat_map(|events| stream::iter(events.into_iter().map(Ok)));
        start.chain(rest)
    }
}

fn error_event(e: &ApiError) -> SseEvent {
    SseEvent::default().data(e.body().to_string())
}
