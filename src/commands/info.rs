//! `o1 info`: a model file's metadata, and the memory a context needs.

use std::io::Write;

use anyhow::Result;
use o1::memory;
use o1::model::{KvType, ModelInfo};
use o1::settings::{ChatFlags, EngineFlags, Settings};
use o1::terminal_text::for_terminal_line;

use crate::cli::InfoArgs;

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1 << 20) as f64)
}

pub fn run(args: InfoArgs) -> Result<()> {
    let settings = Settings::load()?;
    let path = super::resolve_model(Some(&args.model), &settings)?;
    let i = ModelInfo::read(&path)?;
    // The plan the engine itself would make with these settings: built from
    // the same engine configuration (lookup's q8_0 cache included).
    let flags = EngineFlags {
        ctx: args.ctx,
        kv_type: args.kv_type,
        max_memory: args.max_memory,
        batch: args.batch,
        ..EngineFlags::default()
    };
    let config = settings.engine_config(path, &flags, Some(&ChatFlags::default()))?;
    let plan = memory::plan(&i, config.wanted_memory(&i));
    let max_memory = config.max_memory;
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
    if let Some(c) = &i.calibration {
        writeln!(out, "calibrated      with {}", for_terminal_line(c))?;
    }
    let eval_cache = o1::paths::cache_dir().join("eval");
    if let Some(r) = o1::quality::eval::remembered(&i.path, &eval_cache) {
        writeln!(
            out,
            "drift           mean KLD {:.4}, p99 {:.3}, same top token {:.1}% against {} (o1 eval)",
            r.mean_kld,
            r.kld_p99,
            100.0 * r.same_top,
            for_terminal_line(&r.reference.display().to_string())
        )?;
    }
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
    match &plan {
        Ok(p) => {
            let f = p.footprint;
            writeln!(
                out,
                "memory          {} at {} tokens, {} KV cache, batches of {} ({} allowed{})",
                mib(f.total()),
                p.shape.n_ctx,
                p.shape.kv_type.name(),
                p.shape.n_batch,
                mib(max_memory),
                if p.constrained { ": chosen to fit" } else { "" }
            )?;
            writeln!(
                out,
                "                weights {} (repacked {} + mapped {}), KV cache {}, compute {}, process {}",
                mib(f.weights()),
                mib(f.repacked_weights),
                mib(f.mapped_weights),
                mib(f.kv_cache),
                mib(f.compute),
                mib(f.process)
            )?;
        }
        Err(e) => writeln!(out, "memory          {e}")?,
    }
    let devices = o1::device::devices()?;
    writeln!(out, "devices         {}", devices.summary())?;
    writeln!(out, "cpu path        {}", o1::engine::cpu_path_summary())?;
    if let (Some(gpu), Ok(p)) = (devices.best_gpu(), &plan) {
        let fit = memory::gpu_layers_that_fit(&i, gpu.free, p.shape);
        writeln!(
            out,
            "gpu offload     auto: {} of {} layers on {} ({} of VRAM)",
            fit.layers,
            fit.all,
            gpu.name,
            mib(fit.vram)
        )?;
    }
    Ok(())
}
