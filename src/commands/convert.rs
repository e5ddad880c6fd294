//! `o1 convert`: checkpoint folder → GGUF, with a progress bar and a summary.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;

use crate::cli::ConvertArgs;

pub fn run(args: ConvertArgs) -> Result<()> {
    let output = args.output.clone().unwrap_or_else(|| default_output(&args));
    let mut opts = o1_convert::ConvertOptions::new(&args.checkpoint, &output, args.out_type);
    opts.force = args.force;
    opts.verify = !args.no_verify;
    opts.name = args.name.clone();
    if let Some(n) = args.threads {
        opts.threads = n.max(1);
    }
    if args.two_pass {
        opts.pipeline = o1_convert::Pipeline::TwoPass;
    }
    if args.dry_run {
        let plan = o1_convert::plan_only(&opts)?;
        let types: Vec<String> = plan
            .type_counts
            .iter()
            .map(|(t, n)| format!("{t} {n}"))
            .collect();
        println!(
            "would write {} ({}, {:.2} GB, {} tensors: {}) from {:.2} GB of weights",
            output.display(),
            args.out_type,
            plan.output_bytes as f64 / 1e9,
            plan.n_tensors,
            types.join(", "),
            plan.source_bytes as f64 / 1e9
        );
        return Ok(());
    }
    let cancel = super::interrupt_flag();
    let mut progress = crate::progress::ConvertProgress::new(args.quiet);
    let report = o1_convert::convert(&opts, &mut progress, &cancel)?;

    let mut out = std::io::stdout().lock();
    let types: Vec<String> = report
        .type_counts
        .iter()
        .map(|(t, n)| format!("{t} {n}"))
        .collect();
    writeln!(
        out,
        "wrote {} ({}, {:.2} GB, {} tensors: {}) in {:.1} s",
        report.output.display(),
        report.out_type,
        report.output_bytes as f64 / 1e9,
        report.n_tensors,
        types.join(", "),
        report.seconds
    )?;
    if let Some(v) = &report.verification {
        writeln!(
            out,
            "verified: llama.cpp loads it, {} tokens, <|reasoning|> is token {}, tokenizers agree on {} samples ({} tokens)",
            v.n_vocab, v.reasoning_id, v.samples, v.tokens_compared
        )?;
    }
    for w in &report.warnings {
        eprintln!("o1: warning: {w}");
    }
    if report.removed_stale_temporaries > 0 {
        eprintln!(
            "o1: removed {} temporary file(s) left by an interrupted run",
            report.removed_stale_temporaries
        );
    }
    Ok(())
}

/// `./<checkpoint folder name>-<type>.gguf`
fn default_output(args: &ConvertArgs) -> PathBuf {
    let dir = args
        .checkpoint
        .canonicalize()
        .unwrap_or_else(|_| args.checkpoint.clone());
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    PathBuf::from(format!("{name}-{}.gguf", args.out_type))
}
