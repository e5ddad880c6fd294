//! o1's own names in a GGUF file: the `o1.*` metadata keys the converter
//! writes and the runtime reads, and the special token that opens the
//! reasoning phase.

/// The special token that opens the reasoning phase (also its message role).
pub const REASONING_TOKEN: &str = "<|reasoning|>";

/// The GGUF names of the token embedding and the output head, which the
/// converter writes and the runtime's memory plan looks for (the head is
/// absent when tied to the embedding).
pub const TOKEN_EMBD_TENSOR: &str = "token_embd.weight";
pub const OUTPUT_TENSOR: &str = "output.weight";

/// Version of the `o1.*` keys; bump when their meaning changes.
pub const O1_FORMAT_VERSION: u32 = 1;

pub const KEY_FORMAT: &str = "o1.format_version";
pub const KEY_REASONING_TOKEN_ID: &str = "o1.reasoning_token_id";
pub const KEY_SOURCE: &str = "o1.source";
/// Prefix of the checkpoint's generation defaults (`generation_config.json`).
pub const GENERATION_PREFIX: &str = "o1.generation.";
