//! The proof that a CPU path works on this machine: a child process loads
//! one of llama.cpp's CPU libraries and runs a tiny model through it, with
//! every weight type llama.cpp has kernels for (one layer each), prefill
//! batches and single-token decodes, f16 and q8_0 KV caches, on as many
//! threads as a real run. A path whose kernels trap (an illegal
//! instruction, as AMX does under some hypervisors) kills only the child.

use std::ffi::CString;
use std::io::{self, BufWriter, Read};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use llama_cpp_2::context::params::{KvCacheType, LlamaContextParams};
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_sys_2 as sys;

use crate::format::{GgufWriter, TensorInfo, Value};
use crate::ggml::GgmlType;

/// The first argument that makes a binary a probe child (see [`child_main`]).
pub const CHILD_ARG: &str = "__o1-cpu-probe";

/// Names a CPU path whose probe executes an illegal instruction on purpose:
/// how the tests check the fallback on machines whose paths all work.
pub const TRAP_ENV: &str = "O1_TEST_CPU_TRAP";

/// A probe that has not finished by then has failed (a hang is no path).
const TIMEOUT: Duration = Duration::from_secs(60);

/// The weight types of the probe model's layers: every type a converted
/// file can hold, so that each of llama.cpp's matrix kernels for the path
/// (plain, repacked, AMX) runs at least once.
const LAYER_TYPES: &[GgmlType] = &[
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::IQ4_NL,
    GgmlType::IQ4_XS,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::F32,
];

/// The probe model's shape: rows of 256 (the k-quants' block, AMX's tile
/// multiples), 4 heads of 64.
const HIDDEN: u64 = 256;
const HEADS: u64 = 4;
const KV_HEADS: u64 = 2;
const FFN: u64 = 256;
const VOCAB: u64 = 256;
const HEAD_DIM: u64 = HIDDEN / HEADS;

/// Tokens of the prefill batch, then single-token decodes, then a batch of
/// three (a lookup draft).
const PREFILL: usize = 48;
const SINGLE: usize = 3;
const DRAFT: usize = 3;

/// Writes the probe model to `path`.
pub fn write_model(path: &Path) -> io::Result<()> {
    let mut tensors = Vec::new();
    let mut data: Vec<Vec<u8>> = Vec::new();
    let mut rng = Rng(0x5eed_0001);
    let mut put = |name: String, dims: Vec<u64>, ty: GgmlType, values: Vec<f32>| {
        let bytes = if ty == GgmlType::F32 {
            values.iter().flat_map(|v| v.to_le_bytes()).collect()
        } else {
            let mut out =
                vec![0u8; (ty.row_bytes(dims[0]) * dims[1..].iter().product::<u64>()) as usize];
            ty.quantize_rows(&values, &mut out, dims[0] as usize, None);
            out
        };
        tensors.push(TensorInfo { name, dims, ty });
        data.push(bytes);
    };
    let ones = |n: u64| vec![1.0f32; n as usize];
    let kv = KV_HEADS * HEAD_DIM;
    put(
        "token_embd.weight".into(),
        vec![HIDDEN, VOCAB],
        GgmlType::Q8_0,
        rng.values(HIDDEN * VOCAB, 1.0),
    );
    // Small weights keep the activations finite through 15 layers.
    let scale = 0.05;
    let matrices = [
        ("attn_q", HIDDEN, HIDDEN),
        ("attn_k", HIDDEN, kv),
        ("attn_v", HIDDEN, kv),
        ("attn_output", HIDDEN, HIDDEN),
        ("ffn_gate", HIDDEN, FFN),
        ("ffn_up", HIDDEN, FFN),
        ("ffn_down", FFN, HIDDEN),
    ];
    for (i, &ty) in LAYER_TYPES.iter().enumerate() {
        let b = format!("blk.{i}");
        for (name, cols, rows) in matrices {
            let values = rng.values(cols * rows, scale);
            put(format!("{b}.{name}.weight"), vec![cols, rows], ty, values);
        }
        for (name, rows) in [("attn_q", HIDDEN), ("attn_k", kv), ("attn_v", kv)] {
            let values = rng.values(rows, scale);
            put(
                format!("{b}.{name}.bias"),
                vec![rows],
                GgmlType::F32,
                values,
            );
        }
        for name in ["attn_norm", "ffn_norm"] {
            put(
                format!("{b}.{name}.weight"),
                vec![HIDDEN],
                GgmlType::F32,
                ones(HIDDEN),
            );
        }
    }
    put(
        "output_norm.weight".into(),
        vec![HIDDEN],
        GgmlType::F32,
        ones(HIDDEN),
    );
    put(
        "output.weight".into(),
        vec![HIDDEN, VOCAB],
        GgmlType::Q6_K,
        rng.values(HIDDEN * VOCAB, 0.1),
    );

    let n = |v: u64| Value::U32(v as u32);
    let metadata: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String("qwen2".into())),
        ("general.name".into(), Value::String("o1 CPU probe".into())),
        ("qwen2.block_count".into(), n(LAYER_TYPES.len() as u64)),
        ("qwen2.context_length".into(), n(256)),
        ("qwen2.embedding_length".into(), n(HIDDEN)),
        ("qwen2.feed_forward_length".into(), n(FFN)),
        ("qwen2.attention.head_count".into(), n(HEADS)),
        ("qwen2.attention.head_count_kv".into(), n(KV_HEADS)),
        ("qwen2.rope.freq_base".into(), Value::F32(1_000_000.0)),
        (
            "qwen2.attention.layer_norm_rms_epsilon".into(),
            Value::F32(1e-6),
        ),
        ("qwen2.vocab_size".into(), n(VOCAB)),
        (
            "tokenizer.ggml.model".into(),
            Value::String("no_vocab".into()),
        ),
    ];
    let tmp = path.with_extension("gguf.tmp");
    let file = std::fs::File::create(&tmp)?;
    let mut w = GgufWriter::new(BufWriter::new(file), &metadata, tensors)?;
    for bytes in &data {
        w.write_tensor_data(bytes)?;
    }
    w.finish()?
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Deterministic weights (xorshift), uniform in ±scale.
struct Rng(u64);

impl Rng {
    fn values(&mut self, n: u64, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                ((self.0 >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect()
    }
}

/// How a probe of one path ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Works,
    /// It failed: why, in words (e.g. "illegal instruction (SIGILL)").
    Fails(String),
    /// No child could be started (why): nothing is known of the path.
    NotRun(String),
}

/// Runs the probe of the CPU library `variant` in a child process of
/// `prover` (a binary whose `main` calls [`child_main`] first).
pub fn run(prover: &Path, variant: &Path, model: &Path, threads: usize) -> Outcome {
    let mut child = match Command::new(prover)
        .arg(CHILD_ARG)
        .arg(variant)
        .arg(model)
        .arg(threads.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return Outcome::NotRun(format!("could not start {}: {e}", prover.display())),
    };
    // The child's last words, read as they come so that a full pipe never stalls it.
    let mut stderr = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() > TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Outcome::Fails(format!("waiting for the probe: {e}")),
        }
    };
    let said = reader.join().unwrap_or_default();
    match status {
        None => Outcome::Fails(format!("did not finish in {} s", TIMEOUT.as_secs())),
        Some(s) if s.success() => Outcome::Works,
        // The loader's (or a shell's) "cannot run this": nothing ran, e.g. a
        // binary of another architecture started under qemu-user, whose
        // children the host cannot execute.
        Some(s) if s.code() == Some(127) => Outcome::NotRun(format!(
            "the probe could not run here ({})",
            failure(s, &said)
        )),
        Some(s) => Outcome::Fails(failure(s, &said)),
    }
}

fn failure(status: ExitStatus, said: &str) -> String {
    use std::os::unix::process::ExitStatusExt;
    let last = said
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    match status.signal() {
        Some(sig) => crate::fault::describe(sig),
        None if last.is_empty() => format!("exited with {}", status.code().unwrap_or(-1)),
        None => format!("exited with {}: {last}", status.code().unwrap_or(-1)),
    }
}

/// In a probe child (`argv[1]` is [`CHILD_ARG`]): runs the probe and
/// returns the exit code; elsewhere `None`. Binaries that can prove CPU
/// paths call this first thing in `main`.
pub fn child_main() -> Option<i32> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_none_or(|a| a != CHILD_ARG) {
        return None;
    }
    let (Some(variant), Some(model), Some(threads)) = (args.get(2), args.get(3), args.get(4))
    else {
        eprintln!("usage: {CHILD_ARG} VARIANT.so MODEL.gguf THREADS");
        return Some(2);
    };
    let threads = threads.to_str().and_then(|t| t.parse().ok()).unwrap_or(1);
    Some(match child(Path::new(variant), Path::new(model), threads) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    })
}

fn child(variant: &Path, model: &Path, threads: i32) -> Result<(), String> {
    // llama.cpp's log goes nowhere: the parent reads only the last error.
    // SAFETY: a plain function that never unwinds.
    unsafe { sys::llama_log_set(Some(quiet), std::ptr::null_mut()) };
    let c = CString::new(variant.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: a NUL-terminated path; ggml returns null on failure.
    if unsafe { sys::ggml_backend_load(c.as_ptr()) }.is_null() {
        return Err(format!(
            "{} did not load (this CPU lacks what it needs)",
            variant.display()
        ));
    }
    let name = super::variant_name(variant).unwrap_or_default();
    if std::env::var(TRAP_ENV).is_ok_and(|v| v == name) {
        crate::fault::illegal_instruction();
    }
    let backend = LlamaBackend::init().map_err(|e| e.to_string())?;
    let params = LlamaModelParams::default();
    let model = LlamaModel::load_from_file(&backend, model, &params).map_err(|e| e.to_string())?;
    for kv in [KvCacheType::F16, KvCacheType::Q8_0] {
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(128))
            .with_n_batch(64)
            .with_n_ubatch(64)
            .with_n_threads(threads)
            .with_n_threads_batch(threads)
            .with_type_k(kv)
            .with_type_v(kv)
            .with_flash_attention_policy(sys::LLAMA_FLASH_ATTN_TYPE_ENABLED);
        let mut ctx = model
            .new_context(&backend, params)
            .map_err(|e| e.to_string())?;
        let mut pos = 0i32;
        let mut decode = |tokens: &[i32], ctx: &mut llama_cpp_2::context::LlamaContext| {
            let mut batch = LlamaBatch::new(tokens.len(), 1);
            for (i, &t) in tokens.iter().enumerate() {
                batch
                    .add(LlamaToken(t), pos, &[0], i + 1 == tokens.len())
                    .map_err(|e| e.to_string())?;
                pos += 1;
            }
            ctx.decode(&mut batch).map_err(|e| e.to_string())?;
            let logits = ctx.get_logits_ith(batch.n_tokens() - 1);
            if logits.iter().all(|l| l.is_finite()) {
                Ok(())
            } else {
                Err("the logits are not finite".to_string())
            }
        };
        let prompt: Vec<i32> = (0..PREFILL as i32)
            .map(|i| (i * 37 + 11) % VOCAB as i32)
            .collect();
        decode(&prompt, &mut ctx)?;
        for i in 0..SINGLE as i32 {
            decode(&[(i * 53 + 7) % VOCAB as i32], &mut ctx)?;
        }
        let draft: Vec<i32> = (0..DRAFT as i32)
            .map(|i| (i * 29 + 3) % VOCAB as i32)
            .collect();
        decode(&draft, &mut ctx)?;
    }
    Ok(())
}

extern "C" fn quiet(_: sys::ggml_log_level, _: *const std::ffi::c_char, _: *mut std::ffi::c_void) {}

/// The probe model's file: a name no other process uses, removed on drop.
pub(crate) struct TempModel(pub(crate) PathBuf);

impl TempModel {
    pub(crate) fn new() -> Self {
        Self(std::env::temp_dir().join(format!("o1-cpu-probe-{}.gguf", std::process::id())))
    }
}

impl Drop for TempModel {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
