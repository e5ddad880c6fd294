//! One model, one generation at a time: requests wait in a bounded queue,
//! in order, and a dispatcher thread runs each on the engine, passing its
//! text on as it comes. A request whose client has gone leaves the queue at
//! once, or is cancelled within a token or a prefill batch if it runs; stop
//! sequences end the answer where they appear.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::guard::{ApiError, Caller};
use super::remember::{Remembered, Thread};
use crate::chat::{Phase, Role};
use crate::engine::{Completion, Engine, EngineError, Event, RawCompletion, Stop};

/// How often a running request checks that its client is still there
/// while the engine is quiet (a long prefill batch).
const CLIENT_CHECK: Duration = Duration::from_millis(200);

/// A generation to run.
pub enum Work {
    /// Messages in the two-phase format: reasoning, then answer.
    Chat(Completion),
    /// A raw prompt continued as it is (its text comes as the answer's).
    Raw(RawCompletion),
}

/// What a handler asks of the dispatcher.
pub struct Job {
    pub request: Work,
    /// Answer text that ends the answer (not included in it).
    pub stops: Vec<String>,
    pub caller: Caller,
    /// The conversation the request continues: its reasoning is remembered
    /// under it (`None`: not remembered).
    pub thread: Option<Thread>,
    pub out: mpsc::UnboundedSender<Update>,
}

/// What a handler hears back, in order: text of the reasoning, then of the
/// answer, then one `Done` or `Failed`.
#[derive(Debug)]
pub enum Update {
    Reasoning(String),
    /// The reasoning ended at its token budget or the context's end (the
    /// answer follows).
    ReasoningCut,
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
    /// The reasoning as shown: without the blank lines the format puts
    /// around it (empty when the model went straight to the answer).
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

/// What the dispatcher shares with the handlers and the shutdown.
#[derive(Default)]
pub struct Shared {
    pub engine: OnceLock<Arc<Engine>>,
    pub shutting_down: AtomicBool,
    pub remembered: Remembered,
    /// Whose request the KV cache holds: another caller's starts afresh,
    /// so no caller learns from `cached_tokens` what another one sent.
    last_caller: Mutex<Option<Caller>>,
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

/// The waiting requests, oldest first; shared by the handlers, which push,
/// and the dispatcher, which takes.
#[derive(Clone)]
pub struct Queue(Arc<QueueInner>);

struct QueueInner {
    state: Mutex<Waiting>,
    changed: Condvar,
    bound: usize,
}

#[derive(Default)]
struct Waiting {
    jobs: VecDeque<Job>,
    closed: bool,
}

impl Waiting {
    /// Drops the requests whose clients have hung up.
    fn forget_abandoned(&mut self) {
        self.jobs.retain(|j| !j.out.is_closed());
    }
}

impl Queue {
    /// A queue holding at most `bound` waiting requests.
    pub fn new(bound: usize) -> Queue {
        Queue(Arc::new(QueueInner {
            state: Mutex::new(Waiting::default()),
            changed: Condvar::new(),
            bound: bound.max(1),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.0.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `job`, or says why not (a 503 that says when to retry).
    /// Requests whose clients have gone do not count.
    pub fn push(&self, job: Job) -> Result<(), ApiError> {
        let mut w = self.lock();
        if w.closed {
            return Err(
                ApiError::unavailable("the server is shutting down", 5).with_code("shutting_down")
            );
        }
        w.forget_abandoned();
        if w.jobs.len() >= self.0.bound {
            return Err(ApiError::unavailable(
                "the server is busy: too many requests are waiting; retry shortly",
                2,
            )
            .with_code("queue_full"));
        }
        w.jobs.push_back(job);
        self.0.changed.notify_one();
        Ok(())
    }

    /// The next request whose client is still there; `None` once the queue
    /// is closed and empty.
    fn take(&self) -> Option<Job> {
        let mut w = self.lock();
        loop {
            w.forget_abandoned();
            if let Some(job) = w.jobs.pop_front() {
                return Some(job);
            }
            if w.closed {
                return None;
            }
            w = self.0.changed.wait(w).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Takes no more requests; those waiting are still handed out (and
    /// refused, as the server is shutting down).
    pub fn close(&self) {
        self.lock().closed = true;
        self.0.changed.notify_all();
    }
}

/// Runs the queue's jobs one after the other until it is closed.
pub fn dispatch(shared: &Shared, engine: &Engine, queue: &Queue) {
    while let Some(job) = queue.take() {
        if shared.shutting_down.load(Ordering::SeqCst) {
            let _ = job.out.send(Update::Failed(
                ApiError::unavailable("the server is shutting down", 5).with_code("shutting_down"),
            ));
            continue;
        }
        run(shared, engine, job);
    }
}

fn run(shared: &Shared, engine: &Engine, mut job: Job) {
    let started = Instant::now();
    {
        let mut last = shared.last_caller.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = last.is_some_and(|c| c != job.caller);
        match &mut job.request {
            Work::Chat(c) => c.fresh = fresh,
            Work::Raw(r) => r.fresh = fresh,
        }
        *last = Some(job.caller);
    }
    // A conversation that ends with its reasoning (cut short by the
    // client) gets only the answer: that reasoning is the one to remember.
    let given_reasoning = match &job.request {
        Work::Chat(c) => c
            .messages
            .last()
            .filter(|m| m.role == Role::Reasoning)
            .map(|m| m.content.clone()),
        Work::Raw(_) => None,
    };
    let (tx, events) = std_mpsc::channel();
    let started_work = match job.request {
        Work::Chat(c) => engine.complete(c, tx),
        Work::Raw(r) => engine.complete_raw(r, tx),
    };
    if let Err(e) = started_work {
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
    let (mut raw_reasoning, mut shown_reasoning) = (String::new(), Trim::default());
    loop {
        let event = match events.recv_timeout(CLIENT_CHECK) {
            Ok(event) => Some(event),
            Err(std_mpsc::RecvTimeoutError::Timeout) => None,
            Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
        };
        if !cancelled && (job.out.is_closed() || shared.shutting_down.load(Ordering::SeqCst)) {
            engine.cancel();
            cancelled = true;
        }
        let Some(event) = event else { continue };
        match event {
            Event::Text {
                phase: Phase::Reasoning,
                text,
            } => {
                raw_reasoning.push_str(&text);
                let shown = shown_reasoning.push(&text);
                if !shown.is_empty() {
                    summary.reasoning.push_str(&shown);
                    let _ = job.out.send(Update::Reasoning(shown));
                }
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
                        if matches!(stop, Stop::Limit | Stop::ContextFull) {
                            let _ = job.out.send(Update::ReasoningCut);
                        }
                    }
                    Phase::Answer => {
                        if summary.prompt_tokens == 0 {
                            // A raw prompt: the answer phase is the only one.
                            summary.prompt_tokens = stats.prompt_tokens;
                            summary.cached_tokens = stats.reused_tokens;
                        }
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
    if let (Some(thread), true) = (&job.thread, summary.finish != Finish::Cancelled) {
        shared.remembered.keep(
            thread,
            &summary.answer,
            given_reasoning.as_deref().unwrap_or(&raw_reasoning),
        );
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

/// Streamed text without the whitespace around it: leading whitespace is
/// dropped, trailing whitespace held back until text follows it.
#[derive(Default)]
struct Trim {
    started: bool,
    held: String,
}

impl Trim {
    /// Takes the next piece; returns what can be shown now.
    fn push(&mut self, text: &str) -> String {
        let text = if self.started {
            text
        } else {
            text.trim_start()
        };
        if text.is_empty() {
            return String::new();
        }
        self.started = true;
        let body = text.trim_end();
        if body.is_empty() {
            self.held.push_str(text);
            return String::new();
        }
        let mut shown = std::mem::take(&mut self.held);
        shown.push_str(body);
        self.held.push_str(&text[body.len()..]);
        shown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn shown_reasoning_loses_the_blank_lines_around_it() {
        let show = |pieces: &[&str]| {
            let mut t = Trim::default();
            pieces.iter().map(|p| t.push(p)).collect::<String>()
        };
        assert_eq!(show(&["\n", "\n"]), "");
        assert_eq!(
            show(&["\n", "First", ", then", "\n\n", "next.", "\n"]),
            "First, then\n\nnext."
        );
        assert_eq!(show(&[" a ", " b"]), "a  b");
    }
}
