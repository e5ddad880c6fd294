//! A chat engine on a server, through OpenAI's chat API: `o1 tui --server
//! URL`, and `o1 tui` / `o1 run` attached to a local `o1 serve` instead of
//! loading a second copy of the model.
//!
//! Who runs the two phases depends on the server:
//! - o1 serve, vLLM and the like run both and stream the reasoning apart
//!   as `reasoning_content` (or `reasoning`); o1 serve also answers after a
//!   reasoning the client cut short (a last assistant message with only
//!   `reasoning_content`), which is how answer-now works over it;
//! - a server that only applies the model's own chat template (llama-server
//!   on an o1 file, whose template knows the `<|reasoning|>` role) writes
//!   one phase per request: o1 sends the conversation for the reasoning,
//!   then again with the reasoning as a `<|reasoning|>` message for the
//!   answer, as o1's own engine does.
//!
//! The meter uses the server's token counts (`usage`) and the context size
//! it states (o1 serve's `/api/show`, llama-server's `/props`, vLLM's
//! `max_model_len`); where it states none, the meter says so.

use std::io::{BufRead, BufReader};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use o1_hub::innermost_cause;
use serde_json::{json, Value};

use crate::chat::{Message, Phase, Role};
use crate::engine::{
    ContextUsage, EngineConfig, EngineError, Event, Limits, PhaseStats, Prefill, SamplingOverrides,
    Stop,
};

/// What kind of server answered, as far as o1 needs to know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// o1 serve, of this version.
    O1(String),
    /// A server that applies o1's chat template itself (llama-server).
    Template,
    /// Any other OpenAI-compatible server.
    Other,
}

/// A server o1 has checked: reachable, with this model.
#[derive(Clone, Debug)]
pub struct ServerInfo {
    /// The root URL, without `/v1`.
    pub root: String,
    /// The model id requests name.
    pub model: String,
    pub kind: Kind,
    /// The context size the server states.
    pub n_ctx: Option<usize>,
    /// What names the server's model file (o1 serve's digest, see
    /// `serve::digest_of_file`).
    pub digest: Option<String>,
    /// The memory the model takes in the server, when it says.
    pub model_bytes: Option<u64>,
}

impl ServerInfo {
    /// Whether o1 can cut the reasoning short over this server.
    pub fn can_answer_now(&self) -> bool {
        self.kind != Kind::Other
    }

    /// What the user should know about chatting here; `attached`: o1 chose
    /// this local server because it has the model loaded.
    pub fn notes(&self, attached: bool) -> Vec<String> {
        let mut notes = Vec::new();
        if attached {
            notes.push(format!(
                "chatting through {}, which has this model loaded (--local loads a copy here)",
                self.describe()
            ));
        }
        if !self.can_answer_now() {
            notes.push(format!(
                "{} runs the reasoning itself and cannot cut it short: answer-now waits for its end",
                self.describe()
            ));
        }
        if self.n_ctx.is_none() {
            notes.push(format!(
                "{} does not say its context size: the meter shows the tokens used only",
                self.describe()
            ));
        }
        notes
    }

    /// The server in a few words, for the status line and notes.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::O1(_) => format!("o1 serve at {}", self.root),
            Kind::Template => format!("llama-server at {}", self.root),
            Kind::Other => format!("the server at {}", self.root),
        }
    }
}

/// `host:port`, `http://host:port`, `http://host:port/v1/` → `http://host:port`.
pub fn root_url(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    let url = url.strip_suffix("/v1").unwrap_or(url);
    if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    }
}

/// HTTP to one server, with its key.
struct Http {
    client: reqwest::blocking::Client,
    key: Option<String>,
}

impl Http {
    fn new(key: Option<String>, connect_timeout: Duration) -> Result<Self, EngineError> {
        let client = reqwest::blocking::Client::builder()
            .connect_timeout(connect_timeout)
            // A stream may wait long for a token (a long prompt, a busy
            // server); cancelling does not wait for it.
            .timeout(None)
            .build()
            .map_err(|e| EngineError::Remote(format!("cannot make an HTTP client: {e}")))?;
        Ok(Http { client, key })
    }

    fn with_key(&self, r: reqwest::blocking::RequestBuilder) -> reqwest::blocking::RequestBuilder {
        match &self.key {
            Some(key) => r.bearer_auth(key),
            None => r,
        }
    }

    fn get(&self, url: &str) -> Result<reqwest::blocking::Response, reqwest::Error> {
        self.with_key(self.client.get(url).timeout(Duration::from_secs(10)))
            .send()
    }

    fn post(&self, url: &str, body: &Value) -> reqwest::blocking::RequestBuilder {
        self.with_key(self.client.post(url).json(body))
    }
}

/// Why a server refused: its error message when its body has one.
fn refusal(what: &str, response: reqwest::blocking::Response) -> EngineError {
    let status = response.status();
    let body: Value = response.json().unwrap_or(Value::Null);
    let message = body
        .pointer("/error/message")
        .or_else(|| body.get("error"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_string());
    let hint = if status.as_u16() == 401 {
        " (give its key with --server-api-key or O1_SERVER_API_KEY)"
    } else {
        ""
    };
    EngineError::Remote(format!("{what}: {} {message}{hint}", status.as_u16()))
}

/// Asks the server at `url` what it serves: its model, its kind, its
/// context. `connect_timeout` bounds the wait for a server that is not there.
pub fn probe(
    url: &str,
    key: Option<String>,
    connect_timeout: Duration,
) -> Result<ServerInfo, EngineError> {
    let root = root_url(url);
    let http = Http::new(key, connect_timeout)?;
    let models = http.get(&format!("{root}/v1/models")).map_err(|e| {
        EngineError::Remote(format!(
            "no OpenAI-compatible server answers at {root}: {}",
            innermost_cause(&e)
        ))
    })?;
    if !models.status().is_success() {
        return Err(refusal(&format!("{root}/v1/models"), models));
    }
    let o1_version = models
        .headers()
        .get(reqwest::header::SERVER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("o1/"))
        .map(str::to_string);
    let list: Value = models
        .json()
        .map_err(|e| EngineError::Remote(format!("{root}/v1/models is not JSON: {e}")))?;
    let first = list.pointer("/data/0").cloned().unwrap_or(Value::Null);
    let Some(model) = first.get("id").and_then(Value::as_str).map(str::to_string) else {
        return Err(EngineError::Remote(format!(
            "{root}/v1/models lists no model"
        )));
    };
    let mut info = ServerInfo {
        root: root.clone(),
        model,
        kind: Kind::Other,
        n_ctx: first
            .get("max_model_len")
            .and_then(Value::as_u64)
            .map(|n| n as usize),
        digest: None,
        model_bytes: None,
    };
    if let Some(version) = o1_version {
        info.kind = Kind::O1(version);
        let show = http
            .post(&format!("{root}/api/show"), &json!({ "model": info.model }))
            .timeout(Duration::from_secs(10));
        if let Ok(shown) = show.send().and_then(|r| r.json::<Value>()) {
            info.n_ctx = shown
                .get("model_info")
                .and_then(Value::as_object)
                .and_then(|m| m.iter().find(|(k, _)| k.ends_with(".context_length")))
                .and_then(|(_, v)| v.as_u64())
                .map(|n| n as usize);
        }
        if let Ok(tags) = http
            .get(&format!("{root}/api/tags"))
            .and_then(|r| r.json::<Value>())
        {
            info.digest = tags
                .pointer("/models/0/digest")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        if let Ok(ps) = http
            .get(&format!("{root}/api/ps"))
            .and_then(|r| r.json::<Value>())
        {
            info.model_bytes = ps.pointer("/models/0/size").and_then(Value::as_u64);
        }
    } else if let Ok(props) = http
        .get(&format!("{root}/props"))
        .and_then(|r| r.json::<Value>())
    {
        if props
            .get("chat_template")
            .and_then(Value::as_str)
            .is_some_and(|t| t.contains(crate::chat::REASONING))
        {
            info.kind = Kind::Template;
        }
        if let Some(n) = props
            .pointer("/default_generation_settings/n_ctx")
            .and_then(Value::as_u64)
        {
            info.n_ctx = Some(n as usize);
        }
    }
    Ok(info)
}

/// What a turn is asked to do, set by the user while it runs.
#[derive(Default)]
struct Flags {
    cancel: AtomicBool,
    answer_now: AtomicBool,
}

/// The conversation and what the server said about it.
#[derive(Default)]
struct State {
    /// Messages after the system message.
    history: Vec<Message>,
    /// Tokens in the server's context after the last turn, and of them the
    /// reasoning's.
    used: usize,
    reasoning: usize,
}

/// The server and what every request to it carries.
struct Link {
    info: ServerInfo,
    http: Http,
    system: String,
    limits: Limits,
    sampling: SamplingOverrides,
}

/// A chat engine on a server (see the module's comment).
pub struct RemoteEngine {
    link: Arc<Link>,
    state: Arc<Mutex<State>>,
    flags: Arc<Flags>,
}

impl RemoteEngine {
    /// A conversation on the server `info` describes, with the system
    /// message (empty: none), phase budgets and sampling settings of
    /// `config` (its model is the server's business).
    pub fn new(
        info: ServerInfo,
        key: Option<String>,
        config: &EngineConfig,
    ) -> Result<Self, EngineError> {
        let link = Link {
            info,
            http: Http::new(key, Duration::from_secs(10))?,
            system: config.system.clone(),
            limits: config.limits,
            sampling: config.sampling.clone(),
        };
        Ok(RemoteEngine {
            link: Arc::new(link),
            state: Arc::default(),
            flags: Arc::default(),
        })
    }

    pub fn info(&self) -> &ServerInfo {
        &self.link.info
    }

    /// Runs a turn on a thread of its own; its events go to `events`, the
    /// last being `TurnFinished` or `Error`.
    pub fn turn(&self, user: String, events: Sender<Event>) -> Result<(), EngineError> {
        if user.trim().is_empty() {
            return Err(EngineError::EmptyQuestion);
        }
        self.flags.cancel.store(false, Ordering::SeqCst);
        self.flags.answer_now.store(false, Ordering::SeqCst);
        let history = self
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .history
            .clone();
        let turn = Turn {
            link: self.link.clone(),
            flags: self.flags.clone(),
            events: events.clone(),
        };
        let state = self.state.clone();
        std::thread::Builder::new()
            .name("o1-remote-turn".into())
            .spawn(move || {
                let used = state.lock().unwrap_or_else(|p| p.into_inner()).used;
                match turn.run(history, user, used) {
                    Ok(done) => {
                        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                        s.history.extend(done.messages);
                        s.used = done.used.unwrap_or(s.used + done.generated);
                        s.reasoning += done.reasoning_tokens;
                        let usage = ContextUsage {
                            used: s.used,
                            n_ctx: turn.link.info.n_ctx.unwrap_or(0),
                            reasoning: s.reasoning.min(s.used),
                        };
                        drop(s);
                        let _ = events.send(Event::TurnFinished { usage });
                    }
                    Err(e) => {
                        let _ = events.send(Event::Error(Arc::new(e)));
                    }
                }
            })
            .map_err(|e| EngineError::Remote(format!("cannot start a thread: {e}")))?;
        Ok(())
    }

    pub fn cancel(&self) {
        self.flags.cancel.store(true, Ordering::SeqCst);
    }

    pub fn answer_now(&self) {
        self.flags.answer_now.store(true, Ordering::SeqCst);
    }

    /// A new conversation.
    pub fn reset(&self) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = State::default();
    }

    /// Replaces the conversation (a resumed session): the server's prompt
    /// cache fills with the next turn.
    pub fn set_history(&self, history: Vec<Message>) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.history = history
            .into_iter()
            .filter(|m| m.role != Role::System)
            .collect();
    }

    pub fn history(&self) -> Vec<Message> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .history
            .clone()
    }
}

/// One turn's work, on its own thread.
struct Turn {
    link: Arc<Link>,
    flags: Arc<Flags>,
    events: Sender<Event>,
}

/// What a streamed request produced.
#[derive(Default)]
struct Streamed {
    reasoning: String,
    answer: String,
    /// Why each phase it wrote ended.
    reasoning_stop: Option<Stop>,
    answer_stop: Option<Stop>,
    usage: Option<Usage>,
    /// Text pieces each phase got (about one per token).
    reasoning_pieces: usize,
    answer_pieces: usize,
}

/// Where a streamed phase is.
struct Progress {
    phase: Phase,
    /// Its prompt's tokens, as far as known.
    prompt: usize,
    started: Instant,
    first_token: Option<Instant>,
    /// Text pieces so far (a server sends about one per token).
    count: usize,
}

#[derive(Clone, Copy, Debug, Default)]
struct Usage {
    prompt: usize,
    completion: usize,
    reasoning: Option<usize>,
}

/// What a turn left: its new messages, and the server's count of the
/// tokens in its context after it (`None` when it gave none, as when the
/// turn was cancelled).
struct TurnResult {
    messages: Vec<Message>,
    used: Option<usize>,
    /// Tokens the turn generated, by the stream's count, and its reasoning's.
    generated: usize,
    reasoning_tokens: usize,
}

impl Turn {
    /// Runs the turn after `history`; `used`: the tokens the server's
    /// context held after the last turn (for the meter until it says).
    fn run(
        &self,
        history: Vec<Message>,
        user: String,
        used: usize,
    ) -> Result<TurnResult, EngineError> {
        let question = Message::new(Role::User, user);
        // Until the server counts: about four characters a token.
        let mut estimate = used + question.content.len() / 4 + crate::chat::TOKENS_PER_MESSAGE;
        let mut messages = history;
        messages.push(question.clone());
        let phases_here = self.link.info.kind == Kind::Template;
        let first = self.stream(&messages, phases_here.then_some(Phase::Reasoning), estimate)?;
        let reasoning_stop = first.reasoning_stop.unwrap_or(Stop::EndOfTurn);
        let counted = first.reasoning_pieces;
        let reasoning_tokens = first
            .usage
            .and_then(|u| {
                if phases_here {
                    Some(u.completion)
                } else {
                    u.reasoning
                }
            })
            .unwrap_or(counted);
        let reasoning = Message {
            role: Role::Reasoning,
            content: first.reasoning,
            cut: reasoning_stop.is_cut(),
        };
        let mut generated = counted + first.answer_pieces;
        // The server counts its last request's prompt and what it wrote. o1
        // serve's context also holds the markers it put around what it
        // wrote (measured: one message's worth per phase); llama-server's
        // count is its context's.
        let markers = |phases: usize| match self.link.info.kind {
            Kind::Template => 0,
            _ => phases * crate::chat::TOKENS_PER_MESSAGE,
        };
        let mut last = first.usage.map(|u| u.prompt + u.completion + markers(2));
        let answer = match (first.answer_stop, reasoning_stop) {
            (Some(stop), _) => Some((first.answer, stop)),
            (None, Stop::Cancelled) => None,
            // The answer in a request of its own: this server writes one
            // phase per request, or the reasoning was cut short.
            (None, _) => {
                messages.push(reasoning.clone());
                estimate += counted + crate::chat::TOKENS_PER_MESSAGE;
                let second = self.stream(&messages, Some(Phase::Answer), estimate)?;
                generated += second.answer_pieces;
                last = match second.usage {
                    Some(u) => Some(u.prompt + u.completion + markers(1)),
                    None if second.answer_stop == Some(Stop::Cancelled) => None,
                    None => last,
                };
                Some((second.answer, second.answer_stop.unwrap_or(Stop::EndOfTurn)))
            }
        };
        let mut new = vec![question, reasoning];
        if let Some((text, stop)) = answer {
            new.push(Message {
                role: Role::Assistant,
                content: text,
                cut: stop.is_cut(),
            });
        }
        Ok(TurnResult {
            messages: new,
            used: last,
            generated,
            reasoning_tokens,
        })
    }

    /// The request's messages: o1's system message, then the conversation
    /// as this server reads it.
    fn wire_messages(&self, messages: &[Message]) -> Vec<Value> {
        let message =
            |role: Role, content: &str| json!({ "role": role.name(), "content": content });
        let mut out = Vec::with_capacity(messages.len() + 1);
        if !self.link.system.is_empty() {
            out.push(message(Role::System, &self.link.system));
        }
        let mut reasoning: Option<&str> = None;
        for m in messages {
            match (m.role, &self.link.info.kind) {
                // o1 serve takes it back with the answer it led to.
                (Role::Reasoning, Kind::O1(_)) => reasoning = Some(&m.content),
                // Others are not given reasoning back.
                (Role::Reasoning, Kind::Other) => {}
                (Role::Assistant, _) => {
                    let mut msg = message(Role::Assistant, &m.content);
                    if let Some(r) = reasoning.take() {
                        msg["reasoning_content"] = json!(r);
                    }
                    out.push(msg);
                }
                // The template has every role, the reasoning's included.
                (Role::User | Role::System | Role::Reasoning, _) => {
                    reasoning = None;
                    out.push(message(m.role, &m.content));
                }
            }
        }
        if let Some(r) = reasoning {
            // A reasoning with no answer yet last: o1 serve writes the answer.
            let mut msg = message(Role::Assistant, "");
            msg["reasoning_content"] = json!(r);
            out.push(msg);
        }
        out
    }

    /// Streams one chat request. `only`: the server writes that one phase
    /// (its text comes as `content`); `None`: it runs both, the reasoning
    /// apart. Events go out as the text comes; cancel and answer-now end
    /// the stream (the server stops when the connection closes). `estimate`:
    /// the prompt's tokens, for the meter until the server counts them.
    fn stream(
        &self,
        messages: &[Message],
        only: Option<Phase>,
        estimate: usize,
    ) -> Result<Streamed, EngineError> {
        let max_tokens = match only {
            Some(Phase::Reasoning) => self.link.limits.reasoning,
            _ => self.link.limits.answer,
        };
        let mut body = json!({
            "model": self.link.info.model,
            "messages": self.wire_messages(messages),
            "stream": true,
            "stream_options": { "include_usage": true },
            "max_tokens": max_tokens,
        });
        if matches!(self.link.info.kind, Kind::O1(_)) && only.is_none() {
            body["max_reasoning_tokens"] = json!(self.link.limits.reasoning);
        }
        // The settings the user gave; otherwise the server's own, except
        // that a server which only applies o1's template gets the greedy
        // decoding the model was made for (llama-server samples at 0.8).
        let s = &self.link.sampling;
        let temperature = s
            .temperature
            .or((self.link.info.kind == Kind::Template).then_some(0.0));
        let knobs = [
            ("temperature", temperature.map(|v| json!(v))),
            ("top_p", s.top_p.map(|v| json!(v))),
            ("top_k", s.top_k.map(|v| json!(v))),
            ("min_p", s.min_p.map(|v| json!(v))),
            ("repeat_penalty", s.repeat_penalty.map(|v| json!(v))),
            ("seed", s.seed.map(|v| json!(v))),
        ];
        for (name, value) in knobs {
            if let Some(v) = value {
                body[name] = v;
            }
        }
        let mut progress = Progress {
            phase: only.unwrap_or(Phase::Reasoning),
            prompt: estimate,
            started: Instant::now(),
            first_token: None,
            count: 0,
        };
        self.started(&progress);
        let lines = self.send(&body)?;
        let mut out = Streamed::default();
        let mut finish: Option<String> = None;
        let mut reasoning_cut = false;
        loop {
            if let Some(stop) = self.interrupted(progress.phase) {
                self.finished(&mut out, &progress, stop);
                return Ok(out);
            }
            let chunk = match lines.recv_timeout(Duration::from_millis(50)) {
                Ok(Ok(chunk)) => chunk,
                Ok(Err(e)) => return Err(e),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
                let count = |key: &str| u.pointer(key).and_then(Value::as_u64).map(|n| n as usize);
                out.usage = Some(Usage {
                    prompt: count("/prompt_tokens").unwrap_or(0),
                    completion: count("/completion_tokens").unwrap_or(0),
                    reasoning: count("/completion_tokens_details/reasoning_tokens"),
                });
            }
            let Some(choice) = chunk.pointer("/choices/0") else {
                continue;
            };
            let delta = choice.get("delta").unwrap_or(&Value::Null);
            // o1 serve's word that the reasoning stopped at its budget.
            if delta.get("reasoning_stop").and_then(Value::as_str) == Some("length") {
                reasoning_cut = true;
            }
            let text_of = |key: &str| {
                delta
                    .get(key)
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
            };
            let reasoning = text_of("reasoning_content").or_else(|| text_of("reasoning"));
            for (to, text) in [
                (Phase::Reasoning, reasoning),
                (Phase::Answer, text_of("content")),
            ] {
                let Some(text) = text else { continue };
                // With one phase per request, all its text is that phase's.
                let to = only.unwrap_or(to);
                if to != progress.phase {
                    // The answer begins: the reasoning has ended.
                    self.next_phase(&mut out, &mut progress, reasoning_cut);
                }
                progress.first_token.get_or_insert_with(Instant::now);
                progress.count += 1;
                match progress.phase {
                    Phase::Reasoning => out.reasoning.push_str(text),
                    Phase::Answer => out.answer.push_str(text),
                }
                let _ = self.events.send(Event::Text {
                    phase: progress.phase,
                    text: text.to_string(),
                });
            }
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                finish = Some(reason.to_string());
            }
        }
        let stop = match finish.as_deref() {
            Some("length") => Stop::Limit,
            Some(_) => Stop::EndOfTurn,
            None => {
                return Err(EngineError::Remote(format!(
                    "{} ended the stream before the end of the {}",
                    self.link.info.describe(),
                    progress.phase.name()
                )))
            }
        };
        if only.is_none() && progress.phase == Phase::Reasoning {
            // No answer text came: the reasoning ended, then an empty answer.
            self.next_phase(&mut out, &mut progress, reasoning_cut);
        }
        self.finished(&mut out, &progress, stop);
        Ok(out)
    }

    /// Whether the user asked to stop (`Cancelled`) or to have the answer
    /// now (`AnswerNow`, during a reasoning this server can cut short).
    fn interrupted(&self, phase: Phase) -> Option<Stop> {
        if self.flags.cancel.load(Ordering::SeqCst) {
            Some(Stop::Cancelled)
        } else if phase == Phase::Reasoning
            && self.link.info.can_answer_now()
            && self.flags.answer_now.load(Ordering::SeqCst)
        {
            Some(Stop::AnswerNow)
        } else {
            None
        }
    }

    fn started(&self, p: &Progress) {
        let _ = self.events.send(Event::PhaseStarted {
            phase: p.phase,
            prefill: Prefill {
                prompt_tokens: p.prompt,
                ..Prefill::default()
            },
        });
    }

    /// The reasoning ended (`cut`: at its budget) and the answer follows in
    /// the same stream.
    fn next_phase(&self, out: &mut Streamed, p: &mut Progress, cut: bool) {
        self.finished(out, p, if cut { Stop::Limit } else { Stop::EndOfTurn });
        *p = Progress {
            phase: Phase::Answer,
            prompt: p.prompt + p.count + crate::chat::TOKENS_PER_MESSAGE,
            started: Instant::now(),
            first_token: None,
            count: 0,
        };
        self.started(p);
    }

    /// Ends the phase `p` in `out` and tells the UI.
    fn finished(&self, out: &mut Streamed, p: &Progress, stop: Stop) {
        let generation = p.first_token.map_or(0.0, |t| t.elapsed().as_secs_f64());
        let stats = PhaseStats {
            prompt_tokens: p.prompt,
            generated_tokens: p.count,
            time_to_first_token: p
                .first_token
                .map_or(0.0, |t| t.duration_since(p.started).as_secs_f64()),
            generation_seconds: generation,
            tokens_per_second: if generation > 0.0 {
                p.count.saturating_sub(1) as f64 / generation
            } else {
                0.0
            },
            ..PhaseStats::default()
        };
        let text = match p.phase {
            Phase::Reasoning => {
                (out.reasoning_stop, out.reasoning_pieces) = (Some(stop), p.count);
                out.reasoning.clone()
            }
            Phase::Answer => {
                (out.answer_stop, out.answer_pieces) = (Some(stop), p.count);
                out.answer.clone()
            }
        };
        let _ = self.events.send(Event::PhaseFinished {
            phase: p.phase,
            text,
            tokens: Vec::new(),
            stop,
            stats,
        });
    }

    /// Sends a streamed request; its SSE data come through the channel as
    /// they arrive, read on a thread of their own so that cancelling never
    /// waits for the server (the connection closes when that thread next
    /// finds no one listening).
    fn send(&self, body: &Value) -> Result<Receiver<Result<Value, EngineError>>, EngineError> {
        let url = format!("{}/v1/chat/completions", self.link.info.root);
        let response = self.link.http.post(&url, body).send().map_err(|e| {
            EngineError::Remote(format!(
                "{} did not answer: {}",
                self.link.info.describe(),
                innermost_cause(&e)
            ))
        })?;
        if !response.status().is_success() {
            return Err(refusal(
                &format!("{} refused the request", self.link.info.describe()),
                response,
            ));
        }
        let (tx, rx) = mpsc::channel();
        let who = self.link.info.describe();
        std::thread::spawn(move || {
            for line in BufReader::new(response).lines() {
                let line = match line {
                    Ok(line) => line,
                    Err(e) => {
                        let _ = tx.send(Err(EngineError::Remote(format!(
                            "reading from {who}: {}",
                            innermost_cause(&e)
                        ))));
                        return;
                    }
                };
                let Some(data) = line.strip_prefix("data:").map(str::trim) else {
                    continue;
                };
                if data == "[DONE]" {
                    return;
                }
                let sent = match serde_json::from_str::<Value>(data) {
                    Ok(v) if v.get("error").is_some_and(|e| !e.is_null()) => {
                        let message = v
                            .pointer("/error/message")
                            .and_then(Value::as_str)
                            .unwrap_or(data)
                            .to_string();
                        tx.send(Err(EngineError::Remote(format!("{who}: {message}"))))
                    }
                    Ok(v) => tx.send(Ok(v)),
                    Err(e) => tx.send(Err(EngineError::Remote(format!(
                        "{who} sent a line that is not JSON ({e}): {data}"
                    )))),
                };
                if sent.is_err() {
                    return;
                }
            }
        });
        Ok(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_are_read_as_people_write_them() {
        assert_eq!(root_url("localhost:8080"), "http://localhost:8080");
        assert_eq!(root_url("http://gpu:8000/v1/"), "http://gpu:8000");
        assert_eq!(root_url("https://example.org/v1"), "https://example.org");
        assert_eq!(
            root_url(" http://127.0.0.1:11435 "),
            "http://127.0.0.1:11435"
        );
    }
}
