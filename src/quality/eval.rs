//! How far a quantized file drifts from its lossless reference, measured
//! as the community measures it (`llama-perplexity --kl-divergence`): the
//! text is cut into chunks of `n_ctx` tokens, the second half of each chunk
//! is scored, and at every scored position the two models' next-token
//! distributions are compared. Plus greedy agreement in the two-phase
//! format: how many tokens each phase follows the reference before the
//! first different choice.
//!
//! The reference's side is computed once and cached: per position, every
//! token more likely than e^[`KEPT_FLOOR`] with its log-probability (the
//! tokens `llama-perplexity` sums its KL divergence over; what is left, at
//! most a few millionths of the mass, is kept as one lump), the
//! log-probability of the true next token, and its greedy generations.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use o1_gguf::files::replace_privately;
use o1_gguf::scoring::{argmax, ScoringModel, ScoringOptions, Token, Tokenizer, Vocabulary};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::dataset::{self, Conversation};
use crate::chat::{self, Message, Phase, Role, Segment};

/// Reference tokens less likely than e^KEPT_FLOOR are not kept: the floor
/// below which `llama-perplexity --kl-divergence` skips a token.
const KEPT_FLOOR: f32 = -16.0;
/// At most this many tokens kept per position, which bounds the cache on a
/// flat distribution.
const MAX_KEPT: usize = 4096;
/// Tokens per chunk, as `llama-perplexity`'s default context.
pub const DEFAULT_CTX: usize = 512;
/// Greedy tokens generated per phase for the agreement check.
const GREEDY_REASONING: usize = 48;
const GREEDY_ANSWER: usize = 32;
/// Bumped when the cached reference's meaning changes.
const CACHE_VERSION: u32 = 3;

/// What is scored.
pub enum Text {
    /// o1's held-out conversations in the two-phase format, plus its
    /// greedy-agreement prompts.
    Builtin,
    /// A plain text file, tokenized as `llama-perplexity -f` does (markers
    /// in it stay text); no agreement check.
    File(PathBuf),
}

pub struct EvalOptions {
    pub model: PathBuf,
    pub reference: PathBuf,
    pub text: Text,
    pub n_ctx: usize,
    /// Score at most this many chunks (all by default).
    pub max_chunks: Option<usize>,
    pub threads: usize,
    /// Where references are cached (none: compute every time).
    pub cache_dir: Option<PathBuf>,
}

/// One scored position of the reference.
#[derive(Clone, Debug, PartialEq)]
struct RefPosition {
    /// The reference's log-probability of the true next token.
    lp_next: f32,
    /// Its tokens above [`KEPT_FLOOR`], best first, with their
    /// log-probabilities.
    kept: Vec<(Token, f32)>,
}

#[derive(Clone, Serialize, Deserialize)]
struct RefGreedy {
    id: String,
    /// The reasoning-phase prompt.
    prompt: Vec<Token>,
    reasoning: Vec<Token>,
    answer_prompt: Vec<Token>,
    answer: Vec<Token>,
}

#[derive(Serialize, Deserialize)]
struct Reference {
    version: u32,
    n_ctx: usize,
    n_vocab: usize,
    tokens: Vec<Token>,
    /// Cached apart, in binary (tens of megabytes as JSON).
    #[serde(skip)]
    positions: Vec<RefPosition>,
    greedy: Vec<RefGreedy>,
}

/// A mean and its standard error.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Estimate {
    pub mean: f64,
    pub error: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Agreement {
    pub prompts: usize,
    /// Tokens until the first divergence, averaged over the prompts, and
    /// the most there could be (the reference's own length).
    pub reasoning_tokens: f64,
    pub reasoning_max: f64,
    pub answer_tokens: f64,
    pub answer_max: f64,
    /// Prompts whose phase matched the reference to its end.
    pub reasoning_identical: usize,
    pub answer_identical: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    pub model: PathBuf,
    pub reference: PathBuf,
    pub text: String,
    pub n_ctx: usize,
    pub chunks: usize,
    pub scored_tokens: usize,
    pub mean_kld: Estimate,
    pub kld_p99: f64,
    pub kld_median: f64,
    pub kld_max: f64,
    /// The share of positions whose most likely token is the reference's.
    pub same_top: Estimate,
    /// ln(PPL(model) / PPL(reference)) on the true next tokens.
    pub ln_ppl_ratio: Estimate,
    pub agreement: Option<Agreement>,
    pub reference_cached: bool,
    pub seconds: f64,
}

fn open(model: &Path, n_ctx: usize, threads: usize) -> Result<ScoringModel> {
    ScoringModel::open(
        model,
        ScoringOptions {
            n_ctx: n_ctx as u32,
            max_outputs: n_ctx as u32,
            threads: threads as i32,
            repack: true,
            eval_callback: None,
        },
    )
    .map_err(anyhow::Error::msg)
}

/// The tokens scored: the texts joined, cut into whole chunks.
fn text_tokens(model: &impl Tokenizer, opts: &EvalOptions) -> Result<(String, Vec<Token>)> {
    let (name, mut tokens) = match &opts.text {
        Text::Builtin => {
            let set = dataset::evaluation();
            let tokens = set
                .iter()
                .flat_map(|c| super::tokenize(model, &c.segments()))
                .collect();
            (dataset::EVALUATION_NAME.to_string(), tokens)
        }
        Text::File(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the text {}", path.display()))?;
            (path.display().to_string(), model.tokenize(&text, false))
        }
    };
    let mut chunks = tokens.len() / opts.n_ctx;
    if let Some(max) = opts.max_chunks {
        chunks = chunks.min(max);
    }
    if chunks == 0 {
        bail!(
            "the text has {} tokens, fewer than one chunk of {} (use a longer text or a smaller --ctx)",
            tokens.len(),
            opts.n_ctx
        );
    }
    tokens.truncate(chunks * opts.n_ctx);
    Ok((name, tokens))
}

/// The positions of a chunk whose next token is scored: its second half,
/// but for the last (whose next token is not in the chunk).
fn scored_positions(n_ctx: usize) -> std::ops::Range<usize> {
    n_ctx / 2..n_ctx - 1
}

/// Runs every chunk; `each(logits, next_token)` at every scored position.
fn score_chunks(
    model: &mut ScoringModel,
    tokens: &[Token],
    n_ctx: usize,
    mut each: impl FnMut(&[f32], Token),
) -> Result<()> {
    let scored = scored_positions(n_ctx);
    for chunk in tokens.chunks_exact(n_ctx) {
        let mut chunk = chunk.to_vec();
        if let Some(bos) = model.bos() {
            chunk[0] = bos;
        }
        model.clear();
        model
            .decode(&chunk, 0, scored.start)
            .map_err(anyhow::Error::msg)?;
        for j in scored.clone() {
            each(model.logits(j), chunk[j + 1]);
        }
    }
    Ok(())
}

/// Log-probabilities of `logits`, with the log of the normaliser.
fn log_softmax(logits: &[f32]) -> (f32, f64) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
    (max, sum.ln())
}

/// The tokens whose log-probability is above `floor`, at most `max` of
/// them, best first.
fn likely(logits: &[f32], floor: f32, max: usize) -> Vec<(Token, f32)> {
    let (top, ln_sum) = log_softmax(logits);
    let lp = |i: usize| ((logits[i] - top) as f64 - ln_sum) as f32;
    let mut idx: Vec<usize> = (0..logits.len()).filter(|&i| lp(i) > floor).collect();
    let by_logit = |a: &usize, b: &usize| logits[*b].total_cmp(&logits[*a]).then(a.cmp(b));
    if idx.len() > max {
        idx.select_nth_unstable_by(max - 1, by_logit);
        idx.truncate(max);
    }
    idx.sort_by(by_logit);
    idx.into_iter().map(|i| (i as Token, lp(i))).collect()
}

/// Greedy generation of up to `max` tokens after `prompt`; ends with the
/// end-of-turn token when the model chose it.
fn generate(model: &mut ScoringModel, prompt: &[Token], max: usize) -> Result<Vec<Token>> {
    model.clear();
    model
        .decode(prompt, 0, prompt.len() - 1)
        .map_err(anyhow::Error::msg)?;
    let mut out = Vec::new();
    // The batch index of the last logits: the prompt's last, then the single token's.
    let mut at = prompt.len() - 1;
    while out.len() < max && prompt.len() + out.len() < model.n_ctx() {
        let next = argmax(model.logits(at)) as Token;
        out.push(next);
        if model.is_end_of_turn(next) {
            break;
        }
        model
            .decode(&[next], prompt.len() + out.len() - 1, 0)
            .map_err(anyhow::Error::msg)?;
        at = 0;
    }
    Ok(out)
}

/// Tokens of a phase opener after a finished message: `<|im_end|>\n<|im_start|>{role}\n`.
fn joint(model: &ScoringModel, phase: Phase) -> Vec<Token> {
    let closing = vec![Segment::Special(chat::IM_END), Segment::Text("\n".into())];
    // The opener alone: render() of no messages is just the phase's opener.
    let opener = chat::render(&[], phase);
    let mut out = super::tokenize(model, &closing);
    out.extend(super::tokenize(model, &opener));
    out
}

fn greedy_reference(model: &mut ScoringModel, set: &[Conversation]) -> Result<Vec<RefGreedy>> {
    let mut out = Vec::new();
    for c in set.iter().filter(|c| c.greedy) {
        let Some(turn) = c.turns.first() else {
            continue;
        };
        let messages = [
            Message::new(Role::System, chat::DEFAULT_SYSTEM),
            Message::new(Role::User, &turn.user),
        ];
        let prompt = super::tokenize(model, &chat::render(&messages, Phase::Reasoning));
        let reasoning = generate(model, &prompt, GREEDY_REASONING)?;
        // The answer's prompt: the reasoning (without its end-of-turn
        // token; a cut one whole), then the answer's opener.
        let mut answer_prompt = prompt.clone();
        let ended = reasoning.last().is_some_and(|&t| model.is_end_of_turn(t));
        answer_prompt.extend_from_slice(&reasoning[..reasoning.len() - ended as usize]);
        answer_prompt.extend(joint(model, Phase::Answer));
        let answer = generate(model, &answer_prompt, GREEDY_ANSWER)?;
        out.push(RefGreedy {
            id: c.id.clone(),
            prompt,
            reasoning,
            answer_prompt,
            answer,
        });
    }
    Ok(out)
}

/// Tokens of `expected` the model's greedy choice follows from the start,
/// teacher-forced after `prompt`.
fn agreed(model: &mut ScoringModel, prompt: &[Token], expected: &[Token]) -> Result<usize> {
    if expected.is_empty() {
        return Ok(0);
    }
    let mut seq = prompt.to_vec();
    seq.extend_from_slice(&expected[..expected.len() - 1]);
    model.clear();
    model
        .decode(&seq, 0, prompt.len() - 1)
        .map_err(anyhow::Error::msg)?;
    Ok(expected
        .iter()
        .enumerate()
        .take_while(|(i, &t)| argmax(model.logits(prompt.len() - 1 + i)) as Token == t)
        .count())
}

fn cache_key(opts: &EvalOptions, text_name: &str, tokens: &[Token]) -> Result<String> {
    let meta = std::fs::metadata(&opts.reference)
        .with_context(|| format!("reading {}", opts.reference.display()))?;
    let mut h = Sha256::new();
    h.update(CACHE_VERSION.to_le_bytes());
    let path = opts
        .reference
        .canonicalize()
        .unwrap_or(opts.reference.clone());
    h.update(path.to_string_lossy().as_bytes());
    let (len, modified) = o1_gguf::files::stamp(&meta);
    h.update(len.to_le_bytes());
    h.update(modified.to_le_bytes());
    h.update(text_name.as_bytes());
    h.update((opts.n_ctx as u64).to_le_bytes());
    for t in tokens {
        h.update(t.to_le_bytes());
    }
    Ok(format!("{:x}", h.finalize()))
}

fn compute_reference(opts: &EvalOptions, tokens: &[Token]) -> Result<Reference> {
    let mut model =
        open(&opts.reference, opts.n_ctx, opts.threads).context("loading the reference")?;
    let mut positions = Vec::new();
    score_chunks(&mut model, tokens, opts.n_ctx, |logits, next| {
        let (max, ln_sum) = log_softmax(logits);
        positions.push(RefPosition {
            lp_next: ((logits[next as usize] - max) as f64 - ln_sum) as f32,
            kept: likely(logits, KEPT_FLOOR, MAX_KEPT),
        });
    })?;
    let greedy = match opts.text {
        Text::Builtin => greedy_reference(&mut model, &dataset::evaluation())?,
        Text::File(_) => Vec::new(),
    };
    Ok(Reference {
        version: CACHE_VERSION,
        n_ctx: opts.n_ctx,
        n_vocab: model.n_vocab(),
        tokens: tokens.to_vec(),
        positions,
        greedy,
    })
}

/// Positions as little-endian binary: per position its `lp_next`, the
/// count kept, then each kept token and log-probability.
fn write_positions(out: &mut Vec<u8>, positions: &[RefPosition]) {
    for p in positions {
        out.extend_from_slice(&p.lp_next.to_le_bytes());
        out.extend_from_slice(&(p.kept.len() as u32).to_le_bytes());
        for &(t, lp) in &p.kept {
            out.extend_from_slice(&t.to_le_bytes());
            out.extend_from_slice(&lp.to_le_bytes());
        }
    }
}

/// `count` positions from `bytes`, which they must fill exactly.
fn read_positions(mut bytes: &[u8], count: usize) -> Option<Vec<RefPosition>> {
    let mut word = || -> Option<[u8; 4]> {
        let (w, rest) = bytes.split_first_chunk::<4>()?;
        bytes = rest;
        Some(*w)
    };
    let mut positions = Vec::with_capacity(count);
    for _ in 0..count {
        let lp_next = f32::from_le_bytes(word()?);
        let n = u32::from_le_bytes(word()?) as usize;
        let mut kept = Vec::with_capacity(n.min(MAX_KEPT));
        for _ in 0..n {
            kept.push((Token::from_le_bytes(word()?), f32::from_le_bytes(word()?)));
        }
        positions.push(RefPosition { lp_next, kept });
    }
    word().is_none().then_some(positions)
}

/// The cache file: the JSON header's length, the header, the positions.
fn encode(r: &Reference) -> Result<Vec<u8>> {
    let header = serde_json::to_vec(r)?;
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&header);
    write_positions(&mut out, &r.positions);
    Ok(out)
}

fn decode(bytes: &[u8], tokens: &[Token], n_ctx: usize) -> Option<Reference> {
    let (len, rest) = bytes.split_first_chunk::<8>()?;
    let len = usize::try_from(u64::from_le_bytes(*len)).ok()?;
    let (header, rest) = rest.split_at_checked(len)?;
    let mut r: Reference = serde_json::from_slice(header).ok()?;
    if r.version != CACHE_VERSION || r.tokens != tokens || r.n_ctx != n_ctx {
        return None;
    }
    let scored = (tokens.len() / n_ctx) * scored_positions(n_ctx).len();
    r.positions = read_positions(rest, scored)?;
    Some(r)
}

/// The reference for `tokens`, from the cache when it is there.
fn reference(opts: &EvalOptions, text_name: &str, tokens: &[Token]) -> Result<(Reference, bool)> {
    let key = cache_key(opts, text_name, tokens)?;
    let file = opts
        .cache_dir
        .as_ref()
        .map(|d| d.join(format!("{key}.ref")));
    if let Some(r) = file
        .as_ref()
        .and_then(|f| std::fs::read(f).ok())
        .and_then(|b| decode(&b, tokens, opts.n_ctx))
    {
        return Ok((r, true));
    }
    let r = compute_reference(opts, tokens)?;
    if let Some(f) = &file {
        // A cache: failing to keep it only costs time next run.
        let _ = std::fs::create_dir_all(f.parent().unwrap_or(Path::new(".")));
        let _ = replace_privately(f, &encode(&r)?);
    }
    Ok((r, false))
}

fn estimate(sum: f64, sum2: f64, n: usize) -> Estimate {
    if n == 0 {
        return Estimate {
            mean: 0.0,
            error: 0.0,
        };
    }
    let mean = sum / n as f64;
    let var = sum2 / n as f64 - mean * mean;
    let error = if var > 0.0 && n > 10 {
        (var / (n - 1) as f64).sqrt()
    } else {
        0.0
    };
    Estimate { mean, error }
}

/// `llama-perplexity`'s percentile: linear between the sorted values.
fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    let p = fraction * (sorted.len() - 1) as f64;
    let i = p as usize;
    let f = p - i as f64;
    (1.0 - f) * sorted[i] + f * sorted[(i + 1).min(sorted.len() - 1)]
}

/// Measures `opts.model` against `opts.reference`.
pub fn evaluate(opts: &EvalOptions) -> Result<EvalReport> {
    let started = Instant::now();
    // One model in memory at a time: the reference's side first.
    let vocab = Vocabulary::open(&opts.model).map_err(anyhow::Error::msg)?;
    let (text_name, tokens) = text_tokens(&vocab, opts)?;
    drop(vocab);
    let (reference, cached) = reference(opts, &text_name, &tokens)?;
    let mut model = open(&opts.model, opts.n_ctx, opts.threads)?;
    if model.n_vocab() != reference.n_vocab {
        bail!(
            "{} has {} tokens and {} has {}: not the same vocabulary",
            opts.model.display(),
            model.n_vocab(),
            opts.reference.display(),
            reference.n_vocab
        );
    }

    let mut klds = Vec::with_capacity(reference.positions.len());
    let (mut same, mut nll, mut nll2, mut nll_ref, mut nll_ref2, mut cross) =
        (0usize, 0.0, 0.0, 0.0, 0.0, 0.0);
    let mut at = 0;
    score_chunks(&mut model, &tokens, opts.n_ctx, |logits, next| {
        let r = &reference.positions[at];
        at += 1;
        let (max, ln_sum) = log_softmax(logits);
        let lq = |t: Token| (logits[t as usize] - max) as f64 - ln_sum;
        // KL(ref ‖ model) over the reference's kept tokens, plus the rest
        // of the mass as one outcome on each side.
        let (mut kld, mut p_top, mut q_top) = (0.0, 0.0, 0.0);
        for &(t, lp) in &r.kept {
            let (p, lq) = (f64::from(lp).exp(), lq(t));
            kld += p * (f64::from(lp) - lq);
            p_top += p;
            q_top += lq.exp();
        }
        let (p_rest, q_rest) = ((1.0 - p_top).max(0.0), (1.0 - q_top).max(1e-30));
        if p_rest > 1e-12 {
            kld += p_rest * (p_rest.ln() - q_rest.ln());
        }
        klds.push(kld.max(0.0));
        same += r
            .kept
            .first()
            .is_some_and(|k| k.0 == argmax(logits) as Token) as usize;
        let (a, b) = (-lq(next), -f64::from(r.lp_next));
        nll += a;
        nll2 += a * a;
        nll_ref += b;
        nll_ref2 += b * b;
        cross += a * b;
    })?;
    let n = klds.len();
    let mean_kld = estimate(klds.iter().sum(), klds.iter().map(|k| k * k).sum(), n);
    klds.sort_by(f64::total_cmp);
    let p_same = same as f64 / n as f64;
    let (lp, lb) = (estimate(nll, nll2, n), estimate(nll_ref, nll_ref2, n));
    let cov = if n >= 10 {
        (cross / n as f64 - lp.mean * lb.mean) / (n - 1) as f64
    } else {
        0.0
    };
    let ln_ppl_ratio = Estimate {
        mean: lp.mean - lb.mean,
        error: (lp.error * lp.error + lb.error * lb.error - 2.0 * cov)
            .max(0.0)
            .sqrt(),
    };

    let agreement = if reference.greedy.is_empty() {
        None
    } else {
        let mut a = Agreement {
            prompts: reference.greedy.len(),
            reasoning_tokens: 0.0,
            reasoning_max: 0.0,
            answer_tokens: 0.0,
            answer_max: 0.0,
            reasoning_identical: 0,
            answer_identical: 0,
        };
        for g in &reference.greedy {
            let r = agreed(&mut model, &g.prompt, &g.reasoning)?;
            let s = agreed(&mut model, &g.answer_prompt, &g.answer)?;
            a.reasoning_tokens += r as f64;
            a.reasoning_max += g.reasoning.len() as f64;
            a.answer_tokens += s as f64;
            a.answer_max += g.answer.len() as f64;
            a.reasoning_identical += (r == g.reasoning.len()) as usize;
            a.answer_identical += (s == g.answer.len()) as usize;
        }
        let k = a.prompts as f64;
        a.reasoning_tokens /= k;
        a.reasoning_max /= k;
        a.answer_tokens /= k;
        a.answer_max /= k;
        Some(a)
    };

    Ok(EvalReport {
        model: opts.model.clone(),
        reference: opts.reference.clone(),
        text: text_name,
        n_ctx: opts.n_ctx,
        chunks: tokens.len() / opts.n_ctx,
        scored_tokens: n,
        mean_kld,
        kld_p99: percentile(&klds, 0.99),
        kld_median: percentile(&klds, 0.5),
        kld_max: klds.last().copied().unwrap_or(0.0),
        same_top: Estimate {
            mean: p_same,
            error: (p_same * (1.0 - p_same) / (n.max(2) - 1) as f64).sqrt(),
        },
        ln_ppl_ratio,
        agreement,
        reference_cached: cached,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn likely_keeps_the_best_above_the_floor_in_order() {
        let logits = [0.0, 3.0, 1.0, 3.0, -20.0];
        let total: f64 = logits.iter().map(|&l| f64::from(l).exp()).sum();
        let kept = likely(&logits, KEPT_FLOOR, 8);
        assert_eq!(kept.iter().map(|t| t.0).collect::<Vec<_>>(), [1, 3, 2, 0]);
        assert!((f64::from(kept[0].1) - (3.0 - total.ln())).abs() < 1e-6);
        let capped = likely(&logits, KEPT_FLOOR, 3);
        assert_eq!(capped.iter().map(|t| t.0).collect::<Vec<_>>(), [1, 3, 2]);
    }

    #[test]
    fn positions_survive_the_binary_cache() {
        let positions = vec![
            RefPosition {
                lp_next: -1.5,
                kept: vec![(7, -0.25), (151_000, -3.5)],
            },
            RefPosition {
                lp_next: -20.0,
                kept: vec![],
            },
        ];
        let mut bytes = Vec::new();
        write_positions(&mut bytes, &positions);
        assert_eq!(read_positions(&bytes, 2), Some(positions.clone()));
        assert_eq!(read_positions(&bytes[..bytes.len() - 1], 2), None);
        assert_eq!(read_positions(&bytes, 3), None);
    }

    #[test]
    fn percentiles_interpolate_as_llama_perplexity() {
        let v = [0.0, 1.0, 2.0, 3.0];
        assert_eq!(percentile(&v, 0.5), 1.5);
        assert_eq!(percentile(&v, 1.0), 3.0);
        assert!((percentile(&v, 0.99) - 2.97).abs() < 1e-9);
    }
}

/// What `o1 info` shows of a file's last measurement.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Remembered {
    pub bytes: u64,
    pub modified_ns: u128,
    pub reference: PathBuf,
    pub text: String,
    pub mean_kld: f64,
    pub kld_p99: f64,
    pub same_top: f64,
}

const REMEMBERED_FILE: &str = "results.json";

fn identity(path: &Path) -> Option<(PathBuf, u64, u128)> {
    let (len, modified) = o1_gguf::files::stamp(&std::fs::metadata(path).ok()?);
    Some((path.canonicalize().ok()?, len, modified))
}

/// Keeps `report`'s figures for `o1 info`, keyed by the file (a changed
/// file forgets them).
pub fn remember(report: &EvalReport, cache_dir: &Path) -> std::io::Result<()> {
    let Some((path, bytes, modified_ns)) = identity(&report.model) else {
        return Ok(());
    };
    let file = cache_dir.join(REMEMBERED_FILE);
    let mut all: std::collections::BTreeMap<PathBuf, Remembered> = std::fs::read(&file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    all.retain(|p, r| identity(p).is_some_and(|(_, b, m)| b == r.bytes && m == r.modified_ns));
    all.insert(
        path,
        Remembered {
            bytes,
            modified_ns,
            reference: report.reference.clone(),
            text: report.text.clone(),
            mean_kld: report.mean_kld.mean,
            kld_p99: report.kld_p99,
            same_top: report.same_top.mean,
        },
    );
    std::fs::create_dir_all(cache_dir)?;
    replace_privately(&file, &serde_json::to_vec_pretty(&all)?)
}

/// The figures of the last `o1 eval` of this very file, if any.
pub fn remembered(model: &Path, cache_dir: &Path) -> Option<Remembered> {
    let (path, bytes, modified_ns) = identity(model)?;
    let all: std::collections::BTreeMap<PathBuf, Remembered> =
        serde_json::from_slice(&std::fs::read(cache_dir.join(REMEMBERED_FILE)).ok()?).ok()?;
    all.get(&path)
        .filter(|r| r.bytes == bytes && r.modified_ns == modified_ns)
        .cloned()
}
