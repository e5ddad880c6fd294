//! `o1 tui`: the chat terminal UI.
//!
//! One inbox: a thread reads the terminal (keys, paste, mouse, resize,
//! ticks), another loads the model, and each turn's engine events are
//! forwarded in; the main thread updates the [`app::App`] with every message
//! and redraws. Nothing on the main thread waits for the model. A guard and
//! a panic hook put the terminal back however the UI ends.

pub mod app;
pub mod chat_engine;
pub mod input;
pub mod keys;
pub mod layout;
pub mod markdown;
pub mod session;
pub mod transcript;
pub mod ui;

use std::io::{self, Stdout};
use std::path::PathBuf;
use std::sync::mpsc::{self, Sender};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use crossterm::event::{
    self, DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture,
};
use crossterm::event::{
    KeyboardEnhancementFlags, PopKeyboardEnhancementFlags, PushKeyboardEnhancementFlags,
};
use crossterm::terminal::{self, EnterAlternateScreen, LeaveAlternateScreen};
use crossterm::{cursor, execute};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;

use crate::engine::{Engine, EngineConfig};
use crate::model::ModelInfo;

use app::{App, Msg};
use session::Session;

pub fn run(config: EngineConfig, resume: bool, reasoning_collapsed: bool) -> Result<()> {
    // Problems with the file are reported before the screen is taken over.
    ModelInfo::read(&config.model)?;
    let export_dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let mut session = if resume {
        Session::latest(&crate::paths::sessions_dir(), export_dir.clone())
            .context("reading the last conversation")?
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no saved conversation to resume in {}",
                    crate::paths::sessions_dir().display()
                )
            })?
    } else {
        Session::new(crate::paths::sessions_dir(), export_dir)
    };
    session.claim().with_context(|| {
        format!(
            "taking the conversation file in {}",
            crate::paths::sessions_dir().display()
        )
    })?;

    let (tx, rx) = mpsc::channel();
    let mut terminal = enter()?;
    let _guard = Guard;
    spawn_terminal_reader(tx.clone());
    spawn_loader(config, tx.clone());

    let mut app = App::new(session, Some(tx));
    app.reasoning_collapsed = reasoning_collapsed;
    let size = terminal.size()?;
    app.update(Msg::Resize(size.width, size.height));
    loop {
        terminal.draw(|f| ui::draw(f, &app))?;
        let Ok(msg) = rx.recv() else { break };
        app.update(msg);
        // Take whatever else is waiting (a burst of tokens) before drawing again.
        let deadline = Instant::now() + Duration::from_millis(15);
        while Instant::now() < deadline {
            match rx.try_recv() {
                Ok(msg) => app.update(msg),
                Err(_) => break,
            }
        }
        if app.quit {
            break;
        }
    }
    let saved = (!app.turns.is_empty()).then(|| app.session.path());
    let result = app.session.save(&app.turns);
    drop(app);
    leave();
    if let Some(path) = saved {
        result.with_context(|| format!("saving the conversation to {}", path.display()))?;
        eprintln!(
            "o1: conversation saved to {} (o1 tui --resume reopens it)",
            path.display()
        );
    }
    Ok(())
}

type Term = Terminal<CrosstermBackend<Stdout>>;

fn enter() -> Result<Term> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        leave();
        hook(info);
    }));
    terminal::enable_raw_mode().context("the terminal does not support raw mode")?;
    let mut out = io::stdout();
    execute!(
        out,
        EnterAlternateScreen,
        EnableBracketedPaste,
        EnableMouseCapture
    )?;
    if terminal::supports_keyboard_enhancement().unwrap_or(false) {
        // Lets Shift+Enter be told apart from Enter.
        let _ = execute!(
            out,
            PushKeyboardEnhancementFlags(KeyboardEnhancementFlags::DISAMBIGUATE_ESCAPE_CODES)
        );
    }
    Ok(Terminal::new(CrosstermBackend::new(out))?)
}

/// Puts the terminal back: raw mode off, cursor shown, main screen.
fn leave() {
    let mut out = io::stdout();
    let _ = execute!(out, PopKeyboardEnhancementFlags);
    let _ = execute!(
        out,
        DisableMouseCapture,
        DisableBracketedPaste,
        LeaveAlternateScreen,
        cursor::Show
    );
    let _ = terminal::disable_raw_mode();
}

struct Guard;

impl Drop for Guard {
    fn drop(&mut self) {
        leave();
    }
}

/// Terminal events into the inbox, and a tick when nothing happens.
fn spawn_terminal_reader(tx: Sender<Msg>) {
    std::thread::spawn(move || loop {
        let msg = match event::poll(Duration::from_millis(250)) {
            Ok(true) => match event::read() {
                Ok(event::Event::Key(k)) => Msg::Key(k),
                Ok(event::Event::Paste(s)) => Msg::Paste(s),
                Ok(event::Event::Mouse(m)) => Msg::Mouse(m),
                Ok(event::Event::Resize(w, h)) => Msg::Resize(w, h),
                Ok(_) => continue,
                Err(_) => return,
            },
            Ok(false) => Msg::Tick,
            Err(_) => return,
        };
        if tx.send(msg).is_err() {
            return;
        }
    });
}

/// Loads the model off the UI thread, reporting progress.
fn spawn_loader(config: EngineConfig, tx: Sender<Msg>) {
    std::thread::spawn(move || {
        let progress = tx.clone();
        let started = Engine::start(config, move |p| {
            let _ = progress.send(Msg::LoadProgress(p));
            true
        });
        let msg = match started {
            Ok(engine) => {
                let summary = chat_engine::model_summary(&engine);
                Msg::Ready(Box::new(engine), summary)
            }
            Err(e) => Msg::LoadFailed(e.to_string()),
        };
        let _ = tx.send(msg);
    });
}
