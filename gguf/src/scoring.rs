//! A model run for measurement rather than chat: every position's logits
//! for a batch (drift against a reference), or an evaluation callback that
//! sees each matrix product's input (calibration). Uses llama.cpp's C API
//! directly: the safe wrapper has no way to set `cb_eval`, the number of
//! output rows, or weight repacking.

use std::ffi::{c_void, CString};
use std::path::Path;

use llama_cpp_sys_2 as sys;

use crate::llama;

pub type Token = i32;

/// llama.cpp's evaluation callback and the pointer it is given.
#[derive(Clone, Copy)]
pub struct EvalCallback {
    pub callback: unsafe extern "C" fn(*mut sys::ggml_tensor, bool, *mut c_void) -> bool,
    pub user_data: *mut c_void,
}

#[derive(Clone, Copy)]
pub struct ScoringOptions {
    /// Positions per sequence; batches are as large.
    pub n_ctx: u32,
    /// Rows of logits one batch may return (each costs a vocabulary of f32).
    pub max_outputs: u32,
    pub threads: i32,
    /// Keep llama.cpp's repacked copies of weights (faster, more memory).
    pub repack: bool,
    pub eval_callback: Option<EvalCallback>,
}

/// Tokenizes text with a model's vocabulary.
pub trait Tokenizer {
    /// Tokens of `text`; `special` lets marker texts such as `<|im_end|>`
    /// become their special tokens. Never adds a BOS.
    fn tokenize(&self, text: &str, special: bool) -> Vec<Token>;
}

fn tokenize_with(vocab: *const sys::llama_vocab, text: &str, special: bool) -> Vec<Token> {
    let mut out = vec![0; text.len() + 2];
    let n = |out: &mut Vec<Token>| unsafe {
        // SAFETY: the buffer holds `out.len()` tokens; text is passed with its length.
        sys::llama_tokenize(
            vocab,
            text.as_ptr().cast(),
            text.len() as i32,
            out.as_mut_ptr(),
            out.len() as i32,
            false,
            special,
        )
    };
    let mut got = n(&mut out);
    if got < 0 {
        out.resize((-got) as usize, 0);
        got = n(&mut out);
    }
    out.truncate(got.max(0) as usize);
    out
}

/// A model file's vocabulary alone (no weights read).
pub struct Vocabulary {
    model: *mut sys::llama_model,
    vocab: *const sys::llama_vocab,
}

// SAFETY: owned pointers, used from one thread at a time.
unsafe impl Send for Vocabulary {}

impl Vocabulary {
    pub fn open(path: &Path) -> Result<Self, String> {
        llama::backend().map_err(|e| e.to_string())?;
        llama::clear_recent_errors();
        let cpath = CString::new(path.to_string_lossy().as_bytes()).map_err(|e| e.to_string())?;
        // SAFETY: plain C struct by value; a valid path.
        let mut mp = unsafe { sys::llama_model_default_params() };
        mp.vocab_only = true;
        let model = unsafe { sys::llama_model_load_from_file(cpath.as_ptr(), mp) };
        if model.is_null() {
            return Err(format!(
                "cannot read the vocabulary of {}: {}",
                path.display(),
                llama::recent_errors().join("; ")
            ));
        }
        // SAFETY: the vocabulary belongs to the live model.
        let vocab = unsafe { sys::llama_model_get_vocab(model) };
        Ok(Self { model, vocab })
    }
}

impl Tokenizer for Vocabulary {
    fn tokenize(&self, text: &str, special: bool) -> Vec<Token> {
        tokenize_with(self.vocab, text, special)
    }
}

impl Drop for Vocabulary {
    fn drop(&mut self) {
        // SAFETY: owned.
        unsafe { sys::llama_model_free(self.model) };
    }
}

pub struct ScoringModel {
    model: *mut sys::llama_model,
    ctx: *mut sys::llama_context,
    vocab: *const sys::llama_vocab,
    batch: sys::llama_batch,
    n_ctx: u32,
    n_vocab: usize,
}

// SAFETY: the pointers are owned by this value and used from one thread at a time.
unsafe impl Send for ScoringModel {}

impl ScoringModel {
    pub fn open(path: &Path, opts: ScoringOptions) -> Result<Self, String> {
        llama::backend().map_err(|e| e.to_string())?;
        llama::clear_recent_errors();
        let cpath = CString::new(path.to_string_lossy().as_bytes()).map_err(|e| e.to_string())?;
        let failure = |what: &str| {
            let detail = llama::recent_errors().join("; ");
            format!(
                "{what} {}: {}",
                path.display(),
                if detail.is_empty() {
                    "llama.cpp gave no reason"
                } else {
                    &detail
                }
            )
        };
        // SAFETY: plain C structs returned by value, then filled field by field.
        let mut mp = unsafe { sys::llama_model_default_params() };
        mp.n_gpu_layers = 0;
        mp.use_extra_bufts = opts.repack;
        // SAFETY: a valid path and parameters.
        let model = unsafe { sys::llama_model_load_from_file(cpath.as_ptr(), mp) };
        if model.is_null() {
            return Err(failure("cannot load"));
        }
        let mut cp = unsafe { sys::llama_context_default_params() };
        cp.n_ctx = opts.n_ctx;
        cp.n_batch = opts.n_ctx;
        // Batches that return every row need no bigger compute buffer.
        cp.n_ubatch = opts.n_ctx.min(opts.max_outputs).clamp(1, 512);
        cp.n_seq_max = 1;
        cp.n_outputs_max = opts.max_outputs.max(1);
        cp.n_threads = opts.threads;
        cp.n_threads_batch = opts.threads;
        cp.no_perf = true;
        if let Some(cb) = opts.eval_callback {
            cp.cb_eval = Some(cb.callback);
            cp.cb_eval_user_data = cb.user_data;
        }
        // SAFETY: `model` is live; the context borrows it until dropped first.
        let ctx = unsafe { sys::llama_init_from_model(model, cp) };
        if ctx.is_null() {
            unsafe { sys::llama_model_free(model) };
            return Err(failure("cannot make a context for"));
        }
        // SAFETY: both live; the vocabulary belongs to the model.
        let vocab = unsafe { sys::llama_model_get_vocab(model) };
        let n_vocab = unsafe { sys::llama_vocab_n_tokens(vocab) }.max(0) as usize;
        let batch = unsafe { sys::llama_batch_init(opts.n_ctx as i32, 0, 1) };
        Ok(Self {
            model,
            ctx,
            vocab,
            batch,
            n_ctx: opts.n_ctx,
            n_vocab,
        })
    }

    pub fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    pub fn n_ctx(&self) -> usize {
        self.n_ctx as usize
    }

    /// The token the vocabulary puts first in a text, if any (Qwen2: none).
    pub fn bos(&self) -> Option<Token> {
        // SAFETY: the vocabulary is live.
        unsafe { sys::llama_vocab_get_add_bos(self.vocab) }
            .then(|| unsafe { sys::llama_vocab_bos(self.vocab) })
    }

    pub fn is_end_of_turn(&self, token: Token) -> bool {
        // SAFETY: as above.
        unsafe { sys::llama_vocab_is_eog(self.vocab, token) }
    }

    /// Forgets every position.
    pub fn clear(&mut self) {
        // SAFETY: the context is live.
        unsafe { sys::llama_memory_clear(sys::llama_get_memory(self.ctx), true) };
    }

    /// Decodes `tokens` at positions `first_pos..`, asking for logits at the
    /// batch indices `outputs_from..`; at most `n_ctx` tokens.
    pub fn decode(
        &mut self,
        tokens: &[Token],
        first_pos: usize,
        outputs_from: usize,
    ) -> Result<(), String> {
        assert!(
            !tokens.is_empty() && tokens.len() <= self.n_ctx as usize,
            "batch size"
        );
        let b = &mut self.batch;
        // SAFETY: the batch was made for n_ctx tokens of one sequence.
        unsafe {
            for (i, &t) in tokens.iter().enumerate() {
                *b.token.add(i) = t;
                *b.pos.add(i) = (first_pos + i) as i32;
                *b.n_seq_id.add(i) = 1;
                *(*b.seq_id.add(i)) = 0;
                *b.logits.add(i) = (i >= outputs_from) as i8;
            }
        }
        b.n_tokens = tokens.len() as i32;
        // SAFETY: context and batch are live and consistent.
        let rc = unsafe { sys::llama_decode(self.ctx, *b) };
        if rc != 0 {
            return Err(format!(
                "llama.cpp could not decode a batch of {} tokens (code {rc})",
                tokens.len()
            ));
        }
        Ok(())
    }

    /// The logits at batch index `i` of the last decode (asked for).
    pub fn logits(&self, i: usize) -> &[f32] {
        // SAFETY: llama.cpp returns a row of n_vocab floats that lives until the next decode.
        unsafe {
            let p = sys::llama_get_logits_ith(self.ctx, i as i32);
            assert!(!p.is_null(), "no logits at {i}");
            std::slice::from_raw_parts(p, self.n_vocab)
        }
    }
}

impl Tokenizer for ScoringModel {
    fn tokenize(&self, text: &str, special: bool) -> Vec<Token> {
        tokenize_with(self.vocab, text, special)
    }
}

impl Drop for ScoringModel {
    fn drop(&mut self) {
        // SAFETY: owned; the context goes before the model it borrows.
        unsafe {
            sys::llama_batch_free(self.batch);
            sys::llama_free(self.ctx);
            sys::llama_model_free(self.model);
        }
    }
}

/// The index of the largest value (the first, on ties).
pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}
