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
use crate::memory::Size;
use crate::model::KvType;

pub use o1_hub::{DEFAULT_REPO, DEFAULT_REVISION};

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
        "CPU threads", 1..=1024;
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

/// A type a setting can have: read from the text of a flag, a variable or
/// the config file, and shown by `o1 config`.
pub trait SettingValue: Sized {
    /// `Err` completes the sentence "`key` …".
    fn parse(text: &str) -> Result<Self, String>;
    fn show(&self) -> String;
}

macro_rules! from_str_values {
    ($($ty:ty: $what:literal),*) => {$(
        impl SettingValue for $ty {
            fn parse(text: &str) -> Result<Self, String> {
                text.trim().parse().map_err(|_| format!("is {text:?}: {}", $what))
            }
            fn show(&self) -> String {
                self.to_string()
            }
        }
    )*};
}

from_str_values!(u16: "a whole number", u32: "a whole number", usize: "a whole number", f32: "a number", bool: "true or false");

impl SettingValue for String {
    fn parse(text: &str) -> Result<Self, String> {
        Ok(text.to_string())
    }
    fn show(&self) -> String {
        self.clone()
    }
}

impl SettingValue for OutputType {
    fn parse(text: &str) -> Result<Self, String> {
        text.parse()
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

impl SettingValue for GpuLayers {
    fn parse(text: &str) -> Result<Self, String> {
        text.parse()
    }
    fn show(&self) -> String {
        match self {
            GpuLayers::Auto => "auto".into(),
            GpuLayers::All => "all".into(),
            GpuLayers::Count(n) => n.to_string(),
        }
    }
}

macro_rules! value_enum_values {
    ($($ty:ty),*) => {$(
        impl SettingValue for $ty {
            fn parse(text: &str) -> Result<Self, String> {
                <$ty as ValueEnum>::from_str(text, true).map_err(|_| {
                    let names: Vec<String> =
                        <$ty>::value_variants().iter().map(|v| v.show()).collect();
                    format!("is {text:?}: {}", names.join(" or "))
                })
            }
            fn show(&self) -> String {
                self.to_possible_value()
                    .map(|v| v.get_name().to_string())
                    .unwrap_or_default()
            }
        }
    )*};
}

value_enum_values!(KvType, Lookup, OnFull, ReasoningView);

impl SettingValue for Size {
    fn parse(text: &str) -> Result<Self, String> {
        text.parse().map_err(|e: String| format!("is {e}"))
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

/// What `o1 config`, the config file's check and the flags' help need of a
/// setting, whatever its type.
pub trait AnySetting {
    fn key(&self) -> &'static str;
    fn env(&self) -> &'static str;
    fn help(&self) -> &'static str;
    /// The built-in default as text.
    fn builtin_text(&self) -> String;
    /// The built-in default, if it is a fixed value.
    fn fixed_default(&self) -> Option<String>;
    /// Whether `text` is a valid value.
    fn check(&self, text: &str) -> Result<(), String>;
    /// The value without flags, as text, and where it came from.
    fn effective(&self, settings: &Settings) -> Result<(String, Source), SettingsError>;
}

impl<T: SettingValue> AnySetting for Setting<T> {
    fn key(&self) -> &'static str {
        self.key
    }
    fn env(&self) -> &'static str {
        self.env
    }
    fn help(&self) -> &'static str {
        self.help
    }
    fn builtin_text(&self) -> String {
        match &self.builtin {
            Value(_) => self.fixed_default().unwrap_or_default(),
            Derived(how) => how.to_string(),
        }
    }
    fn fixed_default(&self) -> Option<String> {
        match &self.builtin {
            Value(value) => Some(value().show()),
            Derived(_) => None,
        }
    }
    fn check(&self, text: &str) -> Result<(), String> {
        T::parse(text).and_then(|v| (self.check)(&v))
    }
    fn effective(&self, settings: &Settings) -> Result<(String, Source), SettingsError> {
        let (value, source) = settings.resolve(self, None)?;
        Ok((
            value.map_or_else(|| self.builtin_text(), |v| v.show()),
            source,
        ))
    }
}

/// The setting whose flag is `--flag`, if any.
pub fn for_flag(flag: &str) -> Option<&'static dyn AnySetting> {
    ALL.iter()
        .copied()
        .find(|s| s.key().replace('_', "-") == flag)
}

/// The config file, read once, and the environment: what [`Settings::get`]
/// resolves flags against.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    path: PathBuf,
    file: toml::Table,
}

impl Settings {
    /// Reads the config file (`$O1_CONFIG`, else the platform's); a missing
    /// file is an empty one.
    pub fn load() -> Result<Self, SettingsError> {
        Self::read(&crate::paths::config_file())
    }

    /// Reads and checks a config file: every key known, every value valid.
    pub fn read(path: &Path) -> Result<Self, SettingsError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(SettingsError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        Self::parse(path, &text)
    }

    fn parse(path: &Path, text: &str) -> Result<Self, SettingsError> {
        let path = path.to_path_buf();
        let file: toml::Table = toml::from_str(text).map_err(|e| SettingsError::Parse {
            path: path.clone(),
            message: e.to_string(),
        })?;
        for (key, value) in &file {
            let Some(setting) = ALL.iter().find(|s| s.key() == key) else {
                let keys: Vec<&str> = ALL.iter().map(|s| s.key()).collect();
                return Err(SettingsError::Parse {
                    path,
                    message: format!("unknown field `{key}`, expected one of {}", keys.join(", ")),
                });
            };
            if let Err(message) = setting.check(&file_text(value)) {
                return Err(SettingsError::Invalid {
                    path,
                    key: setting.key(),
                    message,
                });
            }
        }
        Ok(Settings { path, file })
    }

    /// The config file's path (whether or not it exists).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A setting's value: the flag, else its environment variable, else the
    /// config file, else the built-in default (`None` for a default that is
    /// worked out later).
    pub fn get<T: SettingValue>(
        &self,
        setting: &Setting<T>,
        flag: Option<T>,
    ) -> Result<Option<T>, SettingsError> {
        Ok(self.resolve(setting, flag)?.0)
    }

    /// [`Self::get`] of a setting with a fixed default.
    pub fn value<T: SettingValue>(
        &self,
        setting: &Setting<T>,
        flag: Option<T>,
    ) -> Result<T, SettingsError> {
        Ok(self
            .get(setting, flag)?
            .unwrap_or_else(|| panic!("`{}` has no fixed default", setting.key)))
    }

    /// [`Self::get`], and who set the value, in words (`--cpu-path`,
    /// `O1_CPU_PATH`, `cpu_path in ~/.config/o1/config.toml`).
    pub fn get_with_source<T: SettingValue>(
        &self,
        setting: &Setting<T>,
        flag: Option<T>,
    ) -> Result<(Option<T>, String), SettingsError> {
        let (value, source) = self.resolve(setting, flag)?;
        let by = match source {
            Source::Flag => format!("--{}", setting.key.replace('_', "-")),
            Source::Env(var) => var.to_string(),
            Source::File => format!("{} in {}", setting.key, self.path.display()),
            Source::Default => "default".to_string(),
        };
        Ok((value, by))
    }

    fn resolve<T: SettingValue>(
        &self,
        setting: &Setting<T>,
        flag: Option<T>,
    ) -> Result<(Option<T>, Source), SettingsError> {
        if let Some(v) = flag {
            (setting.check)(&v).map_err(|message| SettingsError::Flag {
                flag: setting.key.replace('_', "-"),
                message,
            })?;
            return Ok((Some(v), Source::Flag));
        }
        if let Ok(text) = std::env::var(setting.env) {
            let v = T::parse(&text)
                .and_then(|v| (setting.check)(&v).map(|()| v))
                .map_err(|message| SettingsError::Env {
                    var: setting.env,
                    message,
                })?;
            return Ok((Some(v), Source::Env(setting.env)));
        }
        if let Some(value) = self.file.get(setting.key) {
            let v = T::parse(&file_text(value))
                .and_then(|v| (setting.check)(&v).map(|()| v))
                .map_err(|message| SettingsError::Invalid {
                    path: self.path.clone(),
                    key: setting.key,
                    message,
                })?;
            return Ok((Some(v), Source::File));
        }
        let builtin = match &setting.builtin {
            Value(value) => Some(value()),
            Derived(_) => None,
        };
        Ok((builtin, Source::Default))
    }

    /// Every setting's effective value without flags, with its source.
    pub fn effective(&self) -> Result<Vec<(&'static str, String, Source)>, SettingsError> {
        ALL.iter()
            .map(|s| s.effective(self).map(|(v, source)| (s.key(), v, source)))
            .collect()
    }

    /// The repository and revision to pull and convert.
    pub fn repo_and_revision(
        &self,
        repo: Option<String>,
        revision: Option<String>,
    ) -> Result<(String, String), SettingsError> {
        Ok((self.value(&REPO, repo)?, self.value(&REVISION, revision)?))
    }

    /// Everything an engine needs besides the model.
    pub fn engine_config(
        &self,
        model: PathBuf,
        flags: &EngineFlags,
        chat: Option<&ChatFlags>,
    ) -> Result<EngineConfig, SettingsError> {
        let mut c = EngineConfig::new(model);
        c.n_ctx = self.get(&CTX, flags.ctx)?;
        c.gpu_layers = self.value(&GPU_LAYERS, flags.gpu_layers)?;
        c.kv_type = self.get(&KV_TYPE, flags.kv_type)?;
        c.threads = self.get(&THREADS, flags.threads)?;
        c.n_batch = flags.batch;
        if let Some(Size(bytes)) = self.get(&MAX_MEMORY, flags.max_memory)? {
            c.max_memory = bytes;
        }
        c.mmap = !flags.no_mmap;
        let Some(chat) = chat else { return Ok(c) };
        c.system = self.value(&SYSTEM, chat.system.clone())?;
        c.limits = Limits {
            reasoning: self.value(&MAX_REASONING, chat.max_reasoning)?,
            answer: self.value(&MAX_ANSWER, chat.max_answer)?,
        };
        c.on_full = self.value(&ON_FULL, chat.on_full)?;
        c.lookup = self.value(&LOOKUP, chat.lookup)?;
        c.sampling = SamplingOverrides {
            temperature: self.get(&TEMPERATURE, chat.temperature)?,
            top_k: self.get(&TOP_K, chat.top_k)?,
            top_p: self.get(&TOP_P, chat.top_p)?,
            min_p: self.get(&MIN_P, chat.min_p)?,
            repeat_penalty: self.get(&REPEAT_PENALTY, chat.repeat_penalty)?,
            seed: self.get(&SEED, chat.seed)?,
        };
        Ok(c)
    }
}

/// A config-file value as the text a flag or variable would give.
fn file_text(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

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

impl Settings {
    /// How `o1 serve` listens and whom it serves.
    pub fn serve_options(
        &self,
        flags: &ServeFlags,
    ) -> Result<crate::serve::Options, SettingsError> {
        let list = |text: Option<String>| -> Vec<String> {
            text.unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .map(String::from)
                .collect()
        };
        Ok(crate::serve::Options {
            host: self.value(&HOST, flags.host.clone())?,
            port: self.value(&PORT, flags.port)?,
            api_keys: list(self.get(&API_KEY, flags.api_key.clone())?.map(|k| k.0)),
            allow_origins: list(self.get(&ALLOW_ORIGINS, flags.allow_origins.clone())?),
            allow_hosts: list(self.get(&ALLOW_HOSTS, flags.allow_hosts.clone())?),
            remember_reasoning: self.value(&REMEMBER_REASONING, flags.remember_reasoning)?,
            queue: self.value(&QUEUE, flags.queue)?,
            max_connections: self.get(&MAX_CONNECTIONS, flags.max_connections)?,
        })
    }
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
