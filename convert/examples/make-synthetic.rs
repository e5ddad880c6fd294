//! Writes a synthetic Qwen2 checkpoint with deterministic random weights.
//!
//!   make-synthetic OUT_DIR [--preset tiny|0.5b|1.5b] [--tie] [--shards N]
//!                  [--dtype bf16|f16|f32] [--vocab-size N] [--seed N]
//!
//! The 0.5b and 1.5b presets have the real models' exact shapes, so speed,
//! memory and GPU-offload checks can run where nothing can be downloaded.

use std::path::PathBuf;
use std::process::ExitCode;

use o1_convert::safetensors::SourceDtype;
use o1_convert::synthetic::{self, Spec};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("make-synthetic: {e}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let mut out: Option<PathBuf> = None;
    let mut spec = Spec::tiny();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--preset" => {
                let name = value("--preset")?;
                spec = Spec::preset(&name)
                    .ok_or(format!("unknown preset {name} (tiny, 0.5b, 1.5b)"))?;
            }
            "--tie" => spec.tie = true,
            "--shards" => {
                spec.shards = value("--shards")?
                    .parse()
                    .map_err(|e| format!("--shards: {e}"))?
            }
            "--seed" => {
                spec.seed = value("--seed")?
                    .parse()
                    .map_err(|e| format!("--seed: {e}"))?
            }
            "--vocab-size" => {
                spec.vocab_size = Some(
                    value("--vocab-size")?
                        .parse()
                        .map_err(|e| format!("--vocab-size: {e}"))?,
                )
            }
            "--dtype" => {
                spec.dtype = match value("--dtype")?.as_str() {
                    "bf16" => SourceDtype::Bf16,
                    "f16" => SourceDtype::F16,
                    "f32" => SourceDtype::F32,
                    other => return Err(format!("unknown dtype {other} (bf16, f16, f32)")),
                }
            }
            "-h" | "--help" => {
                println!("make-synthetic OUT_DIR [--preset tiny|0.5b|1.5b] [--tie] [--shards N] [--dtype bf16|f16|f32] [--vocab-size N] [--seed N]");
                return Ok(());
            }
            other if other.starts_with('-') => return Err(format!("unknown option {other}")),
            other => out = Some(PathBuf::from(other)),
        }
    }
    let out = out.ok_or("usage: make-synthetic OUT_DIR [options] (--help)")?;
    let w = synthetic::write(&out, &spec).map_err(|e| format!("{}: {e}", out.display()))?;
    println!(
        "wrote {}: {} tensors, {:.2} GB, {} embedding rows, tokenizer {} tokens, <|reasoning|> = {}",
        out.display(),
        w.tensors,
        w.bytes as f64 / 1e9,
        w.vocab_size,
        w.tokenizer_len,
        w.reasoning_id
    );
    Ok(())
}
