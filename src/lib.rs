//! o1: a local runtime for the Qwen2.5-1.5B-O1 reasoning model.
//!
//! The library holds what the commands and the terminal UI share: the
//! conversation format ([`chat`]), the engine thread that runs two-phase
//! turns on llama.cpp ([`engine`]) and model-file inspection ([`model`]).
//! Conversion lives in the `o1-convert` crate.

pub mod chat;
pub mod engine;
pub mod model;
