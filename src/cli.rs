//! Command-line definitions. Parsing only: the commands turn these into work.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use o1::engine::{EngineConfig, GpuLayers, Limits, OnFull, SamplingOverrides};
use o1::model::KvType;
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
    /// Convert a Hugging Face checkpoint folder into a (quantized) GGUF file.
    Convert(ConvertArgs),
    /// Ask one question: the reasoning goes to stderr, the answer to stdout.
    Run(RunArgs),
    /// Measure prompt processing and generation speed.
    Bench(BenchArgs),
    /// Show a model file's metadata and the memory a context needs.
    Info(InfoArgs),
    /// Chat in the terminal: reasoning and answer panes, a context meter.
    Tui(TuiArgs),
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    o1 convert ./Qwen2.5-1.5B-O1                      # writes ./Qwen2.5-1.5B-O1-q4_k_m.gguf\n  \
    o1 convert ./Qwen2.5-1.5B-O1 -t q8_0 -o o1-q8.gguf\n\n\
    Types: f32, f16, bf16 (lossless for bf16 checkpoints), q8_0, q6_k, q5_k_m, q4_k_m (default),\n\
    q4_0, iq4_xs. The quantization is llama.cpp's own, with its per-tensor mixes.")]
pub struct ConvertArgs {
    /// Checkpoint folder: config.json, tokenizer.json and model.safetensors (or shards).
    pub checkpoint: PathBuf,

    /// Output file [default: ./<folder name>-<type>.gguf].
    #[arg(short, long, value_name = "OUT.gguf")]
    pub output: Option<PathBuf>,

    /// Output type.
    #[arg(short = 't', long = "type", default_value = "q4_k_m", value_parser = parse_type)]
    pub out_type: OutputType,

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

    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
}

fn parse_type(s: &str) -> Result<OutputType, String> {
    s.parse()
}

/// Options of every command that loads a model.
#[derive(Args, Debug, Clone)]
pub struct EngineArgs {
    /// Context size in tokens [default: the trained length, capped to fit in memory].
    #[arg(long = "ctx", value_name = "TOKENS", env = "O1_CTX")]
    pub n_ctx: Option<u32>,

    /// Layers to offload to the GPU: auto, all or a number (CPU builds ignore it).
    #[arg(
        long,
        default_value = "auto",
        value_name = "auto|all|N",
        env = "O1_GPU_LAYERS"
    )]
    pub gpu_layers: GpuLayers,

    /// KV cache type: q8_0 halves its memory (turns on flash attention).
    #[arg(long, value_enum, default_value = "f16", env = "O1_KV_TYPE")]
    pub kv_type: KvType,

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
    /// The system message ("" for none).
    #[arg(long, default_value = o1::chat::DEFAULT_SYSTEM)]
    pub system: String,

    /// Token budget of the reasoning phase.
    #[arg(long, default_value_t = 3000, value_name = "N")]
    pub max_reasoning: usize,

    /// Token budget of the answer phase.
    #[arg(long, default_value_t = 3000, value_name = "N")]
    pub max_answer: usize,

    /// When a turn does not fit: drop old reasoning, then old turns; or stop.
    #[arg(long, value_enum, default_value = "drop")]
    pub on_full: OnFull,

    /// Sampling temperature (0: greedy) [default: the model's, greedy for O1].
    #[arg(long)]
    pub temperature: Option<f32>,

    /// Top-k sampling (0: off).
    #[arg(long)]
    pub top_k: Option<u32>,

    /// Top-p (nucleus) sampling (1: off).
    #[arg(long)]
    pub top_p: Option<f32>,

    /// Min-p sampling (0: off).
    #[arg(long)]
    pub min_p: Option<f32>,

    /// Repetition penalty over the last 64 tokens (1: off).
    #[arg(long)]
    pub repeat_penalty: Option<f32>,

    /// Random seed for sampling.
    #[arg(long)]
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

    #[command(flatten)]
    pub chat: ChatArgs,

    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// The model (a .gguf file).
    pub model: Option<PathBuf>,

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
    /// The model (a .gguf file) [default: $O1_MODEL].
    pub model: Option<PathBuf>,

    /// Reopen the last conversation.
    #[arg(long)]
    pub resume: bool,

    #[command(flatten)]
    pub chat: ChatArgs,

    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// The model (a .gguf file).
    pub model: PathBuf,

    /// Context size to estimate memory for [default: the trained length].
    #[arg(long = "ctx", value_name = "TOKENS")]
    pub n_ctx: Option<u32>,

    /// KV cache type of the estimate.
    #[arg(long, value_enum, default_value = "f16")]
    pub kv_type: KvType,
}

impl EngineArgs {
    pub fn config(&self, model: PathBuf) -> EngineConfig {
        let mut c = EngineConfig::new(model);
        c.n_ctx = self.n_ctx;
        c.gpu_layers = self.gpu_layers;
        c.kv_type = self.kv_type;
        c.threads = self.threads;
        c.n_batch = self.batch;
        c.mmap = !self.no_mmap;
        c
    }
}

impl ChatArgs {
    pub fn apply(&self, c: &mut EngineConfig) {
        c.system = self.system.clone();
        c.limits = Limits {
            reasoning: self.max_reasoning,
            answer: self.max_answer,
        };
        c.on_full = self.on_full;
        c.sampling = SamplingOverrides {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            seed: self.seed,
        };
    }
}
