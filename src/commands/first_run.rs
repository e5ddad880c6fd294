//! The first run: `o1 tui` or `o1 run` without a model in the store offer
//! to pull the default repository and convert it, with the same settings
//! (`repo`, `revision`, `type`) that `o1 pull`, `o1 convert` and
//! `o1 config` use. Without a `type` setting, the type is the one
//! `o1 convert --type auto` picks: the least measured drift that fits the
//! memory allowed (`--max-memory`) at the context wanted.

use std::io::IsTerminal;
use std::path::PathBuf;

use o1::model::ModelError;
use o1::settings::{self, EngineFlags, Settings};

use super::{convert, pull, resolve_model};

/// [`resolve_model`], and when the default model is missing: the first
/// run. It offers (or with `yes`, goes straight) to pull the default repo
/// and convert it into the store, then returns the new model. `engine`: the
/// command's flags, whose memory and context the type is chosen for.
/// Everything it prints goes to stderr: stdout is the command's own
/// (`o1 run`'s answer).
pub fn model_or_first_run(
    arg: Option<&str>,
    settings: &Settings,
    yes: bool,
    engine: &EngineFlags,
) -> anyhow::Result<PathBuf> {
    let missing = match resolve_model(arg, settings) {
        Err(e) => match e.downcast::<ModelError>() {
            Ok(missing @ ModelError::NoDefaultModel { .. }) => missing,
            Ok(other) => return Err(other.into()),
            Err(other) => return Err(other),
        },
        Ok(path) => return Ok(path),
    };
    let (repo, revision) = settings.repo_and_revision(None, None)?;
    let ty = if settings.is_given(&settings::TYPE)? {
        Some(settings.value(&settings::TYPE, None)?)
    } else {
        None
    };
    let cache = o1_hub::PullOptions::from_env().cache_dir;
    let cached = o1_hub::find_cached(&repo, &revision, &cache).ok();
    if !yes {
        if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
            return Err(anyhow::Error::new(missing)
                .context("pass --yes to download and convert it without asking"));
        }
        let what = if cached.is_some() {
            "convert the downloaded"
        } else {
            "download (about 3 GB) and convert"
        };
        let to = ty.map_or_else(
            || "the type that fits this machine's memory (--max-memory)".to_string(),
            |t| t.to_string(),
        );
        eprint!("o1: no model yet. {what} {repo} to {to}? [Y/n] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if answer.trim().eq_ignore_ascii_case("n") || answer.trim().eq_ignore_ascii_case("no") {
            return Err(missing.into());
        }
    }
    let snap = match cached {
        Some(s) => s,
        None => pull::pull(&repo, &revision, false)?,
    };
    let input = convert::Input::pulled(&repo, snap);
    let ty = match ty {
        Some(ty) => ty,
        None => convert::choose_type(&input, None, engine.max_memory, engine.ctx, settings)?,
    };
    let report = convert::convert(&input, None, ty, None, settings)?;
    convert::print_report(&report, &mut std::io::stderr().lock())?;
    Ok(report.output)
}
