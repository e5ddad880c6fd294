//! Command-line definitions. Parsing only: the commands turn these into work.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use o1::model::KvType;
use o1::settings::{
    for_flag, AnySetting, ChatFlags, EngineFlags, ReasoningView, ServeFlags, WhereFlags,
};
use o1_gguf::ggml::OutputType;

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

    /// Which of llama.cpp's CPU paths to run: `auto` (the best one shown to work on this
    /// machine) or a name that `o1 --version` lists.
    #[arg(long, global = true, value_name = "NAME")]
    pub cpu_path: Option<String>,
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
    /// Serve the model over HTTP: OpenAI's and ollama's chat APIs, the reasoning apart.
    Serve(ServeArgs),
    /// Measure prompt processing and generation speed.
    Bench(BenchArgs),
    /// Show a model file's metadata and the memory a context needs.
    Info(InfoArgs),
    /// Measure how far a quantized file drifts from its lossless (bf16) reference.
    Eval(EvalArgs),
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
        HF_HUB_OFFLINE=1 (no network: use what is cached), O1_HF_TOKEN_OVER_HTTP=1 (send\n\
        HF_TOKEN even to a plain http:// endpoint on another machine).\n\n{}",
        o1_hub::exit_code_help()
    )
)]
pub struct PullArgs {
    /// The repository [default: Laurie/Qwen2.5-1.5B-O1, or the config's `repo`].
    pub repo: Option<String>,

    #[arg(long)]
    pub revision: Option<String>,

    /// No progress output (bars on a terminal, lines otherwise).
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
#[command(after_help = format!("Examples:\n  \
    o1 convert Laurie/Qwen2.5-1.5B-O1                 # a pulled repo, into the model store\n  \
    o1 convert ./Qwen2.5-1.5B-O1 -t q8_0 -o o1-q8.gguf\n  \
    o1 convert Laurie/Qwen2.5-1.5B-O1 -t auto --max-memory 1.2G --ctx 8192\n\n\
    Types: f32, f16, bf16 (lossless for bf16 checkpoints), q8_0, q6_k, q5_k_m, q4_k_m (default),\n\
    q4_k_s, q4_0, iq4_xs, q3_k_l, q3_k_m, iq3_m; auto. The quantization is llama.cpp's own,\n\
    with its per-tensor mixes. Types of 5 bits and fewer are calibrated: o1 first runs its\n\
    calibration conversations (English and Chinese; code, maths, prose) through a q8_0 copy to\n\
    learn which weights matter (an importance matrix, cached per checkpoint), then rounds those\n\
    more carefully.\n\n\
    What each costs, measured on the 1.5B (`o1 eval FILE` measures yours):\n{}",
    o1::quality::choose::table()
))]
pub struct ConvertArgs {
    /// A checkpoint folder (config.json, tokenizer.json, model.safetensors or shards),
    /// or a repo id pulled with `o1 pull`.
    pub checkpoint: String,

    #[arg(long)]
    pub revision: Option<String>,

    /// Output file [default: <model store>/<repo or folder>-<type>.gguf].
    #[arg(short, long, value_name = "OUT.gguf")]
    pub output: Option<PathBuf>,

    /// The type, or `auto`: the least measured drift that fits --max-memory at --ctx.
    #[arg(short = 't', long = "type", value_parser = parse_type_choice)]
    pub out_type: Option<TypeChoice>,

    /// With `-t auto`: the memory a chat may take [default: the `max_memory` setting, or half of RAM].
    #[arg(long, value_name = "SIZE")]
    pub max_memory: Option<o1::settings::Size>,

    /// With `-t auto`: the context the chat should hold [default: the `ctx` setting, or 8192].
    #[arg(long, value_name = "TOKENS")]
    pub ctx: Option<u32>,

    /// Overwrite the output file if it exists.
    #[arg(short, long)]
    pub force: bool,

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

    /// Quantize without an importance matrix (faster; lower quality at 5 bits and fewer).
    #[arg(long, conflicts_with = "imatrix")]
    pub no_calibrate: bool,

    /// Quantize with this importance matrix (llama-imatrix's .gguf or .dat) instead of o1's.
    #[arg(long, value_name = "FILE")]
    pub imatrix: Option<PathBuf>,

    /// Also save the importance matrix used, in llama.cpp's format.
    #[arg(long, value_name = "FILE", conflicts_with = "no_calibrate")]
    pub save_imatrix: Option<PathBuf>,

    /// Use llama.cpp's two-step path (lossless GGUF, then llama_model_quantize).
    /// Slower and needs twice the disk; kept as the reference.
    #[arg(long, hide = true)]
    pub two_pass: bool,

    /// No progress output (a bar on a terminal, lines otherwise).
    #[arg(short, long)]
    pub quiet: bool,
}

/// `o1 convert --type`: a type, or o1's choice for the memory.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TypeChoice {
    Auto,
    Type(OutputType),
}

fn parse_type_choice(s: &str) -> Result<TypeChoice, String> {
    if s.eq_ignore_ascii_case("auto") {
        return Ok(TypeChoice::Auto);
    }
    s.parse()
        .map(TypeChoice::Type)
        .map_err(|e: String| e.replace("(choose one of ", "(choose auto or one of "))
}

#[derive(Args, Debug)]
#[command(after_help = format!("Examples:\n  \
    o1 run o1-q4_k_m.gguf \"What is 17 * 23?\"\n  \
    echo \"Explain recursion\" | o1 run o1-q4_k_m.gguf --hide-reasoning\n  \
    o1 run o1-q4_k_m.gguf \"2+2?\" --json\n\n{}", crate::commands::exit::help()))]
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
    pub at: WhereFlags,

    #[command(flatten)]
    pub chat: ChatFlags,

    #[command(flatten)]
    pub engine: EngineFlags,
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    o1 serve                                   # the default model on http://127.0.0.1:11435\n  \
    o1 serve o1-q4_k_m.gguf --port 8080 --api-key \"$(openssl rand -hex 16)\"\n\n\
    Routes: /v1/chat/completions and /v1/models (OpenAI), /api/chat, /api/tags, /api/show and\n\
    /api/version (ollama), /health. The reasoning comes as `reasoning_content` (OpenAI) or\n\
    `thinking` (ollama); `max_reasoning_tokens` or `reasoning_effort` set its budget.\n\
    Ctrl+C or SIGTERM stops the server; running requests are cancelled.")]
pub struct ServeArgs {
    /// The model: a .gguf file or a stored model's name [default: $O1_MODEL, the config's, the store's].
    pub model: Option<String>,

    /// Without a model: download and convert the default one without asking.
    #[arg(short, long)]
    pub yes: bool,

    #[command(flatten)]
    pub serve: ServeFlags,

    #[command(flatten)]
    pub chat: ChatFlags,

    #[command(flatten)]
    pub engine: EngineFlags,
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

    /// Instead, measure lookup decoding: a set of 10 prompts, each with lookup off and on
    /// (tokens/s per phase, drafted and accepted tokens, the decode cost curve).
    #[arg(long, conflicts_with = "chat")]
    pub lookup_set: bool,

    /// Instead, generate for SECONDS and print each second's tokens/s and threads: the speed
    /// over time while other programs come and go (see --share-cpu).
    #[arg(long, value_name = "SECONDS", conflicts_with_all = ["chat", "lookup_set"])]
    pub timeline: Option<u64>,

    /// Print JSON.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub engine: EngineFlags,
}

#[derive(Args, Debug)]
#[command(after_help = o1::tui::keys::help_text())]
pub struct TuiArgs {
    /// The model: a .gguf file or a stored model's name [default: $O1_MODEL, the config's, the store's].
    pub model: Option<String>,

    /// Reopen the last conversation.
    #[arg(long)]
    pub resume: bool,

    /// Without a model: download and convert the default one without asking.
    #[arg(short, long)]
    pub yes: bool,

    #[arg(long, value_enum)]
    pub reasoning: Option<ReasoningView>,

    #[command(flatten)]
    pub at: WhereFlags,

    #[command(flatten)]
    pub chat: ChatFlags,

    #[command(flatten)]
    pub engine: EngineFlags,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// The stored model's name (as `o1 ls` shows it).
    pub name: String,
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    o1 eval Qwen2.5-1.5B-O1-q4_k_m                  # against the stored bf16 conversion\n  \
    o1 eval q3.gguf --reference bf16.gguf --json\n  \
    o1 eval q4.gguf --reference bf16.gguf --text wiki.test.raw   # as llama-perplexity reads it\n\n\
    Figures: mean KL divergence from the reference's next-token distribution (± its standard\n\
    error) and its 99th percentile, how often both pick the same top token, ln(PPL/PPL ref),\n\
    and in the two-phase chat format how many greedy tokens each phase follows the reference.\n\
    The reference's side is cached, so evaluating a second file costs one run of that file.")]
pub struct EvalArgs {
    /// The file to measure: a .gguf file or a stored model's name.
    pub model: String,

    /// The lossless reference [default: the stored bf16/f16/f32 conversion of the same checkpoint].
    #[arg(long, value_name = "REF.gguf")]
    pub reference: Option<String>,

    /// Score this plain text file instead of o1's held-out conversations.
    #[arg(long, value_name = "FILE")]
    pub text: Option<PathBuf>,

    /// Tokens per chunk (the second half of each is scored).
    #[arg(long, value_name = "TOKENS", default_value_t = 512)]
    pub ctx: usize,

    /// Score at most N chunks.
    #[arg(long, value_name = "N")]
    pub chunks: Option<usize>,

    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// The model: a .gguf file or a stored model's name.
    pub model: String,

    /// The estimate's context size, as the engine would choose it.
    #[arg(long, value_name = "TOKENS")]
    pub ctx: Option<u32>,

    /// The estimate's KV cache type.
    #[arg(long, value_enum)]
    pub kv_type: Option<KvType>,

    /// The estimate's memory budget.
    #[arg(long, value_name = "SIZE")]
    pub max_memory: Option<o1::settings::Size>,

    /// The estimate's prompt batch (tokens per decode) [default: 512, or less when max_memory needs it].
    #[arg(long, value_name = "TOKENS")]
    pub batch: Option<u32>,
}

/// The command line, with the help of each setting's flag taken from the
/// settings table: its text, its default and its environment variable.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    let cmd = with_setting_help(Cli::command());
    // The long text looks at every CPU library: only when it is asked for.
    if std::env::args_os().any(|a| a == "--version") {
        let text: &'static str = Box::leak(crate::commands::version::long().into_boxed_str());
        return cmd.long_version(text);
    }
    cmd
}

fn with_setting_help(mut cmd: clap::Command) -> clap::Command {
    let flags: Vec<(clap::Id, &'static dyn AnySetting)> = cmd
        .get_arguments()
        .filter_map(|a| Some((a.get_id().clone(), for_flag(a.get_long()?)?)))
        .collect();
    for (id, setting) in flags {
        cmd = cmd.mut_arg(id, |a| {
            // A flag with a text of its own keeps it and gains the notes.
            let text = a
                .get_help()
                .map_or_else(|| setting.help().to_string(), |h| h.to_string());
            a.help(format!(
                "{text} [default: {}] [env: {}] [config: {}]",
                setting.builtin_text(),
                setting.env(),
                setting.key()
            ))
        });
    }
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    for name in names {
        cmd = cmd.mut_subcommand(name, with_setting_help);
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every long flag of every subcommand, by name.
    fn flags(cmd: &clap::Command, out: &mut Vec<String>) {
        out.extend(
            cmd.get_arguments()
                .filter_map(|a| a.get_long().map(String::from)),
        );
        for sub in cmd.get_subcommands() {
            flags(sub, out);
        }
    }

    #[test]
    fn run_help_lists_every_exit_code() {
        use clap::CommandFactory;
        let help = Cli::command()
            .find_subcommand_mut("run")
            .unwrap()
            .render_long_help()
            .to_string();
        for (code, meaning) in crate::commands::exit::CODES {
            assert!(
                help.contains(&format!("{code} {meaning}")),
                "{code}: {help}"
            );
        }
    }

    #[test]
    fn every_setting_but_the_positional_ones_has_a_flag_somewhere() {
        use clap::CommandFactory;
        let mut all = Vec::new();
        flags(&Cli::command(), &mut all);
        // Given as a command's positional argument instead of a flag.
        const CONFIG_ONLY: [&str; 2] = ["model", "repo"];
        let wrong: Vec<&str> = o1::settings::ALL
            .iter()
            .map(|s| s.key())
            .filter(|k| all.contains(&k.replace('_', "-")) == CONFIG_ONLY.contains(k))
            .collect();
        assert!(
            wrong.is_empty(),
            "settings whose flag is not as listed: {wrong:?}"
        );
    }
}
