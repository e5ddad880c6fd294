//! The engine: one worker thread owns llama.cpp's model and context and
//! runs the two-phase turns; callers talk to it through an [`Engine`]
//! handle. Commands go in over a channel, each turn carries the channel its
//! [`Event`]s go out on, and cancelling or cutting the reasoning short are
//! flags the worker checks at every token. Dropping the handle stops the
//! thread.

mod runner;
mod text;

pub use runner::{Prefill, RunError};
pub use text::Utf8Stream;

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use llama_cpp_2::context::params::{KvCacheType, LlamaContextParams};
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::logit_bias::LlamaLogitBias;
use llama_cpp_2::token::LlamaToken;
use serde::Serialize;

use crate::chat::{self, Message, Phase, Role};
use crate::model::{self, KvType, ModelError, ModelInfo};
use runner::Runner;

/// Layers to offload to a GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum GpuLayers {
    /// As many as fit in the device's free memory, leaving headroom.
    #[default]
    Auto,
    All,
    Count(u32),
}

impl std::str::FromStr for GpuLayers {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(GpuLayers::Auto),
            "all" => Ok(GpuLayers::All),
            n => n
                .parse()
                .map(GpuLayers::Count)
                .map_err(|_| format!("`{s}` is not auto, all or a number of layers")),
        }
    }
}

/// What to do when a turn does not fit in the context.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OnFull {
    /// Drop the oldest reasoning, then the oldest turns (never the system message).
    #[default]
    Drop,
    /// End the chat with a message, as the model card's reference loop does.
    Stop,
}

/// Sampling settings given by the user; unset ones come from the model.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SamplingOverrides {
    pub temperature: Option<f32>,
    pub top_k: Option<u32>,
    pub top_p: Option<f32>,
    pub min_p: Option<f32>,
    pub repeat_penalty: Option<f32>,
    pub seed: Option<u32>,
}

/// The sampling a phase uses. Temperature 0 is greedy decoding.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sampling {
    pub temperature: f32,
    pub top_k: u32,
    pub top_p: f32,
    pub min_p: f32,
    pub repeat_penalty: f32,
    pub seed: u32,
    /// Added to a token's logit before sampling (tests force tokens with it).
    #[serde(skip)]
    pub logit_bias: Vec<(u32, f32)>,
}

impl Sampling {
    /// The checkpoint's defaults (greedy unless it samples) under the user's overrides.
    pub fn resolve(model: &model::GenerationDefaults, o: &SamplingOverrides) -> Self {
        let samples = model.do_sample.unwrap_or(false);
        let model_temp = if samples {
            model.temperature.unwrap_or(1.0)
        } else {
            0.0
        };
        Sampling {
            temperature: o.temperature.unwrap_or(model_temp).max(0.0),
            top_k: o.top_k.or(model.top_k.filter(|_| samples)).unwrap_or(0),
            top_p: o.top_p.or(model.top_p.filter(|_| samples)).unwrap_or(1.0),
            min_p: o.min_p.or(model.min_p.filter(|_| samples)).unwrap_or(0.0),
            repeat_penalty: o.repeat_penalty.or(model.repetition_penalty).unwrap_or(1.0),
            seed: o.seed.unwrap_or(0x5EED),
            logit_bias: Vec::new(),
        }
    }

    fn sampler(&self, n_vocab: i32) -> LlamaSampler {
        let mut chain = Vec::new();
        if !self.logit_bias.is_empty() {
            let biases: Vec<LlamaLogitBias> = self
                .logit_bias
                .iter()
                .map(|&(t, b)| LlamaLogitBias::new(LlamaToken(t as i32), b))
                .collect();
            chain.push(LlamaSampler::logit_bias(n_vocab, &biases));
        }
        if self.repeat_penalty != 1.0 {
            chain.push(LlamaSampler::penalties(
                n_vocab,
                64,
                self.repeat_penalty,
                0.0,
                0.0,
            ));
        }
        if self.temperature <= 0.0 {
            chain.push(LlamaSampler::greedy());
        } else {
            if self.top_k > 0 {
                chain.push(LlamaSampler::top_k(self.top_k as i32));
            }
            if self.top_p < 1.0 {
                chain.push(LlamaSampler::top_p(self.top_p, 1));
            }
            if self.min_p > 0.0 {
                chain.push(LlamaSampler::min_p(self.min_p, 1));
            }
            chain.push(LlamaSampler::temp(self.temperature));
            chain.push(LlamaSampler::dist(self.seed));
        }
        LlamaSampler::chain_simple(chain)
    }
}

/// Per-phase token budgets (the reference loop's `max_new_tokens`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub reasoning: usize,
    pub answer: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            reasoning: 3000,
            answer: 3000,
        }
    }
}

/// Everything needed to start an engine.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub model: PathBuf,
    /// Context size; `None`: the trained length capped by a memory budget.
    pub n_ctx: Option<u32>,
    pub n_batch: u32,
    /// `None`: every core.
    pub threads: Option<usize>,
    pub gpu_layers: GpuLayers,
    pub kv_type: KvType,
    pub mmap: bool,
    /// The system message; empty for none.
    pub system: String,
    pub sampling: SamplingOverrides,
    pub limits: Limits,
    pub on_full: OnFull,
}

impl EngineConfig {
    pub fn new(model: impl Into<PathBuf>) -> Self {
        EngineConfig {
            model: model.into(),
            n_ctx: None,
            n_batch: 512,
            threads: None,
            gpu_layers: GpuLayers::Auto,
            kv_type: KvType::F16,
            mmap: true,
            system: chat::DEFAULT_SYSTEM.to_string(),
            sampling: SamplingOverrides::default(),
            limits: Limits::default(),
            on_full: OnFull::Drop,
        }
    }
}

/// What the engine settled on when it loaded the model.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub info: ModelInfo,
    pub n_ctx: usize,
    pub n_batch: usize,
    pub threads: usize,
    pub gpu_layers: u32,
    pub sampling: Sampling,
    /// Things the user should know (e.g. a GPU option ignored on a CPU build).
    pub notes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("cannot create a llama.cpp context of {n_ctx} tokens: {detail}")]
    Context { n_ctx: usize, detail: String },
    #[error(
        "a context of {n_ctx} tokens cannot hold this turn: the prompt needs {prompt} tokens plus room \
         for {reserve} generated ones; raise --ctx or lower --max-reasoning/--max-answer"
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
    #[error("the engine thread has stopped")]
    Stopped,
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

/// A prefill without generation, for tests and benchmarks.
#[derive(Clone, Debug)]
pub struct Probe {
    pub prompt: String,
    pub tokens: Vec<u32>,
    pub prefill: Prefill,
    pub logits: Vec<f32>,
}

/// `o1 bench` figures: seconds per repetition.
#[derive(Clone, Debug, Default)]
pub struct BenchRuns {
    pub prompt_seconds: Vec<f64>,
    pub generate_seconds: Vec<f64>,
}

enum Command {
    Turn {
        id: u64,
        user: String,
        events: Sender<Event>,
    },
    Phase {
        id: u64,
        messages: Vec<Message>,
        phase: Phase,
        limit: usize,
        events: Sender<Event>,
    },
    Probe {
        messages: Vec<Message>,
        phase: Phase,
        fresh: bool,
        reply: Sender<Result<Probe, EngineError>>,
    },
    Bench {
        prompt: usize,
        generate: usize,
        reps: usize,
        reply: Sender<Result<BenchRuns, EngineError>>,
    },
    SetHistory(Vec<Message>),
    /// Prefill the conversation now, so the next turn starts at once.
    Warm,
    History(Sender<Vec<Message>>),
    SetSampling(Sampling),
    Shutdown,
}

/// Flags the worker polls at every token.
#[derive(Default)]
struct Flags {
    /// Turns with an id at or below this are cancelled.
    cancel_upto: AtomicU64,
    /// Reasoning of turns with an id at or below this is cut short.
    answer_now_upto: AtomicU64,
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
            .spawn(move || worker(config, info, rx, worker_flags, ready_tx, progress))
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

    /// Runs a user turn (reasoning, then answer) on the engine's conversation.
    pub fn turn(&self, user: impl Into<String>, events: Sender<Event>) -> Result<(), EngineError> {
        let id = self.next_id();
        self.send(Command::Turn {
            id,
            user: user.into(),
            events,
        })
    }

    /// Runs one phase on an explicit history, leaving the conversation alone.
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

    /// Stops the running turn within one token; the partial text is kept.
    pub fn cancel(&self) {
        self.flags
            .cancel_upto
            .store(self.last_id.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    /// Ends the running turn's reasoning now and goes on with the answer.
    pub fn answer_now(&self) {
        self.flags
            .answer_now_upto
            .store(self.last_id.load(Ordering::SeqCst), Ordering::SeqCst);
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

    /// Sends a command that carries its reply channel, and waits for the reply.
    fn request<T>(&self, command: impl FnOnce(Sender<T>) -> Command) -> Result<T, EngineError> {
        let (reply, rx) = mpsc::channel();
        self.send(command(reply))?;
        rx.recv().map_err(|_| EngineError::Stopped)
    }

    pub fn set_sampling(&self, sampling: Sampling) -> Result<(), EngineError> {
        self.send(Command::SetSampling(sampling))
    }

    /// Prefills the prompt of `phase` after `messages` and returns the next-token logits.
    /// `fresh` empties the cache first (no re-use).
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
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.flags.cancel_upto.store(u64::MAX, Ordering::SeqCst);
        let _ = self.tx.send(Command::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Room kept for the generation markers around a phase's text.
const MARKER_TOKENS: usize = 8;

fn worker(
    config: EngineConfig,
    info: ModelInfo,
    rx: Receiver<Command>,
    flags: Arc<Flags>,
    ready: Sender<Result<Loaded, EngineError>>,
    progress: impl FnMut(f32) -> bool + Send + 'static,
) {
    let backend = o1_gguf::llama::backend();
    let mut notes = Vec::new();
    let gpu_layers = choose_gpu_layers(&config, &info, &mut notes);
    let params = LlamaModelParams::default()
        .with_n_gpu_layers(gpu_layers)
        .with_use_mmap(config.mmap)
        .with_progress_callback(progress);
    o1_gguf::llama::clear_recent_errors();
    let model = match LlamaModel::load_from_file(backend, &config.model, &params) {
        Ok(m) => m,
        Err(e) => {
            let detail = o1_gguf::llama::recent_errors().join("; ");
            let detail = if detail.is_empty() {
                e.to_string()
            } else {
                detail
            };
            let _ = ready.send(Err(ModelError::LoadFailed {
                path: config.model.clone(),
                detail,
            }
            .into()));
            return;
        }
    };
    let n_ctx = config
        .n_ctx
        .unwrap_or_else(|| model::default_n_ctx(&info, config.kv_type, model::total_memory()))
        .max(64) as usize;
    let threads = config
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let n_batch = (config.n_batch as usize).clamp(1, n_ctx);
    let kv = match config.kv_type {
        KvType::F16 => KvCacheType::F16,
        KvType::Q8_0 => KvCacheType::Q8_0,
    };
    let mut ctx_params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx as u32))
        .with_n_batch(n_batch as u32)
        .with_n_ubatch(n_batch as u32)
        .with_n_threads(threads as i32)
        .with_n_threads_batch(threads as i32)
        .with_type_k(kv)
        .with_type_v(kv);
    if config.kv_type == KvType::Q8_0 {
        // llama.cpp needs flash attention for a quantized V cache.
        ctx_params =
            ctx_params.with_flash_attention_policy(llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED);
    }
    let ctx = match model.new_context(backend, ctx_params) {
        Ok(c) => c,
        Err(e) => {
            let detail = o1_gguf::llama::recent_errors().join("; ");
            let _ = ready.send(Err(EngineError::Context {
                n_ctx,
                detail: if detail.is_empty() {
                    e.to_string()
                } else {
                    detail
                },
            }));
            return;
        }
    };
    let runner = Runner::new(&model, ctx);
    // The vocabulary must have the reasoning token as one special token.
    if runner
        .tokenize(&[chat::Segment::Special(chat::REASONING)])
        .is_err()
    {
        let _ = ready.send(Err(
            ModelError::NoReasoningToken(config.model.clone()).into()
        ));
        return;
    }
    let sampling = Sampling::resolve(&info.generation, &config.sampling);
    let loaded = Loaded {
        info,
        n_ctx,
        n_batch,
        threads,
        gpu_layers,
        sampling: sampling.clone(),
        notes,
    };
    if ready.send(Ok(loaded)).is_err() {
        return;
    }
    let mut w = Worker {
        runner,
        flags,
        config,
        sampling,
        conversation: Vec::new(),
    };
    for cmd in rx {
        match cmd {
            Command::Turn { id, user, events } => {
                if let Err(e) = w.turn(id, user, &events) {
                    let _ = events.send(Event::Error(Arc::new(e)));
                }
            }
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
            Command::Probe {
                messages,
                phase,
                fresh,
                reply,
            } => {
                let _ = reply.send(w.probe(&messages, phase, fresh));
            }
            Command::Bench {
                prompt,
                generate,
                reps,
                reply,
            } => {
                let _ = reply.send(w.bench(prompt, generate, reps));
            }
            Command::SetHistory(messages) => w.conversation = messages,
            Command::Warm => {
                let messages = w.messages();
                if let Err(e) = w.probe(&messages, Phase::Reasoning, false) {
                    tracing::warn!("warming the cache failed: {e}");
                }
            }
            Command::History(reply) => {
                let _ = reply.send(w.messages());
            }
            Command::SetSampling(s) => w.sampling = s,
            Command::Shutdown => break,
        }
    }
}

/// Offload: none on a CPU build; `auto` fits layers in the GPU's free memory.
fn choose_gpu_layers(config: &EngineConfig, info: &ModelInfo, notes: &mut Vec<String>) -> u32 {
    let all = info.n_layer + 1;
    let gpus: Vec<_> = llama_cpp_2::list_llama_ggml_backend_devices()
        .into_iter()
        .filter(|d| matches!(d.device_type, llama_cpp_2::LlamaBackendDeviceType::Gpu))
        .collect();
    if gpus.is_empty() {
        if config.gpu_layers != GpuLayers::Auto && config.gpu_layers != GpuLayers::Count(0) {
            notes.push("no GPU backend in this build (or no GPU found): running on the CPU".into());
        }
        return 0;
    }
    match config.gpu_layers {
        GpuLayers::All => all,
        GpuLayers::Count(n) => n.min(all),
        GpuLayers::Auto => {
            let free = gpus.iter().map(|d| d.memory_free as u64).max().unwrap_or(0);
            let headroom = 512 << 20;
            let n_ctx = u64::from(config.n_ctx.unwrap_or(4096));
            let per_layer = info.file_bytes / u64::from(all)
                + info.kv_bytes_per_token(config.kv_type) * n_ctx / u64::from(info.n_layer);
            let fit = (free.saturating_sub(headroom) / per_layer.max(1)) as u32;
            let n = fit.min(all);
            notes.push(format!(
                "offloading {n} of {all} layers to the GPU ({} MiB free)",
                free >> 20
            ));
            n
        }
    }
}

struct Worker<'m> {
    runner: Runner<'m>,
    flags: Arc<Flags>,
    config: EngineConfig,
    sampling: Sampling,
    /// Messages after the system message.
    conversation: Vec<Message>,
}

/// The result of one phase.
struct Outcome {
    text: String,
    stop: Stop,
}

impl Worker<'_> {
    /// The system message, if any, then the conversation.
    fn messages(&self) -> Vec<Message> {
        let mut m = Vec::with_capacity(self.conversation.len() + 1);
        if !self.config.system.is_empty() {
            m.push(Message::new(Role::System, self.config.system.clone()));
        }
        m.extend(self.conversation.iter().cloned());
        m
    }

    fn cancelled(&self, id: u64) -> bool {
        self.flags.cancel_upto.load(Ordering::SeqCst) >= id
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
            .map(|m| vocab.tokenize(m.content.as_bytes(), false, false).len() + 4)
            .sum();
        ContextUsage {
            used: self.runner.cached().len(),
            n_ctx: self.runner.n_ctx(),
            reasoning,
        }
    }

    fn turn(&mut self, id: u64, user: String, events: &Sender<Event>) -> Result<(), EngineError> {
        if user.trim().is_empty() {
            return Err(EngineError::EmptyQuestion);
        }
        self.conversation.push(Message::new(Role::User, user));
        if let Err(e) = self.make_room(events) {
            self.conversation.pop();
            return Err(e);
        }
        let limits = self.config.limits;
        let messages = self.messages();
        let reasoning =
            self.run_phase(id, &messages, Phase::Reasoning, limits.reasoning, events)?;
        self.conversation.push(Message {
            role: Role::Reasoning,
            content: reasoning.text,
            cut: reasoning.stop.is_cut(),
        });
        if !matches!(reasoning.stop, Stop::Cancelled | Stop::ContextFull) {
            let messages = self.messages();
            let answer = self.run_phase(id, &messages, Phase::Answer, limits.answer, events)?;
            self.conversation.push(Message {
                role: Role::Assistant,
                content: answer.text,
                cut: answer.stop.is_cut(),
            });
        }
        let _ = events.send(Event::TurnFinished {
            usage: self.usage(),
        });
        Ok(())
    }

    /// Makes the new turn fit: the reasoning prompt plus both phases' budgets.
    fn make_room(&mut self, events: &Sender<Event>) -> Result<(), EngineError> {
        let n_ctx = self.runner.n_ctx();
        let reserve = self.config.limits.reasoning + self.config.limits.answer + 2 * MARKER_TOKENS;
        let (mut dropped_reasoning, mut dropped_turns) = (0, 0);
        loop {
            let prompt = self
                .prompt_tokens(&self.messages(), Phase::Reasoning)?
                .len();
            if prompt + reserve <= n_ctx {
                break;
            }
            if self.config.on_full == OnFull::Stop && self.conversation.len() > 1 {
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
                    reserve,
                    n_ctx,
                });
            }
        }
        if dropped_reasoning + dropped_turns > 0 {
            let _ = events.send(Event::Trimmed {
                dropped_reasoning,
                dropped_turns,
                usage: self.usage(),
            });
        }
        Ok(())
    }

    fn run_phase(
        &mut self,
        id: u64,
        messages: &[Message],
        phase: Phase,
        limit: usize,
        events: &Sender<Event>,
    ) -> Result<Outcome, EngineError> {
        let started = Instant::now();
        let prompt = self.prompt_tokens(messages, phase)?;
        let flags = self.flags.clone();
        let stop_prefill = || flags.cancel_upto.load(Ordering::SeqCst) >= id;
        let prefill = match self.runner.prefill(
            &prompt,
            |done, total| {
                let _ = events.send(Event::Prefilling { phase, done, total });
            },
            stop_prefill,
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

        let model = self.runner.model();
        let vocab = model.vocab();
        let mut sampler = self.sampling.sampler(model.n_vocab());
        let mut utf8 = Utf8Stream::default();
        let (mut text, mut tokens) = (String::new(), Vec::new());
        let mut first_token_at = None;
        let gen_started = Instant::now();
        let stop = loop {
            if self.cancelled(id) {
                break Stop::Cancelled;
            }
            if phase == Phase::Reasoning && self.flags.answer_now_upto.load(Ordering::SeqCst) >= id
            {
                break Stop::AnswerNow;
            }
            if tokens.len() >= limit {
                break Stop::Limit;
            }
            let token = self.runner.sample(&mut sampler);
            first_token_at.get_or_insert_with(|| started.elapsed().as_secs_f64());
            tokens.push(token.0 as u32);
            if vocab.is_eog(token) {
                break Stop::EndOfTurn;
            }
            // Control tokens (e.g. a stray <|im_start|>) render as nothing.
            let delta = utf8.push(&vocab.token_to_piece(token, false, None));
            if !delta.is_empty() {
                text.push_str(&delta);
                let _ = events.send(Event::Text { phase, text: delta });
            }
            match self.runner.push(token) {
                Ok(()) => {}
                Err(RunError::ContextFull(_)) => break Stop::ContextFull,
                Err(e) => return Err(e.into()),
            }
        };
        let tail = utf8.finish();
        if !tail.is_empty() {
            text.push_str(&tail);
            let _ = events.send(Event::Text { phase, text: tail });
        }
        let generated = tokens.len();
        let generation_seconds = gen_started.elapsed().as_secs_f64();
        let stats = PhaseStats {
            prompt_tokens: prefill.prompt_tokens,
            reused_tokens: prefill.reused,
            prefilled_tokens: prefill.prefilled,
            generated_tokens: generated,
            prefill_seconds: prefill.seconds,
            time_to_first_token: first_token_at.unwrap_or(0.0),
            generation_seconds,
            tokens_per_second: if generation_seconds > 0.0 {
                generated as f64 / generation_seconds
            } else {
                0.0
            },
        };
        let _ = events.send(Event::PhaseFinished {
            phase,
            text: text.clone(),
            tokens,
            stop,
            stats,
        });
        Ok(Outcome { text, stop })
    }

    fn probe(
        &mut self,
        messages: &[Message],
        phase: Phase,
        fresh: bool,
    ) -> Result<Probe, EngineError> {
        if fresh {
            self.runner.clear();
        }
        let segments = chat::render(messages, phase);
        let tokens = self.runner.tokenize(&segments)?;
        let prefill = self.runner.prefill(&tokens, |_, _| {}, || false)?;
        Ok(Probe {
            prompt: chat::to_text(&segments),
            tokens: tokens.iter().map(|t| t.0 as u32).collect(),
            prefill,
            logits: self.runner.logits().to_vec(),
        })
    }

    fn bench(
        &mut self,
        prompt: usize,
        generate: usize,
        reps: usize,
    ) -> Result<BenchRuns, EngineError> {
        let n_vocab = self.runner.model().n_vocab().max(2);
        // Arbitrary ordinary tokens, as llama-bench uses.
        let tokens: Vec<LlamaToken> = (0..prompt)
            .map(|i| LlamaToken((i as i32 * 7919 + 1000) % (n_vocab / 2)))
            .collect();
        let token = LlamaToken(1000 % (n_vocab / 2));
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
}
