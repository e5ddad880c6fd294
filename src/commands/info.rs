//! `o1 info`: a model file's metadata, and the memory a context needs.

use std::io::Write;

use anyhow::Result;
use o1::model::{KvType, ModelInfo};
use o1::settings::{self, Settings};
use o1::terminal_text::for_terminal_line;

use crate::cli::InfoArgs;

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1 << 20) as f64)
}

pub fn run(args: InfoArgs) -> Result<()> {
    let settings = Settings::load()?;
    let i = ModelInfo::read(&super::resolve_model(Some(&args.model), &settings)?)?;
    let n_ctx = settings
        .get(&settings::CTX, args.ctx)?
        .unwrap_or(i.n_ctx_train);
    let kv_type = settings.value(&settings::KV_TYPE, args.kv_type)?;
    let kv = i.kv_bytes_per_token(kv_type) * u64::from(n_ctx);
    let types: Vec<String> = i
        .tensor_types
        .iter()
        .map(|(t, n)| format!("{t} {n}"))
        .collect();
    let g = &i.generation;
    let mut out = std::io::stdout().lock();
    // The path and the strings come from outside: shown, never obeyed.
    let path = i.path.display().to_string();
    writeln!(out, "file            {}", for_terminal_line(&path))?;
    writeln!(out, "name            {}", for_terminal_line(&i.name))?;
    if let Some(source) = &i.source {
        writeln!(out, "source          {}", for_terminal_line(source))?;
    }
    writeln!(
        out,
        "architecture    {} ({:.2} B parameters)",
        for_terminal_line(&i.architecture),
        i.n_params as f64 / 1e9
    )?;
    writeln!(
        out,
        "type            {} ({}; tensors: {})",
        for_terminal_line(&i.file_type),
        mib(i.file_bytes),
        types.join(", ")
    )?;
    writeln!(
        out,
        "shape           {} layers, hidden {}, {} heads ({} KV heads of {})",
        i.n_layer, i.n_embd, i.n_head, i.n_head_kv, i.head_dim
    )?;
    writeln!(out, "context         {} tokens trained", i.n_ctx_train)?;
    writeln!(
        out,
        "vocabulary      {} tokens, <|reasoning|> = {}",
        i.n_vocab,
        i.reasoning_token_id
            .map_or("missing".into(), |t| t.to_string())
    )?;
    writeln!(
        out,
        "generation      {}",
        match g.do_sample {
            Some(true) => format!(
                "sampling (temperature {:?}, top-k {:?}, top-p {:?})",
                g.temperature, g.top_k, g.top_p
            ),
            _ => "greedy".into(),
        }
    )?;
    writeln!(
        out,
        "KV per token    {} bytes (f16), {} bytes (q8_0)",
        i.kv_bytes_per_token(KvType::F16),
        i.kv_bytes_per_token(KvType::Q8_0)
    )?;
    writeln!(
        out,
        "memory at {n_ctx} tokens: {} weights + {} KV cache ({}) = {} (plus compute buffers)",
        mib(i.file_bytes),
        mib(kv),
        kv_type.name(),
        mib(i.file_bytes + kv)
    )?;
    Ok(())
}
