//! The UI's state and the one place that changes it: [`App::update`] takes
//! every message of the inbox (keys, paste, mouse, resize, ticks, engine
//! events, model loading) in order. Drawing reads the state and never
//! changes it (apart from the cache of rendered transcript lines).

use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::time::Instant;

use crossterm::event::{KeyEvent, MouseEvent, MouseEventKind};
use ratatui::layout::Rect;

use crate::chat::{Message, Phase};
use crate::engine::{ContextUsage, Event, PhaseStats};

use super::chat_engine::ChatEngine;
use super::input::Input;
use super::keys::{self, Action, Focus, Mode};
use super::layout;
use super::session::{Session, Tokens};
use super::transcript::{history_of, ModelSummary, Pane, RenderCache, Turn};

/// Everything that reaches the UI, in one inbox.
pub enum Msg {
    Key(KeyEvent),
    Paste(String),
    Mouse(MouseEvent),
    Resize(u16, u16),
    Tick,
    Engine(Event),
    /// The event channel of a turn closed (the engine finished or died).
    TurnClosed,
    LoadProgress(f32),
    Ready(Box<dyn ChatEngine>, ModelSummary),
    LoadFailed(String),
    /// A resumed conversation is back in the engine (or could not be put back).
    Restored(Result<(), String>),
    /// The UI has to end now, whatever the user was doing.
    End(Ending),
}

/// Why the UI ends without the user quitting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// SIGTERM, SIGHUP or SIGINT.
    Signal(i32),
    /// A thread panicked: its message.
    Panic(String),
    /// A fault in native code (SIGILL, SIGSEGV, ...): the process exits once
    /// the conversation is saved and the terminal put back.
    Fault(i32),
}

#[derive(Clone, Debug, PartialEq)]
pub enum State {
    Loading(f32),
    Idle,
    Generating {
        phase: Phase,
        prefill: Option<(usize, usize)>,
        since: Instant,
    },
    /// The model could not be loaded: nothing to do but read and quit.
    Failed(String),
}

/// A pane's scroll position: lines up from the bottom (0 follows the tail).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scroll {
    pub from_bottom: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    pub text: String,
    pub error: bool,
}

pub struct App {
    pub model: ModelSummary,
    engine: Option<Arc<dyn ChatEngine>>,
    /// Where turn events are forwarded (None in tests, which feed events directly).
    inbox: Option<Sender<Msg>>,
    pub state: State,
    pub turns: Vec<Turn>,
    pub input: Input,
    pub focus: Focus,
    pub help: bool,
    pub reasoning_collapsed: bool,
    pub scroll: [Scroll; 2],
    pub usage: ContextUsage,
    /// The meter shows an estimate (a resumed conversation saved without
    /// its token counts), until a turn gives the exact figure.
    pub usage_estimated: bool,
    /// A resumed conversation is being read back into the engine.
    pub restoring: bool,
    /// The last finished phase and its figures.
    pub last_phase: Option<(Phase, PhaseStats)>,
    pub notice: Option<Notice>,
    pub size: (u16, u16),
    pub session: Session,
    pub quit: bool,
    /// Messages to restore once the engine is ready (a resumed session).
    pending_restore: Option<Vec<Message>>,
    /// Ctrl+N came while a turn ran: the new conversation starts when the
    /// stopped turn has wound down.
    new_chat_after_turn: bool,
    /// A question sent while the model loads, sent once it is ready.
    queued: Option<String>,
    /// The transcript's lines as drawn, kept across frames.
    pub(super) rendered: RenderCache,
}

impl App {
    /// Lets go of the engine without stopping it (its thread is stuck in
    /// a fault's handler, which ends the process).
    pub fn abandon_engine(&mut self) {
        if let Some(engine) = self.engine.take() {
            std::mem::forget(engine);
        }
    }

    pub fn new(session: Session, inbox: Option<Sender<Msg>>) -> Self {
        App {
            model: ModelSummary::default(),
            engine: None,
            inbox,
            state: State::Loading(0.0),
            turns: session.turns.clone(),
            input: Input::default(),
            focus: Focus::Input,
            help: false,
            reasoning_collapsed: false,
            scroll: [Scroll::default(); 2],
            usage: ContextUsage::default(),
            usage_estimated: false,
            restoring: false,
            last_phase: None,
            notice: (!session.notes.is_empty()).then(|| Notice {
                text: session.notes.join(" · "),
                error: false,
            }),
            size: (80, 24),
            pending_restore: (!session.turns.is_empty()).then(|| history_of(&session.turns)),
            new_chat_after_turn: false,
            queued: None,
            session,
            quit: false,
            rendered: RenderCache::default(),
        }
    }

    pub fn mode(&self) -> Mode {
        Mode {
            focus: self.focus,
            generating: matches!(self.state, State::Generating { .. }),
            help: self.help,
            input_empty: self.input.is_empty(),
        }
    }

    /// The question waiting for the model to load, if any.
    pub fn queued(&self) -> Option<&str> {
        self.queued.as_deref()
    }

    pub fn generating(&self) -> bool {
        matches!(self.state, State::Generating { .. })
    }

    fn note(&mut self, text: impl Into<String>, error: bool) {
        self.notice = Some(Notice {
            text: text.into(),
            error,
        });
    }

    pub fn update(&mut self, msg: Msg) {
        match msg {
            Msg::Key(key) => self.on_action(keys::action(key, self.mode())),
            Msg::Paste(text) => {
                self.input.insert(&text);
                self.focus = Focus::Input;
            }
            Msg::Mouse(m) => self.on_mouse(m),
            Msg::Resize(w, h) => self.size = (w, h),
            Msg::Tick => {}
            Msg::Engine(event) => self.on_engine(event),
            Msg::TurnClosed => {
                if self.generating() {
                    self.state = State::Idle;
                    self.note(
                        "the engine stopped without finishing the turn (see the log file)",
                        true,
                    );
                    self.turn_ended();
                }
            }
            Msg::LoadProgress(p) => {
                if matches!(self.state, State::Loading(_)) {
                    self.state = State::Loading(p);
                }
            }
            Msg::Ready(engine, model) => {
                self.usage = ContextUsage {
                    used: 0,
                    n_ctx: model.n_ctx,
                    reasoning: 0,
                };
                if !model.notes.is_empty() {
                    self.note(model.notes.join(" · "), false);
                }
                self.model = model.clone();
                self.session.model = model;
                let engine: Arc<dyn ChatEngine> = Arc::from(engine);
                if let Some(history) = self.pending_restore.take() {
                    self.restore(&engine, history);
                }
                self.engine = Some(engine);
                self.state = State::Idle;
                if let Some(question) = self.queued.take() {
                    self.start_turn(question);
                }
            }
            Msg::End(_) => self.quit = true,
            Msg::Restored(result) => {
                self.restoring = false;
                if let Err(e) = result {
                    self.note(format!("could not restore the conversation: {e}"), true);
                }
            }
            Msg::LoadFailed(e) => {
                self.state = State::Failed(e);
                // Back where it was typed, so it is not lost.
                if let Some(question) = self.queued.take() {
                    self.input.insert(&question);
                }
            }
        }
    }

    /// Puts a resumed conversation back into the engine, in the background
    /// (the engine re-reads it), while the meter shows its size as saved.
    fn restore(&mut self, engine: &Arc<dyn ChatEngine>, history: Vec<Message>) {
        match self.session.tokens {
            Some(Tokens { used, reasoning }) => {
                self.usage.used = used;
                self.usage.reasoning = reasoning;
            }
            None => {
                let (used, reasoning) = estimate_tokens(&history);
                self.usage.used = used;
                self.usage.reasoning = reasoning;
                self.usage_estimated = true;
            }
        }
        self.restoring = true;
        let n = self.turns.len();
        let mut text = format!("resumed {n} turn{}", if n == 1 { "" } else { "s" });
        for n in &self.session.notes {
            text = format!("{text} · {n}");
        }
        self.note(text, false);
        match &self.inbox {
            Some(inbox) => {
                let (engine, inbox) = (engine.clone(), inbox.clone());
                std::thread::spawn(move || {
                    let done = engine.restore(history).map_err(|e| e.to_string());
                    let _ = inbox.send(Msg::Restored(done));
                });
            }
            // Tests: the call now, its end when they send `Restored`.
            None => {
                if let Err(e) = engine.restore(history) {
                    self.restoring = false;
                    self.note(format!("could not restore the conversation: {e}"), true);
                }
            }
        }
    }

    fn on_action(&mut self, action: Action) {
        use Action::*;
        match action {
            Quit => self.quit = true,
            Send => self.send(),
            Newline => self.input.insert("\n"),
            Insert(c) => {
                self.input.insert(c.encode_utf8(&mut [0; 4]));
                self.focus = Focus::Input;
            }
            Backspace => self.input.backspace(),
            Delete => self.input.delete(),
            Left => self.input.left(),
            Right => self.input.right(),
            Up => self.input.up(),
            Down => self.input.down(),
            LineStart => self.input.home(),
            LineEnd => self.input.end(),
            Stop => {
                if let Some(e) = &self.engine {
                    e.cancel();
                }
            }
            AnswerNow => {
                if let Some(e) = &self.engine {
                    e.answer_now();
                }
            }
            FocusNext | FocusPrev => {
                let order = if self.reasoning_collapsed {
                    vec![Focus::Input, Focus::Answer]
                } else {
                    vec![Focus::Input, Focus::Reasoning, Focus::Answer]
                };
                let i = order.iter().position(|f| *f == self.focus).unwrap_or(0);
                let n = order.len();
                self.focus = order[if action == FocusNext {
                    (i + 1) % n
                } else {
                    (i + n - 1) % n
                }];
            }
            ScrollUp(n) => self.scroll_by(self.scroll_target(), n as isize),
            ScrollDown(n) => self.scroll_by(self.scroll_target(), -(n as isize)),
            PageUp | PageDown => {
                let pane = self.scroll_target();
                let page = self.pane_rect(pane).height.saturating_sub(3).max(1) as isize;
                self.scroll_by(pane, if action == PageUp { page } else { -page });
            }
            ScrollTop => {
                let pane = self.scroll_target();
                self.scroll[pane as usize].from_bottom = usize::MAX;
                self.clamp_scroll(pane);
            }
            ScrollBottom => self.scroll[self.scroll_target() as usize].from_bottom = 0,
            NewChat => self.new_chat(),
            Save => self.save_transcript(),
            ToggleReasoning => {
                self.reasoning_collapsed = !self.reasoning_collapsed;
                if self.reasoning_collapsed && self.focus == Focus::Reasoning {
                    self.focus = Focus::Answer;
                }
            }
            ToggleHelp => self.help = !self.help,
            Nothing => {}
        }
    }

    /// The pane that scroll keys move: the focused one, else the answer.
    fn scroll_target(&self) -> Pane {
        match self.focus {
            Focus::Reasoning => Pane::Reasoning,
            _ => Pane::Answer,
        }
    }

    fn on_mouse(&mut self, m: MouseEvent) {
        let up = match m.kind {
            MouseEventKind::ScrollUp => true,
            MouseEventKind::ScrollDown => false,
            _ => return,
        };
        let at = |r: Rect| {
            m.column >= r.x && m.column < r.x + r.width && m.row >= r.y && m.row < r.y + r.height
        };
        let pane = if at(self.pane_rect(Pane::Reasoning)) {
            Pane::Reasoning
        } else {
            Pane::Answer
        };
        self.scroll_by(pane, if up { 3 } else { -3 });
    }

    pub fn pane_rect(&self, pane: Pane) -> Rect {
        let l = layout::layout(self.size, self.reasoning_collapsed, &self.input);
        match pane {
            Pane::Reasoning => l.reasoning,
            Pane::Answer => l.answer,
        }
    }

    fn scroll_by(&mut self, pane: Pane, lines: isize) {
        let s = &mut self.scroll[pane as usize];
        s.from_bottom = s.from_bottom.saturating_add_signed(lines);
        self.clamp_scroll(pane);
    }

    fn clamp_scroll(&mut self, pane: Pane) {
        let rect = self.pane_rect(pane);
        let inner = layout::inner(rect);
        let total = self.rendered.total_lines(&self.turns, pane, inner.width);
        let max = total.saturating_sub(inner.height as usize);
        let s = &mut self.scroll[pane as usize];
        s.from_bottom = s.from_bottom.min(max);
    }

    fn send(&mut self) {
        let question = self.input.text().trim().to_string();
        if question.is_empty() {
            return;
        }
        if self.generating() {
            self.note("still answering: wait, or press Esc to stop", false);
            return;
        }
        if self.engine.is_none() {
            if !matches!(self.state, State::Loading(_)) {
                self.note("the model is not loaded", true);
            } else if self.queued.is_some() {
                self.note("a question is already waiting for the model", false);
            } else {
                self.input.take();
                self.queued = Some(question);
                self.notice = None;
            }
            return;
        }
        if self.start_turn(question) {
            self.input.take();
        }
    }

    /// Sends `question` to the engine; false (with a notice) if it refused.
    fn start_turn(&mut self, question: String) -> bool {
        let Some(engine) = &self.engine else {
            return false;
        };
        let (tx, rx) = mpsc::channel();
        if let Err(e) = engine.turn(question.clone(), tx) {
            self.note(format!("{e}"), true);
            return false;
        }
        if let Some(inbox) = &self.inbox {
            let inbox = inbox.clone();
            std::thread::spawn(move || {
                for event in rx {
                    if inbox.send(Msg::Engine(event)).is_err() {
                        return;
                    }
                }
                let _ = inbox.send(Msg::TurnClosed);
            });
        }
        self.turns.push(Turn {
            question,
            ..Turn::default()
        });
        self.state = State::Generating {
            phase: Phase::Reasoning,
            prefill: None,
            since: Instant::now(),
        };
        self.scroll = [Scroll::default(); 2];
        self.notice = None;
        true
    }

    fn on_engine(&mut self, event: Event) {
        let Some(turn) = self.turns.last_mut() else {
            return;
        };
        match event {
            Event::LimitsLowered { limits, n_ctx } => {
                let text = format!(
                    "a context of {n_ctx} tokens holds less than the phase limits: \
                     this turn reasons for at most {} tokens and answers in at most {}",
                    limits.reasoning, limits.answer
                );
                turn.notes.push(text.clone());
                self.note(text, false);
            }
            Event::Trimmed {
                dropped_reasoning,
                dropped_turns,
                usage,
            } => {
                let text = format!(
                    "context full: dropped {dropped_reasoning} old reasoning message(s) and {dropped_turns} old turn(s) from the model's memory"
                );
                turn.notes.push(text.clone());
                self.usage = usage;
                self.note(text, false);
            }
            Event::Prefilling { phase, done, total } => {
                self.state = State::Generating {
                    phase,
                    prefill: Some((done, total)),
                    since: Instant::now(),
                };
            }
            Event::PhaseStarted { phase, prefill } => {
                self.state = State::Generating {
                    phase,
                    prefill: None,
                    since: Instant::now(),
                };
                self.usage.used = prefill.prompt_tokens;
            }
            Event::Text { phase, text } => {
                match phase {
                    Phase::Reasoning => turn.reasoning.push_str(&text),
                    Phase::Answer => turn.answer.push_str(&text),
                }
                // Exact figures come with the phase's end; this keeps the meter moving.
                self.usage.used += 1;
                if phase == Phase::Reasoning {
                    self.usage.reasoning += 1;
                }
            }
            Event::PhaseFinished {
                phase,
                text,
                stop,
                stats,
                ..
            } => {
                match phase {
                    Phase::Reasoning => {
                        turn.reasoning = text;
                        turn.reasoning_stop = Some(stop);
                    }
                    Phase::Answer => {
                        turn.answer = text;
                        turn.answer_stop = Some(stop);
                    }
                }
                self.usage.used = stats.prompt_tokens + stats.generated_tokens;
                self.last_phase = Some((phase, stats));
            }
            Event::TurnFinished { usage } => {
                self.usage = usage;
                self.usage_estimated = false;
                self.session.tokens = Some(Tokens {
                    used: usage.used,
                    reasoning: usage.reasoning,
                });
                self.state = State::Idle;
                if let Err(e) = self.session.save(&self.turns) {
                    self.note(format!("could not save the session: {e}"), true);
                }
                self.turn_ended();
            }
            Event::Error(e) => {
                let text = e.to_string();
                turn.notes.push(format!("error: {text}"));
                self.state = State::Idle;
                self.note(text, true);
                self.turn_ended();
            }
        }
    }

    /// What waited for the running turn to end.
    fn turn_ended(&mut self) {
        if std::mem::take(&mut self.new_chat_after_turn) {
            self.new_chat();
        }
    }

    fn new_chat(&mut self) {
        if self.generating() {
            // The turn's remaining events belong to this conversation: stop
            // it, let it wind down (saved with what it wrote), then start over.
            if let Some(e) = &self.engine {
                e.cancel();
            }
            self.new_chat_after_turn = true;
            self.note("stopping the answer to start a new conversation…", false);
            return;
        }
        if let Some(e) = &self.engine {
            if let Err(err) = e.reset() {
                self.note(err.to_string(), true);
                return;
            }
        }
        self.session = self.session.fresh();
        self.turns.clear();
        self.scroll = [Scroll::default(); 2];
        self.usage.used = 0;
        self.usage.reasoning = 0;
        self.usage_estimated = false;
        self.last_phase = None;
        self.note("new conversation", false);
    }

    fn save_transcript(&mut self) {
        match self.session.export_markdown(&self.turns) {
            Ok(path) => self.note(format!("saved the transcript to {}", path.display()), false),
            Err(e) => self.note(format!("could not save the transcript: {e}"), true),
        }
    }
}

/// About how many tokens `history` takes in the context, for a conversation
/// saved without its counts: a token per four bytes of text (English text
/// runs at about that) and the chat template's markers around each message.
/// Returns (all, reasoning).
fn estimate_tokens(history: &[Message]) -> (usize, usize) {
    let tokens = |m: &Message| m.content.len().div_ceil(4) + crate::chat::TOKENS_PER_MESSAGE;
    let all = history.iter().map(tokens).sum();
    let reasoning = history
        .iter()
        .filter(|m| m.role == crate::chat::Role::Reasoning)
        .map(tokens)
        .sum();
    (all, reasoning)
}
