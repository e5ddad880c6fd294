//! One model, one generation at a time: requests wait in a bounded queue,
//! in order, and a dispatcher thread runs each on the engine, passing its
//! text on as it comes. A request whose client has gone is cancelled at the
//! next token; stop sequences end the answer where they appear.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex, OnceLock};
use std::time::Instant;

use tokio::sync::mpsc;

use super::guard::ApiError;
use crate::chat::{Message, Phase};
use crate::engine::{Completion, Engine, EngineError, Event, Stop};

/// What a handler asks of the dispatcher.
pub struct Job {
    pub request: Completion,
    /// Answer text that ends the answer (not included in it).
    pub stops: Vec<String>,
    pub out: mpsc::UnboundedSender<Update>,
}

/// What a handler hears back, in order: text of the reasoning, then of the
/// answer, then one `Done` or `Failed`.
#[derive(Debug)]
pub enum Update {
    Reasoning(String),
    Answer(String),
    Done(Summary),
    Failed(ApiError),
}

/// Why the answer ended, as the APIs say it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// The model ended its turn, or a stop sequence appeared.
    Stop,
    /// The token budget or the context ran out.
    Length,
    /// The client went away, or the server is shutting down.
    Cancelled,
}

impl Finish {
    pub fn reason(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
            Finish::Cancelled => "cancelled",
        }
    }
}

/// A finished request: its texts and its figures.
#[derive(Clone, Debug)]
pub struct Summary {
    pub reasoning: String,
    pub answer: String,
    pub finish: Finish,
    pub prompt_tokens: usize,
    /// Prompt tokens the KV cache already held.
    pub cached_tokens: usize,
    pub reasoning_tokens: usize,
    pub answer_tokens: usize,
    pub prompt_seconds: f64,
    pub generation_seconds: f64,
    pub total_seconds: f64,
}

/// The answers this server wrote and the reasoning behind each: a client
/// that sends back only the answer gets its reasoning put back, so the
/// prompt is the trained format and the KV cache still matches.
#[derive(Default)]
pub struct Remembered(Mutex<VecDeque<(String, String)>>);

impl Remembered {
    const KEEP: usize = 64;

    pub fn reasoning_of(&self, answer: &str) -> Option<String> {
        let kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        kept.iter()
            .rev()
            .find(|(a, _)| a == answer)
            .map(|(_, r)| r.clone())
    }

    fn keep(&self, answer: &str, reasoning: &str) {
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() == Self::KEEP {
            kept.pop_front();
        }
        kept.push_back((answer.to_string(), reasoning.to_string()));
    }
}

/// What the dispatcher shares with the handlers and the shutdown.
#[derive(Default)]
pub struct Shared {
    pub engine: OnceLock<Arc<Engine>>,
    pub shutting_down: AtomicBool,
    pub remembered: Remembered,
}

impl Shared {
    pub fn ready(&self) -> bool {
        self.engine.get().is_some()
    }

    /// Stops taking work and cancels what runs.
    pub fn shut_down(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        if let Some(engine) = self.engine.get() {
            engine.cancel();
        }
    }
}

/// The handlers' end of the queue.
#[derive(Clone)]
pub struct Queue {
    tx: mpsc::Sender<Job>,
}

impl Queue {
    /// A queue holding at most `bound` waiting requests, and its receiving end.
    pub fn new(bound: usize) -> (Queue, mpsc::Receiver<Job>) {
        let (tx, rx) = mpsc::channel(bound.max(1));
        (Queue { tx }, rx)
    }

    /// Queues `job`, or says why not (a 503 that says when to retry).
    pub fn push(&self, job: Job) -> Result<(), ApiError> {
        self.tx.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ApiError::unavailable(
                "the server is busy: too many requests are waiting; retry shortly",
                2,
            )
            .with_code("queue_full"),
            mpsc::error::TrySendError::Closed(_) => {
                ApiError::unavailable("the server is shutting down", 5).with_code("shutting_down")
            }
        })
    }
}

/// Runs the queue's jobs one after the other until every sender is gone.
pub fn dispatch(shared: &Shared, engine: &Engine, mut jobs: mpsc::Receiver<Job>) {
    while let Some(job) = jobs.blocking_recv() {
        if shared.shutting_down.load(Ordering::SeqCst) {
            let _ = job.out.send(Update::Failed(
                ApiError::unavailable("the server is shutting down", 5).with_code("shutting_down"),
            ));
            continue;
        }
        run(shared, engine, job);
    }
}

fn run(shared: &Shared, engine: &Engine, job: Job) {
    let started = Instant::now();
    let (tx, events) = std_mpsc::channel();
    if let Err(e) = engine.complete(job.request, tx) {
        let _ = job.out.send(Update::Failed(engine_error(&e)));
        return;
    }
    let mut stops = StopScan::new(job.stops);
    let mut summary = Summary {
        reasoning: String::new(),
        answer: String::new(),
        finish: Finish::Cancelled,
        prompt_tokens: 0,
        cached_tokens: 0,
        reasoning_tokens: 0,
        answer_tokens: 0,
        prompt_seconds: 0.0,
        generation_seconds: 0.0,
        total_seconds: 0.0,
    };
    let mut answer_stop = None;
    let mut cancelled = false;
    let mut finished = false;
    for event in events {
        if !cancelled && (job.out.is_closed() || shared.shutting_down.load(Ordering::SeqCst)) {
            engine.cancel();
            cancelled = true;
        }
        match event {
            Event::Text {
                phase: Phase::Reasoning,
                text,
            } => {
                summary.reasoning.push_str(&text);
                let _ = job.out.send(Update::Reasoning(text));
            }
            Event::Text {
                phase: Phase::Answer,
                text,
            } => {
                if stops.hit {
                    continue;
                }
                let shown = stops.push(&text);
                if stops.hit && !cancelled {
                    engine.cancel();
                    cancelled = true;
                }
                if !shown.is_empty() {
                    summary.answer.push_str(&shown);
                    let _ = job.out.send(Update::Answer(shown));
                }
            }
            Event::PhaseFinished {
                phase, stop, stats, ..
            } => {
                summary.prompt_seconds += stats.prefill_seconds;
                summary.generation_seconds += stats.generation_seconds;
                match phase {
                    Phase::Reasoning => {
                        summary.prompt_tokens = stats.prompt_tokens;
                        summary.cached_tokens = stats.reused_tokens;
                        summary.reasoning_tokens = stats.generated_tokens;
                        if matches!(stop, Stop::ContextFull) {
                            answer_stop = Some(stop);
                        }
                    }
                    Phase::Answer => {
                        summary.answer_tokens = stats.generated_tokens;
                        answer_stop = Some(stop);
                    }
                }
            }
            Event::TurnFinished { .. } => {
                finished = true;
                break;
            }
            Event::Error(e) => {
                let _ = job.out.send(Update::Failed(engine_error(&e)));
                return;
            }
            _ => {}
        }
    }
    if !finished {
        let _ = job.out.send(Update::Failed(ApiError::internal(
            "the model stopped in the middle of the request; see o1's log",
        )));
        return;
    }
    let rest = stops.finish();
    if !rest.is_empty() {
        summary.answer.push_str(&rest);
        let _ = job.out.send(Update::Answer(rest));
    }
    summary.finish = if stops.hit {
        Finish::Stop
    } else {
        match answer_stop {
            Some(Stop::EndOfTurn) => Finish::Stop,
            Some(Stop::Limit | Stop::ContextFull) => Finish::Length,
            _ => Finish::Cancelled,
        }
    };
    summary.total_seconds = started.elapsed().as_secs_f64();
    if summary.finish != Finish::Cancelled {
        shared.remembered.keep(&summary.answer, &summary.reasoning);
    }
    let _ = job.out.send(Update::Done(summary));
}

/// An engine error as the client sees it.
pub fn engine_error(e: &EngineError) -> ApiError {
    match e {
        EngineError::ContextTooSmall { .. } | EngineError::ContextFull { .. } => {
            ApiError::bad_request(e.to_string()).with_code("context_length_exceeded")
        }
        EngineError::EmptyQuestion => {
            ApiError::bad_request("the last message must be a user message with some text")
                .with_code("invalid_messages")
        }
        EngineError::Stopped => ApiError::unavailable("the model has stopped", 5),
        other => ApiError::internal(other.to_string()),
    }
}

/// Finds stop sequences in streamed text: text that could be the start of
/// one is held back until the next piece says whether it is.
struct StopScan {
    stops: Vec<String>,
    held: String,
    hit: bool,
}

impl StopScan {
    fn new(stops: Vec<String>) -> Self {
        StopScan {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
            hit: false,
        }
    }

    /// Takes the next piece; returns the text that can be shown now.
    fn push(&mut self, text: &str) -> String {
        self.held.push_str(text);
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
        {
            self.hit = true;
            self.held.truncate(at);
            return std::mem::take(&mut self.held);
        }
        // Hold back the longest tail that a stop sequence starts with.
        let keep = self
            .held
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| {
                let tail = &self.held[i..];
                self.stops.iter().any(|s| s.starts_with(tail))
            })
            .unwrap_or(self.held.len());
        let rest = self.held.split_off(keep);
        std::mem::replace(&mut self.held, rest)
    }

    /// The text held back at the end (no stop sequence came).
    fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

/// The messages a request is rendered with: the caller's, but where an
/// assistant message has no reasoning before it and this server wrote that
/// answer, its reasoning is put back.
pub fn with_remembered_reasoning(messages: Vec<Message>, remembered: &Remembered) -> Vec<Message> {
    use crate::chat::Role;
    let mut out: Vec<Message> = Vec::with_capacity(messages.len() + 2);
    for m in messages {
        let has_reasoning = out.last().is_some_and(|p| p.role == Role::Reasoning);
        if m.role == Role::Assistant && !has_reasoning {
            if let Some(r) = remembered.reasoning_of(&m.content) {
                out.push(Message::new(Role::Reasoning, r));
            }
        }
        out.push(m);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::Role;

    fn scan(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let mut s = StopScan::new(stops.iter().map(|s| s.to_string()).collect());
        let mut shown = String::new();
        for p in pieces {
            if s.hit {
                break;
            }
            shown.push_str(&s.push(p));
        }
        shown.push_str(&s.finish());
        (shown, s.hit)
    }

    #[test]
    fn a_stop_sequence_ends_the_text_before_it_even_across_pieces() {
        assert_eq!(
            scan(&["END"], &["abc", "E", "N", "Dxyz"]),
            ("abc".into(), true)
        );
        assert_eq!(scan(&["\n\n"], &["one\n", "\ntwo"]), ("one".into(), true));
        assert_eq!(scan(&["b", "cd"], &["abcd"]), ("a".into(), true));
        assert_eq!(
            scan(&["xyz"], &["ab", "x", "y", "!"]),
            ("abxy!".into(), false)
        );
        assert_eq!(scan(&[], &["free ", "text"]), ("free text".into(), false));
        assert_eq!(scan(&[""], &["a"]), ("a".into(), false));
        assert_eq!(scan(&["é!"], &["caf", "é", "?"]), ("café?".into(), false));
    }

    #[test]
    fn held_text_is_shown_as_soon_as_it_cannot_start_a_stop() {
        let mut s = StopScan::new(vec!["STOP".into()]);
        assert_eq!(s.push("hello S"), "hello ");
        assert_eq!(s.push("T"), "");
        assert_eq!(s.push("x"), "STx");
        assert!(!s.hit);
    }

    #[test]
    fn a_known_answer_gets_its_reasoning_back() {
        let remembered = Remembered::default();
        remembered.keep("4", "2 + 2 is 4.");
        let messages = vec![
            Message::new(Role::System, "sys"),
            Message::new(Role::User, "2+2?"),
            Message::new(Role::Assistant, "4"),
            Message::new(Role::User, "and 3+3?"),
            Message::new(Role::Assistant, "unknown answer"),
            Message::new(Role::User, "thanks"),
        ];
        let out = with_remembered_reasoning(messages, &remembered);
        let roles: Vec<Role> = out.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [
                Role::System,
                Role::User,
                Role::Reasoning,
                Role::Assistant,
                Role::User,
                Role::Assistant,
                Role::User
            ]
        );
        assert_eq!(out[2].content, "2 + 2 is 4.");
        // Given reasoning is kept as it is.
        let given = vec![
            Message::new(Role::User, "2+2?"),
            Message::new(Role::Reasoning, "mine"),
            Message::new(Role::Assistant, "4"),
        ];
        assert_eq!(with_remembered_reasoning(given.clone(), &remembered), given);
    }
}
