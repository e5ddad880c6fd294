//! The engine: one worker thread owns llama.cpp's model and context and
//! runs the two-phase turns; callers talk to it through an [`Engine`]
//! handle. Dropping the handle stops the thread.
//!
//! - `config`: what an engine is started with (model, context, sampling, limits);
//! - `event`: what it reports (events, stops, figures, errors);
//! - `handle`: the [`Engine`] handle and the command protocol to its thread;
//! - `load`: the model and the context, and the GPU offload;
//! - `turn`: the worker that fits and runs each turn;
//! - `generate`: how a phase produces its tokens;
//! - `lookup`: drafts from the context for greedy phases, and when they pay;
//! - `runner`: one context and the tokens its KV cache holds;
//! - `cpu_share`: fewer threads while other programs keep the cores busy;
//! - `text`: token pieces to whole characters.
//!
//! The `testing` feature adds hooks for the crate's own tests
//! (single phases, prefill probes, logit biases); they are not part of the API.

mod config;
mod cpu_share;
mod event;
mod generate;
mod handle;
mod load;
mod lookup;
mod runner;
mod text;
mod turn;

pub use config::{
    bounds, Completion, EngineConfig, GpuLayers, Limits, Lookup, OnFull, RawCompletion, Sampling,
    SamplingOverrides,
};
#[cfg(feature = "testing")]
pub use event::Probe;
pub use event::{
    follow_turn, BenchRuns, ContextUsage, EngineError, Event, PhaseStats, Stop, TimelineSecond,
};
pub use handle::Engine;
pub use load::{cpu_path_summary, Loaded};
pub use lookup::{BatchProbe, LookupStatus};
pub use runner::{Prefill, RunError};
