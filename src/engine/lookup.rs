//! Lookup decoding: in a greedy phase, the next tokens are guessed by
//! finding the last few tokens earlier in the context (the answer restates
//! the reasoning, code is quoted back) and copying what followed them. The
//! model checks the whole guess in one batched decode; the longest prefix it
//! agrees with is kept, plus its own next token. The output is the model's
//! greedy output: a guess only changes how many decodes it takes.
//!
//! That holds only where a batched decode gives each token the logits a
//! decode of that token alone would, bit for bit, and o1 does not assume
//! it: the first greedy phase measures it ([`BatchProbe`]), with what decodes of
//! 1, 2, … tokens cost. A draft is as long as what pays, given those costs
//! (updated as the phase runs) and the recent acceptance ([`Acceptance`]),
//! and 0 when guessing would not pay.

use serde::{Deserialize, Serialize};

use super::runner::{RunError, Runner};
use crate::model::KvType;

/// The longest draft checked in one decode: the logits rows the context
/// reserves, less the one for the token before the draft.
///
/// Two, for exactness on a CPU: llama.cpp's kernels for repacked weights
/// (most of a q4_k_m) multiply a batch of up to 3 tokens row by row, exactly
/// as a single token, but 4 or more with another kernel whose sums round
/// differently; a draft of 3 then flips near-ties (seen on the 0.5B's
/// golden prompts, at q4_k_m; bf16 is unaffected).
pub const MAX_DRAFT: usize = crate::memory::LOGIT_ROWS as usize - 1;

/// What the probe of a machine setting found (`Runner::probe_batches`):
/// seconds per decode of 1, 2, … tokens, and for each batch size the
/// largest difference between a logit of the batched decode and the same
/// logit from single decodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchProbe {
    pub seconds: Vec<f64>,
    pub logit_error: Vec<f32>,
}

/// Whether a KV cache of this type lets a batch decode each token exactly
/// as alone. Not an f16 one, whatever a probe finds: llama.cpp's attention
/// for a single token splits a cache of 512 or more cells between the
/// threads and sums the parts, a batch's attention does not (the logits
/// then differ by up to 0.57 on the 1.5B at 434 tokens), and a probe early
/// in a chat sees a cache too short for that.
pub fn cache_allows_drafts(kv_type: KvType) -> bool {
    kv_type != KvType::F16
}

/// The longest draft that keeps the output exact: batches whose logits are
/// those of single decodes, bit for bit, with a cache that allows it.
pub fn usable_draft(probe: &BatchProbe, kv_type: KvType) -> usize {
    if !cache_allows_drafts(kv_type) {
        return 0;
    }
    let exact_batch = probe.logit_error.iter().take_while(|&&e| e == 0.0).count();
    exact_batch.saturating_sub(1).min(MAX_DRAFT)
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

/// What lookup knows on this engine: the probe (none when the KV cache
/// rules drafts out), the longest draft that keeps the output exact (0:
/// lookup is off), and the decode costs now.
#[derive(Clone, Debug, Serialize)]
pub struct LookupStatus {
    pub probe: Option<BatchProbe>,
    pub max_draft: usize,
    pub seconds: Vec<f64>,
}

/// Seconds per decode of 1, 2, … `MAX_DRAFT + 1` tokens on this machine,
/// for this model and settings: measured by the probe, then kept up to date
/// with every decode of a lookup phase.
#[derive(Clone, Debug, PartialEq)]
pub struct CostCurve {
    pub seconds: Vec<f64>,
}

impl CostCurve {
    /// The cost of decoding `b` tokens (b ≥ 1), relative to one token.
    fn relative(&self, b: usize) -> f64 {
        let one = self.seconds[0].max(f64::MIN_POSITIVE);
        self.seconds[(b - 1).min(self.seconds.len() - 1)] / one
    }

    /// A decode of `b` tokens took `seconds`: the estimate moves a tenth of
    /// the way, and one stalled decode (the machine busy elsewhere) moves
    /// it at most by a fifth.
    pub fn observe(&mut self, b: usize, seconds: f64) {
        if let Some(s) = self.seconds.get_mut(b - 1) {
            let sample = seconds.clamp(*s * 0.5, *s * 3.0);
            *s += (sample - *s) * 0.1;
        }
    }

    /// The draft length (0..=`available`) that produces the most tokens per
    /// second when the first drafted token is accepted with probability
    /// `p.0` and each later one, given that the ones before it were, with
    /// `p.1`; 0 unless it beats plain decoding by at least 2 %.
    pub fn best_draft(&self, p: (f64, f64), available: usize) -> usize {
        let available = available
            .min(MAX_DRAFT)
            .min(self.seconds.len().saturating_sub(1));
        let mut best = (0, 1.02);
        let mut expected = 1.0; // tokens produced by a decode of k + 1
        let mut chain = 1.0;
        for k in 1..=available {
            chain *= if k == 1 { p.0 } else { p.1 };
            expected += chain;
            let rate = expected / self.relative(k + 1);
            if rate > best.1 {
                best = (k, rate);
            }
        }
        best.0
    }
}

/// The probes so far, by machine setting (model file, threads, batch, KV
/// type, offload), kept in the cache folder: a probe takes a few seconds.
#[derive(Default, Serialize, Deserialize)]
struct CostFile {
    probes: Vec<(String, BatchProbe)>,
}

/// How many settings' probes the file keeps (the most recent).
const KEPT_PROBES: usize = 16;

fn cost_file() -> std::path::PathBuf {
    crate::paths::cache_dir().join("lookup-probes.json")
}

/// The identity of a probe: the model file (name, size, time), the o1
/// build (another llama.cpp may round otherwise), and what else changes a
/// decode's cost or rounding.
pub fn probe_key(model: &std::path::Path, setting: &str) -> String {
    let modified = |path: &std::path::Path| {
        std::fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs())
    };
    let build = std::env::current_exe().map_or(0, |exe| modified(&exe));
    format!(
        "{} {} {} o1 {} {build} {setting}",
        model.file_name().unwrap_or_default().to_string_lossy(),
        std::fs::metadata(model).map_or(0, |m| m.len()),
        modified(model),
        env!("CARGO_PKG_VERSION"),
    )
}

/// The probe made earlier for `key`, if any.
pub fn cached_probe(key: &str) -> Option<BatchProbe> {
    let text = std::fs::read_to_string(cost_file()).ok()?;
    let file: CostFile = serde_json::from_str(&text).ok()?;
    file.probes
        .into_iter()
        .find(|(k, p)| k == key && !p.seconds.is_empty())
        .map(|(_, p)| p)
}

/// Keeps `probe` for `key` (best effort: a cache that cannot be written
/// only means probing again next time).
pub fn save_probe(key: &str, probe: &BatchProbe) {
    let path = cost_file();
    let mut file: CostFile = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    file.probes.retain(|(k, _)| k != key);
    file.probes.push((key.to_string(), probe.clone()));
    let excess = file.probes.len().saturating_sub(KEPT_PROBES);
    file.probes.drain(..excess);
    let Some(dir) = path.parent() else { return };
    let _ = std::fs::create_dir_all(dir);
    let Ok(json) = serde_json::to_vec_pretty(&file) else {
        return;
    };
    // Whole or not at all, never through a planted link (a cache: failing
    // to keep it only costs a measurement next time).
    let _ = o1_gguf::files::replace_privately(&path, &json);
}

/// How often the token that followed a match is the model's next one,
/// lately: learnt at every step where the context has a match, whether it
/// was drafted (and checked) or only compared with what the model chose,
/// so that lookup starts drafting when copying starts, even where a draft
/// costs too much to try blindly. Two estimates: after a right guess
/// (inside a stretch of copied text, where the next guess is usually right
/// too) and after a wrong one or none.
#[derive(Clone, Debug, Default)]
pub struct Acceptance {
    /// (right, wrong) guesses, decayed: after a wrong guess, after a right one.
    counts: [(f64, f64); 2],
    after_right: bool,
}

/// The priors, as (right, wrong) guesses: after a wrong guess 3 of 5 are
/// right, after a right one 3 of 4.
const PRIORS: [(f64, f64); 2] = [(1.5, 1.0), (3.0, 1.0)];

/// How much of the past each guess keeps.
const DECAY: f64 = 0.95;

impl Acceptance {
    fn estimate(&self, after_right: bool) -> f64 {
        let (right, wrong) = self.counts[usize::from(after_right)];
        let prior = PRIORS[usize::from(after_right)];
        (right + prior.0) / (right + wrong + prior.0 + prior.1)
    }

    /// The chance that the next guess is right, and that each one after it
    /// is, given that the ones before it were.
    pub fn p(&self) -> (f64, f64) {
        (self.estimate(self.after_right), self.estimate(true))
    }

    /// A guess the model confirmed (`right`) or not.
    pub fn guess(&mut self, right: bool) {
        let (r, w) = &mut self.counts[usize::from(self.after_right)];
        *r = *r * DECAY + f64::from(u8::from(right));
        *w = *w * DECAY + f64::from(u8::from(!right));
        self.after_right = right;
    }

    /// A draft of `drafted` tokens of which the first `accepted` were kept:
    /// the right guesses, then the wrong one (if any).
    pub fn record(&mut self, drafted: usize, accepted: usize) {
        for i in 0..drafted.min(accepted + 1) {
            self.guess(i < accepted);
        }
    }

    /// A step with nothing to match: the next match starts afresh.
    pub fn no_match(&mut self) {
        self.after_right = false;
    }
}

/// What lookup decoding works with on this model and setting, once probed
/// (or read back from the probes kept).
pub(super) struct LookupState {
    pub probe: Option<BatchProbe>,
    /// The longest exact draft: 0 when lookup stays off.
    pub max_draft: usize,
    pub costs: CostCurve,
}

impl LookupState {
    /// Lookup off: nothing drafted.
    fn off() -> Self {
        LookupState {
            probe: None,
            max_draft: 0,
            costs: CostCurve {
                seconds: Vec::new(),
            },
        }
    }

    /// Probes (or reads back) whether batched decodes are exact with this
    /// KV cache and what they cost; before a prefill, as it overwrites the
    /// logits. No room for the probe's tokens turns lookup off: it is a
    /// speed-up, the turn goes on without it.
    pub(super) fn know(
        runner: &mut Runner<'_>,
        probe_key: &str,
        kv_type: KvType,
    ) -> Result<Self, RunError> {
        if !cache_allows_drafts(kv_type) {
            tracing::info!(
                kv_type = kv_type.name(),
                "lookup decoding stays off with this KV cache"
            );
            return Ok(Self::off());
        }
        let probe = match cached_probe(probe_key) {
            Some(probe) => probe,
            None => match runner.probe_batches(MAX_DRAFT + 1) {
                Ok(probe) => {
                    save_probe(probe_key, &probe);
                    probe
                }
                Err(RunError::ContextFull(_)) => {
                    tracing::info!("lookup decoding stays off: no room to probe");
                    return Ok(Self::off());
                }
                Err(e) => return Err(e),
            },
        };
        let max_draft = usable_draft(&probe, kv_type);
        tracing::info!(key = %probe_key, ?probe, max_draft, "lookup decoding probed");
        Ok(LookupState {
            costs: CostCurve {
                seconds: probe.seconds.clone(),
            },
            probe: Some(probe),
            max_draft,
        })
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
    fn observed_costs_move_the_curve_a_little_at_a_time() {
        let mut c = CostCurve {
            seconds: vec![0.04, 0.06, 0.08],
        };
        for _ in 0..100 {
            c.observe(2, 0.08);
        }
        assert!((c.seconds[1] - 0.08).abs() < 1e-4, "{:?}", c.seconds);
        // One stalled decode moves it by at most a fifth of the estimate.
        c.observe(1, 10.0);
        assert!(c.seconds[0] <= 0.04 * 1.2 + 1e-12, "{:?}", c.seconds);
        c.observe(9, 1.0); // beyond the curve: ignored
        assert_eq!(c.seconds.len(), 3);
    }

    #[test]
    fn only_bit_exact_batches_and_a_quantized_cache_allow_a_draft() {
        let probe = |errors: &[f32]| BatchProbe {
            seconds: vec![0.04; errors.len()],
            logit_error: errors.to_vec(),
        };
        assert_eq!(usable_draft(&probe(&[0.0, 0.0, 0.0]), KvType::Q8_0), 2);
        assert_eq!(usable_draft(&probe(&[0.0, 0.0, 1e-6]), KvType::Q8_0), 1);
        assert_eq!(usable_draft(&probe(&[0.0, 0.3, 0.0]), KvType::Q8_0), 0);
        assert_eq!(usable_draft(&probe(&[0.0]), KvType::Q8_0), 0);
        // An f16 cache: single-token attention splits long caches.
        assert_eq!(usable_draft(&probe(&[0.0, 0.0, 0.0]), KvType::F16), 0);
    }

    #[test]
    fn a_flat_cost_curve_drafts_long_and_a_steep_one_not_at_all() {
        let flat = CostCurve {
            seconds: vec![0.04; MAX_DRAFT + 1],
        };
        assert_eq!(flat.best_draft((0.9, 0.9), 8), MAX_DRAFT);
        assert_eq!(
            flat.best_draft((0.9, 0.9), 1),
            1,
            "no longer than the match"
        );
        // Every token costs the same in a batch as alone: never pays.
        let linear = CostCurve {
            seconds: (1..=MAX_DRAFT + 1).map(|b| 0.04 * b as f64).collect(),
        };
        assert_eq!(linear.best_draft((0.95, 0.95), 8), 0);
        // Between: a good acceptance pays for a few, a poor one for none.
        let cpu = CostCurve {
            seconds: (1..=MAX_DRAFT + 1)
                .map(|b| 0.04 + 0.012 * (b - 1) as f64)
                .collect(),
        };
        assert_eq!(cpu.best_draft((0.8, 0.8), 15), MAX_DRAFT);
        assert_eq!(cpu.best_draft((0.1, 0.9), 15), 0);
        // A 2-core machine's probe (1.5B q4_k_m, 2 threads): 41, 71, 94 ms.
        // Only a stretch of right guesses pays for a draft.
        let measured = CostCurve {
            seconds: vec![0.041, 0.071, 0.094],
        };
        assert_eq!(measured.best_draft((0.85, 0.95), 15), 2);
        assert_eq!(measured.best_draft((0.7, 0.9), 15), 0);
        assert_eq!(measured.best_draft((0.95, 0.95), 1), 1);
    }

    #[test]
    fn acceptance_learns_from_guesses_and_trusts_a_stretch_of_right_ones() {
        let mut a = Acceptance::default();
        assert!((a.p().0 - 0.6).abs() < 1e-9);
        assert!((a.p().1 - 0.75).abs() < 1e-9);
        // Wrong guesses: drafting stops paying.
        for _ in 0..30 {
            a.guess(false);
        }
        assert!(a.p().0 < 0.1, "{:?}", a.p());
        // A stretch of copied text, seen without drafting: the next guess
        // after a right one is trusted, a fresh one less so.
        for _ in 0..30 {
            a.guess(true);
        }
        assert!(a.p().0 > 0.9 && a.p().1 > 0.9, "{:?}", a.p());
        a.no_match();
        assert!(a.p().0 < 0.2, "after a gap: {:?}", a.p());
        // A draft of 2 with the first kept: one right guess, one wrong.
        let before = a.p().1;
        a.record(2, 1);
        assert!(a.p().1 < before);
        assert!(!a.after_right);
        a.record(2, 2);
        assert!(a.after_right);
    }
}
