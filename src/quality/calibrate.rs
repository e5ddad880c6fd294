//! o1's importance matrix: the calibration conversations run through a
//! model (a q8_0 conversion of the checkpoint) while llama.cpp's evaluation
//! callback adds up each matrix product's squared inputs.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result};
use o1_convert::imatrix::{Collector, ImportanceMatrix};
use o1_gguf::scoring::{EvalCallback, ScoringModel, ScoringOptions};

use std::collections::BTreeMap;

use super::dataset::{self, Conversation};

/// Positions per conversation: the longest calibration conversation fits.
const N_CTX: u32 = 2048;
/// Tokens per batch. Every position asks for its logits: with fewer,
/// llama.cpp computes the last layer's feed-forward only for the positions
/// asked for, and that layer would go uncalibrated. Small batches keep the
/// logits buffer small (128 rows of the vocabulary, ~78 MB at 151,666).
const BATCH: usize = 128;
/// Tokens run: a 1.5B model's calibration then takes about 3 minutes on 2
/// cores (a q8_0 pass runs ~45 tokens/s there), and conversations of every
/// language and kind take part (see [`pick`]).
pub const TOKEN_BUDGET: usize = 7_168;

pub struct Calibrated {
    pub matrix: ImportanceMatrix,
    pub conversations: usize,
    pub tokens: usize,
    pub seconds: f64,
}

/// Runs o1's calibration set through `model`; `None` when `cancel` was set
/// (checked between conversations).
pub fn calibrate(model: &Path, threads: usize, cancel: &AtomicBool) -> Result<Option<Calibrated>> {
    let started = Instant::now();
    let collector = Box::new(Collector::new());
    let opts = ScoringOptions {
        n_ctx: N_CTX,
        max_outputs: BATCH as u32,
        threads: threads as i32,
        // The repacked copy would double the weights in memory, for no gain here.
        repack: false,
        eval_callback: Some(EvalCallback {
            callback: Collector::callback,
            user_data: &*collector as *const Collector as *mut std::ffi::c_void,
        }),
    };
    let mut scorer = ScoringModel::open(model, opts)
        .map_err(anyhow::Error::msg)
        .context("calibration")?;
    let set = dataset::calibration();
    let tokenized: Vec<_> = set
        .iter()
        .map(|c| {
            let mut ids = super::tokenize(&scorer, &c.segments());
            ids.truncate(N_CTX as usize);
            (c, ids)
        })
        .collect();
    let sizes: Vec<_> = tokenized.iter().map(|(c, ids)| (*c, ids.len())).collect();
    let picked = pick(&sizes, TOKEN_BUDGET);
    let mut tokens = 0;
    for &i in &picked {
        let (conversation, ids) = &tokenized[i];
        if cancel.load(Ordering::Relaxed) {
            return Ok(None);
        }
        scorer.clear();
        for (i, batch) in ids.chunks(BATCH).enumerate() {
            scorer
                .decode(batch, i * BATCH, 0)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("calibrating on conversation {}", conversation.id))?;
        }
        tokens += ids.len();
    }
    // The callback's pointer must not outlive the context.
    drop(scorer);
    let conversations = picked.len();
    let matrix = collector.finish(
        vec![dataset::CALIBRATION_NAME.to_string()],
        conversations as u32,
        (tokens / conversations.max(1)) as u32,
    );
    Ok(Some(Calibrated {
        matrix,
        conversations,
        tokens,
        seconds: started.elapsed().as_secs_f64(),
    }))
}

/// Whole conversations (by index, given their token counts), taken in turn
/// from each (language, kind) group so that every group is represented,
/// until the next would pass `budget` tokens.
fn pick(set: &[(&Conversation, usize)], budget: usize) -> Vec<usize> {
    let mut groups: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
    for (i, (c, _)) in set.iter().enumerate() {
        groups.entry((&c.lang, &c.kind)).or_default().push(i);
    }
    let mut picked = Vec::new();
    let mut total = 0;
    for round in 0.. {
        let mut any = false;
        for members in groups.values() {
            let Some(&i) = members.get(round) else {
                continue;
            };
            any = true;
            if total + set[i].1 <= budget {
                total += set[i].1;
                picked.push(i);
            }
        }
        if !any {
            break;
        }
    }
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_every_group_first_and_keeps_the_budget() {
        let set = dataset::calibration();
        // About 3 tokens per word, as a stand-in for the tokenizer.
        let sized: Vec<_> = set
            .iter()
            .map(|c| {
                let words: usize = c
                    .turns
                    .iter()
                    .map(|t| (t.user.len() + t.reasoning.len() + t.answer.len()) / 4)
                    .sum();
                (c, words)
            })
            .collect();
        let picked = pick(&sized, TOKEN_BUDGET);
        let total: usize = picked.iter().map(|&i| sized[i].1).sum();
        assert!(
            total <= TOKEN_BUDGET && total > TOKEN_BUDGET * 3 / 4,
            "{total}"
        );
        let groups = |items: &mut dyn Iterator<Item = &Conversation>| {
            items
                .map(|c| (c.lang.clone(), c.kind.clone()))
                .collect::<std::collections::BTreeSet<_>>()
        };
        assert_eq!(
            groups(&mut picked.iter().map(|&i| sized[i].0)),
            groups(&mut set.iter())
        );
        assert_eq!(pick(&sized, usize::MAX).len(), set.len());
    }
}
