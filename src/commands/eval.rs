//! `o1 eval`: a quantized file's drift from its lossless reference.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use o1::model::ModelInfo;
use o1::quality::eval::{self, EvalOptions, EvalReport, Text};
use o1::settings::{self, Settings};
use o1::store::Store;
use o1::terminal_text::for_terminal_line;

use crate::cli::EvalArgs;

/// Lossless types, best reference first.
const LOSSLESS: [&str; 3] = ["bf16", "f32", "f16"];

/// The stored lossless conversion of the checkpoint `model` came from.
fn stored_reference(model: &Path) -> Result<PathBuf> {
    let info = ModelInfo::read(model)?;
    let Some(source) = info.source.filter(|s| !s.is_empty()) else {
        bail!(
            "{} does not say which checkpoint it came from: pass the lossless file with --reference",
            model.display()
        );
    };
    let entries = Store::open_default().list()?;
    let same = |e: &&o1::store::Entry| e.source == source && e.path != model;
    let found = LOSSLESS
        .iter()
        .find_map(|t| entries.iter().filter(same).find(|e| e.file_type == *t));
    match found {
        Some(e) => Ok(e.path.clone()),
        None => bail!(
            "no lossless conversion of {source} in the model store: make one with \
             `o1 convert {source} --type bf16`, or pass one with --reference",
            source = for_terminal_line(&source)
        ),
    }
}

pub fn run(args: EvalArgs) -> Result<()> {
    let settings = Settings::load()?;
    let model = super::resolve_model(Some(&args.model), &settings)?;
    let reference = match &args.reference {
        Some(r) => super::resolve_model(Some(r), &settings)?,
        None => stored_reference(&model)?,
    };
    if args.ctx < 16 {
        bail!(
            "--ctx {} is too small: chunks need at least 16 tokens",
            args.ctx
        );
    }
    let threads = settings
        .get(&settings::THREADS, args.threads)?
        .unwrap_or_else(o1_gguf::default_threads);
    if !args.json {
        eprintln!(
            "o1: measuring {} against {}",
            for_terminal_line(&model.display().to_string()),
            for_terminal_line(&reference.display().to_string())
        );
    }
    let cache_dir = o1::paths::cache_dir().join("eval");
    let report = eval::evaluate(&EvalOptions {
        model,
        reference,
        text: args.text.map_or(Text::Builtin, Text::File),
        n_ctx: args.ctx,
        max_chunks: args.chunks,
        threads,
        cache_dir: Some(cache_dir.clone()),
    })?;
    // Kept for `o1 info`; a failure only loses that.
    if let Err(e) = eval::remember(&report, &cache_dir) {
        tracing::warn!("keeping the figures for o1 info: {e}");
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        print(&report, &mut out)?;
    }
    Ok(())
}

fn print(r: &EvalReport, out: &mut dyn Write) -> Result<()> {
    writeln!(
        out,
        "text            {} ({} chunks of {} tokens, {} scored{})",
        for_terminal_line(&r.text),
        r.chunks,
        r.n_ctx,
        r.scored_tokens,
        if r.reference_cached {
            "; reference cached"
        } else {
            ""
        }
    )?;
    writeln!(
        out,
        "mean KLD        {:.5} ± {:.5}",
        r.mean_kld.mean, r.mean_kld.error
    )?;
    writeln!(
        out,
        "KLD p99         {:.5}   (median {:.5}, max {:.4})",
        r.kld_p99, r.kld_median, r.kld_max
    )?;
    writeln!(
        out,
        "same top token  {:.2} ± {:.2} %",
        100.0 * r.same_top.mean,
        100.0 * r.same_top.error
    )?;
    writeln!(
        out,
        "ln(PPL/PPL ref) {:.5} ± {:.5}",
        r.ln_ppl_ratio.mean, r.ln_ppl_ratio.error
    )?;
    if let Some(a) = &r.agreement {
        writeln!(
            out,
            "greedy, {} prompts: reasoning follows the reference for {:.1} of {:.1} tokens ({} to the end), \
             the answer {:.1} of {:.1} ({} to the end)",
            a.prompts,
            a.reasoning_tokens,
            a.reasoning_max,
            a.reasoning_identical,
            a.answer_tokens,
            a.answer_max,
            a.answer_identical
        )?;
    }
    writeln!(out, "took            {:.1} s", r.seconds)?;
    Ok(())
}
