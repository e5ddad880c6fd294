//! Lookup decoding: in a greedy phase, the next tokens are guessed by
//! finding the last few tokens earlier in the context (the answer restates
//! the reasoning, code is quoted back) and copying what followed them. The
//! model checks the whole guess in one batched decode; the longest prefix it
//! agrees with is kept, plus its own next token. The output is the model's
//! greedy output: a guess only changes how many decodes it takes.
//!
//! A decode of b tokens costs more than one of a single token, and the more
//! so on a CPU with few cores: the draft length is chosen from the measured
//! cost of each batch size ([`CostCurve`]) and the recent acceptance
//! ([`Acceptance`]), and is 0 when guessing would not pay.

use serde::{Deserialize, Serialize};

/// The longest draft checked in one decode: the logits rows the context
/// reserves, less the one for the token before the draft.
///
/// Two, for exactness: llama.cpp's CPU kernels for repacked weights (most
/// of a q4_k_m) multiply a batch of up to 3 tokens row by row, exactly as a
/// single token, but 4 or more with another kernel whose sums round
/// differently; a draft of 3 then flips near-ties (seen on the 0.5B's
/// golden prompts, at q4_k_m; bf16 is unaffected). Measured on 2 cores,
/// longer batches also cost nearly as much per token as single decodes.
pub const MAX_DRAFT: usize = crate::memory::LOGIT_ROWS as usize - 1;

/// The file types on which a draft's batched decode was shown to give the
/// single-token logits exactly (the 0.5B's golden prompts, the 1.5B's
/// benchmark set, the synthetic f32 model). On a q8_0 file it does not
/// (llama.cpp multiplies q8_0 batches with another kernel), so lookup stays
/// off there.
const EXACT_TYPES: [&str; 3] = ["q4_k_m", "bf16", "f32"];

/// Whether lookup reproduces plain greedy decoding on a file of this type.
pub fn is_exact_for(file_type: &str) -> bool {
    EXACT_TYPES.contains(&file_type)
}

/// The n-gram sizes matched, longest first: a longer match is a better
/// guess; a single token matches too often to be worth a decode.
const NGRAMS: [usize; 3] = [4, 3, 2];

/// The tokens that followed the most recent earlier occurrence of the
/// longest suffix of `context` (at most `max` of them; empty when there is
/// no match). `context` ends with the token just chosen.
pub fn draft(context: &[u32], max: usize) -> &[u32] {
    if max == 0 {
        return &[];
    }
    for n in NGRAMS {
        if context.len() <= n {
            continue;
        }
        let suffix = &context[context.len() - n..];
        // The most recent occurrence that has a token after it, other than
        // the suffix itself.
        let found = (0..context.len() - n)
            .rev()
            .find(|&i| &context[i..i + n] == suffix);
        if let Some(i) = found {
            let start = i + n;
            let end = (start + max).min(context.len());
            return &context[start..end];
        }
    }
    &[]
}

/// Seconds per decode of 1, 2, … `MAX_DRAFT + 1` tokens, measured on this
/// machine for this model and thread count.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CostCurve {
    pub seconds: Vec<f64>,
}

impl CostCurve {
    /// Every batch size at the cost of one token: drafts at every step.
    pub fn flat() -> Self {
        CostCurve {
            seconds: vec![1.0; MAX_DRAFT + 1],
        }
    }

    /// The cost of decoding `b` tokens (b ≥ 1), relative to one token.
    fn relative(&self, b: usize) -> f64 {
        let one = self.seconds[0].max(f64::MIN_POSITIVE);
        self.seconds[(b - 1).min(self.seconds.len() - 1)] / one
    }

    /// The draft length (0..=`available`) that produces the most tokens per
    /// second when each drafted token is accepted with probability `p`
    /// given that the ones before it were; 0 unless it beats plain decoding
    /// by at least 2 %.
    pub fn best_draft(&self, p: f64, available: usize) -> usize {
        let available = available.min(MAX_DRAFT).min(self.seconds.len() - 1);
        let mut best = (0, 1.02);
        let mut expected = 1.0; // tokens produced by a decode of k + 1
        let mut chain = 1.0;
        for k in 1..=available {
            chain *= p;
            expected += chain;
            let rate = expected / self.relative(k + 1);
            if rate > best.1 {
                best = (k, rate);
            }
        }
        best.0
    }
}

/// The cost curves measured so far, by machine setting (model file, threads,
/// batch), kept in the cache folder: measuring takes a few seconds.
#[derive(Default, Serialize, Deserialize)]
struct CostFile {
    curves: Vec<(String, CostCurve)>,
}

/// How many settings' curves the file keeps (the most recent).
const KEPT_CURVES: usize = 16;

fn cost_file() -> std::path::PathBuf {
    crate::paths::cache_dir().join("lookup-costs.json")
}

/// The identity of a measurement: the model file (name, size, time) and
/// what else changes a decode's cost.
pub fn curve_key(model: &std::path::Path, threads: usize, n_batch: usize) -> String {
    let meta = std::fs::metadata(model).ok();
    let modified = meta
        .as_ref()
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    format!(
        "{} {} {modified} t{threads} b{n_batch}",
        model.file_name().unwrap_or_default().to_string_lossy(),
        meta.map_or(0, |m| m.len()),
    )
}

/// The curve measured earlier for `key`, if any.
pub fn cached_curve(key: &str) -> Option<CostCurve> {
    let text = std::fs::read_to_string(cost_file()).ok()?;
    let file: CostFile = serde_json::from_str(&text).ok()?;
    file.curves
        .into_iter()
        .find(|(k, c)| k == key && !c.seconds.is_empty())
        .map(|(_, c)| c)
}

/// Keeps `curve` for `key` (best effort: a cache that cannot be written
/// only means measuring again next time).
pub fn save_curve(key: &str, curve: &CostCurve) {
    let path = cost_file();
    let mut file: CostFile = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    file.curves.retain(|(k, _)| k != key);
    file.curves.push((key.to_string(), curve.clone()));
    let excess = file.curves.len().saturating_sub(KEPT_CURVES);
    file.curves.drain(..excess);
    let Some(dir) = path.parent() else { return };
    let _ = std::fs::create_dir_all(dir);
    let Ok(json) = serde_json::to_vec_pretty(&file) else {
        return;
    };
    // Written whole under a name of this process's, then renamed: a reader
    // never sees half a file.
    let tmp = dir.join(format!(".lookup-costs.{}.tmp", std::process::id()));
    if std::fs::write(&tmp, &json)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .is_err()
    {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// How often drafted tokens are accepted lately: a geometric model (each
/// drafted token accepted with probability p, given the ones before it),
/// estimated from decayed counts with a prior, so that a phase that stopped
/// drafting tries again now and then.
#[derive(Clone, Debug)]
pub struct Acceptance {
    accepted: f64,
    rejected: f64,
}

/// The prior: as if 3 of 5 drafted tokens had been accepted.
const PRIOR: (f64, f64) = (3.0, 2.0);

/// How much of the past each update keeps.
const DECAY: f64 = 0.9;

impl Default for Acceptance {
    fn default() -> Self {
        Acceptance {
            accepted: 0.0,
            rejected: 0.0,
        }
    }
}

impl Acceptance {
    pub fn p(&self) -> f64 {
        (self.accepted + PRIOR.0) / (self.accepted + self.rejected + PRIOR.0 + PRIOR.1)
    }

    /// A draft of `drafted` tokens of which the first `accepted` were kept.
    pub fn record(&mut self, drafted: usize, accepted: usize) {
        self.accepted = self.accepted * DECAY + accepted as f64;
        self.rejected = self.rejected * DECAY + if accepted < drafted { 1.0 } else { 0.0 };
    }

    /// A decode without a draft: the estimate drifts back to the prior.
    pub fn idle(&mut self) {
        self.accepted *= 0.98;
        self.rejected *= 0.98;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_draft_is_what_followed_the_longest_most_recent_match() {
        // "a b c d e ... a b c" → "d e" follows; the later "b c x" is a
        // shorter match and loses to the 3-gram.
        let ctx = [1, 2, 3, 4, 5, 9, 2, 3, 7, 8, 1, 2, 3];
        assert_eq!(draft(&ctx, 2), &[4, 5]);
        assert_eq!(draft(&ctx, 10), &[4, 5, 9, 2, 3, 7, 8, 1, 2, 3]);
        // Only a 2-gram: the most recent one.
        let ctx = [5, 6, 1, 9, 6, 2, 0, 6];
        assert_eq!(draft(&ctx, 3), &[] as &[u32], "a single token is no match");
        let ctx = [5, 6, 1, 9, 5, 6, 2, 0, 5, 6];
        assert_eq!(draft(&ctx, 3), &[2, 0, 5]);
        assert_eq!(draft(&ctx, 0), &[] as &[u32]);
        assert_eq!(draft(&[1, 2], 4), &[] as &[u32]);
    }

    #[test]
    fn a_flat_cost_curve_drafts_long_and_a_steep_one_not_at_all() {
        let flat = CostCurve {
            seconds: vec![0.04; MAX_DRAFT + 1],
        };
        assert_eq!(flat.best_draft(0.9, 8), MAX_DRAFT);
        assert_eq!(flat.best_draft(0.9, 1), 1, "no longer than the match");
        // Every token costs the same in a batch as alone: never pays.
        let linear = CostCurve {
            seconds: (1..=MAX_DRAFT + 1).map(|b| 0.04 * b as f64).collect(),
        };
        assert_eq!(linear.best_draft(0.95, 8), 0);
        // Between: a good acceptance pays for a few, a poor one for none.
        let cpu = CostCurve {
            seconds: (1..=MAX_DRAFT + 1)
                .map(|b| 0.04 + 0.012 * (b - 1) as f64)
                .collect(),
        };
        assert_eq!(cpu.best_draft(0.8, 15), MAX_DRAFT);
        assert_eq!(cpu.best_draft(0.1, 15), 0);
        // This machine's curve (1.5B q4_k_m, 2 threads): 43, 64, 81 ms.
        let measured = CostCurve {
            seconds: vec![0.043, 0.064, 0.081],
        };
        assert_eq!(measured.best_draft(0.9, 15), 2);
        assert_eq!(measured.best_draft(0.45, 15), 0);
    }

    #[test]
    fn acceptance_follows_the_drafts_and_drifts_back_when_idle() {
        let mut a = Acceptance::default();
        assert!((a.p() - 0.6).abs() < 1e-9);
        for _ in 0..20 {
            a.record(4, 0);
        }
        assert!(a.p() < 0.3, "{}", a.p());
        for _ in 0..200 {
            a.idle();
        }
        assert!(a.p() > 0.55, "{}", a.p());
        for _ in 0..20 {
            a.record(4, 4);
        }
        assert!(a.p() > 0.9, "{}", a.p());
    }
}
