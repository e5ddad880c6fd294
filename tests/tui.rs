//! The terminal UI without a terminal or a model: the app driven by a
//! scripted fake engine, rendered into ratatui's TestBackend and compared
//! with snapshots of the screen text.

use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseEvent, MouseEventKind};
use o1::chat::{Message, Phase};
use o1::engine::{ContextUsage, EngineError, Event, PhaseStats, Prefill, Stop};
use o1::tui::app::{App, Msg, State};
use o1::tui::chat_engine::ChatEngine;
use o1::tui::session::Session;
use o1::tui::transcript::ModelSummary;
use o1::tui::ui;
use ratatui::backend::TestBackend;
use ratatui::Terminal;

/// Records what the app asked of the engine.
#[derive(Clone, Default)]
struct Fake {
    calls: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

impl ChatEngine for Fake {
    fn turn(&self, user: String, _events: Sender<Event>) -> Result<(), EngineError> {
        self.calls.lock().unwrap().push(format!("turn {user}"));
        Ok(())
    }
    fn cancel(&self) {
        self.calls.lock().unwrap().push("cancel".into());
    }
    fn answer_now(&self) {
        self.calls.lock().unwrap().push("answer_now".into());
    }
    fn reset(&self) -> Result<(), EngineError> {
        self.calls.lock().unwrap().push("reset".into());
        Ok(())
    }
    fn restore(&self, history: Vec<Message>) -> Result<(), EngineError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("restore {}", history.len()));
        Ok(())
    }
}

struct Harness {
    app: App,
    fake: Fake,
    dir: tempfile::TempDir,
}

fn model() -> ModelSummary {
    ModelSummary {
        name: "o1-1.5b".into(),
        file_type: "q4_k_m".into(),
        gpu_layers: 0,
        n_layers: 28,
        n_ctx: 4096,
        chosen: vec![
            "context 4096 tokens · f16 KV cache · batches of 512 · 2 threads".into(),
            "memory ≈ 1241 MiB of 11980 MiB allowed (--max-memory)".into(),
        ],
        ..Default::default()
    }
}

fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let session = Session::new(dir.path().join("sessions"), dir.path().to_path_buf());
    let mut app = App::new(session, None);
    let fake = Fake::default();
    app.update(Msg::Ready(Box::new(fake.clone()), model()));
    Harness { app, fake, dir }
}

impl Harness {
    fn key(&mut self, code: KeyCode, mods: KeyModifiers) {
        self.app.update(Msg::Key(KeyEvent::new(code, mods)));
    }

    fn type_text(&mut self, s: &str) {
        for c in s.chars() {
            self.key(KeyCode::Char(c), KeyModifiers::NONE);
        }
    }

    fn ask(&mut self, q: &str) {
        self.type_text(q);
        self.key(KeyCode::Enter, KeyModifiers::NONE);
    }

    fn ev(&mut self, e: Event) {
        self.app.update(Msg::Engine(e));
    }

    fn phase_started(&mut self, phase: Phase, prompt: usize) {
        self.ev(Event::PhaseStarted {
            phase,
            prefill: Prefill {
                prompt_tokens: prompt,
                reused: 0,
                prefilled: prompt,
                seconds: 0.1,
            },
        });
    }

    fn stream(&mut self, phase: Phase, text: &str) {
        for piece in text.split_inclusive(' ') {
            self.ev(Event::Text {
                phase,
                text: piece.to_string(),
            });
        }
    }

    fn finish_phase(&mut self, phase: Phase, stop: Stop, generated: usize) {
        let text = match phase {
            Phase::Reasoning => self.app.turns.last().unwrap().reasoning.clone(),
            Phase::Answer => self.app.turns.last().unwrap().answer.clone(),
        };
        let stats = PhaseStats {
            prompt_tokens: 100,
            generated_tokens: generated,
            time_to_first_token: 0.42,
            tokens_per_second: 27.5,
            ..Default::default()
        };
        self.ev(Event::PhaseFinished {
            phase,
            text,
            tokens: vec![],
            stop,
            stats,
        });
    }

    fn whole_turn(&mut self, q: &str, reasoning: &str, answer: &str, used: usize) {
        self.ask(q);
        self.phase_started(Phase::Reasoning, used / 2);
        self.stream(Phase::Reasoning, reasoning);
        self.finish_phase(Phase::Reasoning, Stop::EndOfTurn, 20);
        self.phase_started(Phase::Answer, used / 2 + 20);
        self.stream(Phase::Answer, answer);
        self.finish_phase(Phase::Answer, Stop::EndOfTurn, 20);
        self.ev(Event::TurnFinished {
            usage: ContextUsage {
                used,
                n_ctx: 4096,
                reasoning: used / 4,
            },
        });
    }

    fn screen(&self, w: u16, h: u16) -> String {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|f| ui::draw(f, &self.app)).unwrap();
        let buf = t.backend().buffer().clone();
        let mut out = String::new();
        for y in 0..h {
            let mut line = String::new();
            let mut x = 0;
            while x < w {
                // A wide character fills two cells; the second holds nothing.
                let symbol = buf[(x, y)].symbol();
                line.push_str(symbol);
                x += unicode_width::UnicodeWidthStr::width(symbol).max(1) as u16;
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

const REASONING: &str =
    "The user wants a **function**. I should:\n\n- take a number\n- return its square";
const ANSWER: &str =
    "Here it is:\n\n```python\ndef square(n):\n    return n * n\n```\n\nCall `square(3)` to get 9.";

#[test]
fn empty_start() {
    let h = harness();
    insta::assert_snapshot!(h.screen(80, 24));
}

#[test]
fn loading_screen() {
    let dir = tempfile::tempdir().unwrap();
    let mut app = App::new(Session::new(dir.path().into(), dir.path().into()), None);
    app.update(Msg::LoadProgress(0.42));
    let h = Harness {
        app,
        fake: Fake::default(),
        dir,
    };
    insta::assert_snapshot!(h.screen(80, 24));
}

#[test]
fn mid_reasoning() {
    let mut h = harness();
    h.ask("Write a function that squares a number");
    h.phase_started(Phase::Reasoning, 31);
    h.stream(
        Phase::Reasoning,
        "The user wants a **function**. I should take a number and",
    );
    assert!(matches!(
        h.app.state,
        State::Generating {
            phase: Phase::Reasoning,
            ..
        }
    ));
    insta::assert_snapshot!(h.screen(80, 24));
}

#[test]
fn mid_answer() {
    let mut h = harness();
    h.ask("Write a function that squares a number");
    h.phase_started(Phase::Reasoning, 31);
    h.stream(Phase::Reasoning, REASONING);
    h.finish_phase(Phase::Reasoning, Stop::EndOfTurn, 18);
    h.ev(Event::Prefilling {
        phase: Phase::Answer,
        done: 0,
        total: 5,
    });
    h.phase_started(Phase::Answer, 55);
    h.stream(Phase::Answer, "Here it is:\n\n```python\ndef square(n):");
    insta::assert_snapshot!(h.screen(80, 24));
}

#[test]
fn finished_multi_turn_chat() {
    let mut h = harness();
    h.whole_turn(
        "Write a function that squares a number",
        REASONING,
        ANSWER,
        160,
    );
    h.whole_turn(
        "And in Rust?",
        "Same idea, typed.",
        "```rust\nfn square(n: i64) -> i64 { n * n }\n```",
        260,
    );
    assert_eq!(h.app.state, State::Idle);
    insta::assert_snapshot!(h.screen(100, 40));
}

#[test]
fn reasoning_collapsed() {
    let mut h = harness();
    h.whole_turn(
        "Write a function that squares a number",
        REASONING,
        ANSWER,
        160,
    );
    h.key(KeyCode::Char('r'), KeyModifiers::CONTROL);
    assert!(h.app.reasoning_collapsed);
    insta::assert_snapshot!(h.screen(80, 24));
}

#[test]
fn help_overlay() {
    let mut h = harness();
    h.key(KeyCode::Char('?'), KeyModifiers::NONE);
    assert!(h.app.help);
    let screen = h.screen(100, 30);
    // What the engine chose for this machine's memory is listed under the keys.
    assert!(
        screen.contains("context 4096 tokens · f16 KV cache"),
        "{screen}"
    );
    assert!(
        screen.contains("of 11980 MiB allowed (--max-memory)"),
        "{screen}"
    );
    insta::assert_snapshot!(screen);
    h.key(KeyCode::Esc, KeyModifiers::NONE);
    assert!(!h.app.help);
}

#[test]
fn what_the_load_chose_to_fit_memory_is_said_once_ready() {
    let dir = tempfile::tempdir().unwrap();
    let session = Session::new(dir.path().join("sessions"), dir.path().to_path_buf());
    let mut app = App::new(session, None);
    let fake = Fake::default();
    let mut summary = model();
    summary.notes = vec!["to fit --max-memory 1144 MiB: a context of 7424 tokens".into()];
    app.update(Msg::Ready(Box::new(fake), summary));
    let notice = app.notice.as_ref().expect("a notice");
    assert!(
        notice.text.contains("to fit --max-memory 1144 MiB"),
        "{}",
        notice.text
    );
    assert!(!notice.error);
}

#[test]
fn context_meter_levels() {
    for (used, name) in [(2048, "meter_50"), (3277, "meter_80"), (3892, "meter_95")] {
        let mut h = harness();
        h.whole_turn("Fill the context", "Thinking.", "Done.", used);
        let screen = h.screen(80, 24);
        let meter = screen
            .lines()
            .find(|l| l.starts_with(" ctx "))
            .unwrap()
            .to_string();
        insta::assert_snapshot!(name, meter);
        // Colour: normal below 75 %, warning from 75 %, critical from 90 %.
        let mut t = Terminal::new(TestBackend::new(80, 24)).unwrap();
        t.draw(|f| ui::draw(f, &h.app)).unwrap();
        let buf = t.backend().buffer().clone();
        let row = (0..24)
            .find(|&y| buf[(1u16, y)].symbol() == "c" && buf[(2u16, y)].symbol() == "t")
            .unwrap();
        let label = (0..80u16)
            .rev()
            .find(|&x| buf[(x, row)].symbol() == "%")
            .unwrap();
        let color = buf[(label, row)].fg;
        let expected = match used {
            2048 => ratatui::style::Color::Green,
            3277 => ratatui::style::Color::Yellow,
            _ => ratatui::style::Color::Red,
        };
        assert_eq!(color, expected, "{name}");
    }
}

#[test]
fn engine_error_is_shown() {
    let mut h = harness();
    h.ask("Hello");
    h.ev(Event::Error(Arc::new(EngineError::ContextTooSmall {
        prompt: 9000,
        reserve: 48,
        n_ctx: 4096,
    })));
    assert_eq!(h.app.state, State::Idle);
    insta::assert_snapshot!(h.screen(100, 24));
}

#[test]
fn terminal_below_the_minimum_size() {
    let h = harness();
    insta::assert_snapshot!(h.screen(19, 4));
}

#[test]
fn cjk_and_emoji_text() {
    let mut h = harness();
    h.whole_turn(
        "你好！用中文解释一下递归。🦀",
        "用户想要中文的解释。递归就是函数调用自己。🤔",
        "递归（recursion）是指函数调用**自身**。例如：🦀🚀\n\n- 基本情况\n- 递归情况",
        300,
    );
    let screen = h.screen(60, 24);
    insta::assert_snapshot!(screen);
    // Wide characters never push a line past the pane's border.
    for line in screen.lines() {
        assert!(unicode_width::UnicodeWidthStr::width(line) <= 60, "{line}");
    }
}

#[test]
fn event_flow_streaming_and_stats() {
    let mut h = harness();
    h.ask("Hi");
    assert_eq!(h.fake.calls(), ["turn Hi"]);
    assert!(h.app.input.is_empty());
    h.phase_started(Phase::Reasoning, 20);
    h.stream(Phase::Reasoning, "one two three");
    assert_eq!(h.app.turns[0].reasoning, "one two three");
    assert_eq!(h.app.usage.used, 23, "the meter moves while tokens stream");
    h.finish_phase(Phase::Reasoning, Stop::EndOfTurn, 3);
    h.phase_started(Phase::Answer, 30);
    h.stream(Phase::Answer, "four");
    h.finish_phase(Phase::Answer, Stop::EndOfTurn, 1);
    h.ev(Event::TurnFinished {
        usage: ContextUsage {
            used: 31,
            n_ctx: 4096,
            reasoning: 7,
        },
    });
    assert_eq!((h.app.usage.used, h.app.usage.reasoning), (31, 7));
    assert_eq!(h.app.turns[0].answer, "four");
    let (phase, stats) = h.app.last_phase.clone().unwrap();
    assert_eq!((phase, stats.tokens_per_second), (Phase::Answer, 27.5));
    // The session was saved as the turn finished.
    let saved = Session::latest(&h.dir.path().join("sessions"), h.dir.path().into())
        .unwrap()
        .unwrap();
    assert_eq!(saved.turns, h.app.turns);
}

#[test]
fn event_flow_cancel_keeps_the_partial_text() {
    let mut h = harness();
    h.ask("Tell me everything");
    h.phase_started(Phase::Reasoning, 20);
    h.stream(Phase::Reasoning, "Let me think about");
    h.key(KeyCode::Esc, KeyModifiers::NONE);
    assert_eq!(h.fake.calls().last().unwrap(), "cancel");
    h.finish_phase(Phase::Reasoning, Stop::Cancelled, 4);
    h.ev(Event::TurnFinished {
        usage: ContextUsage {
            used: 24,
            n_ctx: 4096,
            reasoning: 4,
        },
    });
    assert_eq!(h.app.state, State::Idle);
    assert_eq!(h.app.turns[0].reasoning, "Let me think about");
    assert!(h.screen(80, 24).contains("[reasoning cut: stopped]"));
}

#[test]
fn event_flow_cut_reasoning_short() {
    let mut h = harness();
    h.ask("Think hard");
    h.phase_started(Phase::Reasoning, 20);
    h.stream(Phase::Reasoning, "Hmm");
    h.key(KeyCode::Char('x'), KeyModifiers::CONTROL);
    assert_eq!(h.fake.calls().last().unwrap(), "answer_now");
    h.finish_phase(Phase::Reasoning, Stop::AnswerNow, 1);
    h.phase_started(Phase::Answer, 30);
    h.stream(Phase::Answer, "42");
    assert!(matches!(
        h.app.state,
        State::Generating {
            phase: Phase::Answer,
            ..
        }
    ));
    assert!(h.screen(80, 24).contains("[reasoning cut: cut short]"));
}

#[test]
fn event_flow_context_full_notice() {
    let mut h = harness();
    h.whole_turn("First", "r", "a", 100);
    h.ask("Second");
    h.ev(Event::Trimmed {
        dropped_reasoning: 1,
        dropped_turns: 0,
        usage: ContextUsage {
            used: 80,
            n_ctx: 4096,
            reasoning: 0,
        },
    });
    let screen = h.screen(120, 24);
    assert!(
        screen.contains("context full: dropped 1 old reasoning message(s)"),
        "{screen}"
    );
    assert_eq!(h.app.turns[1].notes.len(), 1);
}

#[test]
fn engine_that_dies_mid_turn_shows_an_error() {
    let mut h = harness();
    h.ask("Hi");
    h.app.update(Msg::TurnClosed);
    assert_eq!(h.app.state, State::Idle);
    assert!(h.app.notice.as_ref().unwrap().error);
}

#[test]
fn sending_while_generating_is_refused_with_a_notice() {
    let mut h = harness();
    h.ask("Hi");
    h.ask("Again");
    assert_eq!(h.fake.calls(), ["turn Hi"]);
    assert_eq!(h.app.input.text(), "Again", "the question is kept");
    assert!(h
        .app
        .notice
        .as_ref()
        .unwrap()
        .text
        .contains("still answering"));
}

#[test]
fn new_chat_save_paste_and_scroll() {
    let mut h = harness();
    let long: String = (1..=80)
        .map(|i| format!("Line {i} of a long answer.\n\n"))
        .collect();
    h.whole_turn("Long one", "r", &long, 100);
    h.app.update(Msg::Resize(80, 24));
    h.key(KeyCode::PageUp, KeyModifiers::NONE);
    let up = h.app.scroll[1].from_bottom;
    assert!(up > 5, "{up}");
    h.app.update(Msg::Mouse(MouseEvent {
        kind: MouseEventKind::ScrollDown,
        column: 10,
        row: 15,
        modifiers: KeyModifiers::NONE,
    }));
    assert_eq!(h.app.scroll[1].from_bottom, up - 3);
    assert!(h.screen(80, 24).contains("lines up"));
    h.key(KeyCode::End, KeyModifiers::CONTROL);
    assert_eq!(h.app.scroll[1].from_bottom, 0);

    h.key(KeyCode::Char('s'), KeyModifiers::CONTROL);
    let saved: Vec<_> = std::fs::read_dir(h.dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".md"))
        .collect();
    assert_eq!(saved.len(), 1);
    assert!(std::fs::read_to_string(saved[0].path())
        .unwrap()
        .contains("Line 80 of a long answer."));

    let paste = "x".repeat(20_000) + "\r\nend";
    h.app.update(Msg::Paste(paste));
    assert_eq!(h.app.input.text().len(), 20_004);

    h.key(KeyCode::Char('n'), KeyModifiers::CONTROL);
    assert!(h.app.turns.is_empty());
    assert_eq!(h.fake.calls().last().unwrap(), "reset");
}

#[test]
fn resumed_session_restores_the_engine_history() {
    let mut h = harness();
    h.whole_turn("First", "r", "a", 100);
    let dir = h.dir.path().to_path_buf();
    let session = Session::latest(&dir.join("sessions"), dir.clone())
        .unwrap()
        .unwrap();
    let mut app = App::new(session, None);
    let fake = Fake::default();
    app.update(Msg::Ready(Box::new(fake.clone()), model()));
    assert_eq!(fake.calls(), ["restore 3"], "user, reasoning and answer");
    assert_eq!(app.turns.len(), 1);
}

/// Draws the app at `w`×`h`, failing with the state on a panic.
fn draws_at(h: &Harness, w: u16, hgt: u16, what: &str) {
    let drawn = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut t = Terminal::new(TestBackend::new(w, hgt)).unwrap();
        t.draw(|f| ui::draw(f, &h.app)).unwrap();
    }));
    assert!(drawn.is_ok(), "drawing {what} at {w}x{hgt} panicked");
}

#[test]
fn every_size_down_to_20x5_draws_in_every_state() {
    let six_lines = "one\ntwo\nthree\nfour\nfive\nsix";
    let long_line = "a question long enough to wrap many times over ".repeat(8);
    let long: String = (1..=40).map(|i| format!("Line {i}.\n\n")).collect();
    let mut states: Vec<(&str, Harness)> = Vec::new();
    states.push(("empty", harness()));
    let mut h = harness();
    h.whole_turn("First", REASONING, &long, 100);
    h.type_text(six_lines);
    states.push(("finished, six-line question", h));
    let mut h = harness();
    h.whole_turn("First", REASONING, ANSWER, 100);
    h.ask(&long_line);
    h.phase_started(Phase::Reasoning, 31);
    h.stream(Phase::Reasoning, &long);
    h.type_text(&long_line);
    states.push(("streaming, long question", h));
    let mut h = harness();
    h.whole_turn("First", REASONING, &long, 100);
    h.key(KeyCode::PageUp, KeyModifiers::NONE);
    h.key(KeyCode::Char('?'), KeyModifiers::NONE);
    states.push(("scrolled, help", h));
    let dir = tempfile::tempdir().unwrap();
    let mut app = App::new(Session::new(dir.path().into(), dir.path().into()), None);
    app.update(Msg::LoadProgress(0.5));
    states.push((
        "loading",
        Harness {
            app,
            fake: Fake::default(),
            dir,
        },
    ));
    for (what, h) in &mut states {
        for collapsed in [false, true] {
            h.app.reasoning_collapsed = collapsed;
            for hgt in 5..=24 {
                for w in (20..=80).step_by(3) {
                    h.app.update(Msg::Resize(w, hgt));
                    draws_at(h, w, hgt, what);
                    let l = o1::tui::layout::layout((w, hgt), collapsed, &h.app.input);
                    let parts = [l.reasoning, l.answer, l.meter, l.input, l.status];
                    assert_eq!(
                        parts.iter().map(|r| r.height).sum::<u16>(),
                        hgt,
                        "{what} at {w}x{hgt}: the parts fill the height: {l:?}"
                    );
                    for r in parts {
                        assert!(
                            r.right() <= w && r.bottom() <= hgt,
                            "{what} at {w}x{hgt}: {l:?}"
                        );
                    }
                    assert!(l.input.height >= 3 && l.status.height == 1, "{l:?}");
                }
            }
        }
        // Below the minimum, and degenerate sizes, say so without panicking.
        for (w, hgt) in [(0, 0), (1, 1), (0, 24), (80, 0), (19, 5), (20, 4), (2, 2)] {
            h.app.update(Msg::Resize(w, hgt));
            draws_at(h, w, hgt, what);
        }
    }
}

#[test]
fn a_six_line_question_at_80x12_with_the_reasoning_open() {
    let mut h = harness();
    h.whole_turn("First", REASONING, ANSWER, 100);
    h.type_text("one\ntwo\nthree\nfour\nfive\nsix");
    h.app.update(Msg::Resize(80, 12));
    insta::assert_snapshot!(h.screen(80, 12));
}

#[test]
fn the_smallest_terminal_20x5() {
    let mut h = harness();
    h.whole_turn("First", REASONING, ANSWER, 100);
    h.app.update(Msg::Resize(20, 5));
    insta::assert_snapshot!(h.screen(20, 5));
}

#[test]
fn new_chat_while_a_turn_streams_stops_it_cleanly() {
    let mut h = harness();
    h.whole_turn("First", "r", "a", 100);
    h.ask("Tell me everything");
    h.phase_started(Phase::Reasoning, 20);
    h.stream(Phase::Reasoning, "Let me think about");
    h.key(KeyCode::Char('n'), KeyModifiers::CONTROL);
    assert_eq!(h.fake.calls()[2], "cancel");
    // The engine winds the turn down, as the real one does after a cancel.
    h.ev(Event::PhaseFinished {
        phase: Phase::Reasoning,
        text: "Let me think about".into(),
        tokens: vec![],
        stop: Stop::Cancelled,
        stats: PhaseStats::default(),
    });
    h.ev(Event::TurnFinished {
        usage: ContextUsage {
            used: 124,
            n_ctx: 4096,
            reasoning: 4,
        },
    });
    h.app.update(Msg::TurnClosed);
    assert_eq!(h.app.state, State::Idle);
    assert!(h.app.turns.is_empty(), "a new conversation");
    assert_eq!(h.fake.calls()[2..], ["cancel", "reset"]);
    assert_eq!(h.app.usage.used, 0);
    let notice = h.app.notice.clone().unwrap();
    assert!(!notice.error, "{notice:?}");
    assert_eq!(notice.text, "new conversation");
    // The stopped turn was kept in the old conversation's file.
    let saved = Session::latest(&h.dir.path().join("sessions"), h.dir.path().into())
        .unwrap()
        .unwrap();
    assert_eq!(saved.turns.len(), 2);
    assert_eq!(saved.turns[1].reasoning, "Let me think about");
    assert_eq!(saved.turns[1].reasoning_stop, Some(Stop::Cancelled));
    // And the next question goes out at once.
    h.ask("Hello again");
    assert_eq!(h.fake.calls().last().unwrap(), "turn Hello again");
}

fn loading_harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let session = Session::new(dir.path().join("sessions"), dir.path().to_path_buf());
    let mut app = App::new(session, None);
    app.update(Msg::LoadProgress(0.3));
    Harness {
        app,
        fake: Fake::default(),
        dir,
    }
}

#[test]
fn a_question_sent_while_the_model_loads_waits_for_it() {
    let mut h = loading_harness();
    h.ask("Are you there?");
    assert!(h.app.input.is_empty(), "the question left the box");
    let screen = h.screen(100, 24);
    assert!(
        screen.contains("waiting for the model"),
        "the status line says it waits: {screen}"
    );
    assert!(!h.app.notice.as_ref().is_some_and(|n| n.error));
    // A second one while the first waits stays in the box.
    h.ask("And this?");
    assert_eq!(h.app.input.text(), "And this?");
    h.app.input.clear();
    h.app.update(Msg::Ready(Box::new(h.fake.clone()), model()));
    assert_eq!(h.fake.calls(), ["turn Are you there?"]);
    assert_eq!(h.app.turns.len(), 1);
    assert!(h.app.generating());
    assert!(!h.screen(100, 24).contains("waiting for the model"));
}

#[test]
fn a_waiting_question_goes_back_to_the_box_if_the_model_fails_to_load() {
    let mut h = loading_harness();
    h.ask("Are you there?");
    h.app.update(Msg::LoadFailed("bad file".into()));
    assert_eq!(h.app.input.text(), "Are you there?");
    assert!(h.fake.calls().is_empty());
}

const HOSTILE: &str = "ok\u{1b}]0;pwned\u{7}\u{1b}[2J\u{9b}31m\u{85}end";

/// Every cell of the screen, for a look at what would reach the terminal.
fn cells(h: &Harness, w: u16, hgt: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, hgt)).unwrap();
    t.draw(|f| ui::draw(f, &h.app)).unwrap();
    t.backend()
        .buffer()
        .content()
        .iter()
        .map(|c| c.symbol())
        .collect()
}

#[test]
fn control_characters_from_the_model_and_the_file_are_shown_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let session = Session::new(dir.path().join("sessions"), dir.path().to_path_buf());
    let mut app = App::new(session, None);
    let fake = Fake::default();
    let mut hostile_model = model();
    hostile_model.name = format!("name{HOSTILE}");
    hostile_model.file_type = format!("type{HOSTILE}");
    app.update(Msg::Ready(Box::new(fake.clone()), hostile_model));
    let mut h = Harness { app, fake, dir };
    h.whole_turn(
        &format!("q{HOSTILE}"),
        &format!("r{HOSTILE}\n\n```\ncode{HOSTILE}\n```"),
        &format!("a{HOSTILE}\n\n- item{HOSTILE}"),
        100,
    );
    h.ev(Event::Error(Arc::new(EngineError::Run(
        o1::engine::RunError::Decode(HOSTILE.into()),
    ))));
    let screen = cells(&h, 200, 50);
    assert!(
        !screen.chars().any(|c| c.is_control()),
        "a control character reaches the terminal: {screen:?}"
    );
    assert!(screen.contains("ok\\x1b]0;pwned\\x07"), "{screen}");
    assert!(screen.contains("name"), "{screen}");

    let dir = tempfile::tempdir().unwrap();
    let mut app = App::new(Session::new(dir.path().into(), dir.path().into()), None);
    app.update(Msg::LoadFailed(format!("cannot load {HOSTILE}")));
    let h = Harness {
        app,
        fake: Fake::default(),
        dir,
    };
    let screen = cells(&h, 120, 30);
    assert!(!screen.chars().any(|c| c.is_control()), "{screen:?}");
}

/// The app on `session`, its model loaded.
fn resumed(session: Session) -> (App, Fake) {
    let mut app = App::new(session, None);
    let fake = Fake::default();
    app.update(Msg::Ready(Box::new(fake.clone()), model()));
    (app, fake)
}

fn screen_of(app: &App, w: u16, hgt: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, hgt)).unwrap();
    t.draw(|f| ui::draw(f, app)).unwrap();
    let buf = t.backend().buffer().clone();
    (0..hgt)
        .map(|y| {
            (0..w)
                .map(|x| buf[(x, y)].symbol().to_string())
                .collect::<String>()
                + "\n"
        })
        .collect()
}

#[test]
fn a_resumed_conversation_shows_its_size_while_it_is_restored() {
    let mut h = harness();
    h.whole_turn("First", "r", "a", 1234);
    let dir = h.dir.path().to_path_buf();
    let session = Session::latest(&dir.join("sessions"), dir.clone())
        .unwrap()
        .unwrap();
    let (mut app, fake) = resumed(session);
    assert_eq!(fake.calls(), ["restore 3"]);
    assert_eq!((app.usage.used, app.usage.reasoning), (1234, 308));
    let screen = screen_of(&app, 100, 24);
    assert!(screen.contains("1,234 / 4,096 tokens"), "{screen}");
    assert!(screen.contains("restoring"), "{screen}");
    app.update(Msg::Restored(Ok(())));
    let screen = screen_of(&app, 100, 24);
    assert!(!screen.contains("restoring"), "{screen}");
    assert!(screen.contains("1,234 / 4,096 tokens"), "{screen}");
}

#[test]
fn a_conversation_saved_without_token_counts_gets_an_estimate() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Session::new(dir.path().into(), dir.path().into());
    let long = "word ".repeat(400);
    s.save(&[o1::tui::transcript::Turn {
        question: "Q".into(),
        reasoning: long.clone(),
        answer: long,
        reasoning_stop: Some(Stop::EndOfTurn),
        answer_stop: Some(Stop::EndOfTurn),
        notes: vec![],
    }])
    .unwrap();
    drop(s);
    let session = Session::latest(dir.path(), dir.path().into())
        .unwrap()
        .unwrap();
    assert_eq!(session.tokens, None);
    let (app, _) = resumed(session);
    // 800 words: about 800 tokens, 400 of them reasoning.
    assert!((700..1100).contains(&app.usage.used), "{:?}", app.usage);
    assert!((300..600).contains(&app.usage.reasoning), "{:?}", app.usage);
    assert!(screen_of(&app, 100, 24).contains('≈'));
}

#[test]
fn a_skipped_conversation_file_is_named_on_resume() {
    let mut h = harness();
    h.whole_turn("First", "r", "a", 100);
    let sessions = h.dir.path().join("sessions");
    std::fs::write(sessions.join("99999999999-000.json"), "garbage").unwrap();
    let session = Session::latest(&sessions, h.dir.path().into())
        .unwrap()
        .unwrap();
    let (app, _) = resumed(session);
    let notice = app.notice.clone().unwrap().text;
    assert!(
        notice.starts_with("resumed 1 turn · skipped 99999999999-000.json: not an o1 conversation"),
        "{notice}"
    );
}

/// On a server that does not state its context, the meter shows the tokens
/// used and says the size is unknown; the status line names the server.
#[test]
fn a_server_without_a_context_size() {
    let dir = tempfile::tempdir().unwrap();
    let mut app = App::new(Session::new(dir.path().join("s"), dir.path().into()), None);
    let fake = Fake::default();
    let server = ModelSummary {
        name: "some-model".into(),
        server: Some("the server at http://gpu:8000".into()),
        ..Default::default()
    };
    app.update(Msg::Ready(Box::new(fake.clone()), server));
    let mut h = Harness { app, fake, dir };
    h.ask("Hi");
    h.phase_started(Phase::Reasoning, 10);
    h.finish_phase(Phase::Reasoning, Stop::EndOfTurn, 5);
    h.ev(Event::TurnFinished {
        usage: ContextUsage {
            used: 1234,
            n_ctx: 0,
            reasoning: 5,
        },
    });
    let screen = h.screen(100, 24);
    assert!(
        screen.contains(" 1,234 tokens (context size unknown) · reasoning 5"),
        "{screen}"
    );
    assert!(
        screen.contains("some-model   on the server at http://gpu:8000"),
        "{screen}"
    );
}
