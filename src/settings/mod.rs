//! Every setting a user can keep, in one table: its config-file key, its
//! environment variable, its built-in default and its help. The command
//! line's flags are named after the keys and take their help, `[default]`
//! and `[env]` notes from here (`cli.rs`); [`Settings::get`] is the one
//! place that applies the precedence flag > environment variable > config
//! file > built-in default; `o1 config` prints the table with the source of
//! each effective value. The engine's, the converter's and the hub's
//! options are built from here.

use std::path::{Path, PathBuf};

use clap::ValueEnum;
use o1_gguf::ggml::OutputType;

use crate::engine::{bounds, EngineConfig, GpuLayers, Limits, Lookup, OnFull, SamplingOverrides};
use crate::model::KvType;

pub use o1_hub::{DEFAULT_REPO, DEFAULT_REVISION};

mod flags;
mod resolve;
mod value;

pub use flags::{ChatFlags, EngineFlags, ServeFlags, WhereFlags};
pub use resolve::Settings;
pub use value::{for_flag, parse_size, AnySetting, SettingValue, Size};

/// A setting's value when nothing sets it.
pub enum Builtin<T> {
    /// A fixed value.
    Value(fn() -> T),
    /// Worked out when it is used (from the model or the machine); the text
    /// says how.
    Derived(&'static str),
}

/// One setting of type `T`.
pub struct Setting<T> {
    /// The config file's key; the flag is the key with `-` for `_`.
    pub key: &'static str,
    pub env: &'static str,
    pub builtin: Builtin<T>,
    pub help: &'static str,
    /// The values that make sense, whichever source gives them; `Err`
    /// completes the sentence "`key` …".
    pub check: fn(&T) -> Result<(), String>,
}

/// The table. One line per setting: name, type, key, environment variable,
/// built-in default, help, and for numbers the range of a sane value.
macro_rules! settings {
    ($($name:ident: $ty:ty = $key:literal, $env:literal, $builtin:expr, $help:literal
        $(, $range:expr)?;)*) => {
        $(pub const $name: Setting<$ty> = Setting {
            key: $key,
            env: $env,
            builtin: $builtin,
            help: $help,
            check: settings!(@check $ty $(, $range)?),
        };)*
        /// Every setting, in the order `o1 config` lists them.
        pub const ALL: &[&dyn AnySetting] = &[$(&$name),*];
    };
    (@check $ty:ty) => { |_| Ok(()) };
    (@check $ty:ty, $range:expr) => { |v: &$ty| bounds::check(*v, &$range) };
}

use Builtin::{Derived, Value};

settings! {
    MODEL: String = "model", "O1_MODEL", Derived("the store's model of `repo` and `type`"),
        "The model: a stored model's name or a .gguf file";
    TYPE: OutputType = "type", "O1_TYPE", Value(|| OutputType::Q4KM),
        "Conversion type, and the type of the default model";
    REPO: String = "repo", "O1_REPO", Value(|| DEFAULT_REPO.to_string()),
        "The Hugging Face repository of the model";
    REVISION: String = "revision", "O1_REVISION", Value(|| DEFAULT_REVISION.to_string()),
        "Branch, tag or commit of the repository";
    CTX: u32 = "ctx", "O1_CTX", Derived("trained length, or what fits max_memory"),
        "Context size in tokens", 1..=1_048_576;
    GPU_LAYERS: GpuLayers = "gpu_layers", "O1_GPU_LAYERS", Value(GpuLayers::default),
        "Layers to offload to the GPU: auto, all or a number (CPU builds ignore it)";
    KV_TYPE: KvType = "kv_type", "O1_KV_TYPE", Derived("f16; q8_0 when max_memory needs it"),
        "KV cache type: q8_0 halves its memory";
    MAX_MEMORY: Size = "max_memory", "O1_MAX_MEMORY", Derived("half of this machine's memory"),
        "Memory o1 may use (e.g. 1.5G, 1200M): the context, KV type and batch are chosen to fit";
    THREADS: usize = "threads", "O1_THREADS", Derived("all cores"),
        "CPU threads (the most: fewer while other programs keep the cores busy, unless share_cpu is false)", 1..=1024;
    SHARE_CPU: bool = "share_cpu", "O1_SHARE_CPU", Value(|| true),
        "Use fewer threads while other programs keep the cores busy, all again when they stop (false: always `threads`)";
    CPU_PATH: String = "cpu_path", "O1_CPU_PATH", Value(|| "auto".to_string()),
        "llama.cpp's CPU path: auto (the best one shown to work on this machine) or a name that `o1 --version` lists";
    SYSTEM: String = "system", "O1_SYSTEM", Value(|| crate::chat::DEFAULT_SYSTEM.to_string()),
        "The system message (\"\" for none)";
    MAX_REASONING: usize = "max_reasoning", "O1_MAX_REASONING", Value(|| Limits::default().reasoning),
        "Token budget of the reasoning phase", bounds::TOKENS;
    MAX_ANSWER: usize = "max_answer", "O1_MAX_ANSWER", Value(|| Limits::default().answer),
        "Token budget of the answer phase", bounds::TOKENS;
    ON_FULL: OnFull = "on_full", "O1_ON_FULL", Value(OnFull::default),
        "When a turn does not fit: drop old reasoning, then old turns; or stop";
    LOOKUP: Lookup = "lookup", "O1_LOOKUP", Value(Lookup::default),
        "Lookup decoding in greedy phases: guess the next tokens from the context and check them in one decode, where that gives the same output and pays (measured)";
    TEMPERATURE: f32 = "temperature", "O1_TEMPERATURE", Derived("the model's: greedy for O1"),
        "Sampling temperature (0: greedy)", bounds::TEMPERATURE;
    TOP_K: u32 = "top_k", "O1_TOP_K", Derived("the model's"),
        "Top-k sampling (0: off)";
    TOP_P: f32 = "top_p", "O1_TOP_P", Derived("the model's"),
        "Top-p (nucleus) sampling (1: off)", bounds::TOP_P;
    MIN_P: f32 = "min_p", "O1_MIN_P", Derived("the model's"),
        "Min-p sampling (0: off)", bounds::MIN_P;
    REPEAT_PENALTY: f32 = "repeat_penalty", "O1_REPEAT_PENALTY", Derived("the model's"),
        "Repetition penalty over the last 64 tokens (1: off)", bounds::REPEAT_PENALTY;
    SEED: u32 = "seed", "O1_SEED", Derived("fixed"),
        "Random seed for sampling";
    REASONING: ReasoningView = "reasoning", "O1_REASONING", Value(ReasoningView::default),
        "How `o1 tui` starts the reasoning pane";
    HOST: String = "host", "O1_HOST", Value(|| "127.0.0.1".to_string()),
        "The address `o1 serve` listens on (0.0.0.0: every network; mind the API key)";
    PORT: u16 = "port", "O1_PORT", Value(|| crate::serve::DEFAULT_PORT),
        "The port `o1 serve` listens on (0: any free one)";
    API_KEY: Secret = "api_key", "O1_API_KEY", Derived("none: no key needed"),
        "A key `o1 serve` requires of every request (Authorization: Bearer KEY); several, comma-separated, keep each key's prompt cache and remembered reasoning apart";
    ALLOW_ORIGINS: String = "allow_origins", "O1_ALLOW_ORIGINS", Derived("none: loopback pages only"),
        "Web page origins besides loopback that may call `o1 serve` (comma-separated; * for any)";
    ALLOW_HOSTS: String = "allow_hosts", "O1_ALLOW_HOSTS", Derived("none: localhost, IP addresses and the listen address only"),
        "Host names besides localhost by which clients reach `o1 serve` (comma-separated; * for any); others are refused against DNS rebinding";
    REMEMBER_REASONING: bool = "remember_reasoning", "O1_REMEMBER_REASONING", Value(|| true),
        "Whether `o1 serve` puts its reasoning back into a conversation whose client sent back only the answer (same caller, same conversation)";
    QUEUE: usize = "queue", "O1_QUEUE", Value(|| 8),
        "Requests `o1 serve` keeps waiting while one runs; more get 503", 1..=4096;
    SERVER: String = "server", "O1_SERVER", Derived("none: a local o1 serve with the same model, else the model loaded here"),
        "An OpenAI-compatible server (o1 serve, llama-server, vLLM, …) on which `o1 tui` and `o1 run` chat instead of loading the model, e.g. http://gpu-box:11435";
    SERVER_API_KEY: Secret = "server_api_key", "O1_SERVER_API_KEY", Derived("none; for a local o1 serve, the first of `api_key`"),
        "The key `o1 tui` and `o1 run` send to `server` (Authorization: Bearer KEY)";
    MAX_CONNECTIONS: usize = "max_connections", "O1_MAX_CONNECTIONS", Derived("what the open-file limit allows, up to 8192"),
        "Connections `o1 serve` keeps open at once (idle ones close after 15 s)", 2..=65536;
}

/// A value `o1 config` does not show.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl std::str::FromStr for Secret {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim().is_empty() {
            Err("is empty".into())
        } else {
            Ok(Secret(s.to_string()))
        }
    }
}

impl SettingValue for Secret {
    fn parse(text: &str) -> Result<Self, String> {
        text.parse()
    }
    fn show(&self) -> String {
        "(set, not shown)".into()
    }
}

/// How `o1 tui` starts the reasoning pane.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ReasoningView {
    #[default]
    Shown,
    Collapsed,
}

/// Where an effective value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env(&'static str),
    File,
    Default,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Flag => f.write_str("flag"),
            Source::Env(var) => write!(f, "environment {var}"),
            Source::File => f.write_str("config file"),
            Source::Default => f.write_str("default"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{}: `{key}` {message}", path.display())]
    Invalid {
        path: PathBuf,
        key: &'static str,
        message: String,
    },
    #[error("${var} {message}")]
    Env { var: &'static str, message: String },
    #[error("--{flag} {message}")]
    Flag { flag: String, message: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Settings, SettingsError> {
        Settings::parse(Path::new("config.toml"), text)
    }

    #[test]
    fn every_builtin_value_is_valid_and_every_environment_variable_is_the_keys() {
        for s in ALL {
            assert_eq!(s.env(), format!("O1_{}", s.key().to_uppercase()));
            if let Some(text) = s.fixed_default() {
                s.check(&text).unwrap();
            }
        }
        assert_eq!(TYPE.builtin_text(), "q4_k_m");
        assert_eq!(MAX_ANSWER.builtin_text(), "3000");
        assert_eq!(KV_TYPE.builtin_text(), "f16; q8_0 when max_memory needs it");
    }

    #[test]
    fn the_file_is_checked_when_read() {
        let s = parse("model = \"mine\"\ntype = \"q8_0\"\nctx = 8192\ngpu_layers = \"all\"\nkv_type = \"q8_0\"\ntemperature = 0.7\nreasoning = \"collapsed\"").unwrap();
        assert_eq!(s.get(&CTX, None).unwrap(), Some(8192));
        assert_eq!(s.value(&GPU_LAYERS, None).unwrap(), GpuLayers::All);
        assert_eq!(s.get(&KV_TYPE, None).unwrap(), Some(KvType::Q8_0));
        assert_eq!(s.value(&TYPE, None).unwrap(), OutputType::Q8_0);
        assert_eq!(s.get(&TEMPERATURE, None).unwrap(), Some(0.7));
        assert_eq!(s.value(&REASONING, None).unwrap(), ReasoningView::Collapsed);
        let invalid = |text: &str| match parse(text) {
            Err(SettingsError::Invalid { key, .. }) => key,
            other => panic!("{text}: {other:?}"),
        };
        assert_eq!(invalid("type = \"q3_k\""), "type");
        assert_eq!(invalid("gpu_layers = \"many\""), "gpu_layers");
        assert_eq!(invalid("reasoning = \"hidden\""), "reasoning");
        assert_eq!(invalid("ctx = \"big\""), "ctx");
        assert_eq!(invalid("on_full = \"wrap\""), "on_full");
        let unknown = parse("colour = \"blue\"").unwrap_err().to_string();
        assert!(unknown.contains("unknown field `colour`"), "{unknown}");
    }

    #[test]
    fn a_flag_beats_the_file_which_beats_the_default() {
        let s = parse("ctx = 4096\nsystem = \"Be brief.\"").unwrap();
        assert_eq!(s.get(&CTX, Some(512)).unwrap(), Some(512));
        assert_eq!(s.get(&CTX, None).unwrap(), Some(4096));
        assert_eq!(s.get(&THREADS, None).unwrap(), None);
        assert_eq!(s.value(&MAX_REASONING, None).unwrap(), 3000);
        let e = s.effective().unwrap();
        let get = |k: &str| e.iter().find(|x| x.0 == k).unwrap().clone();
        assert_eq!(get("ctx"), ("ctx", "4096".into(), Source::File));
        assert_eq!(get("system"), ("system", "Be brief.".into(), Source::File));
        assert_eq!(get("type"), ("type", "q4_k_m".into(), Source::Default));
        assert_eq!(get("on_full"), ("on_full", "drop".into(), Source::Default));
    }

    #[test]
    fn the_engine_config_takes_every_setting() {
        let s = parse(
            "ctx = 2048\nkv_type = \"q8_0\"\nmax_answer = 7\ntop_k = 5\nmax_memory = \"1.5G\"",
        )
        .unwrap();
        let flags = EngineFlags {
            threads: Some(3),
            batch: Some(256),
            ..Default::default()
        };
        let chat = ChatFlags {
            temperature: Some(0.5),
            ..Default::default()
        };
        let c = s
            .engine_config("m.gguf".into(), &flags, Some(&chat))
            .unwrap();
        assert_eq!(
            (c.n_ctx, c.kv_type, c.threads, c.n_batch, c.max_memory),
            (
                Some(2048),
                Some(KvType::Q8_0),
                Some(3),
                Some(256),
                1536 << 20
            )
        );
        assert_eq!(
            c.limits,
            Limits {
                reasoning: 3000,
                answer: 7
            }
        );
        assert_eq!(c.sampling.temperature, Some(0.5));
        assert_eq!(c.sampling.top_k, Some(5));
        assert_eq!(c.system, crate::chat::DEFAULT_SYSTEM);
        // Without chat flags (o1 bench), the file's sampling does not apply.
        let c = s.engine_config("m.gguf".into(), &flags, None).unwrap();
        assert_eq!(c.sampling, SamplingOverrides::default());
    }

    #[test]
    fn values_out_of_bounds_are_refused_with_the_bound() {
        let invalid = |text: &str| match parse(text) {
            Err(e @ SettingsError::Invalid { .. }) => e.to_string(),
            other => panic!("{text}: {other:?}"),
        };
        for (text, says) in [
            ("threads = 0", "`threads` is 0: must be from 1 to 1024"),
            (
                "threads = 99999999",
                "`threads` is 99999999: must be from 1 to 1024",
            ),
            (
                "temperature = -1.0",
                "`temperature` is -1: must be from 0 to 100",
            ),
            (
                "temperature = nan",
                "`temperature` is NaN: must be from 0 to 100",
            ),
            ("top_p = 1.5", "`top_p` is 1.5: must be from 0 to 1"),
            ("min_p = -0.1", "`min_p` is -0.1: must be from 0 to 1"),
            (
                "repeat_penalty = 0.0",
                "`repeat_penalty` is 0: must be from 0.01 to 100",
            ),
            (
                "repeat_penalty = inf",
                "`repeat_penalty` is inf: must be from 0.01 to 100",
            ),
            (
                "max_reasoning = 9223372036854775807",
                "must be from 0 to 1048576",
            ),
            (
                "max_answer = 2000000",
                "`max_answer` is 2000000: must be from 0 to 1048576",
            ),
            (
                "ctx = 4294967295",
                "`ctx` is 4294967295: must be from 1 to 1048576",
            ),
        ] {
            let e = invalid(text);
            assert!(e.starts_with("config.toml: "), "{e}");
            assert!(e.contains(says), "{text}: {e}");
        }
        // A flag is held to the same bounds.
        let s = parse("").unwrap();
        let e = s.get(&THREADS, Some(0)).unwrap_err().to_string();
        assert_eq!(e, "--threads is 0: must be from 1 to 1024");
        // And the edges are in.
        parse(
            "threads = 1\ntemperature = 0.0\ntop_p = 1.0\nmax_answer = 1048576\nmax_reasoning = 0",
        )
        .unwrap();
    }
}
