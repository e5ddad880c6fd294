//! Where `o1 tui` and `o1 run` chat: on the server `--server` names; else
//! on a local `o1 serve` that has the same model file loaded (one copy in
//! memory for all of them), unless `--local`; else on a model loaded here.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use o1::engine::EngineConfig;
use o1::remote::{self, Kind, RemoteEngine, ServerInfo};
use o1::settings::{self, ChatFlags, EngineFlags, Settings, WhereFlags};

/// Where a chat runs.
pub enum Chat {
    /// A model loaded here; `note`: what the user should know about a
    /// local server that has it loaded too.
    Local {
        config: EngineConfig,
        note: Option<String>,
    },
    /// A server; `notes`: what the user should know about it.
    Server {
        engine: RemoteEngine,
        notes: Vec<String>,
    },
}

/// How long to wait for a local server to accept: one that runs answers
/// at once, and a missing one refuses at once.
const LOCAL_CONNECT: Duration = Duration::from_millis(500);
const REMOTE_CONNECT: Duration = Duration::from_secs(10);

/// Decides where the chat runs (see the module's comment); `model` and
/// `yes` are the command's model argument and its `--yes`.
pub fn choose(
    settings: &Settings,
    at: &WhereFlags,
    model: Option<&str>,
    yes: bool,
    engine: &EngineFlags,
    chat: &ChatFlags,
) -> Result<Chat> {
    let key = settings
        .get(&settings::SERVER_API_KEY, at.server_api_key.clone())?
        .map(|k| k.0);
    if let Some(url) = settings.get(&settings::SERVER, at.server.clone())? {
        let info = remote::probe(&url, key.clone(), REMOTE_CONNECT)?;
        let config = settings.engine_config(PathBuf::new(), engine, Some(chat))?;
        let notes = info.notes(false);
        let engine = RemoteEngine::new(info, key, &config)?;
        return Ok(Chat::Server { engine, notes });
    }
    let path = super::first_run::model_or_first_run(model, settings, yes, engine)?;
    let config = settings.engine_config(path, engine, Some(chat))?;
    let server = match local_server_with(settings, &config, key.clone()) {
        LocalServer::None => return Ok(Chat::Local { config, note: None }),
        LocalServer::Refused(note) => {
            return Ok(Chat::Local {
                config,
                note: Some(note),
            })
        }
        LocalServer::Same(server) => server,
    };
    if at.local {
        let note = format!(
            "{} has this model loaded{}: this copy is a second one in memory",
            server.describe(),
            server
                .model_bytes
                .map(|b| format!(" ({} MiB)", b >> 20))
                .unwrap_or_default()
        );
        return Ok(Chat::Local {
            config,
            note: Some(note),
        });
    }
    let key = key.or_else(|| first_key(settings));
    let notes = server.notes(true);
    let engine = RemoteEngine::new(server, key, &config)?;
    Ok(Chat::Server { engine, notes })
}

/// The first of the keys `o1 serve` is configured with, which a local
/// server started with the same settings wants.
fn first_key(settings: &Settings) -> Option<String> {
    let keys = settings.get(&settings::API_KEY, None).ok()??.0;
    keys.split(',')
        .map(str::trim)
        .find(|k| !k.is_empty())
        .map(str::to_string)
}

/// What listens on this machine's configured port.
enum LocalServer {
    /// Nothing, or a server with another model.
    None,
    /// An o1 serve with the model file loaded (or loading).
    Same(ServerInfo),
    /// Something that would not say what it serves (an o1 serve that
    /// wants a key o1 was not given, say): why, for the user.
    Refused(String),
}

/// The o1 serve on this machine's configured port, if it runs and has
/// `config`'s model file loaded. A port where nothing listens refuses at
/// once; a server that answers but will not say what it serves is named,
/// so that a second copy is never loaded without a word.
fn local_server_with(
    settings: &Settings,
    config: &EngineConfig,
    key: Option<String>,
) -> LocalServer {
    let Ok(port) = settings.value(&settings::PORT, None) else {
        return LocalServer::None;
    };
    let Some(digest) = o1::serve::digest_of_file(&config.model) else {
        return LocalServer::None;
    };
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    if std::net::TcpStream::connect_timeout(&addr, LOCAL_CONNECT).is_err() {
        return LocalServer::None;
    }
    let key = key.or_else(|| first_key(settings));
    match remote::probe(&format!("http://{addr}"), key, LOCAL_CONNECT) {
        Ok(info) if matches!(info.kind, Kind::O1(_)) && info.digest.as_deref() == Some(&digest) => {
            LocalServer::Same(info)
        }
        Ok(_) => LocalServer::None,
        Err(e) => LocalServer::Refused(format!(
            "the server on port {port} did not say what it serves: {e}. This loads a copy of the model here"
        )),
    }
}
