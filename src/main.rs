//! The `o1` command: parse flags, run the command, print any error once
//! with its whole chain, exit with a code that says what happened.

mod cli;
mod logging;
mod progress;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Result;
use clap::Parser;

use cli::{Cli, Command, ConvertArgs};

/// Exit codes beyond 0 (success) and 2 (usage, from clap).
mod exit {
    pub const FAILURE: u8 = 1;
    pub const INTERRUPTED: u8 = 130;
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init();
    let result = match cli.command {
        Command::Convert(args) => convert(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if matches!(
                err.downcast_ref::<o1_convert::ConvertError>(),
                Some(o1_convert::ConvertError::Interrupted)
            ) {
                eprintln!("o1: interrupted; nothing was written");
                return ExitCode::from(exit::INTERRUPTED);
            }
            eprintln!("o1: error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(exit::FAILURE)
        }
    }
}

/// Sets the returned flag on Ctrl+C or SIGTERM; a second signal exits at once.
fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let handler_flag = flag.clone();
    let _ = ctrlc::set_handler(move || {
        if handler_flag.swap(true, Ordering::SeqCst) {
            std::process::exit(exit::INTERRUPTED.into());
        }
    });
    flag
}

fn convert(args: ConvertArgs) -> Result<()> {
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
    let cancel = interrupt_flag();
    let mut progress = progress::ConvertProgress::new(args.quiet);
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
