//! Measures the chat UI: the time to draw a frame with a 30,000-token
//! transcript, and typing latency (key press to finished frame) while a
//! model streams tokens into the UI.
//!
//!   tui-bench [MODEL.gguf]
//!
//! With a model, the tokens come from the real engine generating on the
//! same cores; without one, a simulated stream of 200 tokens/s.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use o1::chat::{Message, Phase};
use o1::engine::{Engine, EngineConfig, EngineError, Event, Limits, Stop};
use o1::tui::app::{App, Msg};
use o1::tui::chat_engine::ChatEngine;
use o1::tui::session::Session;
use o1::tui::transcript::{ModelSummary, Turn};
use o1::tui::ui;
use ratatui::backend::TestBackend;
use ratatui::Terminal;

/// An engine that does nothing: the benchmark feeds events itself.
struct Silent;
impl ChatEngine for Silent {
    fn turn(&self, _: String, _: mpsc::Sender<Event>) -> Result<(), EngineError> {
        Ok(())
    }
    fn cancel(&self) {}
    fn answer_now(&self) {}
    fn reset(&self) -> Result<(), EngineError> {
        Ok(())
    }
    fn restore(&self, _: Vec<Message>) -> Result<(), EngineError> {
        Ok(())
    }
}

const PARAGRAPH: &str =
    "The model considers the question carefully, weighs **several options** and writes \
    `code` when it helps. 这是一个包含中文的句子。 Emoji too: 🦀🚀. ";

/// About `tokens` tokens of Markdown-ish text (≈ 4 characters a token).
fn text(tokens: usize) -> String {
    let mut s = String::new();
    let mut i = 0;
    while s.len() < tokens * 4 {
        i += 1;
        s.push_str(PARAGRAPH);
        if i % 4 == 0 {
            s.push_str("\n\n- a list item\n- another one\n\n```rust\nfn main() { println!(\"hi\"); }\n```\n\n");
        }
    }
    s
}

fn app_with_transcript(tokens: usize) -> (App, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut app = App::new(Session::new(dir.path().join("s"), dir.path().into()), None);
    let model = ModelSummary {
        name: "bench".into(),
        file_type: "q4_k_m".into(),
        gpu_layers: 0,
        n_layers: 28,
        n_ctx: 32768,
        ..Default::default()
    };
    app.update(Msg::Ready(Box::new(Silent), model));
    let turns = 30;
    for i in 0..turns {
        app.turns.push(Turn {
            question: format!("Question {i}?"),
            reasoning: text(tokens / turns / 2),
            answer: text(tokens / turns / 2),
            reasoning_stop: Some(Stop::EndOfTurn),
            answer_stop: Some(Stop::EndOfTurn),
            notes: vec![],
        });
    }
    (app, dir)
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let model = std::env::args().nth(1);
    let (w, h) = (160, 50);
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();

    // Frame time with a 30k-token transcript.
    let (mut app, _dir) = app_with_transcript(30_000);
    app.update(Msg::Resize(w, h));
    let t = Instant::now();
    term.draw(|f| ui::draw(f, &app)).unwrap();
    let cold = t.elapsed().as_secs_f64() * 1e3;
    let mut warm = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        term.draw(|f| ui::draw(f, &app)).unwrap();
        warm.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "frame, 30,000-token transcript ({w}x{h}): first {cold:.1} ms (renders all Markdown), then median {:.2} ms, p99 {:.2} ms",
        percentile(&mut warm, 0.5),
        percentile(&mut warm, 0.99)
    );

    // Typing latency while tokens stream in.
    let (tx, rx) = mpsc::channel::<Msg>();
    let _engine = match &model {
        Some(path) => {
            let mut config = EngineConfig::new(path);
            config.limits = Limits {
                reasoning: 2000,
                answer: 10,
            };
            config.n_ctx = Some(4096);
            let engine = Engine::start(config, |_| true).expect("load the model");
            let (etx, erx) = mpsc::channel();
            engine
                .turn("Write a long essay about the history of computing.", etx)
                .unwrap();
            let inbox = tx.clone();
            std::thread::spawn(move || {
                for e in erx {
                    if inbox.send(Msg::Engine(e)).is_err() {
                        return;
                    }
                }
            });
            Some(engine)
        }
        None => {
            let inbox = tx.clone();
            std::thread::spawn(move || loop {
                std::thread::sleep(Duration::from_millis(5));
                let e = Event::Text {
                    phase: Phase::Reasoning,
                    text: "token ".into(),
                };
                if inbox.send(Msg::Engine(e)).is_err() {
                    return;
                }
            });
            None
        }
    };
    // The UI's own loop, with a key pressed every 50 ms.
    app.turns.push(Turn {
        question: "Streaming".into(),
        ..Turn::default()
    });
    app.update(Msg::Engine(Event::PhaseStarted {
        phase: Phase::Reasoning,
        prefill: Default::default(),
    }));
    let mut latencies = Vec::new();
    let mut streamed = 0;
    let start = Instant::now();
    let mut next_key = start + Duration::from_millis(50);
    while start.elapsed() < Duration::from_secs(10) {
        let timeout = next_key.saturating_duration_since(Instant::now());
        if let Ok(msg) = rx.recv_timeout(timeout) {
            if matches!(msg, Msg::Engine(Event::Text { .. })) {
                streamed += 1;
            }
            app.update(msg);
            while let Ok(m) = rx.try_recv() {
                streamed += usize::from(matches!(m, Msg::Engine(Event::Text { .. })));
                app.update(m);
            }
            term.draw(|f| ui::draw(f, &app)).unwrap();
        }
        if Instant::now() >= next_key {
            let pressed = Instant::now();
            app.update(Msg::Key(KeyEvent::new(
                KeyCode::Char('a'),
                KeyModifiers::NONE,
            )));
            term.draw(|f| ui::draw(f, &app)).unwrap();
            latencies.push(pressed.elapsed().as_secs_f64() * 1e3);
            next_key += Duration::from_millis(50);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "typing while {} streams {:.0} tokens/s: key to frame median {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} keys)",
        if model.is_some() { "the model" } else { "a simulated engine" },
        streamed as f64 / secs,
        percentile(&mut latencies, 0.5),
        percentile(&mut latencies, 0.99),
        latencies.iter().cloned().fold(0.0, f64::max),
        latencies.len()
    );
}
