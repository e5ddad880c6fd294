//! A Hugging Face checkpoint folder, opened and checked: configuration,
//! vocabulary and mapped weights. Nothing here reads tensor data.

use std::path::{Path, PathBuf};

use crate::config::{self, GenerationConfig, ModelConfig, TokenizerConfig};
use crate::error::{ConvertError, Result};
use crate::plan;
use crate::safetensors::Weights;
use crate::vocab::Vocab;

pub struct Checkpoint {
    pub dir: PathBuf,
    pub config: ModelConfig,
    pub generation: GenerationConfig,
    pub vocab: Vocab,
    pub tokenizer_path: PathBuf,
    pub weights: Weights,
}

impl Checkpoint {
    pub fn open(dir: &Path) -> Result<Self> {
        if !dir.exists() {
            return Err(ConvertError::NoSuchDirectory(dir.to_path_buf()));
        }
        if !dir.is_dir() {
            return Err(ConvertError::NotADirectory(dir.to_path_buf()));
        }
        let required = |name: &str, what: &'static str| -> Result<PathBuf> {
            let path = dir.join(name);
            if path.is_file() {
                Ok(path)
            } else {
                Err(ConvertError::MissingFile { path, what })
            }
        };
        let config_path = required("config.json", "the model configuration")?;
        let tokenizer_path = required("tokenizer.json", "the tokenizer")?;
        let config = ModelConfig::load(&config_path)?;
        let tokenizer_config: TokenizerConfig =
            config::load_optional(dir.join("tokenizer_config.json"))?;
        let generation = GenerationConfig::load(dir.join("generation_config.json"))?;
        // The weights vouch for config.json's sizes before the vocabulary
        // is built from them.
        let weights = Weights::open(dir)?;
        plan::check(&config, &config_path, &weights)?;
        let vocab = Vocab::load(&tokenizer_path, &tokenizer_config, &config)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            generation,
            vocab,
            tokenizer_path,
            weights,
        })
    }

    /// The folder's name, used as the model's default name.
    pub fn name(&self) -> String {
        let canonical = self.dir.canonicalize().unwrap_or_else(|_| self.dir.clone());
        canonical
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into())
    }
}
