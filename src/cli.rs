//! Command-line definitions. Parsing only: `main` turns these into work.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use o1_convert::OutputType;

#[derive(Parser, Debug)]
#[command(
    name = "o1",
    version,
    about = "Run the Qwen2.5-1.5B-O1 reasoning model locally",
    long_about = "o1 runs the Qwen2.5-1.5B-O1 reasoning model on your own machine: it converts \
                  the Hugging Face checkpoint into a quantized GGUF file and chats with it, \
                  showing the model's reasoning and its answer side by side."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Convert a Hugging Face checkpoint folder into a (quantized) GGUF file.
    Convert(ConvertArgs),
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
