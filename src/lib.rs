//! o1: a local runtime for the Qwen2.5-1.5B-O1 reasoning model.
//!
//! The library holds what the commands and the terminal UI share: the
//! conversation format ([`chat`]), the engine thread that runs two-phase
//! turns on llama.cpp ([`engine`]), model-file inspection ([`model`]) and
//! the chat terminal UI ([`tui`]), the HTTP server ([`serve`]) and its
//! client ([`remote`]), the settings and where files live
//! ([`settings`], [`paths`]) and the model store ([`store`]).
//! Conversion lives in the `o1-convert` crate.

pub mod chat;
pub mod device;
pub mod engine;
pub mod memory;
pub mod model;
pub mod paths;
pub mod quality;
pub mod remote;
pub mod serve;
pub mod settings;
pub mod store;
pub mod terminal_text;
pub mod tui;
