//! `o1 tui`: the chat terminal UI.
//!
//! One inbox: a thread reads the terminal (keys, paste, mouse, resize,
//! ticks), another loads the model, and each turn's engine events are
//! forwarded in; the main thread updates the [`app::App`] with every message
//! and redraws. Nothing on the main thread waits for the model.
//!
//! However the UI ends (Ctrl+Q, SIGTERM or SIGHUP, a panic on any thread, a
//! crash in llama.cpp), the conversation is saved and the terminal put
//! back, once; a panic or a signal then ends `o1 tui` with an error that
//! says what happened, and a crash with `o1_gguf::fault`'s message.

pub mod app;
pub mod chat_engine;
pub mod input;
pub mod keys;
pub mod layout;
pub mod markdown;
pub mod session;
pub mod transcript;
pub mod ui;

use std::io::{self, Stdout, Write};
use std::panic::{AssertUnwindSafe, PanicHookInfo};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
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
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::engine::{Engine, EngineConfig};
use crate::model::ModelInfo;
use crate::remote::RemoteEngine;

use app::{App, Ending, Msg};
use session::Session;

/// What the UI chats with.
pub enum Backend {
    /// This model, loaded off the UI thread; the notes are shown once it is ready.
    Load(EngineConfig, Vec<String>),
    /// A server (`o1 tui --server`, or a local o1 serve with the model).
    Server(RemoteEngine, Vec<String>),
}

pub fn run(backend: Backend, resume: bool, reasoning_collapsed: bool) -> Result<()> {
    if let Backend::Load(config, _) = &backend {
        // Problems with the file are reported before the screen is taken over.
        ModelInfo::read(&config.model)?;
    }
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
    // Before entering: a failure half-way through is put back too.
    let _guard = Guard;
    let mut terminal = enter(tx.clone())?;
    let signals = watch_signals(tx.clone())?;
    on_fault_end(tx.clone());
    spawn_terminal_reader(tx.clone());
    spawn_loader(backend, tx.clone());

    let mut app = App::new(session, Some(tx));
    app.reasoning_collapsed = reasoning_collapsed;
    // A panic here (or a panic elsewhere, forwarded as a message) ends the
    // loop; either way the conversation is saved and the terminal restored.
    let ended = std::panic::catch_unwind(AssertUnwindSafe(|| serve(&mut terminal, &mut app, &rx)));
    signals.close();
    let saved = (!app.turns.is_empty()).then(|| app.session.path());
    let save = app.session.save(&app.turns);
    let faulted = matches!(ended, Ok(Ok(Some(Ending::Fault(_)))));
    if faulted {
        // Dropping the engine would wait for its thread, stopped in the
        // fault's handler: the process exits instead.
        app.abandon_engine();
    }
    drop(app);
    leave();
    let outcome = match ended {
        Ok(Ok(None)) => Ok(()),
        Ok(Ok(Some(Ending::Signal(signal)))) => Err(Terminated { signal }.into()),
        Ok(Ok(Some(Ending::Panic(message)))) => Err(anyhow::anyhow!("{message}")),
        Ok(Ok(Some(Ending::Fault(signal)))) => {
            Err(anyhow::anyhow!("{}", o1_gguf::fault::describe(signal)))
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(anyhow::anyhow!(
            "{}",
            take_panic_message().unwrap_or_else(|| "the UI panicked".into())
        )),
    };
    if let Some(path) = saved {
        // After a hangup stderr may be gone: nothing to do about that.
        match save {
            Ok(()) => {
                let _ = writeln!(
                    io::stderr(),
                    "o1: conversation saved to {} (o1 tui --resume reopens it)",
                    path.display()
                );
            }
            Err(e) => {
                let e = anyhow::Error::from(e)
                    .context(format!("saving the conversation to {}", path.display()));
                if outcome.is_ok() {
                    return Err(e);
                }
                // The error that ended the UI comes after, as the exit's reason.
                let _ = writeln!(io::stderr(), "o1: error: {e:#}");
            }
        }
    }
    if faulted {
        // The fault's handler, waiting for this, prints what happened and exits.
        fault_ended();
        loop {
            std::thread::park();
        }
    }
    outcome
}

/// Set once the UI has ended after a fault (conversation saved, terminal back).
static FAULT_ENDED: (Mutex<bool>, std::sync::Condvar) =
    (Mutex::new(false), std::sync::Condvar::new());

/// On a fault in native code, the UI ends as on Ctrl+Q, and the handler
/// waits for it (a few seconds at most) before it reports and exits.
fn on_fault_end(inbox: Sender<Msg>) {
    let inbox = Mutex::new(inbox);
    o1_gguf::fault::on_fault(move |signal| {
        let sent = inbox
            .lock()
            .is_ok_and(|i| i.send(Msg::End(Ending::Fault(signal))).is_ok());
        if !sent {
            return;
        }
        let (lock, ended) = &FAULT_ENDED;
        if let Ok(guard) = lock.lock() {
            let _ = ended.wait_timeout_while(guard, Duration::from_secs(3), |done| !*done);
        }
    });
}

fn fault_ended() {
    let (lock, ended) = &FAULT_ENDED;
    if let Ok(mut done) = lock.lock() {
        *done = true;
        ended.notify_all();
    }
}

/// `o1 tui` was ended by a signal (after restoring the terminal and saving
/// the conversation).
#[derive(Debug, thiserror::Error)]
#[error("terminated by {}", signal_name(*signal))]
pub struct Terminated {
    pub signal: i32,
}

fn signal_name(signal: i32) -> String {
    match signal {
        SIGHUP => "SIGHUP".into(),
        SIGINT => "SIGINT".into(),
        SIGTERM => "SIGTERM".into(),
        n => format!("signal {n}"),
    }
}

/// Draws and updates until the user quits (`None`) or something ends the UI.
fn serve(terminal: &mut Term, app: &mut App, rx: &Receiver<Msg>) -> Result<Option<Ending>> {
    let size = terminal.size()?;
    app.update(Msg::Resize(size.width, size.height));
    loop {
        terminal.draw(|f| ui::draw(f, app))?;
        let Ok(msg) = rx.recv() else { return Ok(None) };
        if let Msg::End(ending) = msg {
            return Ok(Some(ending));
        }
        #[cfg(feature = "testing")]
        injected_panic(&msg);
        app.update(msg);
        // Take whatever else is waiting (a burst of tokens) before drawing again.
        let deadline = Instant::now() + Duration::from_millis(15);
        while Instant::now() < deadline {
            match rx.try_recv() {
                Ok(Msg::End(ending)) => return Ok(Some(ending)),
                Ok(msg) => app.update(msg),
                Err(_) => break,
            }
        }
        if app.quit {
            return Ok(None);
        }
    }
}

/// With `O1_TEST_UI_PANIC` set, F12 panics on the UI thread: for the tests
/// of how the UI ends on a panic of its own.
#[cfg(feature = "testing")]
fn injected_panic(msg: &Msg) {
    if let Msg::Key(key) = msg {
        if key.code == event::KeyCode::F(12) && std::env::var_os("O1_TEST_UI_PANIC").is_some() {
            panic!("injected UI panic (O1_TEST_UI_PANIC)");
        }
    }
}

type Term = Terminal<CrosstermBackend<Stdout>>;

/// Whether the UI has the terminal (raw mode, alternate screen): what
/// [`leave`] gives back, once.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// The UI's inbox, for the panic hook; the first panic's message.
static PANICS: Mutex<(Option<Sender<Msg>>, Option<String>)> = Mutex::new((None, None));

fn take_panic_message() -> Option<String> {
    PANICS.lock().ok()?.1.take()
}

fn enter(inbox: Sender<Msg>) -> Result<Term> {
    if let Ok(mut p) = PANICS.lock() {
        *p = (Some(inbox), None);
    }
    let previous: Arc<dyn Fn(&PanicHookInfo<'_>) + Send + Sync> =
        Arc::from(std::panic::take_hook());
    std::panic::set_hook(Box::new(move |info| {
        if !ACTIVE.load(Ordering::SeqCst) {
            return previous(info);
        }
        // Printed now, the message would land on the alternate screen and
        // vanish: the UI ends, restores the terminal, then reports it.
        let thread = std::thread::current();
        let message = format!(
            "thread '{}' panicked at {}: {}",
            thread.name().unwrap_or("unnamed"),
            info.location().map_or_else(String::new, |l| l.to_string()),
            panic_payload(info)
        );
        tracing::error!("{message}");
        if let Ok(mut p) = PANICS.lock() {
            if p.1.is_none() {
                p.1 = Some(message.clone());
            }
            if let Some(inbox) = &p.0 {
                let _ = inbox.send(Msg::End(Ending::Panic(message)));
            }
        }
    }));
    let cooked = saved_termios();
    terminal::enable_raw_mode().context("the terminal does not support raw mode")?;
    ACTIVE.store(true, Ordering::SeqCst);
    // Should the process die before `leave` runs (a fault the UI cannot
    // answer), the fault handler writes these bytes and settings back.
    if let Some(cooked) = cooked {
        o1_gguf::fault::set_terminal_restore(Some((leave_sequence(), cooked)));
    }
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

/// The terminal's settings before raw mode.
fn saved_termios() -> Option<libc::termios> {
    // SAFETY: tcgetattr fills the struct it is given.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        (libc::tcgetattr(libc::STDIN_FILENO, &mut t) == 0).then_some(t)
    }
}

fn panic_payload(info: &PanicHookInfo<'_>) -> String {
    let payload = info.payload();
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// Puts the terminal back, once: raw mode off, cursor shown, main screen.
fn leave() {
    if !ACTIVE.swap(false, Ordering::SeqCst) {
        return;
    }
    if let Ok(mut p) = PANICS.lock() {
        p.0 = None;
    }
    o1_gguf::fault::set_terminal_restore(None);
    let mut out = io::stdout();
    let _ = out.write_all(&leave_sequence()).and_then(|()| out.flush());
    let _ = terminal::disable_raw_mode();
}

/// What gives the terminal back, raw mode aside: keyboard flags popped,
/// mouse and paste reporting off, the main screen, the cursor shown. Also
/// written by the fault handler when the UI cannot answer.
fn leave_sequence() -> Vec<u8> {
    let mut bytes = Vec::new();
    let _ = crossterm::queue!(
        bytes,
        PopKeyboardEnhancementFlags,
        DisableMouseCapture,
        DisableBracketedPaste,
        LeaveAlternateScreen,
        cursor::Show
    );
    bytes
}

/// Restores the terminal on an early return (an error drawing).
struct Guard;

impl Drop for Guard {
    fn drop(&mut self) {
        leave();
    }
}

/// SIGTERM, SIGHUP and SIGINT end the UI like Ctrl+Q (terminal restored,
/// conversation saved), instead of killing it in raw mode.
fn watch_signals(inbox: Sender<Msg>) -> Result<signal_hook::iterator::Handle> {
    let mut signals =
        Signals::new([SIGTERM, SIGHUP, SIGINT]).context("watching for SIGTERM and SIGHUP")?;
    let handle = signals.handle();
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            let _ = inbox.send(Msg::End(Ending::Signal(signal)));
        }
    });
    Ok(handle)
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

/// Loads the model off the UI thread, reporting progress; a server is
/// ready at once.
fn spawn_loader(backend: Backend, tx: Sender<Msg>) {
    let (config, notes) = match backend {
        Backend::Load(config, notes) => (config, notes),
        Backend::Server(engine, notes) => {
            let summary = chat_engine::remote_summary(&engine, notes);
            let _ = tx.send(Msg::Ready(Box::new(engine), summary));
            return;
        }
    };
    std::thread::spawn(move || {
        let progress = tx.clone();
        let started = Engine::start(config, move |p| {
            let _ = progress.send(Msg::LoadProgress(p));
            true
        });
        let msg = match started {
            Ok(engine) => {
                let mut summary = chat_engine::model_summary(&engine);
                summary.notes.extend(notes);
                Msg::Ready(Box::new(engine), summary)
            }
            Err(e) => Msg::LoadFailed(e.to_string()),
        };
        let _ = tx.send(msg);
    });
}
