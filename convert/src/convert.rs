//! The conversion itself: checkpoint folder → GGUF file.
//!
//! Single pass (the default): each tensor is read from the mapped shards a
//! block of rows at a time, widened to f32, converted to its output type by
//! llama.cpp's `ggml_quantize_chunk` on all worker threads, and streamed to
//! its planned place in the output. Source pages are released as soon as a
//! block is done, so the resident set stays far below the model's size.
//!
//! Two pass (`Pipeline::TwoPass`, the reference): the checkpoint is written
//! losslessly to a temporary GGUF, which `llama_model_quantize` then turns
//! into the output, as llama.cpp's own tools do.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use llama_cpp_sys_2 as sys;
use o1_gguf::format::{self, GgufWriter, Metadata, TensorInfo, Value};
use o1_gguf::ggml::OutputType;
use o1_gguf::llama;

use crate::checkpoint::Checkpoint;
use crate::error::{write_error, ConvertError, Result};
use crate::imatrix::ImportanceMatrix;
use crate::metadata::{self, ModelMeta};
use crate::output::{self, TempOutput};
use crate::plan::{self, PlannedTensor};
use crate::progress::Progress;
use crate::safetensors::Weights;
use crate::stream;
use crate::verify::{self, VerifyReport};

/// How the quantized types are produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pipeline {
    /// Read, quantize and write each tensor once.
    SinglePass,
    /// Write a lossless GGUF, then run `llama_model_quantize` on it.
    TwoPass,
}

pub struct ConvertOptions {
    pub input: PathBuf,
    pub output: PathBuf,
    pub out_type: OutputType,
    pub force: bool,
    /// Worker threads for the quantization arithmetic.
    pub threads: usize,
    pub pipeline: Pipeline,
    /// Load the result in llama.cpp and compare tokenizers afterwards.
    pub verify: bool,
    /// `general.name`; defaults to the checkpoint folder's name.
    pub name: Option<String>,
    /// Where the checkpoint came from (`o1.source`); defaults to the name.
    pub source: Option<String>,
    /// Quantize with this importance matrix (quantized types only).
    pub calibration: Option<Calibration>,
    /// Without `calibration`: make the matrix first, by handing a q8_0
    /// conversion (a temporary beside the output) to this function.
    pub calibrate_with: Option<Box<CalibrateFn>>,
}

/// Computes an importance matrix by running the q8_0 file at the path;
/// `Ok(None)` when the flag asked it to stop.
pub type CalibrateFn =
    dyn Fn(&Path, &AtomicBool) -> std::result::Result<Option<Calibration>, String> + Send + Sync;

/// An importance matrix and the name the output records for it
/// (`quantize.imatrix.file`).
#[derive(Clone, Debug)]
pub struct Calibration {
    pub matrix: Arc<ImportanceMatrix>,
    pub file: String,
}

impl ConvertOptions {
    pub fn new(
        input: impl Into<PathBuf>,
        output: impl Into<PathBuf>,
        out_type: OutputType,
    ) -> Self {
        Self {
            input: input.into(),
            output: output.into(),
            out_type,
            force: false,
            threads: o1_gguf::default_threads(),
            pipeline: Pipeline::SinglePass,
            verify: true,
            name: None,
            source: None,
            calibration: None,
            calibrate_with: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ConvertReport {
    pub output: PathBuf,
    pub out_type: OutputType,
    pub n_tensors: usize,
    /// Output tensors per ggml type.
    pub type_counts: BTreeMap<String, usize>,
    pub source_bytes: u64,
    pub output_bytes: u64,
    pub seconds: f64,
    pub removed_stale_temporaries: usize,
    pub verification: Option<VerifyReport>,
    pub warnings: Vec<String>,
    /// The importance matrix quantized with, as the file records it.
    pub calibration: Option<String>,
}

/// What a conversion would write, worked out without writing it.
#[derive(Debug, Clone)]
pub struct PlanReport {
    pub n_tensors: usize,
    pub type_counts: BTreeMap<String, usize>,
    /// The exact size of the output file.
    pub output_bytes: u64,
    pub source_bytes: u64,
}

/// Plans the checkpoint's tensors as `out_type` and builds the file's metadata.
fn prepare(
    ckpt: &Checkpoint,
    opts: &ConvertOptions,
    out_type: OutputType,
    calibration: Option<&Calibration>,
) -> Result<(Vec<PlannedTensor>, Metadata)> {
    let calibration = calibration.filter(|_| out_type.is_quantized());
    let mut planned = plan::plan(&ckpt.config, &ckpt.weights, out_type, calibration.is_some())?;
    if let Some(c) = calibration {
        for p in planned.iter_mut().filter(|p| p.info.ty.is_quantized()) {
            p.importance = c
                .matrix
                .values_for(&p.info.name, p.info.dims[0] as usize)
                .map(Arc::from);
        }
    }
    let name = opts.name.clone().unwrap_or_else(|| ckpt.name());
    let mut meta = metadata::build(&ModelMeta {
        name: &name,
        source: opts.source.as_deref().unwrap_or(&name),
        config: &ckpt.config,
        generation: &ckpt.generation,
        vocab: &ckpt.vocab,
        out_type,
    });
    if let Some(c) = calibration {
        meta.extend(c.matrix.quantize_metadata(&c.file));
    }
    Ok((planned, meta))
}

/// Plans the conversion of `opts.input` (types, sizes) without writing anything.
pub fn plan_only(opts: &ConvertOptions) -> Result<PlanReport> {
    let (ckpt, planned, meta) = plan_for(opts)?;
    let infos = planned.iter().map(|p| p.info.clone()).collect();
    let header = GgufWriter::new(Vec::new(), &meta, infos)
        .map_err(|e| write_error(&opts.output, 0, e))?
        .header_len();
    Ok(PlanReport {
        n_tensors: planned.len(),
        type_counts: type_counts(&planned),
        output_bytes: header + data_size(&planned),
        source_bytes: ckpt.weights.total_bytes(),
    })
}

/// Writes at `path` what the conversion would write, with the tensor data
/// left a hole: the same header and size, for reading the file's shape
/// (the memory a type needs) before converting.
pub fn write_skeleton(opts: &ConvertOptions, path: &Path) -> Result<()> {
    let (_, planned, meta) = plan_for(opts)?;
    let werr = |e| write_error(path, 0, e);
    let mut file = std::fs::File::create(path).map_err(werr)?;
    let infos = planned.iter().map(|p| p.info.clone()).collect();
    let header = GgufWriter::new(&mut file, &meta, infos)
        .map_err(werr)?
        .header_len();
    file.set_len(header + data_size(&planned)).map_err(werr)
}

/// The checkpoint, tensors and metadata `opts` would write.
fn plan_for(opts: &ConvertOptions) -> Result<(Checkpoint, Vec<PlannedTensor>, Metadata)> {
    let ckpt = Checkpoint::open(&opts.input)?;
    let calibrated = opts.calibration.is_some() || opts.calibrate_with.is_some();
    // The plan depends on whether a matrix is used, not on its values.
    let placeholder = calibrated.then(|| Calibration {
        matrix: Arc::default(),
        file: String::new(),
    });
    let (planned, meta) = prepare(&ckpt, opts, opts.out_type, placeholder.as_ref())?;
    Ok((ckpt, planned, meta))
}

fn type_counts(planned: &[PlannedTensor]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for p in planned {
        *counts.entry(p.info.ty.name().to_string()).or_insert(0) += 1;
    }
    counts
}

/// Converts `opts.input` into `opts.output`. On any error nothing is left
/// at the output path (an existing file there is untouched).
pub fn convert(
    opts: &ConvertOptions,
    progress: &mut dyn Progress,
    cancel: &AtomicBool,
) -> Result<ConvertReport> {
    let started = Instant::now();
    let ckpt = Checkpoint::open(&opts.input)?;
    let removed_stale_temporaries = output::remove_stale_temporaries(&opts.output);
    let computed = match (&opts.calibration, &opts.calibrate_with) {
        (None, Some(calibrate)) if opts.out_type.is_quantized() => {
            Some(calibration_pass(&ckpt, opts, calibrate, progress, cancel)?)
        }
        _ => None,
    };
    let calibration = opts.calibration.as_ref().or(computed.as_ref());
    let (planned, meta) = prepare(&ckpt, opts, opts.out_type, calibration)?;

    let out_bytes = data_size(&planned);
    let two_pass = opts.pipeline == Pipeline::TwoPass;
    let intermediate = two_pass.then(|| lossless_types(&planned));
    let needed = out_bytes + intermediate.as_deref().map_or(0, data_size);
    output::check_target(&opts.output, opts.force, needed)?;

    let mut out = TempOutput::create(&opts.output, "out")?;
    // Two pass writes a lossless file first and quantizes it into `out`.
    let mut lossless = match intermediate {
        Some(plan) => Some((plan, TempOutput::create(&opts.output, "lossless")?)),
        None => None,
    };
    let (stage, tensors, file) = match &mut lossless {
        Some((plan, tmp)) => (
            "writing lossless GGUF (pass 1 of 2)".to_string(),
            &plan[..],
            tmp.take_file(),
        ),
        None => (
            format!("converting to {}", opts.out_type),
            &planned[..],
            out.take_file(),
        ),
    };
    progress.stage(&stage, ckpt.weights.total_bytes());
    let warnings = write_gguf(file, &meta, tensors, &ckpt.weights, opts, progress, cancel)?;
    progress.finish_stage();
    // Pass 2; the lossless temporary is deleted as `tmp` drops at its end.
    if let Some((_, tmp)) = lossless {
        progress.stage("quantizing with llama.cpp (pass 2 of 2)", 0);
        drop(out.take_file());
        quantize_file(tmp.path(), out.path(), opts)?;
        progress.finish_stage();
    }

    // Checked under its temporary name: the output appears only once
    // verified. The data goes to disk meanwhile, on another thread.
    let (synced, verification) = std::thread::scope(|scope| {
        let synced = scope.spawn(|| out.sync());
        let verification = opts.verify.then(|| {
            progress.stage("verifying", 0);
            let report = verify::verify(
                out.path(),
                &ckpt.tokenizer_path,
                ckpt.config.vocab_size,
                ckpt.vocab.reasoning_id,
            );
            progress.finish_stage();
            report.map_err(|e| e.at(&opts.output))
        });
        (synced.join().expect("sync thread"), verification)
    });
    let verification = verification.transpose()?;
    synced?;
    if cancel.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(ConvertError::Interrupted);
    }
    out.persist()?;

    let output_bytes = std::fs::metadata(&opts.output)
        .map(|m| m.len())
        .unwrap_or(0);
    Ok(ConvertReport {
        output: opts.output.clone(),
        out_type: opts.out_type,
        n_tensors: planned.len(),
        type_counts: type_counts(&planned),
        source_bytes: ckpt.weights.total_bytes(),
        output_bytes,
        seconds: started.elapsed().as_secs_f64(),
        removed_stale_temporaries,
        verification,
        warnings,
        calibration: calibration
            .filter(|_| opts.out_type.is_quantized())
            .map(|c| c.file.clone()),
    })
}

/// Pass 0 of a calibrated conversion: a q8_0 copy of the checkpoint, as a
/// temporary beside the output (removed however the run ends), runs
/// through `calibrate`.
fn calibration_pass(
    ckpt: &Checkpoint,
    opts: &ConvertOptions,
    calibrate: &CalibrateFn,
    progress: &mut dyn Progress,
    cancel: &AtomicBool,
) -> Result<Calibration> {
    let (planned, meta) = prepare(ckpt, opts, OutputType::Q8_0, None)?;
    output::check_target(&opts.output, opts.force, data_size(&planned))?;
    let mut copy = TempOutput::create(&opts.output, "calibration")?;
    progress.stage(
        "calibration: a q8_0 copy to run",
        ckpt.weights.total_bytes(),
    );
    write_gguf(
        copy.take_file(),
        &meta,
        &planned,
        &ckpt.weights,
        opts,
        progress,
        cancel,
    )?;
    progress.finish_stage();
    copy.sync()?;
    progress.stage(
        "calibration: running the model over o1's calibration set",
        0,
    );
    let calibration = calibrate(copy.path(), cancel).map_err(|detail| ConvertError::Calibrate {
        path: opts.output.clone(),
        detail,
    })?;
    progress.finish_stage();
    calibration.ok_or(ConvertError::Interrupted)
}

fn data_size(planned: &[PlannedTensor]) -> u64 {
    planned
        .iter()
        .map(|p| format::align(p.info.n_bytes()))
        .sum()
}

/// The plan of the lossless first pass: weights keep their source dtype.
fn lossless_types(planned: &[PlannedTensor]) -> Vec<PlannedTensor> {
    planned
        .iter()
        .cloned()
        .map(|mut p| {
            if p.info.dims.len() >= 2 {
                p.info.ty = stream::ggml_type_of(p.source.dtype);
            }
            p
        })
        .collect()
}

/// Writes `planned` as a GGUF file with `meta` into `file`; returns a warning
/// per tensor whose values overflowed f16.
fn write_gguf(
    file: std::fs::File,
    meta: &[(String, Value)],
    planned: &[PlannedTensor],
    weights: &Weights,
    opts: &ConvertOptions,
    progress: &mut dyn Progress,
    cancel: &AtomicBool,
) -> Result<Vec<String>> {
    let needed = data_size(planned);
    let werr = |e| write_error(&opts.output, needed, e);
    let infos: Vec<TensorInfo> = planned.iter().map(|p| p.info.clone()).collect();
    let mut writer =
        GgufWriter::new(BufWriter::with_capacity(1 << 20, file), meta, infos).map_err(werr)?;
    let overflow = stream::write_tensors(
        &mut writer,
        planned,
        weights,
        opts.threads,
        cancel,
        progress,
    )
    .map_err(|e| e.into_convert_error(werr))?;
    let buffered = writer.finish().map_err(werr)?;
    buffered.into_inner().map_err(|e| werr(e.into_error()))?;
    Ok(overflow)
}

/// Pass 2 of the reference pipeline: llama.cpp's own quantizer.
fn quantize_file(input: &Path, output: &Path, opts: &ConvertOptions) -> Result<()> {
    llama::backend().map_err(|e| ConvertError::Quantize {
        path: opts.output.clone(),
        detail: e.to_string(),
    })?;
    llama::clear_recent_errors();
    let cstr = |p: &Path| CString::new(p.to_string_lossy().as_bytes()).expect("path without NUL");
    let (inp, outp) = (cstr(input), cstr(output));
    // SAFETY: plain C struct returned by value.
    let mut params = unsafe { sys::llama_model_quantize_default_params() };
    params.ftype = opts.out_type.ftype();
    params.nthread = opts.threads as i32;
    // The matrix and the keys that record it, as `llama-quantize --imatrix`
    // passes them; the vectors outlive the call.
    let calibration = opts.calibration.as_ref();
    let names: Vec<(CString, Vec<f32>)> = calibration
        .map(|c| {
            c.matrix
                .entries
                .iter()
                .map(|(n, e)| (CString::new(n.as_str()).expect("tensor name"), e.values()))
                .collect()
        })
        .unwrap_or_default();
    let mut imatrix: Vec<sys::llama_model_imatrix_data> = names
        .iter()
        .map(|(n, v)| sys::llama_model_imatrix_data {
            name: n.as_ptr(),
            data: v.as_ptr(),
            size: v.len(),
        })
        .collect();
    let mut overrides: Vec<sys::llama_model_kv_override> = calibration
        .map(|c| c.matrix.quantize_metadata(&c.file))
        .unwrap_or_default()
        .iter()
        .map(|(k, v)| kv_override(k, v))
        .collect();
    if calibration.is_some() {
        imatrix.push(sys::llama_model_imatrix_data {
            name: std::ptr::null(),
            data: std::ptr::null(),
            size: 0,
        });
        params.imatrix = imatrix.as_ptr();
        // SAFETY: all-zero is the terminator (an empty key).
        overrides.push(unsafe { std::mem::zeroed() });
        params.kv_overrides = overrides.as_ptr();
    }
    // SAFETY: both paths are valid C strings; params is fully initialised.
    let rc = unsafe { sys::llama_model_quantize(inp.as_ptr(), outp.as_ptr(), &params) };
    if rc != 0 {
        return Err(ConvertError::Quantize {
            path: opts.output.clone(),
            detail: llama::recent_errors().join("; "),
        });
    }
    Ok(())
}

/// A string or integer metadata value as llama.cpp's override struct.
fn kv_override(key: &str, value: &Value) -> sys::llama_model_kv_override {
    fn copy(dst: &mut [std::ffi::c_char; 128], text: &str) {
        for (d, b) in dst.iter_mut().zip(text.bytes().take(127)) {
            *d = b as std::ffi::c_char;
        }
    }
    // SAFETY: a plain C struct; zero is a valid (empty) value for every field.
    let mut o: sys::llama_model_kv_override = unsafe { std::mem::zeroed() };
    copy(&mut o.key, key);
    match value {
        Value::String(s) => {
            o.tag = sys::LLAMA_KV_OVERRIDE_TYPE_STR;
            // SAFETY: writing the union's string member.
            copy(unsafe { &mut o.__bindgen_anon_1.val_str }, s);
        }
        other => {
            o.tag = sys::LLAMA_KV_OVERRIDE_TYPE_INT;
            o.__bindgen_anon_1.val_i64 = other.as_u64().unwrap_or(0) as i64;
        }
    }
    o
}
