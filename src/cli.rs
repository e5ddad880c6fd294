//! Command-line definitions. Parsing only: the commands turn these into work.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use o1::engine::{EngineConfig, GpuLayers, Limits, OnFull, SamplingOverrides};
use o1::model::KvType;
use o1::settings::FileSettings;
use o1_convert::OutputType;

#[derive(Parser, Debug)]
#[command(
    name = "o1",
    version,
    about = "Run the Qwen2.5-1.5B-O1 reasoning model locally",
    long_about = "o1 runs the Qwen2.5-1.5B-O1 reasoning model on your own machine: it converts \
                  the Hugging Face checkpoint into a quantized GGUF file and chats with it, \
                  showing the model's reasoning and its answer apart."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Download the model's checkpoint from the Hugging Face hub (or a mirror).
    Pull(PullArgs),
    /// Convert a checkpoint (a folder, or a pulled repo) into a (quantized) GGUF file.
    Convert(ConvertArgs),
    /// Chat in the terminal: reasoning and answer panes, a context meter.
    Tui(TuiArgs),
    /// Ask one question: the reasoning goes to stderr, the answer to stdout.
    Run(RunArgs),
    /// Measure prompt processing and generation speed.
    Bench(BenchArgs),
    /// Show a model file's metadata and the memory a context needs.
    Info(InfoArgs),
    /// List the models in the model store.
    Ls,
    /// Delete a model from the model store.
    Rm(RmArgs),
    /// Show the effective settings and where each comes from.
    Config,
}

#[derive(Args, Debug)]
#[command(
    after_help = format!(
        "Environment: HF_ENDPOINT (a mirror), HF_TOKEN (gated repos; else the token file\n\
        in HF_HOME), HF_HUB_CACHE or HF_HOME (the cache, shared with Python and llama.cpp),\n\
        HF_HUB_OFFLINE=1 (no network: use what is cached).\n\n{}",
        o1_hub::exit_code_help()
    )
)]
pub struct PullArgs {
    /// The repository [default: Laurie/Qwen2.5-1.5B-O1, or the config's `repo`].
    pub repo: Option<String>,

    /// Branch, tag or commit [default: main].
    #[arg(long, env = "O1_REVISION")]
    pub revision: Option<String>,

    /// No progress output (bars on a terminal, lines otherwise).
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    o1 convert Laurie/Qwen2.5-1.5B-O1                 # a pulled repo, into the model store\n  \
    o1 convert ./Qwen2.5-1.5B-O1 -t q8_0 -o o1-q8.gguf\n\n\
    Types: f32, f16, bf16 (lossless for bf16 checkpoints), q8_0, q6_k, q5_k_m, q4_k_m (default),\n\
    q4_0, iq4_xs. The quantization is llama.cpp's own, with its per-tensor mixes.")]
pub struct ConvertArgs {
    /// A checkpoint folder (config.json, tokenizer.json, model.safetensors or shards),
    /// or a repo id pulled with `o1 pull`.
    pub checkpoint: String,

    /// Revision of a pulled repo.
    #[arg(long, env = "O1_REVISION")]
    pub revision: Option<String>,

    /// Output file [default: <model store>/<repo or folder>-<type>.gguf].
    #[arg(short, long, value_name = "OUT.gguf")]
    pub output: Option<PathBuf>,

    /// Output type [default: q4_k_m, or the config's `type`].
    #[arg(short = 't', long = "type", value_parser = parse_type, env = "O1_TYPE")]
    pub out_type: Option<OutputType>,

    /// Overwrite the output file if it exists.
    #[arg(short, long)]
    pub force: bool,

    /// Threads for the quantization [default: all cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Model name stored in the file [default: the folder's name].
    #[arg(long)]
    pub name: Option<String>,

    /// Skip loading the result in llama.cpp and comparing tokenizers.
    #[arg(long)]
    pub no_verify: bool,

    /// Only print what would be written (tensor types and the file size).
    #[arg(long)]
    pub dry_run: bool,

    /// Use llama.cpp's two-step path (lossless GGUF, then llama_model_quantize).
    /// Slower and needs twice the disk; kept as the reference.
    #[arg(long, hide = true)]
    pub two_pass: bool,

    /// No progress output (a bar on a terminal, lines otherwise).
    #[arg(short, long)]
    pub quiet: bool,
}

fn parse_type(s: &str) -> Result<OutputType, String> {
    s.parse()
}

/// Options of every command that loads a model. Unset ones come from the
/// config file, then the built-in defaults (`o1 config` shows them).
#[derive(Args, Debug, Clone)]
pub struct EngineArgs {
    /// Context size in tokens [default: the trained length, capped to fit in memory].
    #[arg(long = "ctx", value_name = "TOKENS", env = "O1_CTX")]
    pub n_ctx: Option<u32>,

    /// Layers to offload to the GPU: auto, all or a number (CPU builds ignore it) [default: auto].
    #[arg(long, value_name = "auto|all|N", env = "O1_GPU_LAYERS")]
    pub gpu_layers: Option<GpuLayers>,

    /// KV cache type: q8_0 halves its memory (turns on flash attention) [default: f16].
    #[arg(long, value_enum, env = "O1_KV_TYPE")]
    pub kv_type: Option<KvType>,

    /// CPU threads [default: all cores].
    #[arg(long, value_name = "N", env = "O1_THREADS")]
    pub threads: Option<usize>,

    /// Prompt tokens per llama.cpp batch.
    #[arg(long, default_value_t = 512, value_name = "N")]
    pub batch: u32,

    /// Read the whole model into memory instead of mapping the file.
    #[arg(long)]
    pub no_mmap: bool,
}

/// Options of the commands that chat.
#[derive(Args, Debug, Clone)]
pub struct ChatArgs {
    /// The system message ("" for none) [default: "You are a helpful assistant"].
    #[arg(long, env = "O1_SYSTEM")]
    pub system: Option<String>,

    /// Token budget of the reasoning phase [default: 3000].
    #[arg(long, value_name = "N", env = "O1_MAX_REASONING")]
    pub max_reasoning: Option<usize>,

    /// Token budget of the answer phase [default: 3000].
    #[arg(long, value_name = "N", env = "O1_MAX_ANSWER")]
    pub max_answer: Option<usize>,

    /// When a turn does not fit: drop old reasoning, then old turns; or stop [default: drop].
    #[arg(long, value_enum, env = "O1_ON_FULL")]
    pub on_full: Option<OnFull>,

    /// Sampling temperature (0: greedy) [default: the model's, greedy for O1].
    #[arg(long, env = "O1_TEMPERATURE")]
    pub temperature: Option<f32>,

    /// Top-k sampling (0: off).
    #[arg(long, env = "O1_TOP_K")]
    pub top_k: Option<u32>,

    /// Top-p (nucleus) sampling (1: off).
    #[arg(long, env = "O1_TOP_P")]
    pub top_p: Option<f32>,

    /// Min-p sampling (0: off).
    #[arg(long, env = "O1_MIN_P")]
    pub min_p: Option<f32>,

    /// Repetition penalty over the last 64 tokens (1: off).
    #[arg(long, env = "O1_REPEAT_PENALTY")]
    pub repeat_penalty: Option<f32>,

    /// Random seed for sampling.
    #[arg(long, env = "O1_SEED")]
    pub seed: Option<u32>,
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    o1 run o1-q4_k_m.gguf \"What is 17 * 23?\"\n  \
    echo \"Explain recursion\" | o1 run o1-q4_k_m.gguf --hide-reasoning\n  \
    o1 run o1-q4_k_m.gguf \"2+2?\" --json\n\n\
    Exit codes: 0 ok, 1 error, 2 bad usage, 3 model not found, 4 model not loadable,\n\
    5 context too small or full, 130 interrupted.")]
pub struct RunArgs {
    /// The model (a .gguf file), then the question (read from stdin when absent or `-`).
    #[arg(value_name = "MODEL] [QUESTION", num_args = 0..=2)]
    pub args: Vec<String>,

    /// Do not show the reasoning.
    #[arg(long)]
    pub hide_reasoning: bool,

    /// Print {reasoning, answer, stats} as JSON instead of streaming.
    #[arg(long)]
    pub json: bool,

    /// Without a model: download and convert the default one without asking.
    #[arg(short, long)]
    pub yes: bool,

    #[command(flatten)]
    pub chat: ChatArgs,

    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// The model: a .gguf file or a stored model's name.
    pub model: Option<String>,

    /// Prompt tokens to process (pp).
    #[arg(short = 'p', long, default_value_t = 512)]
    pub prompt: usize,

    /// Tokens to generate (tg).
    #[arg(short = 'n', long = "gen", default_value_t = 128)]
    pub generate: usize,

    /// Repetitions.
    #[arg(short = 'r', long, default_value_t = 5)]
    pub reps: usize,

    /// Also measure a 5-turn chat: the last answer's start with the cache re-used vs a full re-prefill.
    #[arg(long)]
    pub chat: bool,

    /// Print JSON.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Args, Debug)]
#[command(
    after_help = "Keys: Enter sends, Esc stops, Ctrl+X answers now, Ctrl+R collapses the reasoning,\n\
    Ctrl+N new chat, Ctrl+S saves the transcript, ? shows every key, Ctrl+Q quits."
)]
pub struct TuiArgs {
    /// The model: a .gguf file or a stored model's name [default: $O1_MODEL, the config's, the store's].
    pub model: Option<String>,

    /// Reopen the last conversation.
    #[arg(long)]
    pub resume: bool,

    /// Without a model: download and convert the default one without asking.
    #[arg(short, long)]
    pub yes: bool,

    /// Start with the reasoning pane shown or collapsed [default: shown].
    #[arg(long, value_name = "shown|collapsed", env = "O1_REASONING")]
    pub reasoning: Option<String>,

    #[command(flatten)]
    pub chat: ChatArgs,

    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// The stored model's name (as `o1 ls` shows it).
    pub name: String,
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// The model: a .gguf file or a stored model's name.
    pub model: String,

    /// Context size to estimate memory for [default: the trained length].
    #[arg(long = "ctx", value_name = "TOKENS")]
    pub n_ctx: Option<u32>,

    /// KV cache type of the estimate.
    #[arg(long, value_enum, default_value = "f16")]
    pub kv_type: KvType,
}

impl EngineArgs {
    pub fn config(&self, model: PathBuf, file: &FileSettings) -> EngineConfig {
        let mut c = EngineConfig::new(model);
        c.n_ctx = self.n_ctx.or(file.ctx);
        c.gpu_layers = self.gpu_layers.or(file.gpu_layers()).unwrap_or_default();
        c.kv_type = self.kv_type.or(file.kv_type()).unwrap_or_default();
        c.threads = self.threads.or(file.threads);
        c.n_batch = self.batch;
        c.mmap = !self.no_mmap;
        c
    }
}

impl ChatArgs {
    pub fn apply(&self, c: &mut EngineConfig, file: &FileSettings) {
        if let Some(system) = self.system.clone().or(file.system.clone()) {
            c.system = system;
        }
        let defaults = Limits::default();
        c.limits = Limits {
            reasoning: self
                .max_reasoning
                .or(file.max_reasoning)
                .unwrap_or(defaults.reasoning),
            answer: self
                .max_answer
                .or(file.max_answer)
                .unwrap_or(defaults.answer),
        };
        c.on_full = self.on_full.or(file.on_full()).unwrap_or_default();
        c.sampling = SamplingOverrides {
            temperature: self.temperature.or(file.temperature),
            top_k: self.top_k.or(file.top_k),
            top_p: self.top_p.or(file.top_p),
            min_p: self.min_p.or(file.min_p),
            repeat_penalty: self.repeat_penalty.or(file.repeat_penalty),
            seed: self.seed.or(file.seed),
        };
    }
}
