//! `o1 serve`: the model behind OpenAI's and ollama's HTTP APIs. What it
//! says goes to stderr: where it listens, the load, that it is ready.

use std::net::SocketAddr;

use anyhow::Result;
use o1::engine::Loaded;
use o1::settings::Settings;

use crate::cli::ServeArgs;

pub fn run(args: ServeArgs) -> Result<()> {
    let settings = Settings::load()?;
    let model = super::first_run::model_or_first_run(
        args.model.as_deref(),
        &settings,
        args.yes,
        &args.engine,
    )?;
    let config = settings.engine_config(model, &args.engine, Some(&args.chat))?;
    let options = settings.serve_options(&args.serve)?;
    let open_to_the_network = !o1_hub::is_loopback_host(&options.host);
    if open_to_the_network && options.api_keys.is_empty() {
        eprintln!(
            "o1: warning: listening on {} without an API key: anyone who can reach this machine can use the model (set --api-key)",
            options.host
        );
    }
    let bar = super::load_bar(false);
    o1::serve::run(config, options, Said { bar })?;
    Ok(())
}

/// The server's news, on stderr.
struct Said {
    bar: Option<indicatif::ProgressBar>,
}

impl o1::serve::Report for Said {
    fn listening(&mut self, addr: SocketAddr) {
        eprintln!("o1: listening on http://{addr} (OpenAI API: http://{addr}/v1, ollama API: http://{addr})");
    }

    fn loading(&mut self, fraction: f32) {
        if let Some(bar) = &self.bar {
            bar.set_position((fraction * 100.0) as u64);
        }
    }

    fn ready(&mut self, loaded: &Loaded) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        for note in &loaded.notes {
            eprintln!("o1: {note}");
        }
        eprintln!(
            "o1: ready: {} ({}), context {} tokens, {} threads, CPU path {}",
            loaded.info.name, loaded.info.file_type, loaded.n_ctx, loaded.threads, loaded.cpu_path
        );
    }

    fn stopping(&mut self) {
        eprintln!("o1: stopping: cancelling what runs");
    }
}
