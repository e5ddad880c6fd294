//! The defaults a user keeps in `config.toml` (in the config directory, or
//! `$O1_CONFIG`). Precedence: command-line flag > environment variable >
//! config file > built-in default. Flags and environment variables are
//! clap's (each flag names its variable); this module reads the file and
//! says where each effective value came from (`o1 config`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::engine::{GpuLayers, OnFull};
use crate::model::KvType;

pub use o1_hub::{DEFAULT_REPO, DEFAULT_REVISION};
/// The default conversion type.
pub const DEFAULT_TYPE: &str = "q4_k_m";

#[derive(Debug, Default, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    /// The model `o1 run`/`o1 tui` use: a store name or a path.
    pub model: Option<String>,
    /// The conversion type (`o1 convert --type`, and the default model's type).
    #[serde(rename = "type")]
    pub out_type: Option<String>,
    pub repo: Option<String>,
    pub revision: Option<String>,
    pub ctx: Option<u32>,
    pub gpu_layers: Option<String>,
    pub kv_type: Option<String>,
    pub threads: Option<usize>,
    pub system: Option<String>,
    pub max_reasoning: Option<usize>,
    pub max_answer: Option<usize>,
    pub on_full: Option<String>,
    pub temperature: Option<f32>,
    pub top_k: Option<u32>,
    pub top_p: Option<f32>,
    pub min_p: Option<f32>,
    pub repeat_penalty: Option<f32>,
    pub seed: Option<u32>,
    /// `shown` or `collapsed`: how `o1 tui` starts the reasoning pane.
    pub reasoning: Option<String>,
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
}

pub fn config_path() -> PathBuf {
    if let Some(p) = std::env::var_os("O1_CONFIG") {
        return PathBuf::from(p);
    }
    directories::ProjectDirs::from("", "", "o1")
        .map(|d| d.config_dir().join("config.toml"))
        .unwrap_or_else(|| PathBuf::from("o1-config.toml"))
}

impl FileSettings {
    /// Reads the config file; a missing file is an empty one.
    pub fn load() -> Result<Self, SettingsError> {
        let path = config_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => return Err(SettingsError::Read { path, source }),
        };
        let s: Self = toml::from_str(&text).map_err(|e| SettingsError::Parse {
            path: path.clone(),
            message: e.to_string(),
        })?;
        s.validate()
            .map_err(|(key, message)| SettingsError::Invalid { path, key, message })?;
        Ok(s)
    }

    /// Checks the fields that have a fixed set of values.
    fn validate(&self) -> Result<(), (&'static str, String)> {
        use clap::ValueEnum;
        if let Some(t) = &self.out_type {
            t.parse::<o1_convert::OutputType>()
                .map_err(|e| ("type", e))?;
        }
        if let Some(g) = &self.gpu_layers {
            g.parse::<GpuLayers>().map_err(|e| ("gpu_layers", e))?;
        }
        if let Some(k) = &self.kv_type {
            KvType::from_str(k, true).map_err(|_| ("kv_type", format!("is {k:?}: f16 or q8_0")))?;
        }
        if let Some(o) = &self.on_full {
            OnFull::from_str(o, true)
                .map_err(|_| ("on_full", format!("is {o:?}: drop or stop")))?;
        }
        if let Some(r) = &self.reasoning {
            if r != "shown" && r != "collapsed" {
                return Err(("reasoning", format!("is {r:?}: shown or collapsed")));
            }
        }
        Ok(())
    }

    pub fn gpu_layers(&self) -> Option<GpuLayers> {
        self.gpu_layers.as_deref().and_then(|g| g.parse().ok())
    }

    pub fn kv_type(&self) -> Option<KvType> {
        use clap::ValueEnum;
        self.kv_type
            .as_deref()
            .and_then(|k| KvType::from_str(k, true).ok())
    }

    pub fn on_full(&self) -> Option<OnFull> {
        use clap::ValueEnum;
        self.on_full
            .as_deref()
            .and_then(|o| OnFull::from_str(o, true).ok())
    }

    pub fn out_type(&self) -> Option<o1_convert::OutputType> {
        self.out_type.as_deref().and_then(|t| t.parse().ok())
    }
}

/// Where an effective value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Env(&'static str),
    File,
    Default,
}

/// Every setting: its key, environment variable and built-in default.
pub const KEYS: &[(&str, &str, &str)] = &[
    ("model", "O1_MODEL", "the store's <repo>-<type> model"),
    ("type", "O1_TYPE", DEFAULT_TYPE),
    ("repo", "O1_REPO", DEFAULT_REPO),
    ("revision", "O1_REVISION", DEFAULT_REVISION),
    ("ctx", "O1_CTX", "trained length, capped to 1/4 of RAM"),
    ("gpu_layers", "O1_GPU_LAYERS", "auto"),
    ("kv_type", "O1_KV_TYPE", "f16"),
    ("threads", "O1_THREADS", "all cores"),
    ("system", "O1_SYSTEM", crate::chat::DEFAULT_SYSTEM),
    ("max_reasoning", "O1_MAX_REASONING", "3000"),
    ("max_answer", "O1_MAX_ANSWER", "3000"),
    ("on_full", "O1_ON_FULL", "drop"),
    ("temperature", "O1_TEMPERATURE", "the model's (greedy)"),
    ("top_k", "O1_TOP_K", "the model's"),
    ("top_p", "O1_TOP_P", "the model's"),
    ("min_p", "O1_MIN_P", "the model's"),
    ("repeat_penalty", "O1_REPEAT_PENALTY", "the model's"),
    ("seed", "O1_SEED", "fixed"),
    ("reasoning", "O1_REASONING", "shown"),
];

/// The effective value of each key, with its source (no flags: `o1 config`).
pub fn effective(file: &FileSettings) -> Vec<(&'static str, String, Source)> {
    let table = toml::Table::try_from(file).unwrap_or_default();
    KEYS.iter()
        .map(|&(key, env, default)| {
            if let Ok(v) = std::env::var(env) {
                (key, v, Source::Env(env))
            } else if let Some(v) = table.get(key) {
                let v = match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (key, v, Source::File)
            } else {
                (key, default.to_string(), Source::Default)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<FileSettings, (&'static str, String)> {
        let f: FileSettings = toml::from_str(s).map_err(|e| ("toml", e.to_string()))?;
        f.validate()?;
        Ok(f)
    }

    #[test]
    fn parses_and_validates() {
        let f = parse("model = \"mine\"\ntype = \"q8_0\"\nctx = 8192\ngpu_layers = \"all\"\nkv_type = \"q8_0\"\ntemperature = 0.7\nreasoning = \"collapsed\"").unwrap();
        assert_eq!(f.ctx, Some(8192));
        assert_eq!(f.gpu_layers(), Some(GpuLayers::All));
        assert_eq!(f.kv_type(), Some(KvType::Q8_0));
        assert_eq!(f.out_type(), Some(o1_convert::OutputType::Q8_0));
        assert_eq!(parse("type = \"q3_k\"").unwrap_err().0, "type");
        assert_eq!(parse("gpu_layers = \"many\"").unwrap_err().0, "gpu_layers");
        assert_eq!(parse("reasoning = \"hidden\"").unwrap_err().0, "reasoning");
        let unknown = parse("colour = \"blue\"").unwrap_err();
        assert!(unknown.1.contains("unknown field `colour`"), "{unknown:?}");
    }

    #[test]
    fn effective_values_name_their_source() {
        let f = FileSettings {
            ctx: Some(4096),
            system: Some("Be brief.".into()),
            ..Default::default()
        };
        let e = effective(&f);
        let get = |k: &str| e.iter().find(|x| x.0 == k).unwrap().clone();
        assert_eq!(get("ctx"), ("ctx", "4096".into(), Source::File));
        assert_eq!(get("system"), ("system", "Be brief.".into(), Source::File));
        assert_eq!(get("type"), ("type", "q4_k_m".into(), Source::Default));
    }
}
