//! Where to download from, with what credentials, into which cache. All of
//! it is explicit so that tests (and threads) never race on process-wide
//! environment variables; [`PullOptions::from_env`] reads the usual
//! huggingface_hub variables for the binary.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// The hub's public address, used when `HF_ENDPOINT` is not set.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// An access token for the hub. Its `Debug` output is redacted and it has no
/// `Display`, so it cannot end up in a log or an error message by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct HfToken(String);

impl HfToken {
    /// Wraps a token, trimming whitespace; `None` when nothing is left.
    pub fn new(token: &str) -> Option<Self> {
        let token = token.trim();
        (!token.is_empty()).then(|| HfToken(token.to_owned()))
    }

    /// The secret itself, only for building the `Authorization` header.
    pub(crate) fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for HfToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HfToken(<redacted>)")
    }
}

/// How often and how patiently to retry transient failures (connection
/// errors, timeouts, dropped transfers, 5xx and 429 answers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt; 0 means try once.
    pub max_retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub initial_backoff: Duration,
    /// Upper bound for one wait.
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// Waits before retry number `retry` (0-based): exponential, capped.
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

impl Default for RetryPolicy {
    /// Five retries, 1 s then doubling up to 30 s: rides out a minute-long blip.
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// Everything a pull needs besides the repo and revision.
#[derive(Clone, Debug)]
pub struct PullOptions {
    /// Base URL of the hub, without a trailing slash (`HF_ENDPOINT`).
    pub endpoint: String,
    /// Sent as `Authorization: Bearer` to the endpoint's origin only.
    pub token: Option<HfToken>,
    /// Root of the shared hub cache (`HF_HUB_CACHE`, `$HF_HOME/hub`, …).
    pub cache_dir: PathBuf,
    /// No HTTP at all: resolve from the cache or fail (`HF_HUB_OFFLINE`).
    pub offline: bool,
    /// Retries for transient failures.
    pub retry: RetryPolicy,
    /// Limit for opening a connection.
    pub connect_timeout: Duration,
    /// Limit for any single wait on the server (headers, or the next bytes of
    /// a body); a stalled transfer is then retried and resumed.
    pub stall_timeout: Duration,
    /// Limit for a whole metadata request (the listing, a file's headers),
    /// retries included. A server that drips its answer or never ends it
    /// fails the pull with a clear error instead of hanging it. File
    /// downloads have no such limit: they take as long as they take.
    pub metadata_timeout: Duration,
    /// Send the token to a plain `http://` endpoint on another machine
    /// (`O1_HF_TOKEN_OVER_HTTP`). Off by default: the token would cross the
    /// network unencrypted, so it is withheld there, with a warning.
    pub token_over_http: bool,
    /// Bytes to leave free on the cache's disk after the download.
    pub keep_free: u64,
    /// When set to true (e.g. by a Ctrl+C handler) the pull stops with
    /// [`HubError::Interrupted`](crate::HubError::Interrupted); partial files stay for resuming.
    pub cancel: Option<Arc<AtomicBool>>,
}

impl PullOptions {
    /// Options for the public hub with the given cache root, no token,
    /// online, default retries and timeouts.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        PullOptions {
            endpoint: DEFAULT_ENDPOINT.to_owned(),
            token: None,
            cache_dir: cache_dir.into(),
            offline: false,
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(60),
            metadata_timeout: Duration::from_secs(120),
            token_over_http: false,
            keep_free: 0,
            cancel: None,
        }
    }

    /// Options from the environment, as huggingface_hub reads it:
    /// `HF_ENDPOINT`; `HF_TOKEN`, else the file `HF_TOKEN_PATH`, else
    /// `$HF_HOME/token`; `HF_HUB_CACHE`, else `$HF_HOME/hub`, with `HF_HOME`
    /// defaulting to `$XDG_CACHE_HOME/huggingface` or `~/.cache/huggingface`;
    /// `HF_HUB_OFFLINE` (1/true/yes/on); and o1's own
    /// `O1_HF_TOKEN_OVER_HTTP` (1/true/yes/on).
    pub fn from_env() -> Self {
        Self::from_lookup(
            |name| std::env::var(name).ok(),
            |path| std::fs::read_to_string(path).ok(),
        )
    }

    /// [`from_env`](Self::from_env) over any variable and file source.
    pub(crate) fn from_lookup(
        var: impl Fn(&str) -> Option<String>,
        read_file: impl Fn(&Path) -> Option<String>,
    ) -> Self {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let hf_home = var("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
            let cache = var("XDG_CACHE_HOME").map(PathBuf::from).unwrap_or_else(|| {
                PathBuf::from(var("HOME").unwrap_or_else(|| ".".to_owned())).join(".cache")
            });
            cache.join("huggingface")
        });
        let cache_dir = var("HF_HUB_CACHE")
            .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
            .map(PathBuf::from)
            .unwrap_or_else(|| hf_home.join("hub"));
        let token = match var("HF_TOKEN") {
            Some(token) => HfToken::new(&token),
            None => {
                let path = var("HF_TOKEN_PATH")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| hf_home.join("token"));
                read_file(&path).and_then(|t| HfToken::new(&t))
            }
        };
        let mut options = PullOptions::new(cache_dir);
        if let Some(endpoint) = var("HF_ENDPOINT") {
            options.endpoint = endpoint.trim().trim_end_matches('/').to_owned();
        }
        options.token = token;
        options.offline = var("HF_HUB_OFFLINE").is_some_and(|v| is_true(&v));
        options.token_over_http = var("O1_HF_TOKEN_OVER_HTTP").is_some_and(|v| is_true(&v));
        options
    }
}

/// huggingface_hub's truthy values for boolean variables.
fn is_true(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn options(vars: &[(&str, &str)], files: &[(&str, &str)]) -> PullOptions {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let files: HashMap<PathBuf, String> = files
            .iter()
            .map(|(k, v)| (PathBuf::from(k), v.to_string()))
            .collect();
        PullOptions::from_lookup(|k| vars.get(k).cloned(), |p| files.get(p).cloned())
    }

    #[test]
    fn defaults_follow_home() {
        let o = options(&[("HOME", "/home/u")], &[]);
        assert_eq!(o.endpoint, DEFAULT_ENDPOINT);
        assert_eq!(o.cache_dir, PathBuf::from("/home/u/.cache/huggingface/hub"));
        assert!(o.token.is_none());
        assert!(!o.offline);
        assert!(!o.token_over_http);
    }

    #[test]
    fn hf_home_and_token_file() {
        let o = options(
            &[("HOME", "/home/u"), ("HF_HOME", "/hf")],
            &[("/hf/token", "hf_abc\n")],
        );
        assert_eq!(o.cache_dir, PathBuf::from("/hf/hub"));
        assert_eq!(o.token, HfToken::new("hf_abc"));
    }

    #[test]
    fn explicit_variables_win() {
        let o = options(
            &[
                ("HOME", "/home/u"),
                ("XDG_CACHE_HOME", "/xdg"),
                ("HF_HUB_CACHE", "/cache"),
                ("HF_TOKEN", "hf_env"),
                ("HF_ENDPOINT", "http://mirror.local/"),
                ("HF_HUB_OFFLINE", "TRUE"),
                ("O1_HF_TOKEN_OVER_HTTP", "yes"),
            ],
            &[("/xdg/huggingface/token", "hf_file")],
        );
        assert_eq!(o.cache_dir, PathBuf::from("/cache"));
        assert_eq!(o.token, HfToken::new("hf_env"));
        assert_eq!(o.endpoint, "http://mirror.local");
        assert!(o.offline);
        assert!(o.token_over_http);
    }

    #[test]
    fn xdg_cache_and_offline_values() {
        let o = options(&[("XDG_CACHE_HOME", "/xdg"), ("HF_HUB_OFFLINE", "0")], &[]);
        assert_eq!(o.cache_dir, PathBuf::from("/xdg/huggingface/hub"));
        assert!(!o.offline);
        for v in ["1", "yes", "on", "true"] {
            assert!(is_true(v));
        }
    }

    #[test]
    fn token_is_redacted() {
        let mut o = PullOptions::new("/c");
        o.token = HfToken::new("hf_supersecret");
        let shown = format!("{o:?}");
        assert!(!shown.contains("supersecret"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let r = RetryPolicy {
            max_retries: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
        };
        assert_eq!(r.backoff(0), Duration::from_millis(100));
        assert_eq!(r.backoff(1), Duration::from_millis(200));
        assert_eq!(r.backoff(2), Duration::from_millis(350));
        assert_eq!(r.backoff(40), Duration::from_millis(350));
    }
}
