//! The turn worker: owns the runner and the conversation on the engine
//! thread, fits each new turn into the context, and runs its two phases
//! (reasoning, then answer), each a prefill followed by generation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Instant;

use llama_cpp_2::token::LlamaToken;

use super::config::{Completion, EngineConfig, Limits, Lookup, OnFull, RawCompletion, Sampling};
#[cfg(feature = "testing")]
use super::event::Probe;
use super::event::{BenchRuns, ContextUsage, EngineError, Event, PhaseStats, Stop, TimelineSecond};
use super::generate::{generate, is_greedy, Decoding};
use super::lookup::{LookupState, LookupStatus, MAX_DRAFT};
use super::runner::{Prefill, RunError, Runner};
use crate::chat::{self, Message, Phase, Role};
use crate::model::KvType;

/// Room kept for the generation markers around a phase's text.
const MARKER_TOKENS: usize = 8;

/// The least a turn must be able to generate (both phases together) for it
/// to start at all.
const MIN_GENERATION: usize = 32;

/// The phase limits that fit in `room` free tokens: the configured ones
/// when they fit, else the room shared in their proportion (each phase
/// keeps at least a little, so a small context still answers).
pub(super) fn fit_limits(limits: Limits, room: usize) -> Limits {
    let wanted = limits.reasoning + limits.answer;
    if wanted <= room || wanted == 0 {
        return limits;
    }
    let answer = (room as u128 * limits.answer as u128 / wanted as u128) as usize;
    let answer = answer.max(room.min(limits.answer).min(MIN_GENERATION / 2));
    let reasoning = (room - answer).min(limits.reasoning);
    Limits { reasoning, answer }
}

/// What the handle tells running turns without going through the command
/// channel; the worker polls them at every token.
#[derive(Default)]
pub(super) struct Flags {
    /// Turns with an id at or below this are cancelled.
    cancel_upto: AtomicU64,
    /// Reasoning of turns with an id at or below this is cut short.
    answer_now_upto: AtomicU64,
}

impl Flags {
    /// Cancels the turns with an id up to `id`.
    pub(super) fn cancel_upto(&self, id: u64) {
        self.cancel_upto.store(id, Ordering::SeqCst);
    }

    /// Cuts the reasoning of the turns with an id up to `id` short.
    pub(super) fn answer_now_upto(&self, id: u64) {
        self.answer_now_upto.store(id, Ordering::SeqCst);
    }

    fn cancelled(&self, id: u64) -> bool {
        self.cancel_upto.load(Ordering::SeqCst) >= id
    }

    /// Why `phase` of turn `id` has to stop now, if it has to.
    fn interruption(&self, id: u64, phase: Phase) -> Option<Stop> {
        if self.cancelled(id) {
            Some(Stop::Cancelled)
        } else if phase == Phase::Reasoning && self.answer_now_upto.load(Ordering::SeqCst) >= id {
            Some(Stop::AnswerNow)
        } else {
            None
        }
    }
}

pub(super) struct Worker<'m> {
    runner: Runner<'m>,
    flags: Arc<Flags>,
    config: EngineConfig,
    sampling: Sampling,
    /// Messages after the system message.
    conversation: Vec<Message>,
    /// Whether the user was told that the context lowers the phase limits.
    told_limits_lowered: bool,
    /// What identifies this machine setting's lookup probe, and what lookup
    /// knows once probed (or read back) on the first greedy phase.
    probe_key: String,
    kv_type: KvType,
    lookup: Option<LookupState>,
}

/// The result of one phase.
pub(super) struct Outcome {
    text: String,
    stop: Stop,
}

impl<'m> Worker<'m> {
    pub(super) fn new(
        runner: Runner<'m>,
        flags: Arc<Flags>,
        config: EngineConfig,
        sampling: Sampling,
        probe_key: String,
        kv_type: KvType,
    ) -> Self {
        Worker {
            runner,
            flags,
            config,
            sampling,
            conversation: Vec::new(),
            told_limits_lowered: false,
            probe_key,
            kv_type,
            lookup: None,
        }
    }

    pub(super) fn set_lookup(&mut self, lookup: Lookup) {
        self.config.lookup = lookup;
    }

    pub(super) fn lookup_status(&self) -> Option<LookupStatus> {
        self.lookup.as_ref().map(|l| LookupStatus {
            probe: l.probe.clone(),
            max_draft: l.max_draft,
            seconds: l.costs.seconds.clone(),
        })
    }

    /// Probes (or reads back) whether batched decodes are exact here and
    /// what they cost, when lookup may use it; before a prefill, as it
    /// overwrites the logits.
    fn know_lookup(&mut self) -> Result<(), RunError> {
        if !matches!(self.config.lookup, Lookup::Auto | Lookup::On)
            || self.lookup.is_some()
            || !is_greedy(&self.sampling)
        {
            return Ok(());
        }
        self.lookup = Some(LookupState::know(
            &mut self.runner,
            &self.probe_key,
            self.kv_type,
        )?);
        Ok(())
    }

    /// The system message, if any, then the conversation.
    pub(super) fn messages(&self) -> Vec<Message> {
        let mut m = Vec::with_capacity(self.conversation.len() + 1);
        if !self.config.system.is_empty() {
            m.push(Message::new(Role::System, self.config.system.clone()));
        }
        m.extend(self.conversation.iter().cloned());
        m
    }

    /// Replaces the conversation after the system message.
    pub(super) fn set_conversation(&mut self, messages: Vec<Message>) {
        self.conversation = messages;
    }

    #[cfg(feature = "testing")]
    pub(super) fn set_sampling(&mut self, sampling: Sampling) {
        self.sampling = sampling;
    }

    fn prompt_tokens(
        &self,
        messages: &[Message],
        phase: Phase,
    ) -> Result<Vec<LlamaToken>, EngineError> {
        Ok(self.runner.tokenize(&chat::render(messages, phase))?)
    }

    fn usage(&self) -> ContextUsage {
        let vocab = self.runner.model().vocab();
        let reasoning = self
            .conversation
            .iter()
            .filter(|m| m.role == Role::Reasoning)
            .map(|m| {
                vocab.tokenize(m.content.as_bytes(), false, false).len() + chat::TOKENS_PER_MESSAGE
            })
            .sum();
        ContextUsage {
            used: self.runner.cached().len(),
            n_ctx: self.runner.n_ctx(),
            reasoning,
        }
    }

    /// Runs turn `id`: the user's message, the reasoning, then the answer,
    /// each added to the conversation.
    pub(super) fn turn(
        &mut self,
        id: u64,
        user: String,
        events: &Sender<Event>,
    ) -> Result<(), EngineError> {
        if user.trim().is_empty() {
            return Err(EngineError::EmptyQuestion);
        }
        self.conversation.push(Message::new(Role::User, user));
        let prompt = match self.make_room(events) {
            Ok(prompt) => prompt,
            Err(e) => {
                self.conversation.pop();
                return Err(e);
            }
        };
        let n_ctx = self.runner.n_ctx();
        let room = n_ctx.saturating_sub(prompt + 2 * MARKER_TOKENS);
        let limits = fit_limits(self.config.limits, room);
        if limits != self.config.limits && !self.told_limits_lowered {
            self.told_limits_lowered = true;
            let _ = events.send(Event::LimitsLowered { limits, n_ctx });
        }
        let (reasoning, answer) = self.two_phases(id, self.messages(), limits, events)?;
        self.conversation.push(reasoning);
        self.conversation.extend(answer);
        let _ = events.send(Event::TurnFinished {
            usage: self.usage(),
        });
        Ok(())
    }

    /// Runs the reasoning, then (unless it was cancelled or filled the
    /// context) the answer, after `messages`; returns the two new messages.
    fn two_phases(
        &mut self,
        id: u64,
        mut messages: Vec<Message>,
        limits: Limits,
        events: &Sender<Event>,
    ) -> Result<(Message, Option<Message>), EngineError> {
        let outcome = self.run_phase(id, &messages, Phase::Reasoning, limits.reasoning, events)?;
        let reasoning = Message {
            role: Role::Reasoning,
            content: outcome.text,
            cut: outcome.stop.is_cut(),
        };
        if matches!(outcome.stop, Stop::Cancelled | Stop::ContextFull) {
            return Ok((reasoning, None));
        }
        messages.push(reasoning.clone());
        let answer = self.run_phase(id, &messages, Phase::Answer, limits.answer, events)?;
        let answer = Message {
            role: Role::Assistant,
            content: answer.text,
            cut: answer.stop.is_cut(),
        };
        Ok((reasoning, Some(answer)))
    }

    /// Runs `request` as turn `id`: its messages stay the caller's (the
    /// conversation is left alone); only the KV cache carries over, so a
    /// request that extends the previous one prefills only its new tail.
    pub(super) fn complete(
        &mut self,
        id: u64,
        request: Completion,
        events: &Sender<Event>,
    ) -> Result<(), EngineError> {
        // A conversation that ends with the turn's reasoning (cut short by
        // the client) gets only its answer.
        let answer_only = request
            .messages
            .last()
            .is_some_and(|m| m.role == Role::Reasoning);
        let question = &request.messages[..request.messages.len() - usize::from(answer_only)];
        match question.last() {
            Some(m) if m.role == Role::User && !m.content.trim().is_empty() => {}
            _ => return Err(EngineError::EmptyQuestion),
        }
        if request.fresh {
            self.runner.clear();
        }
        let n_ctx = self.runner.n_ctx();
        let first = if answer_only {
            Phase::Answer
        } else {
            Phase::Reasoning
        };
        let prompt = self.prompt_tokens(&request.messages, first)?.len();
        let least = MIN_GENERATION.min(request.limits.reasoning + request.limits.answer)
            + 2 * MARKER_TOKENS;
        if prompt + least > n_ctx {
            return Err(EngineError::ContextTooSmall {
                prompt,
                reserve: least,
                n_ctx,
            });
        }
        let limits = fit_limits(request.limits, n_ctx - prompt - 2 * MARKER_TOKENS);
        let saved = std::mem::replace(&mut self.sampling, request.sampling);
        let result = if answer_only {
            self.run_phase(id, &request.messages, Phase::Answer, limits.answer, events)
                .map(drop)
        } else {
            self.two_phases(id, request.messages, limits, events)
                .map(drop)
        };
        self.sampling = saved;
        result?;
        let _ = events.send(Event::TurnFinished {
            usage: self.usage(),
        });
        Ok(())
    }

    /// Runs `request` as turn `id`: its prompt continued as it is, as one
    /// answer phase; only the KV cache carries over.
    pub(super) fn complete_raw(
        &mut self,
        id: u64,
        request: RawCompletion,
        events: &Sender<Event>,
    ) -> Result<(), EngineError> {
        if request.fresh {
            self.runner.clear();
        }
        let prompt = self.runner.tokenize(&chat::parse_raw(&request.prompt))?;
        if prompt.is_empty() {
            return Err(EngineError::EmptyQuestion);
        }
        let n_ctx = self.runner.n_ctx();
        if prompt.len() >= n_ctx {
            return Err(EngineError::ContextTooSmall {
                prompt: prompt.len(),
                reserve: 1,
                n_ctx,
            });
        }
        let limit = request.limit.min(n_ctx - prompt.len());
        let saved = std::mem::replace(&mut self.sampling, request.sampling);
        let result = self.run_tokens(id, &prompt, Phase::Answer, limit, events);
        self.sampling = saved;
        result?;
        let _ = events.send(Event::TurnFinished {
            usage: self.usage(),
        });
        Ok(())
    }

    /// Makes the new turn fit: room after the reasoning prompt for both
    /// phases' limits, or for half the context when the limits are larger
    /// than that (the phases then share the room there is). Old reasoning,
    /// then old turns, go as `--on-full` says. Returns the prompt's length.
    fn make_room(&mut self, events: &Sender<Event>) -> Result<usize, EngineError> {
        let n_ctx = self.runner.n_ctx();
        let limits = self.config.limits;
        let reserve = (limits.reasoning + limits.answer).min(n_ctx / 2) + 2 * MARKER_TOKENS;
        let (mut dropped_reasoning, mut dropped_turns) = (0, 0);
        let prompt = loop {
            let prompt = self
                .prompt_tokens(&self.messages(), Phase::Reasoning)?
                .len();
            if prompt + reserve <= n_ctx {
                break prompt;
            }
            let only_the_question = self.conversation.len() == 1;
            // A lone question may use what room there is, down to a minimum.
            let least = MIN_GENERATION.min(limits.reasoning + limits.answer) + 2 * MARKER_TOKENS;
            if only_the_question && prompt + least <= n_ctx {
                break prompt;
            }
            if self.config.on_full == OnFull::Stop && !only_the_question {
                return Err(EngineError::ContextFull {
                    needed: prompt + reserve,
                    n_ctx,
                });
            }
            // Never the new user message (the last one).
            let last = self.conversation.len() - 1;
            if let Some(i) = self.conversation[..last]
                .iter()
                .position(|m| m.role == Role::Reasoning)
            {
                self.conversation.remove(i);
                dropped_reasoning += 1;
            } else if last > 0 {
                // The oldest turn: its user message and what follows up to the next one.
                let end = self.conversation[1..]
                    .iter()
                    .position(|m| m.role == Role::User)
                    .map_or(last, |p| p + 1);
                self.conversation.drain(..end);
                dropped_turns += 1;
            } else {
                return Err(EngineError::ContextTooSmall {
                    prompt,
                    reserve: least,
                    n_ctx,
                });
            }
        };
        if dropped_reasoning + dropped_turns > 0 {
            let _ = events.send(Event::Trimmed {
                dropped_reasoning,
                dropped_turns,
                usage: self.usage(),
            });
        }
        Ok(prompt)
    }

    /// Runs `phase` of turn `id` after `messages`: prefills its prompt,
    /// generates up to `limit` tokens and reports both as events.
    pub(super) fn run_phase(
        &mut self,
        id: u64,
        messages: &[Message],
        phase: Phase,
        limit: usize,
        events: &Sender<Event>,
    ) -> Result<Outcome, EngineError> {
        let prompt = self.prompt_tokens(messages, phase)?;
        self.run_tokens(id, &prompt, phase, limit, events)
    }

    /// [`Self::run_phase`] on a prompt already tokenized.
    fn run_tokens(
        &mut self,
        id: u64,
        prompt: &[LlamaToken],
        phase: Phase,
        limit: usize,
        events: &Sender<Event>,
    ) -> Result<Outcome, EngineError> {
        self.know_lookup()?;
        let started = Instant::now();
        let flags = &self.flags;
        let prefill = match self.runner.prefill(
            prompt,
            |done, total| {
                let _ = events.send(Event::Prefilling { phase, done, total });
            },
            || flags.cancelled(id),
        ) {
            Ok(p) => p,
            Err(RunError::Cancelled) => {
                let stats = PhaseStats {
                    prompt_tokens: prompt.len(),
                    ..Default::default()
                };
                let _ = events.send(Event::PhaseFinished {
                    phase,
                    text: String::new(),
                    tokens: vec![],
                    stop: Stop::Cancelled,
                    stats,
                });
                return Ok(Outcome {
                    text: String::new(),
                    stop: Stop::Cancelled,
                });
            }
            Err(e) => return Err(e.into()),
        };
        let _ = events.send(Event::PhaseStarted { phase, prefill });

        let decoding = match (self.config.lookup, self.lookup.as_mut()) {
            (Lookup::Always, _) => Decoding::Lookup {
                costs: None,
                max_draft: MAX_DRAFT,
            },
            (Lookup::Auto | Lookup::On, Some(l)) if l.max_draft > 0 => Decoding::Lookup {
                costs: Some(&mut l.costs),
                max_draft: l.max_draft,
            },
            _ => Decoding::Plain,
        };
        let generation = generate(
            &mut self.runner,
            &self.sampling,
            decoding,
            limit,
            || flags.interruption(id, phase),
            |text| {
                let _ = events.send(Event::Text { phase, text });
            },
        )?;
        let generated = generation.tokens.len();
        let stats = PhaseStats {
            prompt_tokens: prefill.prompt_tokens,
            reused_tokens: prefill.reused,
            prefilled_tokens: prefill.prefilled,
            generated_tokens: generated,
            prefill_seconds: prefill.seconds,
            time_to_first_token: generation
                .first_token
                .map_or(0.0, |t| t.duration_since(started).as_secs_f64()),
            generation_seconds: generation.seconds,
            tokens_per_second: if generation.seconds > 0.0 {
                generated as f64 / generation.seconds
            } else {
                0.0
            },
            drafted_tokens: generation.drafted,
            accepted_tokens: generation.accepted,
        };
        let _ = events.send(Event::PhaseFinished {
            phase,
            text: generation.text.clone(),
            tokens: generation.tokens,
            stop: generation.stop,
            stats,
        });
        Ok(Outcome {
            text: generation.text,
            stop: generation.stop,
        })
    }

    /// Brings the cache to `prompt` without generating; `fresh` empties it
    /// first (no re-use).
    fn prefill(&mut self, prompt: &[LlamaToken], fresh: bool) -> Result<Prefill, EngineError> {
        if fresh {
            self.runner.clear();
        }
        Ok(self.runner.prefill(prompt, |_, _| {}, || false)?)
    }

    /// Prefills the conversation now, so the next turn only prefills its question.
    pub(super) fn warm(&mut self) -> Result<Prefill, EngineError> {
        let prompt = self.prompt_tokens(&self.messages(), Phase::Reasoning)?;
        self.prefill(&prompt, false)
    }

    /// Prefills the prompt of `phase` after `messages` from an empty cache.
    pub(super) fn bench_prefill(
        &mut self,
        messages: &[Message],
        phase: Phase,
    ) -> Result<Prefill, EngineError> {
        let prompt = self.prompt_tokens(messages, phase)?;
        self.prefill(&prompt, true)
    }

    /// Prefills the prompt of `phase` after `messages` and returns it with
    /// the next-token logits.
    #[cfg(feature = "testing")]
    pub(super) fn probe(
        &mut self,
        messages: &[Message],
        phase: Phase,
        fresh: bool,
    ) -> Result<Probe, EngineError> {
        let segments = chat::render(messages, phase);
        let tokens = self.runner.tokenize(&segments)?;
        let cached_before = self.runner.cached().iter().map(|t| t.0 as u32).collect();
        let prefill = self.prefill(&tokens, fresh)?;
        Ok(Probe {
            cached_before,
            prompt: chat::to_text(&segments),
            tokens: tokens.iter().map(|t| t.0 as u32).collect(),
            prefill,
            logits: self.runner.logits().to_vec(),
        })
    }

    #[cfg(feature = "testing")]
    pub(super) fn probe_batches(&mut self) -> Result<super::lookup::BatchProbe, EngineError> {
        Ok(self.runner.probe_batches(MAX_DRAFT + 1)?)
    }

    /// Times `reps` prompt-processing runs of `prompt` tokens and generation
    /// runs of `generate` tokens, on an empty cache each.
    pub(super) fn bench(
        &mut self,
        prompt: usize,
        generate: usize,
        reps: usize,
    ) -> Result<BenchRuns, EngineError> {
        let n_vocab = self.bench_vocab();
        // Arbitrary ordinary tokens, as llama-bench uses.
        let tokens: Vec<LlamaToken> = (0..prompt)
            .map(|i| LlamaToken((i as i32 * 7919 + 1000) % n_vocab))
            .collect();
        let token = LlamaToken(1000 % n_vocab);
        let mut runs = BenchRuns::default();
        // One warm-up of each, as llama-bench does.
        if prompt > 0 {
            self.runner.bench_prompt(&tokens)?;
        }
        if generate > 0 {
            self.runner.bench_generate(token, 1)?;
        }
        for _ in 0..reps {
            if prompt > 0 {
                runs.prompt_seconds.push(self.runner.bench_prompt(&tokens)?);
            }
            if generate > 0 {
                runs.generate_seconds
                    .push(self.runner.bench_generate(token, generate)?);
            }
        }
        self.runner.clear();
        Ok(runs)
    }

    /// The ordinary tokens the benchmarks draw from (the first half of the
    /// vocabulary: no special ones).
    fn bench_vocab(&self) -> i32 {
        self.runner.model().n_vocab().max(2) / 2
    }

    /// Generates for `seconds`: `o1 bench --timeline`.
    pub(super) fn bench_timeline(
        &mut self,
        seconds: u64,
    ) -> Result<Vec<TimelineSecond>, EngineError> {
        let token = LlamaToken(1000 % self.bench_vocab());
        let timeline = self.runner.bench_timeline(token, seconds)?;
        self.runner.clear();
        Ok(timeline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(reasoning: usize, answer: usize) -> Limits {
        Limits { reasoning, answer }
    }

    #[test]
    fn limits_that_fit_are_kept() {
        assert_eq!(fit_limits(limits(3000, 3000), 6000), limits(3000, 3000));
        assert_eq!(fit_limits(limits(10, 5), 100), limits(10, 5));
    }

    #[test]
    fn a_small_room_is_shared_in_proportion() {
        let l = fit_limits(limits(3000, 3000), 466);
        assert_eq!(l, limits(233, 233));
        let l = fit_limits(limits(4000, 2000), 300);
        assert_eq!(l, limits(200, 100));
        assert!(l.reasoning + l.answer <= 300);
    }

    #[test]
    fn each_phase_keeps_a_little() {
        let l = fit_limits(limits(6000, 10), 40);
        assert!(l.answer >= 10 && l.reasoning > 0, "{l:?}");
        assert!(l.reasoning + l.answer <= 40);
        assert_eq!(fit_limits(limits(0, 3000), 100), limits(0, 100));
        assert_eq!(fit_limits(limits(5, 5), 0), limits(0, 0));
    }
}
