//! The commands, and what they share: exit codes, Ctrl+C, loading a model.

mod attach;
pub mod bench;
mod bench_lookup;
pub mod convert;
pub mod eval;
mod first_run;
pub mod info;
pub mod pull;
pub mod run;
pub mod serve;
pub mod store;
pub mod version;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use o1::engine::{Engine, EngineConfig, EngineError};
use o1::model::ModelError;
use o1::settings::{self, Settings};
use o1::store::Store;

/// The exit codes of the commands that run the model (`o1 pull` has the
/// hub's, 10 and up).
pub mod exit {
    pub const FAILURE: u8 = 1;
    /// Bad usage, from clap.
    pub const USAGE: u8 = 2;
    pub const MODEL_NOT_FOUND: u8 = 3;
    pub const MODEL_UNUSABLE: u8 = 4;
    pub const CONTEXT: u8 = 5;
    pub const MEMORY: u8 = 6;
    pub const INTERRUPTED: u8 = 130;

    /// What each means, as the help says it.
    pub const CODES: [(u8, &str); 8] = [
        (0, "ok"),
        (FAILURE, "error"),
        (USAGE, "bad usage"),
        (MODEL_NOT_FOUND, "model not found"),
        (MODEL_UNUSABLE, "model not usable"),
        (CONTEXT, "context too small or full"),
        (MEMORY, "the model does not fit --max-memory"),
        (INTERRUPTED, "interrupted"),
    ];

    /// The table as help text.
    pub fn help() -> String {
        o1_hub::exit_codes_text(&CODES)
    }
}

/// Tells llama.cpp's loader how to choose the CPU path: `--cpu-path`, else
/// `O1_CPU_PATH`, else the config's `cpu_path` (`auto` probes). A config
/// file that does not parse is left to the command to report.
pub fn configure_cpu_path(flag: Option<String>) -> anyhow::Result<()> {
    let forced = match Settings::load() {
        Ok(s) => {
            let (value, source) = s.get_with_source(&settings::CPU_PATH, flag)?;
            value.map(|v| (v, source))
        }
        Err(_) => flag.map(|v| (v, "--cpu-path".to_string())),
    };
    o1_gguf::cpu::configure(o1_gguf::cpu::Options {
        forced,
        cache_file: Some(o1_gguf::cpu::default_cache_file()),
    });
    Ok(())
}

/// The command was interrupted by the user.
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<Interrupted>().is_some()
        || matches!(
            err.downcast_ref::<o1_convert::ConvertError>(),
            Some(o1_convert::ConvertError::Interrupted)
        )
    {
        return exit::INTERRUPTED;
    }
    if let Some(t) = err.downcast_ref::<o1::tui::Terminated>() {
        // The shell's convention for a process a signal ended.
        return u8::try_from(128 + t.signal).unwrap_or(exit::FAILURE);
    }
    let model_error = |e: &ModelError| match e {
        ModelError::NotFound(_)
        | ModelError::NotAStoreName(_)
        | ModelError::NoDefaultModel { .. } => exit::MODEL_NOT_FOUND,
        _ => exit::MODEL_UNUSABLE,
    };
    if let Some(e) = err.downcast_ref::<ModelError>() {
        return model_error(e);
    }
    if let Some(e) = err.downcast_ref::<o1_hub::HubError>() {
        return e.exit_code();
    }
    let engine_error = err
        .downcast_ref::<EngineError>()
        .or_else(|| err.downcast_ref::<SharedEngineError>().map(|e| &*e.0))
        .or_else(|| match err.downcast_ref::<o1::serve::ServeError>() {
            Some(o1::serve::ServeError::Engine(e)) => Some(e),
            _ => None,
        });
    match engine_error {
        Some(EngineError::Model(e)) => model_error(e),
        Some(EngineError::Context { .. }) => exit::MODEL_UNUSABLE,
        Some(EngineError::ContextTooSmall { .. } | EngineError::ContextFull { .. }) => {
            exit::CONTEXT
        }
        Some(EngineError::Memory(_)) => exit::MEMORY,
        _ => exit::FAILURE,
    }
}

/// An engine error that came as an event, as an error of its own.
#[derive(Debug)]
pub struct SharedEngineError(pub Arc<EngineError>);

impl std::fmt::Display for SharedEngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SharedEngineError {}

/// Writing to a closed pipe (`o1 run … | head`) is not an error.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The flag Ctrl+C or SIGTERM sets (one handler per process). The command
/// stops at the flag and still prints what it has (`o1 run --json`), so a
/// quick second Ctrl+C changes nothing; one that comes after
/// [`FORCE_EXIT_AFTER`], when o1 has not stopped yet, exits at once.
pub fn interrupt_flag() -> Arc<AtomicBool> {
    static FLAG: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let handler_flag = flag.clone();
        let mut first: Option<std::time::Instant> = None;
        let _ = ctrlc::set_handler(move || {
            handler_flag.store(true, Ordering::SeqCst);
            match first {
                None => first = Some(std::time::Instant::now()),
                Some(t) if t.elapsed() >= FORCE_EXIT_AFTER => {
                    std::process::exit(exit::INTERRUPTED.into())
                }
                Some(_) => {}
            }
        });
        flag
    })
    .clone()
}

/// How long a command has to stop cleanly after Ctrl+C before another
/// Ctrl+C exits without waiting.
pub const FORCE_EXIT_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

/// The model load's progress bar, on a terminal unless `quiet`.
pub fn load_bar(quiet: bool) -> Option<indicatif::ProgressBar> {
    (!quiet && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(100);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "loading model [{bar:30.cyan/blue}] {percent}%",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar
    })
}

/// Loads a model, with a progress bar on a terminal.
pub fn start_engine(config: EngineConfig, quiet: bool) -> Result<Engine, EngineError> {
    let bar = load_bar(quiet);
    let progress_bar = bar.clone();
    let engine = Engine::start(config, move |p| {
        if let Some(b) = &progress_bar {
            b.set_position((p * 100.0) as u64);
        }
        true
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let engine = engine?;
    for note in &engine.loaded().notes {
        eprintln!("o1: {note}");
    }
    Ok(engine)
}

/// `o1 tui`: the chat UI on a model, here or on a server.
pub fn tui(args: crate::cli::TuiArgs) -> anyhow::Result<()> {
    let settings = Settings::load()?;
    let view = settings.value(&settings::REASONING, args.reasoning)?;
    let chat = attach::choose(
        &settings,
        &args.at,
        args.model.as_deref(),
        args.yes,
        &args.engine,
        &args.chat,
    )?;
    let backend = match chat {
        attach::Chat::Local { config, note } => {
            o1::tui::Backend::Load(config, note.into_iter().collect())
        }
        attach::Chat::Server { engine, notes } => o1::tui::Backend::Server(engine, notes),
    };
    o1::tui::run(
        backend,
        args.resume,
        view == settings::ReasoningView::Collapsed,
    )
}

/// The model a command uses: the argument (a path or a stored model's
/// name), else the `model` setting, else the store's model for the
/// `repo` and `type` settings.
pub fn resolve_model(arg: Option<&str>, settings: &Settings) -> anyhow::Result<PathBuf> {
    let store = Store::open_default();
    if let Some(given) = settings.get(&settings::MODEL, arg.map(str::to_string))? {
        let path = PathBuf::from(&given);
        if path.exists() {
            return Ok(path);
        }
        let missing = if given.ends_with(".gguf") || given.contains('/') {
            path
        } else {
            store.path_of(&given)
        };
        return Ok(store.find(&given).ok_or(ModelError::NotFound(missing))?);
    }
    let repo = settings.value(&settings::REPO, None)?;
    if !settings.is_given(&settings::TYPE)? {
        // No type asked for: the stored conversion of the repo with the
        // least measured drift (the first run stores the one that fits).
        let stored = o1::quality::choose::by_quality()
            .into_iter()
            .find_map(|m| store.find(&Store::name_for(&repo, m.ty.name())));
        if let Some(path) = stored {
            return Ok(path);
        }
    }
    let ty = settings.value(&settings::TYPE, None)?;
    let name = Store::name_for(&repo, ty.name());
    Ok(store.find(&name).ok_or(ModelError::NoDefaultModel {
        name,
        repo,
        store: store.dir().to_path_buf(),
    })?)
}
