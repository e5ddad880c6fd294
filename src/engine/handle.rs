//! The [`Engine`] handle and the commands it sends to the engine thread.
//!
//! Every request is a [`Command`] on one channel, served in order: a turn
//! carries the channel its [`Event`]s go out on, a query carries the channel
//! its reply comes back on. Cancelling and cutting the reasoning short do
//! not queue behind a running turn: they are [`Flags`] the worker polls at
//! every token. The handle is `Send + Sync`, so any thread may drive it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

#[cfg(feature = "testing")]
use super::config::Sampling;
use super::config::{Completion, EngineConfig, Lookup, RawCompletion};
#[cfg(feature = "testing")]
use super::event::Probe;
use super::event::{BenchRuns, EngineError, Event, TimelineSecond};
use super::load::{Loaded, Weights};
#[cfg(feature = "testing")]
use super::lookup::BatchProbe;
use super::lookup::LookupStatus;
use super::runner::Prefill;
use super::turn::{Flags, Worker};
use crate::chat::{Message, Phase};
use crate::memory;
use crate::model::ModelInfo;

enum Command {
    Turn {
        id: u64,
        user: String,
        events: Sender<Event>,
    },
    Complete {
        id: u64,
        request: Completion,
        events: Sender<Event>,
    },
    CompleteRaw {
        id: u64,
        request: RawCompletion,
        events: Sender<Event>,
    },
    SetHistory(Vec<Message>),
    /// Prefill the conversation now, so the next turn starts at once.
    Warm,
    History(Sender<Vec<Message>>),
    SetLookup(Lookup),
    LookupStatus(Sender<Option<LookupStatus>>),
    Bench {
        prompt: usize,
        generate: usize,
        reps: usize,
        reply: Sender<Result<BenchRuns, EngineError>>,
    },
    BenchTimeline {
        seconds: u64,
        reply: Sender<Result<Vec<TimelineSecond>, EngineError>>,
    },
    BenchPrefill {
        messages: Vec<Message>,
        phase: Phase,
        reply: Sender<Result<Prefill, EngineError>>,
    },
    #[cfg(feature = "testing")]
    Phase {
        id: u64,
        messages: Vec<Message>,
        phase: Phase,
        limit: usize,
        events: Sender<Event>,
    },
    #[cfg(feature = "testing")]
    Probe {
        messages: Vec<Message>,
        phase: Phase,
        fresh: bool,
        reply: Sender<Result<Probe, EngineError>>,
    },
    #[cfg(feature = "testing")]
    ProbeBatches(Sender<Result<BatchProbe, EngineError>>),
    #[cfg(feature = "testing")]
    SetSampling(Sampling),
    Shutdown,
}

/// The handle to the engine thread.
pub struct Engine {
    tx: Sender<Command>,
    flags: Arc<Flags>,
    last_id: AtomicU64,
    thread: Option<JoinHandle<()>>,
    loaded: Loaded,
}

impl Engine {
    /// Loads the model on a new worker thread; returns once it is ready.
    /// `progress` receives the load fraction (0..=1).
    pub fn start(
        config: EngineConfig,
        progress: impl FnMut(f32) -> bool + Send + 'static,
    ) -> Result<Self, EngineError> {
        let info = ModelInfo::read(&config.model)?;
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let flags = Arc::new(Flags::default());
        let worker_flags = flags.clone();
        let thread = std::thread::Builder::new()
            .name("o1-engine".into())
            .spawn(move || engine_thread(config, info, rx, worker_flags, ready_tx, progress))
            .expect("spawn the engine thread");
        match ready_rx.recv() {
            Ok(Ok(loaded)) => Ok(Engine {
                tx,
                flags,
                last_id: AtomicU64::new(0),
                thread: Some(thread),
                loaded,
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(EngineError::Stopped)
            }
        }
    }

    pub fn loaded(&self) -> &Loaded {
        &self.loaded
    }

    fn next_id(&self) -> u64 {
        self.last_id.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn send(&self, cmd: Command) -> Result<(), EngineError> {
        self.tx.send(cmd).map_err(|_| EngineError::Stopped)
    }

    /// Sends a command that carries its reply channel, and waits for the reply.
    fn request<T>(&self, command: impl FnOnce(Sender<T>) -> Command) -> Result<T, EngineError> {
        let (reply, rx) = mpsc::channel();
        self.send(command(reply))?;
        rx.recv().map_err(|_| EngineError::Stopped)
    }

    /// Runs a user turn (reasoning, then answer) on the engine's conversation.
    pub fn turn(&self, user: impl Into<String>, events: Sender<Event>) -> Result<(), EngineError> {
        let id = self.next_id();
        self.send(Command::Turn {
            id,
            user: user.into(),
            events,
        })
    }

    /// Runs a request on its own history (reasoning, then answer), leaving
    /// the engine's conversation alone; the KV cache is re-used as far as
    /// the request's prompt shares it. Events go out as for a turn.
    pub fn complete(&self, request: Completion, events: Sender<Event>) -> Result<(), EngineError> {
        let id = self.next_id();
        self.send(Command::Complete {
            id,
            request,
            events,
        })
    }

    /// Continues a raw prompt (see [`RawCompletion`]); events go out as for
    /// a turn's answer phase.
    pub fn complete_raw(
        &self,
        request: RawCompletion,
        events: Sender<Event>,
    ) -> Result<(), EngineError> {
        let id = self.next_id();
        self.send(Command::CompleteRaw {
            id,
            request,
            events,
        })
    }

    /// Stops the running turn within one token; the partial text is kept.
    pub fn cancel(&self) {
        self.flags.cancel_upto(self.last_id.load(Ordering::SeqCst));
    }

    /// Ends the running turn's reasoning now and goes on with the answer.
    pub fn answer_now(&self) {
        self.flags
            .answer_now_upto(self.last_id.load(Ordering::SeqCst));
    }

    /// Starts a new conversation (the system message stays).
    pub fn reset(&self) -> Result<(), EngineError> {
        self.send(Command::SetHistory(Vec::new()))
    }

    /// Replaces the conversation (after the system message), e.g. to resume one.
    pub fn set_history(&self, messages: Vec<Message>) -> Result<(), EngineError> {
        self.send(Command::SetHistory(messages))
    }

    /// Processes the conversation's prompt in the background (after a
    /// resume), so the next turn only prefills the new question.
    pub fn warm(&self) -> Result<(), EngineError> {
        self.send(Command::Warm)
    }

    /// The conversation as the model sees it (after any trimming).
    pub fn history(&self) -> Result<Vec<Message>, EngineError> {
        self.request(Command::History)
    }

    /// Turns lookup decoding on or off for the following phases.
    pub fn set_lookup(&self, lookup: Lookup) -> Result<(), EngineError> {
        self.send(Command::SetLookup(lookup))
    }

    /// What lookup decoding found on this machine, once it probed it.
    pub fn lookup_status(&self) -> Result<Option<LookupStatus>, EngineError> {
        self.request(Command::LookupStatus)
    }

    /// Times `reps` prompt-processing runs of `prompt` tokens and generation runs of `generate` tokens.
    pub fn bench(
        &self,
        prompt: usize,
        generate: usize,
        reps: usize,
    ) -> Result<BenchRuns, EngineError> {
        self.request(|reply| Command::Bench {
            prompt,
            generate,
            reps,
            reply,
        })?
    }

    /// Generates for `seconds`; each second's tokens and threads.
    pub fn bench_timeline(&self, seconds: u64) -> Result<Vec<TimelineSecond>, EngineError> {
        self.request(|reply| Command::BenchTimeline { seconds, reply })?
    }

    /// Prefills the prompt of `phase` after `messages` on an empty cache:
    /// what starting that phase costs without re-use.
    pub fn bench_prefill(
        &self,
        messages: Vec<Message>,
        phase: Phase,
    ) -> Result<Prefill, EngineError> {
        self.request(|reply| Command::BenchPrefill {
            messages,
            phase,
            reply,
        })?
    }

    /// Runs one phase on an explicit history, leaving the conversation alone.
    #[cfg(feature = "testing")]
    pub fn phase(
        &self,
        messages: Vec<Message>,
        phase: Phase,
        limit: usize,
        events: Sender<Event>,
    ) -> Result<(), EngineError> {
        let id = self.next_id();
        self.send(Command::Phase {
            id,
            messages,
            phase,
            limit,
            events,
        })
    }

    /// Prefills the prompt of `phase` after `messages` and returns the next-token logits.
    /// `fresh` empties the cache first (no re-use).
    #[cfg(feature = "testing")]
    pub fn probe(
        &self,
        messages: Vec<Message>,
        phase: Phase,
        fresh: bool,
    ) -> Result<Probe, EngineError> {
        self.request(|reply| Command::Probe {
            messages,
            phase,
            fresh,
            reply,
        })?
    }

    /// Runs lookup's probe on the cache as it is now (see
    /// `Runner::probe_batches`).
    #[cfg(feature = "testing")]
    pub fn probe_batches(&self) -> Result<BatchProbe, EngineError> {
        self.request(Command::ProbeBatches)?
    }

    /// Replaces the sampling of the following phases.
    #[cfg(feature = "testing")]
    pub fn set_sampling(&self, sampling: Sampling) -> Result<(), EngineError> {
        self.send(Command::SetSampling(sampling))
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.flags.cancel_upto(u64::MAX);
        let _ = self.tx.send(Command::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The engine thread: loads the model, reports on `ready`, then serves
/// commands until the handle is dropped.
fn engine_thread(
    config: EngineConfig,
    info: ModelInfo,
    commands: Receiver<Command>,
    flags: Arc<Flags>,
    ready: Sender<Result<Loaded, EngineError>>,
    progress: impl FnMut(f32) -> bool + Send + 'static,
) {
    // Before loading: a model that cannot fit the budget fails at once.
    let plan = match memory::plan(&info, config.wanted_memory(&info)) {
        Ok(plan) => plan,
        Err(e) => {
            let _ = ready.send(Err(e.into()));
            return;
        }
    };
    let weights = match Weights::load(&config, &info, plan.shape, progress) {
        Ok(w) => w,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let (runner, loaded) = match weights.context(&config, info, plan) {
        Ok(started) => started,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    // What changes a decode's cost or rounding: the threads, the batch,
    // the KV type and the offload.
    let probe_key = super::lookup::probe_key(
        &config.model,
        &format!(
            "t{} b{} kv {} gpu {}",
            loaded.threads,
            loaded.n_batch,
            loaded.kv_type.name(),
            loaded.gpu_layers
        ),
    );
    let worker = Worker::new(
        runner,
        flags,
        config,
        loaded.sampling.clone(),
        probe_key,
        loaded.kv_type,
    );
    if ready.send(Ok(loaded)).is_err() {
        return;
    }
    serve(worker, commands);
}

/// Runs each command on the worker, in order.
fn serve(mut w: Worker<'_>, commands: Receiver<Command>) {
    for cmd in commands {
        match cmd {
            Command::Turn { id, user, events } => {
                #[cfg(feature = "testing")]
                injected_panic(id);
                if let Err(e) = w.turn(id, user, &events) {
                    let _ = events.send(Event::Error(Arc::new(e)));
                }
            }
            Command::Complete {
                id,
                request,
                events,
            } => {
                if let Err(e) = w.complete(id, request, &events) {
                    let _ = events.send(Event::Error(Arc::new(e)));
                }
            }
            Command::CompleteRaw {
                id,
                request,
                events,
            } => {
                if let Err(e) = w.complete_raw(id, request, &events) {
                    let _ = events.send(Event::Error(Arc::new(e)));
                }
            }
            Command::SetHistory(messages) => w.set_conversation(messages),
            Command::Warm => {
                if let Err(e) = w.warm() {
                    tracing::warn!("warming the cache failed: {e}");
                }
            }
            Command::History(reply) => {
                let _ = reply.send(w.messages());
            }
            Command::SetLookup(lookup) => w.set_lookup(lookup),
            Command::LookupStatus(reply) => {
                let _ = reply.send(w.lookup_status());
            }
            Command::Bench {
                prompt,
                generate,
                reps,
                reply,
            } => {
                let _ = reply.send(w.bench(prompt, generate, reps));
            }
            Command::BenchTimeline { seconds, reply } => {
                let _ = reply.send(w.bench_timeline(seconds));
            }
            Command::BenchPrefill {
                messages,
                phase,
                reply,
            } => {
                let _ = reply.send(w.bench_prefill(&messages, phase));
            }
            #[cfg(feature = "testing")]
            Command::Phase {
                id,
                messages,
                phase,
                limit,
                events,
            } => {
                if let Err(e) = w.run_phase(id, &messages, phase, limit, &events) {
                    let _ = events.send(Event::Error(Arc::new(e)));
                }
            }
            #[cfg(feature = "testing")]
            Command::Probe {
                messages,
                phase,
                fresh,
                reply,
            } => {
                let _ = reply.send(w.probe(&messages, phase, fresh));
            }
            #[cfg(feature = "testing")]
            Command::ProbeBatches(reply) => {
                let _ = reply.send(w.probe_batches());
            }
            #[cfg(feature = "testing")]
            Command::SetSampling(s) => w.set_sampling(s),
            Command::Shutdown => break,
        }
    }
}

/// With `O1_TEST_ENGINE_PANIC=N`, turn N and later ones panic on the engine
/// thread as a bug in the engine would (a division by zero): for the tests
/// of how the callers survive it.
#[cfg(feature = "testing")]
fn injected_panic(turn: u64) {
    let from = std::env::var("O1_TEST_ENGINE_PANIC").ok();
    if from
        .and_then(|n| n.parse::<u64>().ok())
        .is_some_and(|n| turn >= n)
    {
        let layers = std::hint::black_box(0u64);
        std::hint::black_box(64 / layers);
    }
}

#[cfg(test)]
mod tests {
    /// A server drives the engine from its request threads.
    #[test]
    fn the_handle_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<super::Engine>();
    }
}
