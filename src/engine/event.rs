//! What the engine reports: the events of a turn, why a phase stopped and
//! its figures, how full the context is, the replies to requests, and what
//! can go wrong.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use super::config::Limits;
use super::runner::{Prefill, RunError};
use crate::chat::Phase;
use crate::model::ModelError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("cannot create a llama.cpp context of {n_ctx} tokens: {detail}")]
    Context { n_ctx: usize, detail: String },
    #[error(
        "a context of {n_ctx} tokens cannot hold this turn: the prompt needs {prompt} tokens plus at \
         least {reserve} for the reasoning and the answer; raise --ctx or shorten the question"
    )]
    ContextTooSmall {
        prompt: usize,
        reserve: usize,
        n_ctx: usize,
    },
    #[error(
        "the context is full: the conversation needs {needed} of {n_ctx} tokens \
         (with --on-full stop the chat ends here; start a new one)"
    )]
    ContextFull { needed: usize, n_ctx: usize },
    #[error("the question is empty")]
    EmptyQuestion,
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Memory(#[from] crate::memory::FitError),
    #[error("the engine thread has stopped")]
    Stopped,
    #[error(transparent)]
    Backend(#[from] o1_gguf::llama::BackendError),
    /// The server a remote engine talks to failed or refused.
    #[error("{0}")]
    Remote(String),
}

/// Why a phase ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// The model ended its turn (`<|im_end|>` or `<|endoftext|>`).
    EndOfTurn,
    /// The phase's token limit.
    Limit,
    /// The user stopped generation.
    Cancelled,
    /// The user cut the reasoning short to get the answer.
    AnswerNow,
    /// No room left in the context.
    ContextFull,
}

impl Stop {
    /// Whether the text was cut before the model finished it.
    pub fn is_cut(self) -> bool {
        self != Stop::EndOfTurn
    }
}

/// The words a person reads, e.g. in "[reasoning cut: token limit]".
impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stop::EndOfTurn => "done",
            Stop::Limit => "token limit",
            Stop::Cancelled => "stopped",
            Stop::AnswerNow => "cut short",
            Stop::ContextFull => "context full",
        })
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PhaseStats {
    pub prompt_tokens: usize,
    pub reused_tokens: usize,
    pub prefilled_tokens: usize,
    pub generated_tokens: usize,
    pub prefill_seconds: f64,
    /// From the start of the phase (prefill included) to the first token.
    pub time_to_first_token: f64,
    pub generation_seconds: f64,
    pub tokens_per_second: f64,
    /// Tokens guessed by lookup decoding, and how many the model kept.
    pub drafted_tokens: usize,
    pub accepted_tokens: usize,
}

/// How full the context is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ContextUsage {
    pub used: usize,
    pub n_ctx: usize,
    /// Tokens of the conversation's reasoning messages.
    pub reasoning: usize,
}

#[derive(Clone, Debug)]
pub enum Event {
    /// The context is smaller than the phases' token limits: turns generate
    /// at most `limits` now (the phases are cut, and marked so, when they
    /// reach them). Sent once per engine, at the first turn it applies to.
    LimitsLowered {
        limits: Limits,
        n_ctx: usize,
    },
    /// Old messages were dropped so the turn fits.
    Trimmed {
        dropped_reasoning: usize,
        dropped_turns: usize,
        usage: ContextUsage,
    },
    /// Prompt processing, `done` of `total` new tokens.
    Prefilling {
        phase: Phase,
        done: usize,
        total: usize,
    },
    /// The prompt is in; tokens follow.
    PhaseStarted {
        phase: Phase,
        prefill: Prefill,
    },
    /// More text (always whole characters).
    Text {
        phase: Phase,
        text: String,
    },
    PhaseFinished {
        phase: Phase,
        text: String,
        tokens: Vec<u32>,
        stop: Stop,
        stats: PhaseStats,
    },
    TurnFinished {
        usage: ContextUsage,
    },
    Error(Arc<EngineError>),
}

/// Follows a turn's events to its end: `each` sees every one; returns the
/// context's use once the turn has finished, its error if it failed, and
/// [`EngineError::Stopped`] if the engine went away in the middle of it.
pub fn follow_turn(
    events: std::sync::mpsc::Receiver<Event>,
    mut each: impl FnMut(Event),
) -> Result<ContextUsage, Arc<EngineError>> {
    for event in events {
        match event {
            Event::TurnFinished { usage } => return Ok(usage),
            Event::Error(e) => return Err(e),
            other => each(other),
        }
    }
    Err(Arc::new(EngineError::Stopped))
}

/// `o1 bench` figures: seconds per repetition.
#[derive(Clone, Debug, Default)]
pub struct BenchRuns {
    pub prompt_seconds: Vec<f64>,
    pub generate_seconds: Vec<f64>,
}

/// One second of `o1 bench --timeline`: the tokens generated in it and the
/// threads decoding at its end.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct TimelineSecond {
    pub second: u64,
    pub tokens: usize,
    pub threads: usize,
}

/// A prefill without generation, for tests.
#[cfg(feature = "testing")]
#[derive(Clone, Debug)]
pub struct Probe {
    /// The tokens in the cache before this probe's prefill.
    pub cached_before: Vec<u32>,
    pub prompt: String,
    pub tokens: Vec<u32>,
    pub prefill: Prefill,
    pub logits: Vec<f32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_turn_is_followed_to_its_end_its_error_or_a_dead_engine() {
        let usage = ContextUsage {
            used: 10,
            n_ctx: 64,
            reasoning: 3,
        };
        let run = |events: Vec<Event>| {
            let (tx, rx) = std::sync::mpsc::channel();
            for e in events {
                tx.send(e).unwrap();
            }
            drop(tx);
            let mut seen = 0;
            (follow_turn(rx, |_| seen += 1), seen)
        };
        let text = || Event::Text {
            phase: Phase::Answer,
            text: "a".into(),
        };
        let (done, seen) = run(vec![text(), Event::TurnFinished { usage }, text()]);
        assert_eq!((done.unwrap(), seen), (usage, 1));
        let (failed, _) = run(vec![
            text(),
            Event::Error(Arc::new(EngineError::EmptyQuestion)),
        ]);
        assert!(matches!(*failed.unwrap_err(), EngineError::EmptyQuestion));
        // The engine died mid-turn: the channel closed with no end.
        let (died, seen) = run(vec![text(), text()]);
        assert!(matches!(*died.unwrap_err(), EngineError::Stopped));
        assert_eq!(seen, 2);
    }
}
