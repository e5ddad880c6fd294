//! The config file and the environment, resolved against flags: the one
//! place of the precedence flag > environment > config file > default, and
//! the engine's, the server's and the converter's options built from it.

use super::*;

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

    pub(super) fn parse(path: &Path, text: &str) -> Result<Self, SettingsError> {
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
    /// Whether the user gave `setting` (a flag aside): an environment
    /// variable or the config file, not the built-in default.
    pub fn is_given<T: SettingValue>(&self, setting: &Setting<T>) -> Result<bool, SettingsError> {
        Ok(self.resolve(setting, None)?.1 != Source::Default)
    }

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

    pub(super) fn resolve<T: SettingValue>(
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
        c.share_cpu = self.value(&SHARE_CPU, flags.share_cpu)?;
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
