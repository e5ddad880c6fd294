//! The command line's flags for the settings, shared by the commands that
//! take them (named after the keys; their help comes from the table).

use super::*;

/// The flags of every command that loads a model. Help, defaults and
/// variables of the settings among them come from the table.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct EngineFlags {
    #[arg(long, value_name = "TOKENS")]
    pub ctx: Option<u32>,

    #[arg(long, value_name = "auto|all|N")]
    pub gpu_layers: Option<GpuLayers>,

    #[arg(long, value_enum)]
    pub kv_type: Option<KvType>,

    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    #[arg(long, value_name = "BOOL")]
    pub share_cpu: Option<bool>,

    #[arg(long, value_name = "SIZE")]
    pub max_memory: Option<Size>,

    /// Prompt tokens per llama.cpp batch [default: 512, or less when
    /// max_memory needs it]
    #[arg(long, value_name = "N")]
    pub batch: Option<u32>,

    /// Read the whole model into memory instead of mapping the file.
    #[arg(long)]
    pub no_mmap: bool,
}

/// The flags of `o1 serve`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServeFlags {
    #[arg(long)]
    pub host: Option<String>,

    #[arg(long)]
    pub port: Option<u16>,

    #[arg(long, value_name = "KEY")]
    pub api_key: Option<Secret>,

    #[arg(long, value_name = "ORIGINS")]
    pub allow_origins: Option<String>,

    #[arg(long, value_name = "HOSTS")]
    pub allow_hosts: Option<String>,

    #[arg(long, value_name = "BOOL")]
    pub remember_reasoning: Option<bool>,

    #[arg(long, value_name = "N")]
    pub queue: Option<usize>,

    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
}

/// Where the commands that chat find their model: a server, or a local load.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct WhereFlags {
    #[arg(long, value_name = "URL", conflicts_with = "local")]
    pub server: Option<String>,

    #[arg(long, value_name = "KEY")]
    pub server_api_key: Option<Secret>,

    /// Load the model here even when a local `o1 serve` has it loaded
    /// (which is used otherwise, to keep one copy in memory).
    #[arg(long)]
    pub local: bool,
}

/// The flags of the commands that chat.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ChatFlags {
    #[arg(long)]
    pub system: Option<String>,

    #[arg(long, value_name = "N")]
    pub max_reasoning: Option<usize>,

    #[arg(long, value_name = "N")]
    pub max_answer: Option<usize>,

    #[arg(long, value_enum)]
    pub on_full: Option<OnFull>,

    #[arg(long, value_enum)]
    pub lookup: Option<Lookup>,

    #[arg(long)]
    pub temperature: Option<f32>,

    #[arg(long)]
    pub top_k: Option<u32>,

    #[arg(long)]
    pub top_p: Option<f32>,

    #[arg(long)]
    pub min_p: Option<f32>,

    #[arg(long)]
    pub repeat_penalty: Option<f32>,

    #[arg(long)]
    pub seed: Option<u32>,
}
