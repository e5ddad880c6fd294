//! How a conversion reports its progress: the caller's [`Progress`], told
//! of each stage and of the bytes done, from the converting thread.

/// Receives progress; called from the converting thread only.
pub trait Progress {
    /// A new stage begins (`total` bytes of source data to go through).
    fn stage(&mut self, _name: &str, _total: u64) {}
    /// `bytes` more source bytes are done; `tensor` is being converted.
    fn advance(&mut self, _bytes: u64, _tensor: &str) {}
    /// A stage ended.
    fn finish_stage(&mut self) {}
}

/// Progress that goes nowhere.
pub struct NoProgress;
impl Progress for NoProgress {}
