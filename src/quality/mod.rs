//! Quality per byte: o1's importance matrix for calibrated quantization
//! ([`calibrate`]) and the drift of a quantized file from its lossless
//! reference ([`eval`]), both over texts that ship with o1 ([`dataset`]).

pub mod calibrate;
pub mod choose;
pub mod dataset;
pub mod eval;

use o1_gguf::scoring::{Token, Tokenizer};

use crate::chat::Segment;

/// The tokens of rendered segments: markers as their special tokens, text
/// as plain text (a marker typed inside text stays text).
pub fn tokenize(model: &impl Tokenizer, segments: &[Segment]) -> Vec<Token> {
    let mut out = Vec::new();
    for s in segments {
        match s {
            Segment::Special(marker) => out.extend(model.tokenize(marker, true)),
            Segment::Text(text) => out.extend(model.tokenize(text, false)),
        }
    }
    out
}
