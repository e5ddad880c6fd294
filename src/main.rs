//! The `o1` command: parse flags, run the command, print any error once
//! with its whole chain, exit with a code that says what happened.

mod cli;
mod commands;
mod logging;
mod progress;

use std::process::ExitCode;

use clap::FromArgMatches;

use cli::{Cli, Command};
use o1::terminal_text::for_terminal;

fn main() -> ExitCode {
    // A child that proves a CPU path on this machine (see o1_gguf::cpu).
    if let Some(code) = o1_gguf::cpu::probe::child_main() {
        std::process::exit(code);
    }
    // A crash in llama.cpp says what happened and exits with 128 + signal.
    o1_gguf::fault::install();
    let cli = Cli::from_arg_matches(&cli::command().get_matches()).unwrap_or_else(|e| e.exit());
    logging::init();
    if let Err(err) = commands::configure_cpu_path(cli.cpu_path.clone()) {
        eprintln!("o1: error: {err}");
        return ExitCode::from(commands::exit::FAILURE);
    }
    let result = match cli.command {
        Command::Pull(args) => commands::pull::run(args),
        Command::Convert(args) => commands::convert::run(args),
        Command::Run(args) => commands::run::run(args),
        Command::Serve(args) => commands::serve::run(args),
        Command::Bench(args) => commands::bench::run(args),
        Command::Info(args) => commands::info::run(args),
        Command::Eval(args) => commands::eval::run(args),
        Command::Tui(args) => commands::tui(args),
        Command::Ls => commands::store::ls(),
        Command::Rm(args) => commands::store::rm(args),
        Command::Config => commands::store::config(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let code = commands::exit_code(&err);
            if code == commands::exit::INTERRUPTED {
                eprintln!("o1: interrupted");
            } else if !commands::is_broken_pipe(&err) {
                // Messages can quote file names and model strings: their
                // control characters are shown, not obeyed.
                let shown = |e: &dyn std::fmt::Display| for_terminal(&e.to_string()).into_owned();
                eprintln!("o1: error: {}", shown(&err));
                for cause in err.chain().skip(1) {
                    eprintln!("  caused by: {}", shown(&cause));
                }
            } else {
                return ExitCode::SUCCESS;
            }
            ExitCode::from(code)
        }
    }
}
