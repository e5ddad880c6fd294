//! OpenAI's Responses API, `POST /v1/responses`, which newer OpenAI clients
//! and coding agents use: the reasoning is an output item of its own
//! (`type: "reasoning"`, its text as `reasoning_text`), the answer a
//! `message` item. Streamed, it is the API's typed events. o1 stores no
//! responses, so `previous_response_id` is refused: send the conversation
//! as `input` items (reasoning items sent back are rendered as the turn's
//! reasoning).

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::stream::{self, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};

use super::guard::{ApiError, Caller, JsonBody};
use super::queue::{Finish, Summary, Update};
use super::request::{self, Effort, Knobs, RoleNames};
use super::AppState;
use crate::chat::{Message, Role};

#[derive(Deserialize)]
pub struct ResponsesRequest {
    model: Option<String>,
    input: Option<Value>,
    instructions: Option<String>,
    #[serde(default)]
    stream: bool,
    max_output_tokens: Option<u64>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    reasoning: Option<ReasoningOptions>,
    tools: Option<Value>,
    tool_choice: Option<Value>,
    text: Option<Value>,
    previous_response_id: Option<String>,
    top_logprobs: Option<u32>,
    /// Accepted and ignored: o1 keeps nothing (`store`), and the rest only
    /// labels the request.
    #[serde(default, rename = "store")]
    _store: Option<Value>,
    #[serde(default, rename = "metadata")]
    _metadata: Option<Value>,
    #[serde(default, rename = "user")]
    _user: Option<Value>,
}

#[derive(Deserialize)]
struct ReasoningOptions {
    effort: Option<String>,
}

/// The text part types an input item may hold.
const TEXT_PARTS: [&str; 5] = [
    "input_text",
    "output_text",
    "text",
    "reasoning_text",
    "summary_text",
];

/// An item's text: a string, or its text parts.
fn item_text(content: &Value, at: &str) -> Result<String, ApiError> {
    request::text_of(content, at, &TEXT_PARTS)
}

/// The conversation in the model's terms: `instructions` as the system
/// message, then the input items.
fn messages(input: Value, instructions: Option<String>) -> Result<Vec<Message>, ApiError> {
    const NAMES: RoleNames = RoleNames {
        system: &["system", "developer"],
        tool: &["tool"],
        listed: "system, developer, user or assistant",
    };
    let mut out = Vec::new();
    if let Some(i) = instructions.filter(|i| !i.is_empty()) {
        out.push(Message::new(Role::System, i));
    }
    let items = match input {
        Value::String(text) => {
            out.push(Message::new(Role::User, text));
            return Ok(out);
        }
        Value::Array(items) => items,
        _ => {
            return Err(ApiError::invalid_value(
                "input",
                "must be a string or a list of items",
            ))
        }
    };
    for (i, item) in items.into_iter().enumerate() {
        let at = format!("input[{i}]");
        match item
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("message")
        {
            "message" => {
                let role = item.get("role").and_then(Value::as_str).unwrap_or("");
                let role = request::message_role(i, role, false, &NAMES).map_err(|e| ApiError {
                    param: Some(format!("{at}.role")),
                    ..e
                })?;
                let text = item_text(
                    item.get("content").unwrap_or(&Value::Null),
                    &format!("{at}.content"),
                )?;
                request::push_message(&mut out, role, text, None);
            }
            "reasoning" => {
                let content = item.get("content").filter(|c| !c.is_null());
                let text = match content {
                    Some(c) => item_text(c, &format!("{at}.content"))?,
                    None => item_text(
                        item.get("summary").unwrap_or(&Value::Null),
                        &format!("{at}.summary"),
                    )?,
                };
                out.push(Message::new(Role::Reasoning, text));
            }
            kind @ ("function_call"
            | "function_call_output"
            | "custom_tool_call"
            | "custom_tool_call_output") => {
                return Err(ApiError::unsupported(
                    &format!("{at}.type"),
                    &format!("o1 does not call tools (`{kind}`)"),
                ));
            }
            other => {
                return Err(ApiError::unsupported(
                    &format!("{at}.type"),
                    &format!("items of type `{other}`"),
                ));
            }
        }
    }
    Ok(out)
}

impl ResponsesRequest {
    fn refuse_unsupported(&self) -> Result<(), ApiError> {
        if self.previous_response_id.is_some() {
            return Err(ApiError::unsupported(
                "previous_response_id",
                "o1 stores no responses; send the conversation as `input` items",
            ));
        }
        if self
            .tools
            .as_ref()
            .is_some_and(|t| t.as_array().is_none_or(|a| !a.is_empty()))
        {
            return Err(ApiError::unsupported("tools", "o1 does not call tools"));
        }
        if self.tool_choice.as_ref().is_some_and(|c| {
            !c.is_null() && c.as_str() != Some("none") && c.as_str() != Some("auto")
        }) {
            return Err(ApiError::unsupported(
                "tool_choice",
                "o1 does not call tools",
            ));
        }
        if let Some(text) = &self.text {
            let kind = text.pointer("/format/type").and_then(Value::as_str);
            if kind.is_some_and(|k| k != "text") {
                return Err(ApiError::unsupported(
                    "text.format",
                    "o1 does not constrain the answer to a format; only {\"type\": \"text\"}",
                ));
            }
        }
        if self.top_logprobs.is_some_and(|n| n > 0) {
            return Err(ApiError::unsupported(
                "top_logprobs",
                "o1 does not report log probabilities",
            ));
        }
        Ok(())
    }
}

/// What every form of the response object repeats.
#[derive(Clone)]
struct Head {
    id: String,
    created_at: u64,
    model: String,
    instructions: Option<String>,
    max_output_tokens: Option<u64>,
    effort: Option<String>,
    reasoning_id: String,
    message_id: String,
}

impl Head {
    fn reasoning_item(&self, text: &str, status: &str) -> Value {
        let content = if status == "in_progress" {
            json!([])
        } else {
            json!([{"type": "reasoning_text", "text": text}])
        };
        json!({"type": "reasoning", "id": self.reasoning_id, "summary": [],
               "content": content, "status": status})
    }

    fn text_part(text: &str) -> Value {
        json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
    }

    fn message_item(&self, text: &str, status: &str) -> Value {
        let content = if status == "in_progress" {
            json!([])
        } else {
            json!([Self::text_part(text)])
        };
        json!({"type": "message", "id": self.message_id, "status": status,
               "role": "assistant", "content": content})
    }

    /// The response object; `summary` when it has ended.
    fn object(&self, summary: Option<&Summary>) -> Value {
        let (status, incomplete, output, usage) = match summary {
            None => ("in_progress", Value::Null, json!([]), Value::Null),
            Some(s) => {
                let mut output = Vec::new();
                if !s.reasoning.is_empty() {
                    output.push(self.reasoning_item(&s.reasoning, "completed"));
                }
                let (status, incomplete) = match s.finish {
                    Finish::Length => ("incomplete", json!({"reason": "max_output_tokens"})),
                    _ => ("completed", Value::Null),
                };
                output.push(self.message_item(&s.answer, status));
                let out_tokens = s.reasoning_tokens + s.answer_tokens;
                let usage = json!({
                    "input_tokens": s.prompt_tokens,
                    "input_tokens_details": {"cached_tokens": s.cached_tokens},
                    "output_tokens": out_tokens,
                    "output_tokens_details": {"reasoning_tokens": s.reasoning_tokens},
                    "total_tokens": s.prompt_tokens + out_tokens,
                });
                (status, incomplete, json!(output), usage)
            }
        };
        json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "error": null,
            "incomplete_details": incomplete,
            "instructions": self.instructions,
            "max_output_tokens": self.max_output_tokens,
            "model": self.model,
            "output": output,
            "parallel_tool_calls": false,
            "previous_response_id": null,
            "reasoning": {"effort": self.effort, "summary": null},
            "store": false,
            "text": {"format": {"type": "text"}},
            "tool_choice": "none",
            "tools": [],
            "truncation": "disabled",
            "usage": usage,
            "metadata": {},
        })
    }
}

pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(req): JsonBody<ResponsesRequest>,
) -> Result<Response, ApiError> {
    state.require_model(&req.model)?;
    req.refuse_unsupported()?;
    let effort_name = req.reasoning.as_ref().and_then(|r| r.effort.clone());
    let effort = match effort_name.as_deref() {
        None => None,
        Some(e) => Some(Effort::parse(e).ok_or_else(|| {
            ApiError::invalid_value(
                "reasoning.effort",
                format!("is `{e}`: must be none, minimal, low, medium or high"),
            )
        })?),
    };
    let knobs = Knobs {
        answer_tokens: req.max_output_tokens,
        effort,
        temperature: req.temperature,
        top_p: req.top_p,
        ..Knobs::default()
    };
    let input = req
        .input
        .ok_or_else(|| ApiError::invalid_value("input", "is required"))?;
    let messages = messages(input, req.instructions.clone())?;
    let updates = state.start(messages, knobs, caller)?;
    let head = Head {
        id: super::response_id("resp"),
        created_at: super::unix_now(),
        model: state.model.id.clone(),
        instructions: req.instructions,
        max_output_tokens: req.max_output_tokens,
        effort: effort_name,
        reasoning_id: super::response_id("rs"),
        message_id: super::response_id("msg"),
    };
    if !req.stream {
        let s = super::finished(updates).await?;
        return Ok(Json(head.object(Some(&s))).into_response());
    }
    let mut events = Events {
        head,
        sequence: 0,
        part: Part::None,
        reasoning: String::new(),
        answer: String::new(),
    };
    let started = events.head.object(None);
    let first = vec![
        events.event("response.created", json!({"response": started})),
        events.event("response.in_progress", json!({"response": started})),
    ];
    let rest = stream::unfold(
        (updates, events, false),
        |(mut updates, mut e, over)| async move {
            if over {
                return None;
            }
            let (events, over) = match updates.recv().await? {
                Update::Reasoning(t) => (e.reasoning(&t), false),
                Update::ReasoningCut => (vec![], false),
                Update::Answer(t) => (e.answer(&t), false),
                Update::Done(s) if s.finish == Finish::Cancelled => {
                    (vec![e.error(&super::cancelled())], true)
                }
                Update::Done(s) => (e.done(&s), true),
                Update::Failed(err) => (vec![e.error(&err)], true),
            };
            Some((events, (updates, e, over)))
        },
    );
    let all = stream::iter([first])
        .chain(rest)
        .flat_map(|events| stream::iter(events.into_iter().map(Ok::<_, Infallible>)));
    Ok(Sse::new(all)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// Which output item is open in a stream.
#[derive(PartialEq)]
enum Part {
    None,
    Reasoning,
    Answer,
}

/// The typed events of a streamed response, numbered.
struct Events {
    head: Head,
    sequence: u64,
    part: Part,
    reasoning: String,
    answer: String,
}

impl Events {
    fn event(&mut self, kind: &str, mut body: Value) -> SseEvent {
        body["type"] = json!(kind);
        body["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        SseEvent::default().event(kind).data(body.to_string())
    }

    fn reasoning(&mut self, text: &str) -> Vec<SseEvent> {
        let mut out = Vec::new();
        if self.part == Part::None {
            self.part = Part::Reasoning;
            let item = self.head.reasoning_item("", "in_progress");
            out.push(self.event(
                "response.output_item.added",
                json!({"output_index": 0, "item": item}),
            ));
        }
        self.reasoning.push_str(text);
        let id = self.head.reasoning_id.clone();
        out.push(self.event(
            "response.reasoning_text.delta",
            json!({"item_id": id, "output_index": 0, "content_index": 0, "delta": text}),
        ));
        out
    }

    /// Closes the reasoning item, if one is open.
    fn end_reasoning(&mut self) -> Vec<SseEvent> {
        if self.part != Part::Reasoning {
            return vec![];
        }
        let (id, text) = (self.head.reasoning_id.clone(), self.reasoning.clone());
        let item = self.head.reasoning_item(&text, "completed");
        vec![
            self.event(
                "response.reasoning_text.done",
                json!({"item_id": id, "output_index": 0, "content_index": 0, "text": text}),
            ),
            self.event(
                "response.output_item.done",
                json!({"output_index": 0, "item": item}),
            ),
        ]
    }

    fn message_index(&self) -> usize {
        usize::from(!self.reasoning.is_empty())
    }

    /// Opens the message item, after closing the reasoning.
    fn open_message(&mut self) -> Vec<SseEvent> {
        if self.part == Part::Answer {
            return vec![];
        }
        let mut out = self.end_reasoning();
        self.part = Part::Answer;
        let (id, index) = (self.head.message_id.clone(), self.message_index());
        let item = self.head.message_item("", "in_progress");
        out.push(self.event(
            "response.output_item.added",
            json!({"output_index": index, "item": item}),
        ));
        out.push(self.event(
            "response.content_part.added",
            json!({"item_id": id, "output_index": index, "content_index": 0, "part": Head::text_part("")}),
        ));
        out
    }

    fn answer(&mut self, text: &str) -> Vec<SseEvent> {
        let mut out = self.open_message();
        self.answer.push_str(text);
        let (id, index) = (self.head.message_id.clone(), self.message_index());
        out.push(self.event(
            "response.output_text.delta",
            json!({"item_id": id, "output_index": index, "content_index": 0, "delta": text, "logprobs": []}),
        ));
        out
    }

    fn done(&mut self, s: &Summary) -> Vec<SseEvent> {
        let mut out = self.open_message();
        let (id, index, text) = (
            self.head.message_id.clone(),
            self.message_index(),
            self.answer.clone(),
        );
        let status = if s.finish == Finish::Length {
            "incomplete"
        } else {
            "completed"
        };
        let item = self.head.message_item(&text, status);
        out.push(self.event(
            "response.output_text.done",
            json!({"item_id": id, "output_index": index, "content_index": 0, "text": text, "logprobs": []}),
        ));
        out.push(self.event(
            "response.content_part.done",
            json!({"item_id": id, "output_index": index, "content_index": 0, "part": Head::text_part(&text)}),
        ));
        out.push(self.event(
            "response.output_item.done",
            json!({"output_index": index, "item": item}),
        ));
        let response = self.head.object(Some(s));
        let kind = if status == "incomplete" {
            "response.incomplete"
        } else {
            "response.completed"
        };
        out.push(self.event(kind, json!({"response": response})));
        out
    }

    fn error(&mut self, e: &ApiError) -> SseEvent {
        let body = json!({"code": e.code, "message": e.message, "param": e.param});
        self.event("error", body)
    }
}
