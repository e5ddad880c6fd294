//! What can go wrong in a pull. Each variant says which repo or file is at
//! fault and what to do about it, and maps to its own exit code so scripts
//! can tell a missing model from a network outage.

use std::io;
use std::path::PathBuf;

/// An error from [`pull`](crate::pull) or [`find_cached`](crate::find_cached).
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The repo, revision or file does not exist on the hub (HTTP 404).
    #[error("{repo}: {what} not found on the hub{hint}")]
    NotFound {
        repo: String,
        /// What was missing: "revision main", "file config.json", …
        what: String,
        /// Extra advice (may be empty), starting with "; ".
        hint: String,
    },

    /// The hub refused access (HTTP 401/403): a gated or private repo.
    #[error("{repo}: access denied (HTTP {status}): {hint}")]
    Unauthorized {
        repo: String,
        status: u16,
        hint: String,
    },

    /// The hub could not be reached (connection refused, DNS, timeout,
    /// connection dropped), even after retries.
    #[error("cannot reach {host}: {detail}; check the network connection, or set HF_HUB_OFFLINE=1 to use only the local cache")]
    Network { host: String, detail: String },

    /// The hub kept answering with a server error (5xx or 429) after retries.
    #[error("{url}: the hub answered HTTP {status} after retries; try again later")]
    Server { url: String, status: u16 },

    /// A downloaded file's hash differs from the one the hub announced
    /// (SHA-256 for LFS files, the git blob id for the others). The bad
    /// download was deleted.
    #[error("{repo}: {file}: {algorithm} mismatch (expected {expected}, got {actual}); the download was deleted, run the pull again")]
    HashMismatch {
        repo: String,
        file: String,
        /// "SHA-256" or "git blob SHA-1".
        algorithm: &'static str,
        expected: String,
        actual: String,
    },

    /// A downloaded file's size differs from the one the hub announced.
    /// The bad download was deleted.
    #[error("{repo}: {file}: the server sent {actual} bytes but announced {expected}; the download was deleted, run the pull again")]
    SizeMismatch {
        repo: String,
        file: String,
        expected: u64,
        actual: u64,
    },

    /// Not enough free space in the cache for the files still to download
    /// (checked up front), or the disk filled up while writing.
    #[error("not enough disk space in {}: {}; free some space or point HF_HUB_CACHE at a larger disk", .path.display(), space_detail(.needed, .available))]
    DiskFull {
        path: PathBuf,
        /// Bytes still to download; `None` when the disk filled up mid-write.
        needed: Option<u64>,
        available: u64,
    },

    /// Offline mode is on (or only the cache was asked) and the cache lacks
    /// the snapshot or a file of it.
    #[error("{repo}@{revision} is not fully in the cache {} ({detail}); download it first (with HF_HUB_OFFLINE unset)", cache.display())]
    OfflineNotCached {
        repo: String,
        revision: String,
        cache: PathBuf,
        detail: String,
    },

    /// The server named a file or blob that would land outside the cache
    /// folder (`..`, an absolute path, a backslash) or whose name holds a
    /// control character.
    #[error("{repo}: the server named a file {path:?} that {reason}; refusing to write it")]
    UnsafePath {
        repo: String,
        path: String,
        /// Why the name is unsafe: "has a . or .. component", …
        reason: &'static str,
    },

    /// A cache entry is broken and could not be repaired here (offline).
    #[error("corrupted cache entry {}: {detail}; pull again online to re-fetch it, or delete it", path.display())]
    CorruptCache { path: PathBuf, detail: String },

    /// A local file operation failed.
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },

    /// The hub answered something this client does not understand.
    #[error("{url}: unexpected answer from the hub: {detail}")]
    Protocol { url: String, detail: String },

    /// A repo id or revision given by the caller is malformed.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidInput {
        what: &'static str,
        value: String,
        reason: &'static str,
    },

    /// The caller's cancel flag was set; partial downloads are kept for resuming.
    #[error("download interrupted")]
    Interrupted,
}

/// Every exit code a failed pull ends with and what it means, in the words
/// of `o1 pull --help`; [`HubError::exit_code`] picks one per variant.
pub const EXIT_CODES: [(u8, &str); 14] = [
    (10, "not found"),
    (11, "access denied"),
    (12, "network"),
    (13, "server error"),
    (14, "hash mismatch"),
    (15, "size mismatch"),
    (16, "disk full"),
    (17, "offline and not cached"),
    (18, "unsafe file name"),
    (19, "corrupt cache"),
    (20, "local file error"),
    (21, "unexpected answer from the hub"),
    (22, "invalid repo id or revision"),
    (130, "interrupted"),
];

/// The exit codes as help text: `Exit codes: 10 not found, 11 …`, in lines
/// of at most 90 characters.
pub fn exit_code_help() -> String {
    exit_codes_text(&EXIT_CODES)
}

/// A table of exit codes as help text, in lines of at most 90 characters.
pub fn exit_codes_text(codes: &[(u8, &str)]) -> String {
    let mut text = String::from("Exit codes:");
    let mut line_start = 0;
    for (i, (code, meaning)) in codes.iter().enumerate() {
        let sep = if i + 1 == codes.len() { "." } else { "," };
        let item = format!("{code} {meaning}{sep}");
        if text.len() - line_start + 1 + item.len() > 90 {
            text.push('\n');
            line_start = text.len();
        } else {
            text.push(' ');
        }
        text.push_str(&item);
    }
    text
}

impl HubError {
    /// The process exit code for this error: distinct per variant (see
    /// [`EXIT_CODES`]), clear of 0–5 (used by the o1 binary and clap) and
    /// matching 130 for an interrupt.
    pub fn exit_code(&self) -> u8 {
        match self {
            HubError::NotFound { .. } => 10,
            HubError::Unauthorized { .. } => 11,
            HubError::Network { .. } => 12,
            HubError::Server { .. } => 13,
            HubError::HashMismatch { .. } => 14,
            HubError::SizeMismatch { .. } => 15,
            HubError::DiskFull { .. } => 16,
            HubError::OfflineNotCached { .. } => 17,
            HubError::UnsafePath { .. } => 18,
            HubError::CorruptCache { .. } => 19,
            HubError::Io { .. } => 20,
            HubError::Protocol { .. } => 21,
            HubError::InvalidInput { .. } => 22,
            HubError::Interrupted => 130,
        }
    }

    /// Wraps an I/O error with what was being done, mapping a full disk
    /// (ENOSPC) to [`HubError::DiskFull`].
    pub(crate) fn io(
        context: impl Into<String>,
        path: &std::path::Path,
        source: io::Error,
    ) -> Self {
        if source.raw_os_error() == Some(libc::ENOSPC) {
            let dir = path.parent().unwrap_or(path).to_path_buf();
            let available = fs4::available_space(&dir).unwrap_or(0);
            return HubError::DiskFull {
                path: dir,
                needed: None,
                available,
            };
        }
        HubError::Io {
            context: format!("{}: {}", path.display(), context.into()),
            source,
        }
    }
}

fn space_detail(needed: &Option<u64>, available: &u64) -> String {
    match needed {
        Some(needed) => format!("{needed} bytes needed, {available} available"),
        None => format!("the disk filled up while writing ({available} bytes available)"),
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = HubError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_distinct() {
        let errors = [
            HubError::NotFound {
                repo: "a/b".into(),
                what: "x".into(),
                hint: String::new(),
            },
            HubError::Unauthorized {
                repo: "a/b".into(),
                status: 401,
                hint: String::new(),
            },
            HubError::Network {
                host: "h".into(),
                detail: "d".into(),
            },
            HubError::Server {
                url: "u".into(),
                status: 500,
            },
            HubError::HashMismatch {
                repo: "a/b".into(),
                file: "f".into(),
                algorithm: "SHA-256",
                expected: "e".into(),
                actual: "a".into(),
            },
            HubError::SizeMismatch {
                repo: "a/b".into(),
                file: "f".into(),
                expected: 1,
                actual: 2,
            },
            HubError::DiskFull {
                path: "/".into(),
                needed: Some(2),
                available: 1,
            },
            HubError::OfflineNotCached {
                repo: "a/b".into(),
                revision: "main".into(),
                cache: "/c".into(),
                detail: "d".into(),
            },
            HubError::UnsafePath {
                repo: "a/b".into(),
                path: "../x".into(),
                reason: "has a . or .. component",
            },
            HubError::CorruptCache {
                path: "/c".into(),
                detail: "d".into(),
            },
            HubError::Io {
                context: "c".into(),
                source: io::Error::other("x"),
            },
            HubError::Protocol {
                url: "u".into(),
                detail: "d".into(),
            },
            HubError::InvalidInput {
                what: "repo id",
                value: "x".into(),
                reason: "r",
            },
            HubError::Interrupted,
        ];
        let full = HubError::io(
            "writing",
            std::path::Path::new("/tmp/x"),
            io::Error::from_raw_os_error(libc::ENOSPC),
        );
        assert!(
            matches!(full, HubError::DiskFull { needed: None, .. }),
            "{full}"
        );
        let mut codes: Vec<u8> = errors.iter().map(HubError::exit_code).collect();
        assert!(codes.iter().all(|&c| c > 5));
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), errors.len());
        let listed: Vec<u8> = EXIT_CODES.iter().map(|&(code, _)| code).collect();
        assert_eq!(codes, listed, "EXIT_CODES lists every variant's code once");
    }

    #[test]
    fn exit_code_help_lists_every_code_in_short_lines() {
        let help = exit_code_help();
        assert!(help.starts_with("Exit codes: 10 not found, 11 access denied,"));
        assert!(help.ends_with("130 interrupted."), "{help}");
        for (code, meaning) in EXIT_CODES {
            assert!(help.contains(&format!("{code} {meaning}")), "{help}");
        }
        assert!(help.lines().all(|l| l.len() <= 90), "{help}");
    }
}
