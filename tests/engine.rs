//! The engine on a synthetic model: the exact prompts, KV prefix re-use,
//! stops (end of turn, limit, cancel, answer now), the context-full
//! policies and streaming. Tokens are forced with logit biases so that the
//! random-weight model behaves predictably.

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver};
use std::sync::OnceLock;
use std::time::Duration;

use o1::chat::{self, Message, Phase, Role};
use o1::engine::{Engine, EngineConfig, EngineError, Event, Limits, OnFull, Stop};
use o1_convert::synthetic::{self, Spec};

mod fixture;

struct Model {
    path: PathBuf,
    the: u32,
    im_end: u32,
    im_start: u32,
}

/// One synthetic model converted to f32, shared by the tests.
fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        let dir = fixture::shared_dir().join("f32");
        let ckpt = dir.join("ckpt");
        // Heads of 32 dimensions: a q8_0 KV cache needs whole blocks of 32.
        synthetic::write(
            &ckpt,
            &Spec {
                heads: 2,
                kv_heads: 1,
                ..Spec::tiny()
            },
        )
        .unwrap();
        let path = dir.join("tiny.gguf");
        let opts = o1_convert::ConvertOptions::new(&ckpt, &path, o1_convert::OutputType::F32);
        o1_convert::convert(&opts, &mut o1_convert::NoProgress, &Default::default()).unwrap();
        let tok: serde_json::Value =
            serde_json::from_slice(&std::fs::read(ckpt.join("tokenizer.json")).unwrap()).unwrap();
        let added = |name: &str| {
            tok["added_tokens"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["content"] == name)
                .unwrap()["id"]
                .as_u64()
                .unwrap() as u32
        };
        Model {
            the: tok["model"]["vocab"]["Ġthe"].as_u64().unwrap() as u32,
            im_end: added("<|im_end|>"),
            im_start: added("<|im_start|>"),
            path,
        }
    })
}

fn engine_with(f: impl FnOnce(&mut EngineConfig), bias: &[(u32, f32)]) -> Engine {
    let mut config = EngineConfig::new(&model().path);
    config.n_ctx = Some(1024);
    config.threads = Some(1);
    config.limits = Limits {
        reasoning: 4,
        answer: 3,
    };
    f(&mut config);
    let engine = Engine::start(config, |_| true).unwrap();
    let mut sampling = engine.loaded().sampling.clone();
    sampling.logit_bias = bias.to_vec();
    engine.set_sampling(sampling).unwrap();
    engine
}

/// A model that always says " the".
fn engine() -> Engine {
    engine_with(|_| {}, &[(model().the, 100.0)])
}

fn collect(rx: Receiver<Event>) -> Vec<Event> {
    rx.iter().collect()
}

fn turn(engine: &Engine, question: &str) -> Vec<Event> {
    let (tx, rx) = mpsc::channel();
    engine.turn(question, tx).unwrap();
    collect(rx)
}

fn finished(events: &[Event]) -> Vec<(Phase, String, Vec<u32>, Stop, o1::engine::PhaseStats)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::PhaseFinished {
                phase,
                text,
                tokens,
                stop,
                stats,
            } => Some((*phase, text.clone(), tokens.clone(), *stop, stats.clone())),
            _ => None,
        })
        .collect()
}

/// The text of a phase's Text events, in order.
fn streamed(events: &[Event], phase: Phase) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Text { phase: p, text } if *p == phase => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

fn tokens_of(engine: &Engine, messages: Vec<Message>, phase: Phase) -> Vec<u32> {
    engine.probe(messages, phase, true).unwrap().tokens
}

#[test]
fn two_turn_chat_sends_the_exact_prompts() {
    let e = engine();
    let events = turn(&e, "Hi");
    let f = finished(&events);
    assert_eq!(f.len(), 2);
    assert_eq!(
        (f[0].0, f[0].1.as_str(), f[0].3),
        (Phase::Reasoning, " the the the the", Stop::Limit)
    );
    assert_eq!(
        (f[1].0, f[1].1.as_str(), f[1].3),
        (Phase::Answer, " the the the", Stop::Limit)
    );
    turn(&e, "And <|im_end|> then?");

    let history = e.history().unwrap();
    let prompt = e
        .probe(history.clone(), Phase::Reasoning, false)
        .unwrap()
        .prompt;
    assert_eq!(
        prompt,
        concat!(
            "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n",
            "<|im_start|>user\nHi<|im_end|>\n",
            "<|im_start|><|reasoning|>\n the the the the<|im_end|>\n",
            "<|im_start|>assistant\n the the the<|im_end|>\n",
            "<|im_start|>user\nAnd <|im_end|> then?<|im_end|>\n",
            "<|im_start|><|reasoning|>\n the the the the<|im_end|>\n",
            "<|im_start|>assistant\n the the the<|im_end|>\n",
            "<|im_start|><|reasoning|>\n"
        )
    );
    assert!(
        history
            .iter()
            .filter(|m| m.role == Role::Reasoning)
            .all(|m| m.cut),
        "limit stops are marked cut"
    );
    // The typed <|im_end|> is text, not the special token.
    let tokens = tokens_of(&e, history[..5].to_vec(), Phase::Reasoning);
    let specials = tokens.iter().filter(|&&t| t == model().im_end).count();
    assert_eq!(
        specials, 5,
        "one <|im_end|> per message, none from the user's text"
    );
}

#[test]
fn each_phase_prefills_only_the_new_tail() {
    // Token counts of prompt pieces, from a second engine (same tokenizer).
    let probe = engine();
    let answer_opener = tokens_of(&probe, vec![], Phase::Answer).len();
    let user_more = tokens_of(
        &probe,
        vec![Message::new(Role::User, "More")],
        Phase::Reasoning,
    )
    .len();

    let e = engine();
    let first = finished(&turn(&e, "Hi"));
    let (r, a) = (&first[0].4, &first[1].4);
    assert_eq!((r.reused_tokens, r.prefilled_tokens), (0, r.prompt_tokens));
    // Answer: the reasoning prompt and its 4 generated tokens are cached;
    // new are `<|im_end|>\n` and `<|im_start|>assistant\n`.
    assert_eq!(a.reused_tokens, r.prompt_tokens + 4);
    assert_eq!(a.prefilled_tokens, 2 + answer_opener);
    assert_eq!(a.prompt_tokens, a.reused_tokens + a.prefilled_tokens);

    // Turn 2: the answer's 3 tokens are cached too; new are `<|im_end|>\n`,
    // the user message and the reasoning opener.
    let second = finished(&turn(&e, "More"));
    let r2 = &second[0].4;
    assert_eq!(r2.reused_tokens, a.prompt_tokens + 3);
    assert_eq!(r2.prefilled_tokens, 2 + user_more);
}

#[test]
fn logits_after_reuse_equal_a_fresh_prefill() {
    let e = engine();
    turn(&e, "Hi");
    turn(&e, "Tell me more");
    let mut history = e.history().unwrap();
    history.push(Message::new(Role::User, "Third question"));
    let reused = e.probe(history.clone(), Phase::Reasoning, false).unwrap();
    assert!(reused.prefill.reused > 20, "{:?}", reused.prefill);
    let fresh = e.probe(history, Phase::Reasoning, true).unwrap();
    assert_eq!(fresh.prefill.reused, 0);
    assert_eq!(reused.tokens, fresh.tokens);
    // Equal up to float rounding: the cached keys and values were computed
    // in other batch shapes than a fresh prefill uses (one token at a time
    // while generating), which changes summation order, not results.
    let diff = reused
        .logits
        .iter()
        .zip(&fresh.logits)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    let scale = fresh.logits.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    assert!(scale > 1.0);
    assert!(
        diff < 2e-3 * scale,
        "logits differ by {diff} (scale {scale}) after re-use"
    );
    let argmax = |l: &[f32]| {
        l.iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0
    };
    assert_eq!(argmax(&reused.logits), argmax(&fresh.logits));
}

#[test]
fn end_of_turn_stops_a_phase_and_control_tokens_are_hidden() {
    let m = model();
    let e = engine_with(|_| {}, &[(m.im_end, 100.0)]);
    let f = finished(&turn(&e, "Hi"));
    assert_eq!(
        (f[0].1.as_str(), f[0].2.as_slice(), f[0].3),
        ("", [m.im_end].as_slice(), Stop::EndOfTurn)
    );
    assert_eq!(f[1].3, Stop::EndOfTurn);
    assert!(!e.history().unwrap()[2].cut);

    // A stray <|im_start|> mid-phase is neither shown nor a stop.
    let e = engine_with(
        |c| {
            c.limits = Limits {
                reasoning: 3,
                answer: 1,
            }
        },
        &[(m.im_start, 100.0)],
    );
    let f = finished(&turn(&e, "Hi"));
    assert_eq!(
        (f[0].1.as_str(), f[0].2.len(), f[0].3),
        ("", 3, Stop::Limit)
    );
}

/// A reasoning budget far longer than the tests wait.
fn long_reasoning(answer: usize) -> impl FnOnce(&mut EngineConfig) {
    move |c| {
        c.n_ctx = Some(16_384);
        c.limits = Limits {
            reasoning: 16_000,
            answer,
        };
    }
}

fn wait_for_text(rx: &Receiver<Event>, phase: Phase) -> Vec<Event> {
    let mut seen = Vec::new();
    loop {
        let e = rx.recv_timeout(Duration::from_secs(30)).expect("no text");
        let done = matches!(&e, Event::Text { phase: p, .. } if *p == phase);
        seen.push(e);
        if done {
            return seen;
        }
    }
}

#[test]
fn cancel_stops_within_a_token_and_the_engine_goes_on() {
    let e = engine_with(long_reasoning(10), &[(model().the, 100.0)]);
    let (tx, rx) = mpsc::channel();
    e.turn("Go on forever", tx).unwrap();
    let mut events = wait_for_text(&rx, Phase::Reasoning);
    e.cancel();
    events.extend(collect(rx));
    let f = finished(&events);
    assert_eq!(f.len(), 1, "the answer phase does not run after a cancel");
    assert_eq!(f[0].3, Stop::Cancelled);
    assert!(f[0].2.len() < 16_000, "never stopped");
    assert_eq!(
        streamed(&events, Phase::Reasoning),
        f[0].1,
        "the partial text is kept"
    );
    let history = e.history().unwrap();
    assert!(history.last().unwrap().cut && history.last().unwrap().role == Role::Reasoning);
    assert!(matches!(events.last(), Some(Event::TurnFinished { .. })));

    eprintln!("cancelled after {} tokens", f[0].2.len());

    // The engine is still usable, and the old cancel does not touch new work.
    let (tx, rx) = mpsc::channel();
    e.phase(e.history().unwrap(), Phase::Answer, 5, tx).unwrap();
    let f = finished(&collect(rx));
    assert_eq!((f[0].2.len(), f[0].3), (5, Stop::Limit));
}

#[test]
fn answer_now_cuts_the_reasoning_and_answers() {
    let e = engine_with(long_reasoning(5), &[(model().the, 100.0)]);
    let (tx, rx) = mpsc::channel();
    e.turn("Think long", tx).unwrap();
    let mut events = wait_for_text(&rx, Phase::Reasoning);
    e.answer_now();
    events.extend(collect(rx));
    let f = finished(&events);
    assert_eq!((f[0].0, f[0].3), (Phase::Reasoning, Stop::AnswerNow));
    assert_eq!(
        (f[1].0, f[1].3, f[1].2.len()),
        (Phase::Answer, Stop::Limit, 5)
    );
    let h = e.history().unwrap();
    assert!(h[h.len() - 2].cut && !h[h.len() - 2].content.is_empty());
}

#[test]
fn full_context_drops_old_reasoning_then_old_turns() {
    let e = engine_with(
        |c| {
            c.n_ctx = Some(256);
            c.limits = Limits {
                reasoning: 40,
                answer: 40,
            };
        },
        &[(model().the, 100.0)],
    );
    let mut trims = Vec::new();
    for i in 0..6 {
        for ev in turn(
            &e,
            &format!("Question number {i}, with a few more words to fill the context"),
        ) {
            match ev {
                Event::Trimmed {
                    dropped_reasoning,
                    dropped_turns,
                    usage,
                } => {
                    assert!(usage.used <= 256);
                    trims.push((dropped_reasoning, dropped_turns));
                }
                Event::Error(err) => panic!("{err}"),
                _ => {}
            }
        }
    }
    assert!(!trims.is_empty(), "the context never filled");
    assert!(trims[0].0 > 0, "reasoning goes first: {trims:?}");
    assert!(trims.iter().any(|t| t.1 > 0), "then whole turns: {trims:?}");
    let h = e.history().unwrap();
    assert_eq!(h[0].role, Role::System, "the system message stays");
    assert_eq!(
        h.iter().rfind(|m| m.role == Role::User).unwrap().content,
        "Question number 5, with a few more words to fill the context"
    );
}

#[test]
fn full_context_with_stop_policy_ends_the_chat_with_a_message() {
    let e = engine_with(
        |c| {
            c.n_ctx = Some(256);
            c.limits = Limits {
                reasoning: 40,
                answer: 40,
            };
            c.on_full = OnFull::Stop;
        },
        &[(model().the, 100.0)],
    );
    let mut error = None;
    for i in 0..6 {
        for ev in turn(
            &e,
            &format!("Question number {i}, with a few more words to fill the context"),
        ) {
            if let Event::Error(err) = ev {
                error = Some(err);
            }
        }
        if error.is_some() {
            break;
        }
    }
    let err = error.expect("the context never filled");
    assert!(matches!(*err, EngineError::ContextFull { .. }), "{err}");
    assert!(err.to_string().contains("the context is full"), "{err}");
}

#[test]
fn a_turn_that_cannot_fit_at_all_is_a_clear_error() {
    let e = engine_with(|c| c.n_ctx = Some(128), &[(model().the, 100.0)]);
    let events = turn(&e, &"word ".repeat(200));
    let Some(Event::Error(err)) = events.last() else {
        panic!("{events:?}")
    };
    assert!(
        matches!(**err, EngineError::ContextTooSmall { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("raise --ctx"), "{err}");
    // Nothing was added to the conversation, and the engine still answers.
    assert!(e.history().unwrap().iter().all(|m| m.role == Role::System));
    assert_eq!(finished(&turn(&e, "short")).len(), 2);

    let events = turn(&e, "   ");
    assert!(
        matches!(events.last(), Some(Event::Error(err)) if matches!(**err, EngineError::EmptyQuestion))
    );
}

#[test]
fn streamed_text_adds_up_to_the_phase_text() {
    let e = engine_with(
        |c| {
            c.limits = Limits {
                reasoning: 12,
                answer: 12,
            }
        },
        &[],
    );
    let events = turn(&e, "你好, café? 🦀");
    for phase in [Phase::Reasoning, Phase::Answer] {
        let streamed = streamed(&events, phase);
        let f = finished(&events)
            .into_iter()
            .find(|f| f.0 == phase)
            .unwrap();
        assert_eq!(streamed, f.1);
    }
}

#[test]
fn models_without_the_reasoning_token_are_refused() {
    // A GGUF whose vocabulary lacks <|reasoning|>: rename it in a copy.
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(&model().path).unwrap();
    let needle = b"<|reasoning|>";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    let mut patched = bytes.clone();
    patched[at..at + needle.len()].copy_from_slice(b"<|reasonin9|>");
    // Drop o1's own key too, so nothing names the token.
    let key = b"o1.reasoning_token_id";
    let k = patched.windows(key.len()).position(|w| w == key).unwrap();
    patched[k..k + key.len()].copy_from_slice(b"o1.reasoning_token_xx");
    let path = dir.path().join("plain.gguf");
    std::fs::write(&path, patched).unwrap();
    let err = Engine::start(EngineConfig::new(&path), |_| true)
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("this model has no <|reasoning|> token; convert it with o1 convert"),
        "{err}"
    );
}

#[test]
fn chat_module_and_engine_agree_on_rendering() {
    let e = engine();
    let m = vec![
        Message::new(Role::System, chat::DEFAULT_SYSTEM),
        Message::new(Role::User, "Hi"),
    ];
    let probe = e.probe(m.clone(), Phase::Reasoning, true).unwrap();
    assert_eq!(
        probe.prompt,
        chat::to_text(&chat::render(&m, Phase::Reasoning))
    );
}

#[test]
fn quantized_kv_cache_runs_turns() {
    let e = engine_with(
        |c| c.kv_type = Some(o1::model::KvType::Q8_0),
        &[(model().the, 100.0)],
    );
    let f = finished(&turn(&e, "Hi"));
    assert_eq!(
        (f[0].1.as_str(), f[1].1.as_str()),
        (" the the the the", " the the the")
    );
    assert_eq!(f[1].4.reused_tokens, f[0].4.prompt_tokens + 4);
}

#[test]
fn warm_rebuilds_the_cache_of_a_restored_conversation() {
    let e = engine();
    let history = vec![
        Message::new(Role::User, "An earlier question"),
        Message::new(Role::Reasoning, "what the model thought then"),
        Message::new(Role::Assistant, "and what it answered"),
    ];
    e.set_history(history).unwrap();
    e.warm().unwrap();
    let mut next = e.history().unwrap();
    next.push(Message::new(Role::User, "New"));
    let p = e.probe(next, Phase::Reasoning, false).unwrap();
    // Only the new question and the opener are left to process.
    assert!(p.prefill.reused > 30, "{:?}", p.prefill);
    assert!(p.prefill.prefilled < 12, "{:?}", p.prefill);
}

#[test]
fn a_context_smaller_than_the_limits_answers_every_turn_and_says_so_once() {
    let e = engine_with(
        |c| {
            c.n_ctx = Some(256);
            c.limits = Limits {
                reasoning: 3000,
                answer: 3000,
            };
        },
        &[(model().the, 100.0)],
    );
    let mut lowered = 0;
    for i in 0..4 {
        let events = turn(&e, &format!("Question number {i}"));
        for ev in &events {
            match ev {
                Event::LimitsLowered { limits, n_ctx } => {
                    assert_eq!(*n_ctx, 256);
                    assert!(limits.reasoning + limits.answer < 256, "{limits:?}");
                    lowered += 1;
                }
                Event::Error(err) => panic!("turn {i}: {err}"),
                Event::TurnFinished { usage } => assert!(usage.used <= 256),
                _ => {}
            }
        }
        let phases = finished(&events);
        assert_eq!(phases.len(), 2, "turn {i} answers: {events:?}");
        // Both phases are cut at the room there is, and marked so.
        assert!(phases.iter().all(|p| p.3.is_cut()), "{phases:?}");
        assert!(!phases[1].1.is_empty(), "an answer, not just the reasoning");
    }
    assert_eq!(lowered, 1, "said once");
}

/// A synthetic model wide enough for q4_k_m (rows of whole q4_K blocks of
/// 256), with heads of 128 dimensions as the real one.
fn wide_q4_k_m() -> &'static PathBuf {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL.get_or_init(|| {
        let dir = fixture::shared_dir().join("wide");
        let ckpt = dir.join("ckpt");
        let spec = Spec {
            hidden: 256,
            heads: 2,
            kv_heads: 1,
            ffn: 512,
            ..Spec::tiny()
        };
        synthetic::write(&ckpt, &spec).unwrap();
        let path = dir.join("wide-q4_k_m.gguf");
        let opts = o1_convert::ConvertOptions::new(&ckpt, &path, o1_convert::OutputType::Q4KM);
        o1_convert::convert(&opts, &mut o1_convert::NoProgress, &Default::default()).unwrap();
        path
    })
}

/// Why lookup needs a q8_0 KV cache: with an f16 one, llama.cpp's attention
/// for a single token splits a cache of 512 or more cells (past 256 tokens)
/// between the threads and a batch's does not, so the logits differ; with
/// q8_0 they are identical at any length. A canary: if llama.cpp changes
/// this, `lookup::cache_allows_drafts` can allow f16.
#[test]
fn batched_logits_equal_single_ones_on_a_q8_0_cache_but_not_on_a_long_f16_one() {
    use o1::model::KvType;
    let long = "the cat sat on the mat and looked at the dog. ".repeat(40);
    for kv_type in [KvType::Q8_0, KvType::F16] {
        let e = engine_with(
            |c| {
                c.model = wide_q4_k_m().clone();
                c.kv_type = Some(kv_type);
                c.threads = Some(2);
            },
            &[],
        );
        let mut errors = Vec::new();
        for text in ["Hi", long.as_str()] {
            let p = e
                .probe(vec![Message::new(Role::User, text)], Phase::Reasoning, true)
                .unwrap();
            let probe = e.probe_batches().unwrap();
            errors.push((
                p.tokens.len(),
                probe.logit_error[1].max(probe.logit_error[2]),
            ));
        }
        eprintln!("{kv_type:?}: (cached tokens, largest difference) {errors:?}");
        assert!(errors[1].0 > 300, "{errors:?}");
        assert_eq!(errors[0].1, 0.0, "{kv_type:?}, a short cache");
        match kv_type {
            KvType::Q8_0 => assert_eq!(errors[1].1, 0.0, "q8_0, a long cache"),
            KvType::F16 => assert!(errors[1].1 > 0.0, "f16, a long cache: {errors:?}"),
        }
    }
}

/// Lookup is on by default, but drafts only where it was shown exact: with
/// the default f16 KV cache it stays off without probing; `--lookup on`
/// picks a q8_0 cache, probes the machine at the first greedy phase (the
/// costs of decodes of 1 to 3 tokens, and batched logits against single
/// ones), drafts at most as long as the batches found bit-identical, and
/// says the same as lookup off on the same cache.
#[test]
fn lookup_drafts_only_as_far_as_the_probe_found_batches_exact() {
    use o1::engine::Lookup;
    use o1::model::KvType;
    let turns = |e: &Engine| {
        let mut history = Vec::new();
        let mut texts = Vec::new();
        let (mut drafted, mut accepted) = (0, 0);
        for q in ["Say it again: the cat sat on the mat", "Again"] {
            history.push(Message::new(Role::User, q));
            for phase in [Phase::Reasoning, Phase::Answer] {
                let (tx, rx) = mpsc::channel();
                e.phase(history.clone(), phase, 40, tx).unwrap();
                let done = finished(&collect(rx));
                drafted += done[0].4.drafted_tokens;
                accepted += done[0].4.accepted_tokens;
                history.push(Message::new(phase.role(), done[0].1.clone()));
                texts.push(done[0].1.clone());
            }
        }
        (texts, drafted, accepted)
    };

    let default = engine_with(|_| {}, &[]);
    assert_eq!(default.loaded().kv_type, KvType::F16);
    let (_, drafted, _) = turns(&default);
    assert_eq!(drafted, 0);
    let status = default
        .lookup_status()
        .unwrap()
        .expect("decided at the first phase");
    assert!(status.probe.is_none(), "{status:?}");
    assert_eq!(status.max_draft, 0);

    // The test model in f32, whose batches llama.cpp multiplies with
    // another kernel than single tokens (sums rounded differently), and a
    // wider one in q4_k_m, whose batches of up to 3 it multiplies row by row
    // as single tokens.
    let q4 = wide_q4_k_m();
    for (path, exact) in [&model().path, q4].into_iter().zip([false, true]) {
        let on = engine_with(
            |c| {
                c.model = path.clone();
                c.lookup = Lookup::On;
            },
            &[],
        );
        assert_eq!(
            on.loaded().kv_type,
            KvType::Q8_0,
            "--lookup on picks the q8_0 cache"
        );
        // Lookup as asked, on the q8_0 cache `--lookup on` picked.
        let on_q8_0 = |lookup| {
            engine_with(
                |c| {
                    c.model = path.clone();
                    c.lookup = lookup;
                    c.kv_type = Some(KvType::Q8_0);
                },
                &[],
            )
        };
        let off = on_q8_0(Lookup::Off);
        let (with, drafted, accepted) = turns(&on);
        let (without, _, _) = turns(&off);
        assert_eq!(with, without);
        let status = on.lookup_status().unwrap().unwrap();
        let probe = status.probe.expect("probed");
        eprintln!(
            "{probe:?}: drafts of up to {}; {accepted} of {drafted} drafted tokens kept",
            status.max_draft
        );
        assert_eq!((probe.seconds.len(), probe.logit_error.len()), (3, 3));
        assert!(probe.seconds.iter().all(|&s| s > 0.0), "{probe:?}");
        assert_eq!(probe.logit_error[0], 0.0);
        assert!(accepted <= drafted);
        if exact {
            assert_eq!(probe.logit_error, [0.0; 3], "q4_k_m batches are exact");
            assert_eq!(status.max_draft, 2);
            // Whether drafts paid above depends on this machine's timing;
            // drafted at every step, they still say the same.
            let (drafting, drafted, accepted) = turns(&on_q8_0(Lookup::Always));
            eprintln!("always: {accepted} of {drafted}");
            assert_eq!(drafting, without);
            assert!(accepted > 0, "no draft was kept: the test proves nothing");
        } else {
            assert!(probe.logit_error[1] > 0.0, "f32 batches round differently");
            assert_eq!(status.max_draft, 0);
            assert_eq!(drafted, 0, "a draft where batches are not exact");
        }
    }
}

/// A probe that finds no room in the context (lookup turned on when the
/// cache is full) leaves lookup off and the cache as it was; the phase runs.
#[test]
fn a_probe_without_room_leaves_lookup_off_and_the_phase_runs() {
    use o1::engine::Lookup;
    let e = engine_with(
        |c| {
            c.model = wide_q4_k_m().clone();
            c.kv_type = Some(o1::model::KvType::Q8_0);
            c.lookup = Lookup::Off;
            c.n_ctx = Some(256);
        },
        &[],
    );
    // A prompt that fills the context but for a token or two.
    let n_ctx = e.loaded().n_ctx;
    let mut words = " cat".repeat(n_ctx / 4);
    let full = loop {
        words.push_str(" cat");
        let p = e
            .probe(
                vec![Message::new(Role::User, &words)],
                Phase::Reasoning,
                true,
            )
            .unwrap();
        if p.tokens.len() >= n_ctx - 2 {
            break p.tokens;
        }
    };
    assert!(full.len() <= n_ctx);
    let history = vec![Message::new(Role::User, "Hi")];
    e.set_lookup(Lookup::On).unwrap();
    let (tx, rx) = mpsc::channel();
    e.phase(history, Phase::Reasoning, 8, tx).unwrap();
    let done = finished(&collect(rx));
    assert_eq!(done.len(), 1, "the phase ran");
    let status = e.lookup_status().unwrap().unwrap();
    assert!(status.probe.is_none(), "{status:?}");
    assert_eq!(status.max_draft, 0);
}

/// Lookup decoding changes how many decodes a phase takes, never what it
/// says: the same tokens, stops and stats as one token per decode, and the
/// cache after each phase holds exactly the same tokens (rejected drafts,
/// and a draft cut by the limit or an end of turn, are gone).
#[test]
fn lookup_gives_the_plain_greedy_tokens_and_leaves_the_same_cache() {
    use o1::engine::Lookup;
    let run = |lookup: Lookup| {
        // The cache lookup runs with (see the test above).
        let e = engine_with(
            |c| {
                c.lookup = lookup;
                c.kv_type = Some(o1::model::KvType::Q8_0);
            },
            &[],
        );
        let mut phases = Vec::new();
        let mut caches = Vec::new();
        let mut history = Vec::new();
        for (q, limits) in [
            ("Hi", (60, 40)),
            ("Say it again: the cat sat on the mat", (37, 23)),
            ("More", (50, 50)),
        ] {
            history.push(Message::new(Role::User, q));
            for (phase, limit) in [(Phase::Reasoning, limits.0), (Phase::Answer, limits.1)] {
                let (tx, rx) = mpsc::channel();
                e.phase(history.clone(), phase, limit, tx).unwrap();
                let done = finished(&collect(rx));
                let role = match phase {
                    Phase::Reasoning => Role::Reasoning,
                    Phase::Answer => Role::Assistant,
                };
                history.push(Message::new(role, done[0].1.clone()));
                phases.extend(done);
                // What the cache holds now (the probe's prefill then
                // changes it the same way in both runs).
                caches.push(
                    e.probe(vec![], Phase::Reasoning, false)
                        .unwrap()
                        .cached_before,
                );
            }
        }
        (phases, caches)
    };
    let (plain, plain_caches) = run(Lookup::Off);
    let (lookup, lookup_caches) = run(Lookup::Always);
    assert_eq!(plain.len(), lookup.len());
    let mut accepted = 0;
    for (p, l) in plain.iter().zip(&lookup) {
        assert_eq!((p.0, &p.1, &p.2, p.3), (l.0, &l.1, &l.2, l.3), "{:?}", l.0);
        let (ps, ls) = (&p.4, &l.4);
        assert_eq!(
            (ps.prompt_tokens, ps.reused_tokens, ps.prefilled_tokens),
            (ls.prompt_tokens, ls.reused_tokens, ls.prefilled_tokens),
            "the cache re-use of each phase"
        );
        assert_eq!((ps.drafted_tokens, ps.accepted_tokens), (0, 0));
        assert!(ls.accepted_tokens <= ls.drafted_tokens);
        accepted += ls.accepted_tokens;
    }
    assert_eq!(plain_caches, lookup_caches, "the cache after each phase");
    // A random-weight model repeats itself: drafts were made and kept, so
    // the comparison above covered accepted and rejected drafts.
    assert!(
        accepted > 0,
        "no draft was accepted: the test proves nothing"
    );
    assert!(
        lookup
            .iter()
            .any(|l| l.4.accepted_tokens < l.4.drafted_tokens),
        "no draft was rejected"
    );
}
