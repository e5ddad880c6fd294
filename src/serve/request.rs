//! A request in either API's words, translated for the engine: its
//! messages with the server's system message and remembered reasoning,
//! its sampling and budgets checked against the bounds the settings use
//! too, and queued.

use serde_json::Value;
use tokio::sync::mpsc;

use super::guard::{ApiError, Caller};
use super::queue::{Job, Update, Work};
use super::{remember, AppState};
use crate::chat::{Message, Role};
use crate::engine::{bounds, Completion, Limits, RawCompletion, Sampling};

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

/// A message's text: a string, or its parts, each of a type in `kinds`
/// (a part of another type, an image say, is refused by name).
pub fn text_of(content: &Value, param: &str, kinds: &[&str]) -> Result<String, ApiError> {
    match content {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut text = String::new();
            for part in parts {
                match (part.get("type").and_then(Value::as_str), part.get("text")) {
                    (Some(kind), Some(Value::String(t))) if kinds.contains(&kind) => {
                        text.push_str(t)
                    }
                    (Some(kind), _) => {
                        return Err(ApiError::unsupported(
                            param,
                            &format!("content parts of type `{kind}` (o1's model reads text only)"),
                        ))
                    }
                    _ => return Err(ApiError::invalid_value(param, "has a part without a type")),
                }
            }
            Ok(text)
        }
        _ => Err(ApiError::invalid_value(
            param,
            "must be a string or an array of parts",
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
    pub(super) fn served_context(&self) -> usize {
        match self.shared.engine.get() {
            Some(engine) => engine.loaded().n_ctx,
            None => self
                .model
                .n_ctx
                .map_or(self.model.info.n_ctx_train as usize, |n| n as usize),
        }
    }

    /// A request's `model`: required, and this server's.
    pub(super) fn require_model(&self, model: &Option<String>) -> Result<(), ApiError> {
        let model = model
            .as_deref()
            .ok_or_else(|| ApiError::invalid_value("model", "is required"))?;
        self.check_model(model)
    }

    pub(super) fn check_model(&self, name: &str) -> Result<(), ApiError> {
        if self.model.answers_to(name) {
            Ok(())
        } else {
            Err(ApiError::unknown_model(name, &self.model.id))
        }
    }

    /// Queues the generation for `messages` under `knobs` (see
    /// [`Self::completion`]); returns its updates.
    pub(super) fn start(
        &self,
        messages: Vec<Message>,
        knobs: Knobs,
        caller: Caller,
    ) -> Result<mpsc::UnboundedReceiver<Update>, ApiError> {
        let (request, stops, thread) = self.completion(messages, knobs, caller)?;
        self.enqueue(Work::Chat(request), stops, caller, thread)
    }

    /// Puts `work` in the queue; returns its updates.
    fn enqueue(
        &self,
        request: Work,
        stops: Vec<String>,
        caller: Caller,
        thread: Option<remember::Thread>,
    ) -> Result<mpsc::UnboundedReceiver<Update>, ApiError> {
        let (out, updates) = mpsc::unbounded_channel();
        self.queue.push(Job {
            request,
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
        // The question; after it, the turn's reasoning when the client cut
        // it short and asks for the answer.
        let question = match messages.as_slice() {
            [.., q, r] if r.role == Role::Reasoning => Some(q),
            [.., q] => Some(q),
            [] => None,
        };
        match question {
            Some(m) if m.role == Role::User && !m.content.trim().is_empty() => {}
            _ => {
                return Err(ApiError::invalid_value(
                    "messages",
                    "must end with a user message that has some text (or, to get the answer \
                     after a given reasoning, with an assistant message that has only \
                     `reasoning_content` after it)",
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
    pub(super) fn start_raw(
        &self,
        prompt: String,
        knobs: Knobs,
        caller: Caller,
    ) -> Result<mpsc::UnboundedReceiver<Update>, ApiError> {
        if prompt.is_empty() {
            return Err(ApiError::invalid_value("prompt", "is empty"));
        }
        let (sampling, limits, stops) = self.checked(knobs)?;
        let raw = RawCompletion {
            prompt,
            sampling,
            limit: limits.answer,
            fresh: false,
        };
        self.enqueue(Work::Raw(raw), stops, caller, None)
    }

    /// The sampling, budgets and stop sequences `knobs` ask for, checked.
    fn checked(&self, knobs: Knobs) -> Result<(Sampling, Limits, Vec<String>), ApiError> {
        let mut s = self.model.sampling.clone();
        let within = |name: &str, v: f32, range| {
            bounds::check(v, range)
                .map(|()| v)
                .map_err(|why| ApiError::invalid_value(name, why))
        };
        if let Some(t) = knobs.temperature {
            s.temperature = within("temperature", t, &bounds::TEMPERATURE)?;
        }
        if let Some(p) = knobs.top_p {
            s.top_p = within("top_p", p, &bounds::TOP_P)?;
        }
        if let Some(p) = knobs.min_p {
            s.min_p = within("min_p", p, &bounds::MIN_P)?;
        }
        if let Some(p) = knobs.repeat_penalty {
            s.repeat_penalty = within("repeat_penalty", p, &bounds::REPEAT_PENALTY)?;
        }
        if let Some(k) = knobs.top_k {
            s.top_k = k;
        }
        if let Some(seed) = knobs.seed {
            // Any 64-bit seed; llama.cpp's sampler takes 32 bits.
            s.seed = (seed as u64 ^ (seed as u64 >> 32)) as u32;
        }

        let budget = |name: &str, v: u64| {
            let n = usize::try_from(v).unwrap_or(usize::MAX);
            bounds::check(n, &bounds::TOKENS)
                .map(|()| n)
                .map_err(|why| ApiError::invalid_value(name, why))
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
