//! `o1 convert`: a checkpoint (a folder, or a repo pulled into the hub
//! cache) → GGUF in the model store, with a progress bar and a summary.

use std::io::Write;
use std::path::{Path, PathBuf};

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use o1::memory;
use o1::model::ModelInfo;
use o1::quality::{calibrate, choose, dataset};
use o1::settings::{self, Settings, Size};
use o1::store::Store;
use o1::terminal_text::for_terminal;
use o1_convert::{Calibration, ConvertReport, ImportanceMatrix, OutputType};
use sha2::{Digest, Sha256};

use crate::cli::{ConvertArgs, TypeChoice};

/// Where the weights come from.
pub struct Input {
    pub dir: PathBuf,
    /// The name the store entry is made from (repo id or folder name).
    pub name: String,
    /// The model's own name (`general.name`, shown by `o1 info`, `o1 tui`
    /// and saved chats): the repo's name without its owner, or the folder's.
    pub model_name: String,
    /// What `o1.source` records: the repo and commit, or the folder's name.
    pub source: String,
}

impl Input {
    /// A repo's snapshot in the hub cache (its folder is named for the commit).
    pub fn pulled(repo: &str, snapshot: o1_hub::Snapshot) -> Self {
        Input {
            dir: snapshot.dir,
            name: repo.to_string(),
            model_name: repo.rsplit('/').next().unwrap_or(repo).to_string(),
            source: format!("{repo}@{}", snapshot.commit),
        }
    }
}

/// A folder, or a repo id found in the hub cache.
pub fn resolve_input(
    checkpoint: &str,
    revision: Option<String>,
    settings: &Settings,
) -> Result<Input> {
    let path = Path::new(checkpoint);
    let looks_like_repo = o1_hub::is_repo_id(checkpoint) && !path.exists();
    if !looks_like_repo {
        // A folder (the converter reports a missing one clearly).
        let name = path
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| checkpoint.trim_end_matches('/').to_string());
        return Ok(Input {
            dir: path.to_path_buf(),
            name: name.clone(),
            model_name: name.clone(),
            source: name,
        });
    }
    let (repo, revision) = settings.repo_and_revision(Some(checkpoint.to_string()), revision)?;
    let cache = o1_hub::PullOptions::from_env().cache_dir;
    let snap = o1_hub::find_cached(&repo, &revision, &cache)
        .with_context(|| format!("{repo} is not pulled yet: run `o1 pull {repo}` first"))?;
    Ok(Input::pulled(&repo, snap))
}

/// The conversion's options; `output` defaults to the model store.
fn options(
    input: &Input,
    output: Option<PathBuf>,
    ty: OutputType,
    args: Option<&ConvertArgs>,
    settings: &Settings,
) -> Result<o1_convert::ConvertOptions> {
    let output = match output {
        Some(o) => o,
        None => {
            let store = Store::open_default();
            std::fs::create_dir_all(store.dir())
                .with_context(|| format!("creating the model store {}", store.dir().display()))?;
            store.path_of(&Store::name_for(&input.name, ty.name()))
        }
    };
    let mut opts = o1_convert::ConvertOptions::new(&input.dir, &output, ty);
    opts.source = Some(input.source.clone());
    opts.name = Some(input.model_name.clone());
    if let Some(n) = settings.get(&settings::THREADS, args.and_then(|a| a.threads))? {
        opts.threads = n.max(1);
    }
    if let Some(args) = args {
        opts.force = args.force;
        opts.verify = !args.no_verify;
        if let Some(name) = &args.name {
            opts.name = Some(name.clone());
        }
        if args.two_pass {
            opts.pipeline = o1_convert::Pipeline::TwoPass;
        }
    }
    Ok(opts)
}

/// Converts `input` with a progress bar (unless `quiet`), calibrated when
/// the type gains from it.
pub fn convert(
    input: &Input,
    output: Option<PathBuf>,
    ty: OutputType,
    args: Option<&ConvertArgs>,
    settings: &Settings,
) -> Result<ConvertReport> {
    let mut opts = options(input, output, ty, args, settings)?;
    set_calibration(&mut opts, input, args)?;
    let mut progress = crate::progress::ConvertProgress::new(args.is_some_and(|a| a.quiet));
    let cancel = super::interrupt_flag();
    let report = o1_convert::convert(&opts, &mut progress, &cancel)?;
    if let Some(path) = args.and_then(|a| a.save_imatrix.as_ref()) {
        let used = report
            .calibration
            .as_ref()
            .context("no importance matrix was used")?;
        ImportanceMatrix::load(Path::new(used))?.save(path)?;
    }
    Ok(report)
}

/// The importance matrix to quantize with: the user's file, or o1's own
/// for the checkpoint (cached; computed during the conversion the first
/// time), or none.
fn set_calibration(
    opts: &mut o1_convert::ConvertOptions,
    input: &Input,
    args: Option<&ConvertArgs>,
) -> Result<()> {
    let ty = opts.out_type;
    if let Some(file) = args.and_then(|a| a.imatrix.as_ref()) {
        if !ty.is_quantized() {
            bail!("--imatrix applies to quantized types, not {ty}");
        }
        opts.calibration = Some(Calibration {
            matrix: Arc::new(ImportanceMatrix::load(file)?),
            file: file.display().to_string(),
        });
        return Ok(());
    }
    let wanted = !args.is_some_and(|a| a.no_calibrate)
        && (ty.calibrated_by_default() || args.is_some_and(|a| a.save_imatrix.is_some()));
    if !wanted || !ty.is_quantized() {
        return Ok(());
    }
    // A folder that cannot be read is the converter's to report.
    let Ok(key) = checkpoint_key(input) else {
        return Ok(());
    };
    let cached = o1::paths::cache_dir()
        .join("imatrix")
        .join(format!("{key}.imatrix.gguf"));
    if let Ok(matrix) = ImportanceMatrix::load(&cached) {
        opts.calibration = Some(Calibration {
            matrix: Arc::new(matrix),
            file: cached.display().to_string(),
        });
        return Ok(());
    }
    let threads = opts.threads;
    opts.calibrate_with = Some(Box::new(move |q8_0: &Path, cancel: &AtomicBool| {
        let Some(done) =
            calibrate::calibrate(q8_0, threads, cancel).map_err(|e| format!("{e:#}"))?
        else {
            return Ok(None);
        };
        tracing::info!(
            conversations = done.conversations,
            tokens = done.tokens,
            seconds = done.seconds,
            "calibrated"
        );
        done.matrix.save(&cached).map_err(|e| e.to_string())?;
        Ok(Some(Calibration {
            matrix: Arc::new(done.matrix),
            file: cached.display().to_string(),
        }))
    }));
    Ok(())
}

/// Names a checkpoint's importance matrix: its source, its weight files'
/// names, sizes and times, and the calibration set.
fn checkpoint_key(input: &Input) -> Result<String> {
    let mut files: Vec<_> = std::fs::read_dir(&input.dir)
        .with_context(|| format!("reading {}", input.dir.display()))?
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.ends_with(".safetensors") || name == "config.json"
        })
        .collect();
    files.sort_by_key(|e| e.file_name());
    let mut h = Sha256::new();
    h.update(input.source.as_bytes());
    h.update(dataset::calibration_source().as_bytes());
    h.update(calibrate::TOKEN_BUDGET.to_le_bytes());
    for e in files {
        let meta = std::fs::metadata(e.path())?;
        h.update(e.file_name().to_string_lossy().as_bytes());
        let (len, modified) = o1_gguf::files::stamp(&meta);
        h.update(len.to_le_bytes());
        h.update(modified.to_le_bytes());
    }
    Ok(format!("{:x}", h.finalize())[..24].to_string())
}

fn type_list(counts: &std::collections::BTreeMap<String, usize>) -> String {
    counts
        .iter()
        .map(|(t, n)| format!("{t} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What was written and verified, to `out`: stdout for `o1 convert`,
/// stderr in the first run, whose stdout belongs to the answer.
pub fn print_report(report: &ConvertReport, out: &mut dyn Write) -> Result<()> {
    writeln!(
        out,
        "wrote {} ({}, {:.2} GB, {} tensors: {}) in {:.1} s",
        report.output.display(),
        report.out_type,
        report.output_bytes as f64 / 1e9,
        report.n_tensors,
        type_list(&report.type_counts),
        report.seconds
    )?;
    if let Some(c) = &report.calibration {
        writeln!(out, "calibrated with the importance matrix {c}")?;
    }
    if let Some(v) = &report.verification {
        writeln!(
            out,
            "verified: llama.cpp loads it, {} tokens, <|reasoning|> is token {}, tokenizers agree on {} samples ({} tokens)",
            v.n_vocab, v.reasoning_id, v.samples, v.tokens_compared
        )?;
    }
    for w in &report.warnings {
        eprintln!("o1: warning: {}", for_terminal(w));
    }
    if report.removed_stale_temporaries > 0 {
        eprintln!(
            "o1: removed {} temporary file(s) left by an interrupted run",
            report.removed_stale_temporaries
        );
    }
    Ok(())
}

pub fn run(args: ConvertArgs) -> Result<()> {
    let settings = Settings::load()?;
    let input = resolve_input(&args.checkpoint, args.revision.clone(), &settings)?;
    let ty = match args.out_type {
        Some(TypeChoice::Auto) => {
            choose_type(&input, Some(&args), args.max_memory, args.ctx, &settings)?
        }
        Some(TypeChoice::Type(t)) => t,
        None => settings.value(&settings::TYPE, None)?,
    };
    if args.dry_run {
        let mut opts = options(&input, args.output.clone(), ty, Some(&args), &settings)?;
        set_calibration(&mut opts, &input, Some(&args))?;
        let plan = o1_convert::plan_only(&opts)?;
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "would write {} ({ty}, {:.2} GB, {} tensors: {}) from {:.2} GB of weights",
            opts.output.display(),
            plan.output_bytes as f64 / 1e9,
            plan.n_tensors,
            type_list(&plan.type_counts),
            plan.source_bytes as f64 / 1e9
        )?;
        match (&opts.calibration, &opts.calibrate_with) {
            (Some(c), _) => writeln!(out, "calibrated with the importance matrix {}", c.file)?,
            (None, Some(_)) => writeln!(
                out,
                "calibrated: o1 would first compute an importance matrix for this checkpoint \
                 (a q8_0 copy runs its calibration set; cached after)"
            )?,
            (None, None) => {}
        }
        return Ok(());
    }
    let report = convert(&input, args.output.clone(), ty, Some(&args), &settings)?;
    print_report(&report, &mut std::io::stdout().lock())
}

/// The context `--type auto` plans for when none is set: a long chat.
const AUTO_CTX: u32 = 8192;

/// `--type auto`: the least drift measured among the types whose chat fits
/// the memory allowed, each judged by the memory planner on the very file
/// it would write (its header, with the data left a hole).
/// `--type auto`: the type with the least measured drift whose chat fits
/// `max_memory` at `ctx` tokens (flags; else the settings), said with why.
pub fn choose_type(
    input: &Input,
    args: Option<&ConvertArgs>,
    max_memory: Option<Size>,
    ctx: Option<u32>,
    settings: &Settings,
) -> Result<OutputType> {
    let max_memory = settings
        .get(&settings::MAX_MEMORY, max_memory)?
        .map_or_else(
            || memory::default_max_memory(o1::device::total_memory()),
            |s| s.0,
        );
    let n_ctx = settings.get(&settings::CTX, ctx)?.unwrap_or(AUTO_CTX);
    let wanted = memory::Wanted {
        n_ctx: Some(n_ctx),
        kv_type: settings.get(&settings::KV_TYPE, None)?,
        n_batch: None,
        max_memory,
    };
    let skeleton = std::env::temp_dir().join(format!(".o1-type-auto-{}.gguf", std::process::id()));
    let chosen = choose::choose(wanted, |ty| {
        let mut opts = options(input, Some(skeleton.clone()), ty, args, settings)?;
        set_calibration(&mut opts, input, args)?;
        o1_convert::write_skeleton(&opts, &skeleton)?;
        Ok(ModelInfo::read(&skeleton)?)
    });
    let _ = std::fs::remove_file(&skeleton);
    let choice = chosen?;
    let mib = |b: u64| b.div_ceil(1 << 20);
    eprintln!(
        "o1: type auto: {}, the least drift measured (mean KLD {:.4} against bf16) of the types \
         whose chat fits {} MiB at {n_ctx} tokens (it needs {} MiB: {})",
        choice.ty,
        choice.mean_kld,
        max_memory >> 20,
        mib(choice.plan.footprint.total()),
        choice.plan.footprint
    );
    for (ty, why) in &choice.rejected {
        eprintln!("o1:   not {ty}: {why}");
    }
    Ok(choice.ty)
}
