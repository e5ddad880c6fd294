//! Checks a converted file the way a user would depend on it: llama.cpp
//! loads it, its vocabulary has one entry per embedding row, `<|reasoning|>`
//! is a single token, and llama.cpp's tokenizer splits text exactly as the
//! checkpoint's own `tokenizer.json` does.

use std::path::Path;

use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use o1_gguf::keys::REASONING_TOKEN;
use o1_gguf::llama;

use crate::error::{ConvertError, Result};

/// Text on which both tokenizers must agree: prose, code, Chinese, emoji,
/// numbers, odd whitespace and the chat format's special tokens.
pub const SAMPLES: &[&str] = &[
    "Hello, world! How are you doing today? I'm fine, thanks.",
    "fn main() {\n    let xs: Vec<u32> = (0..10).map(|x| x * x).collect();\n    println!(\"{xs:?}\");\n}\n",
    "def square(n):\n\treturn n ** 2  # 3.14159, 1e-6, 0x1F\n",
    "你好，世界！今天的天气怎么样？我们来解一道数学题。",
    "Emoji: 🦀🚀 👍🏽 👨‍👩‍👧 ✨ — naïve café résumé Ünïcödé",
    "Numbers 1234567890 and dates 2026-11-28, prices $4.99/€5,00.",
    "  leading spaces,\ttabs,\n\n\nnewlines\r\nand   runs   of   spaces  ",
    "Привет, мир! こんにちは世界 안녕하세요 مرحبا",
    "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|><|reasoning|>\nLet me think.<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>text after end<|reasoning|>",
];

#[derive(Debug, Clone, PartialEq)]
pub struct VerifyReport {
    pub n_vocab: usize,
    pub reasoning_id: u32,
    pub samples: usize,
    pub tokens_compared: usize,
}

pub fn verify(
    gguf: &Path,
    tokenizer_json: &Path,
    expected_vocab: usize,
    reasoning_id: u32,
) -> Result<VerifyReport> {
    let fail = |problem: String| ConvertError::Verify {
        path: gguf.to_path_buf(),
        problem,
    };
    // The reference tokenization needs only tokenizer.json: it runs beside
    // llama.cpp's load instead of after it.
    std::thread::scope(|scope| {
        let reference = scope.spawn(|| reference_tokens(tokenizer_json));
        let model = load_vocab_only(gguf).map_err(&fail)?;
        let n_vocab = model.n_vocab() as usize;
        if n_vocab != expected_vocab {
            return Err(fail(format!(
                "llama.cpp sees {n_vocab} tokens, config.json has {expected_vocab}"
            )));
        }
        let vocab = model.vocab();
        let ids: Vec<i32> = vocab
            .tokenize(REASONING_TOKEN.as_bytes(), false, true)
            .iter()
            .map(|t| t.0)
            .collect();
        if ids != [reasoning_id as i32] {
            return Err(fail(format!(
                "{REASONING_TOKEN} tokenizes to {ids:?}, not to the single token {reasoning_id}"
            )));
        }

        let reference = reference
            .join()
            .expect("reference tokenizer thread")
            .map_err(&fail)?;
        let mut tokens_compared = 0;
        for (sample, expected) in SAMPLES.iter().zip(&reference) {
            let got: Vec<u32> = vocab
                .tokenize(sample.as_bytes(), false, true)
                .iter()
                .map(|t| t.0 as u32)
                .collect();
            if &got != expected {
                let at = got.iter().zip(expected).take_while(|(a, b)| a == b).count();
                return Err(fail(format!(
                    "llama.cpp and tokenizer.json disagree on {sample:?} at token {at}: llama.cpp {:?}, tokenizer.json {:?}",
                    &got[at..got.len().min(at + 4)],
                    &expected[at..expected.len().min(at + 4)]
                )));
            }
            tokens_compared += got.len();
        }
        Ok(VerifyReport {
            n_vocab,
            reasoning_id,
            samples: SAMPLES.len(),
            tokens_compared,
        })
    })
}

/// Loads the file in llama.cpp without allocating tensor memory: the check
/// is about the file, not about running it. llama.cpp still reads every
/// header, builds every tensor and checks its shape against the model (a
/// full load would map and repack the whole model).
fn load_vocab_only(gguf: &Path) -> std::result::Result<LlamaModel, String> {
    let backend = llama::backend().map_err(|e| e.to_string())?;
    llama::clear_recent_errors();
    let params = LlamaModelParams::default()
        .with_n_gpu_layers(0)
        .with_no_alloc(true);
    LlamaModel::load_from_file(backend, gguf, &params).map_err(|e| {
        let detail = llama::recent_errors().join("; ");
        format!("llama.cpp cannot load it ({e}): {detail}")
    })
}

/// The checkpoint tokenizer's ids for every sample. The tokenizers crate
/// trusts its file in places (it asserts instead of returning an error), so
/// a panic in it is caught and reported as a problem with tokenizer.json.
pub fn reference_tokens(tokenizer_json: &Path) -> std::result::Result<Vec<Vec<u32>>, String> {
    let run = std::panic::AssertUnwindSafe(|| tokenize_samples(tokenizer_json));
    std::panic::catch_unwind(run).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        Err(format!(
            "the tokenizers crate panicked on {}: {message}",
            tokenizer_json.display()
        ))
    })
}

fn tokenize_samples(tokenizer_json: &Path) -> std::result::Result<Vec<Vec<u32>>, String> {
    let mut reference = tokenizers::Tokenizer::from_file(tokenizer_json).map_err(|e| {
        format!(
            "the tokenizers crate cannot load {}: {e}",
            tokenizer_json.display()
        )
    })?;
    // Padding and truncation are for batches in Python and never reach the
    // GGUF; the file's own could pad to any length (memory) or assert.
    reference.with_padding(None);
    reference
        .with_truncation(None)
        .map_err(|e| format!("tokenizers crate: {e}"))?;
    SAMPLES
        .iter()
        .map(|sample| {
            reference
                .encode(*sample, false)
                .map(|enc| enc.get_ids().to_vec())
                .map_err(|e| format!("tokenizers crate failed on {sample:?}: {e}"))
        })
        .collect()
}
