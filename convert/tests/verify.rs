//! The check that ends every conversion catches a file users could not
//! rely on: one llama.cpp cannot load, a vocabulary of the wrong size, a
//! split `<|reasoning|>` token, or a tokenizer that splits text differently
//! from the checkpoint's `tokenizer.json`.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::Fixture;
use o1_convert::verify::{verify, SAMPLES};
use o1_convert::{ConvertError, OutputType};

/// A converted synthetic model (verification off) and its fixture.
fn converted() -> (Fixture, PathBuf) {
    let fx = Fixture::tiny();
    let out = fx.out("model.gguf");
    let mut opts = common::options(&fx.ckpt(), &out, OutputType::F32);
    opts.verify = false;
    o1_convert::convert(
        &opts,
        &mut o1_convert::NoProgress,
        &std::sync::atomic::AtomicBool::new(false),
    )
    .unwrap();
    (fx, out)
}

fn problem(result: o1_convert::Result<o1_convert::verify::VerifyReport>) -> String {
    match result {
        Err(ConvertError::Verify { problem, .. }) => problem,
        other => panic!("expected a verification error, got {other:?}"),
    }
}

fn tokenizer(fx: &Fixture) -> PathBuf {
    fx.ckpt().join("tokenizer.json")
}

#[test]
fn a_good_file_passes() {
    let (fx, gguf) = converted();
    let w = &fx.written;
    let report = verify(&gguf, &tokenizer(&fx), w.vocab_size, w.reasoning_id).unwrap();
    assert_eq!(report.n_vocab, w.vocab_size);
    assert_eq!(report.reasoning_id, w.reasoning_id);
    assert_eq!(report.samples, SAMPLES.len());
    assert!(report.tokens_compared > SAMPLES.len(), "{report:?}");
}

#[test]
fn wrong_vocabulary_size() {
    let (fx, gguf) = converted();
    let w = &fx.written;
    let p = problem(verify(
        &gguf,
        &tokenizer(&fx),
        w.vocab_size + 1,
        w.reasoning_id,
    ));
    assert!(
        p.contains(&format!("llama.cpp sees {} tokens", w.vocab_size)),
        "{p}"
    );
}

#[test]
fn reasoning_token_elsewhere() {
    let (fx, gguf) = converted();
    let w = &fx.written;
    let p = problem(verify(
        &gguf,
        &tokenizer(&fx),
        w.vocab_size,
        w.reasoning_id - 1,
    ));
    assert!(p.contains("<|reasoning|> tokenizes to"), "{p}");
}

/// The checkpoint's tokenizer without its last merges: llama.cpp (using
/// the file's merges) splits the samples into fewer tokens.
#[test]
fn tokenizers_disagree() {
    let (fx, gguf) = converted();
    let edited = fx.out("fewer-merges.json");
    let mut json: serde_json::Value =
        serde_json::from_slice(&fs::read(tokenizer(&fx)).unwrap()).unwrap();
    let merges = json["model"]["merges"].as_array_mut().unwrap();
    merges.truncate(merges.len() / 2);
    fs::write(&edited, serde_json::to_vec(&json).unwrap()).unwrap();
    let w = &fx.written;
    let p = problem(verify(&gguf, &edited, w.vocab_size, w.reasoning_id));
    assert!(
        p.contains("llama.cpp and tokenizer.json disagree on"),
        "{p}"
    );
}

#[test]
fn unreadable_tokenizer() {
    let (fx, gguf) = converted();
    let broken = fx.out("broken.json");
    fs::write(&broken, b"{\"model\": ").unwrap();
    let w = &fx.written;
    let p = problem(verify(&gguf, &broken, w.vocab_size, w.reasoning_id));
    assert!(p.contains("the tokenizers crate cannot load"), "{p}");
}

#[test]
fn file_llama_cpp_cannot_load() {
    let (fx, gguf) = converted();
    let truncated = fx.out("truncated.gguf");
    let bytes = fs::read(&gguf).unwrap();
    fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let w = &fx.written;
    let p = problem(verify(
        Path::new(&truncated),
        &tokenizer(&fx),
        w.vocab_size,
        w.reasoning_id,
    ));
    assert!(p.contains("llama.cpp cannot load it"), "{p}");
}

fn edit_tokenizer(fx: &Fixture, f: impl FnOnce(&mut serde_json::Value)) {
    let mut json: serde_json::Value =
        serde_json::from_slice(&fs::read(tokenizer(fx)).unwrap()).unwrap();
    f(&mut json);
    fs::write(tokenizer(fx), serde_json::to_vec(&json).unwrap()).unwrap();
}

#[test]
fn a_panic_in_the_tokenizers_crate_is_an_error() {
    // A Replace normalizer with an empty pattern: the tokenizers crate
    // indexes past its input while encoding (found by the mutation test).
    let (fx, gguf) = converted();
    edit_tokenizer(&fx, |json| {
        json["normalizer"] = serde_json::json!(
            {"type": "Replace", "pattern": {"String": ""}, "content": "x"}
        );
    });
    let w = &fx.written;
    let p = problem(verify(&gguf, &tokenizer(&fx), w.vocab_size, w.reasoning_id));
    assert!(
        p.contains("the tokenizers crate panicked on") && p.contains("tokenizer.json"),
        "{p}"
    );
    // A conversion reports it the same way and keeps nothing.
    let err = common::convert(&fx.ckpt(), &fx.out("again.gguf"), OutputType::F32).unwrap_err();
    assert!(matches!(err, ConvertError::Verify { .. }), "{err}");
    assert!(err.to_string().contains("panicked"), "{err}");
    assert!(!fx.out("again.gguf").exists());

    // A file cut off inside its decoder: the crate's loader `expect`s it.
    let text = fs::read_to_string(tokenizer(&fx)).unwrap();
    let cut = text.find("\"decoder\"").unwrap() + 20;
    let truncated = fx.out("truncated.json");
    fs::write(&truncated, &text[..cut]).unwrap();
    let p = problem(verify(&gguf, &truncated, w.vocab_size, w.reasoning_id));
    assert!(p.contains("the tokenizers crate panicked on"), "{p}");
}

#[test]
fn a_sentencepiece_normalizer_is_refused() {
    // The tokenizers crate sizes an allocation from a precompiled charsmap
    // (an abort, beyond any catching) and indexes an empty one unchecked.
    let fx = Fixture::tiny();
    edit_tokenizer(&fx, |json| {
        json["normalizer"] =
            serde_json::json!({"type": "Precompiled", "precompiled_charsmap": "/////w=="});
    });
    let err = common::convert(&fx.ckpt(), &fx.out("o.gguf"), OutputType::F32).unwrap_err();
    assert!(
        err.to_string()
            .contains("tokenizer.json: `normalizer` is SentencePiece's \"Precompiled\""),
        "{err}"
    );
}

#[test]
fn padding_and_truncation_of_tokenizer_json_are_ignored() {
    // They never reach the GGUF. Truncation with its stride past its length
    // made the tokenizers crate assert; padding to a fixed huge length
    // exhausted memory.
    let (fx, gguf) = converted();
    edit_tokenizer(&fx, |json| {
        json["truncation"] = serde_json::json!({
            "direction": "Right", "max_length": 2, "strategy": "LongestFirst", "stride": 5
        });
        json["padding"] = serde_json::json!({
            "strategy": {"Fixed": 1_000_000_000_000u64}, "direction": "Right",
            "pad_to_multiple_of": null, "pad_id": 0, "pad_type_id": 0, "pad_token": "a"
        });
    });
    let w = &fx.written;
    let report = verify(&gguf, &tokenizer(&fx), w.vocab_size, w.reasoning_id).unwrap();
    assert_eq!(report.samples, SAMPLES.len());
}
