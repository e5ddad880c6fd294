//! Downloads a model checkpoint from the Hugging Face hub into the cache
//! shared with Python's huggingface_hub and llama.cpp, blocking, with
//! resume, retries, verification and an offline mode.
//!
//! ```no_run
//! use o1_hub::{pull, NoProgress, PullOptions, DEFAULT_REPO, DEFAULT_REVISION};
//!
//! let options = PullOptions::from_env();
//! let snapshot = pull(DEFAULT_REPO, DEFAULT_REVISION, &options, &mut NoProgress)?;
//! println!("{} at {}", snapshot.dir.display(), snapshot.commit);
//! # Ok::<(), o1_hub::HubError>(())
//! ```
//!
//! A pull lists the repo, keeps the files a conversion needs (see
//! [`pull`]), reuses whatever the cache already holds, and downloads the
//! rest one file at a time, each under a lock so concurrent pulls of the
//! same repo download each blob once.

#[cfg(not(unix))]
compile_error!("o1-hub needs a Unix system: it uses symlinks and flock");

mod api;
mod cache;
mod download;
mod error;
mod http;
mod options;
mod progress;

use std::fs;
use std::path::{Path, PathBuf};

pub use api::{parse_listing, ListedFile, Listing};
pub use download::{parse_content_range, ContentRange};
pub use error::{exit_code_help, exit_codes_text, HubError, Result, EXIT_CODES};
pub use http::{innermost_cause, is_loopback_host, parse_file_head, redirect_location, FileHead};
pub use options::{HfToken, PullOptions, RetryPolicy, DEFAULT_ENDPOINT};
pub use progress::{NoProgress, PullProgress};
/// The URL type of [`redirect_location`].
pub use reqwest::Url;

use api::{CONFIG_FILE, INDEX_FILE, METADATA_FILES};
use cache::{is_commit_hash, is_plain_name, unsafe_reason, Entry, RepoCache};
use download::{Blob, Fetched, Hash};
use http::{encode, Ctx, Http};

/// The model o1 runs by default.
pub const DEFAULT_REPO: &str = "Laurie/Qwen2.5-1.5B-O1";

/// The branch pulled by default.
pub const DEFAULT_REVISION: &str = "main";

/// A complete snapshot in the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// `org/name`.
    pub repo: String,
    /// The revision asked for (branch, tag or commit).
    pub revision: String,
    /// The commit it resolved to.
    pub commit: String,
    /// `{cache}/models--org--name/snapshots/{commit}`: a checkpoint folder.
    pub dir: PathBuf,
    /// The files of the snapshot this pull made sure of, relative to `dir`.
    pub files: Vec<String>,
    /// How many files were downloaded (0 when all came from the cache).
    pub downloaded_files: usize,
    /// How many bytes were transferred.
    pub downloaded_bytes: u64,
}

/// Makes sure the cache holds the files of `repo` at `revision` that a
/// conversion needs, downloading what is missing, and returns the snapshot.
///
/// The files are `config.json` (required), `generation_config.json`,
/// `tokenizer.json`, `tokenizer_config.json`, `special_tokens_map.json`,
/// `model.safetensors.index.json` (when present), and every top-level
/// `*.safetensors` (at least one required).
///
/// Offline (`options.offline`), nothing goes over the network: the snapshot
/// comes from the cache or the pull fails with [`HubError::OfflineNotCached`].
/// When the hub cannot be reached at all, a complete cached snapshot of the
/// revision is used instead, with a [`PullProgress::message`].
pub fn pull(
    repo: &str,
    revision: &str,
    options: &PullOptions,
    progress: &mut dyn PullProgress,
) -> Result<Snapshot> {
    check_repo_id(repo)?;
    check_revision(revision)?;
    let cache = RepoCache::new(&options.cache_dir, repo);
    if options.offline {
        return cached_snapshot(&cache, repo, revision);
    }
    let http = Http::new(options)?;
    if let Some(warning) = http.token_warning() {
        progress.message(&warning);
    }
    let listing = match api::list(&http, repo, revision, progress) {
        Ok(listing) => listing,
        Err(err @ HubError::Network { .. }) => {
            return match cached_snapshot(&cache, repo, revision) {
                Ok(snapshot) => {
                    progress.message(&format!(
                        "the hub is unreachable; using the cached snapshot {}",
                        snapshot.commit
                    ));
                    Ok(snapshot)
                }
                Err(_) => Err(err),
            };
        }
        Err(err) => return Err(err),
    };
    let Listing { commit, files } = listing;

    let mut to_fetch = Vec::new();
    let mut cached_bytes = 0;
    for file in &files {
        // Blobs are named by their hash (the ETag): LFS files by their
        // SHA-256, the others by their git blob id.
        let blob = file.sha256.as_deref().or(file.blob_id.as_deref());
        match cache.check_entry(&commit, &file.path, file.size, blob) {
            Entry::Good(len) => cached_bytes += len,
            Entry::Missing => to_fetch.push(file),
            Entry::Corrupt(why) => {
                progress.message(&format!(
                    "{}: the cached copy {why}; fetching it again",
                    file.path
                ));
                cache.remove_entry(&commit, &file.path)?;
                to_fetch.push(file);
            }
        }
    }
    // Every size and blob name is known before anything is downloaded: the
    // space check counts a file the listing gives no size for.
    let resolved = to_fetch
        .into_iter()
        .map(|file| resolve(&http, repo, revision, &commit, file, progress))
        .collect::<Result<Vec<_>>>()?;
    let total_bytes = cached_bytes + resolved.iter().map(|r| r.size).sum::<u64>();
    progress.totals(files.len(), total_bytes, cached_bytes);
    check_space(&cache, &resolved, options.keep_free)?;

    let mut downloaded_files = 0;
    let mut downloaded_bytes = 0;
    for file in &resolved {
        let fetched = fetch_file(&http, &cache, repo, revision, &commit, file, progress)?;
        if let Fetched::Downloaded(bytes) = fetched {
            downloaded_files += 1;
            downloaded_bytes += bytes;
        }
        progress.file_done(&file.file.path);
    }
    // Written last, so a ref only ever names a commit whose files are here.
    if revision != commit {
        cache.write_ref(revision, &commit)?;
    }
    Ok(Snapshot {
        repo: repo.to_owned(),
        revision: revision.to_owned(),
        dir: cache.snapshot_dir(&commit),
        commit,
        files: files.into_iter().map(|f| f.path).collect(),
        downloaded_files,
        downloaded_bytes,
    })
}

/// The snapshot of `repo` at `revision` from the cache alone (no network):
/// follows `refs/{revision}` (or takes a commit hash as is) and checks that
/// `config.json` and the weights (every shard the index names) are there.
/// Fails with [`HubError::OfflineNotCached`] or [`HubError::CorruptCache`].
pub fn find_cached(repo: &str, revision: &str, cache_dir: &Path) -> Result<Snapshot> {
    check_repo_id(repo)?;
    check_revision(revision)?;
    cached_snapshot(&RepoCache::new(cache_dir, repo), repo, revision)
}

/// A file to download, with what its headers said.
struct Resolved<'a> {
    file: &'a ListedFile,
    url: Url,
    /// The blob name: the hash of the content.
    etag: String,
    size: u64,
}

impl Resolved<'_> {
    /// The hash the content must have: the LFS SHA-256, or for a regular
    /// file the git blob id its ETag is; none for an ETag of another kind
    /// (a mirror's own), when only the size can be checked.
    fn hash(&self) -> Option<Hash<'_>> {
        match &self.file.sha256 {
            Some(sha256) => Some(Hash::Sha256(sha256)),
            None => (self.etag.len() == 40 && self.etag.bytes().all(|b| b.is_ascii_hexdigit()))
                .then_some(Hash::GitBlob(&self.etag)),
        }
    }
}

/// A file's blob name and size, from a HEAD on its resolve URL, checked
/// against the listing.
fn resolve<'a>(
    http: &Http,
    repo: &str,
    revision: &str,
    commit: &str,
    file: &'a ListedFile,
    progress: &mut dyn PullProgress,
) -> Result<Resolved<'a>> {
    let url = http.url(&format!(
        "{repo}/resolve/{}/{}",
        encode(commit, false),
        encode(&file.path, true)
    ))?;
    let ctx = Ctx {
        repo,
        revision,
        file: Some(&file.path),
    };
    let head = http.head(&url, ctx, progress)?;
    let protocol = |detail: String| HubError::Protocol {
        url: url.to_string(),
        detail: format!("{}: {detail}", file.path),
    };
    if let Some(other) = head.commit.as_deref().filter(|c| *c != commit) {
        return Err(protocol(format!(
            "the headers name commit {other}, the listing {commit}"
        )));
    }
    let etag = head
        .etag
        .ok_or_else(|| protocol("no ETag or X-Linked-Etag header".to_owned()))?
        .to_ascii_lowercase();
    if let Some(reason) = unsafe_reason(&etag) {
        return Err(HubError::UnsafePath {
            repo: repo.to_owned(),
            path: etag,
            reason,
        });
    }
    if !is_plain_name(&etag) {
        return Err(protocol(format!("unusable ETag {}", http::shown(&etag))));
    }
    let size = match (head.size, file.size) {
        (Some(head), Some(listed)) if head != listed => {
            return Err(protocol(format!(
                "the listing says {listed} bytes, the file headers {head}"
            )))
        }
        (Some(size), _) | (None, Some(size)) => size,
        (None, None) => return Err(protocol("no size in the listing or headers".to_owned())),
    };
    for (what, listed) in [("SHA-256", &file.sha256), ("git blob id", &file.blob_id)] {
        if let Some(listed) = listed.as_deref().filter(|l| *l != etag) {
            return Err(protocol(format!(
                "the listing says {what} {listed}, the file's ETag is {etag}"
            )));
        }
    }
    Ok(Resolved {
        file,
        url,
        etag,
        size,
    })
}

/// Downloads a resolved file and links it into the snapshot.
fn fetch_file(
    http: &Http,
    cache: &RepoCache,
    repo: &str,
    revision: &str,
    commit: &str,
    file: &Resolved<'_>,
    progress: &mut dyn PullProgress,
) -> Result<Fetched> {
    let blob = Blob {
        repo,
        revision,
        path: &file.file.path,
        url: &file.url,
        etag: &file.etag,
        size: file.size,
        hash: file.hash(),
    };
    let fetched = download::fetch(http, cache, &blob, progress)?;
    cache.link(commit, &file.file.path, &file.etag)?;
    Ok(fetched)
}

/// Fails early when the blobs folder's disk cannot hold what is left to
/// download (minus partial downloads already there) plus `keep_free`.
fn check_space(cache: &RepoCache, files: &[Resolved<'_>], keep_free: u64) -> Result<()> {
    if files.is_empty() {
        return Ok(());
    }
    let blobs = cache.blobs_dir();
    cache::create_dir_all(&blobs)?;
    let mut needed = keep_free;
    for file in files {
        let len = |p: PathBuf| fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let have = match len(cache.blob_path(&file.etag)) {
            blob if blob == file.size => blob,
            _ => len(cache.incomplete_path(&file.etag)).min(file.size),
        };
        needed = needed.saturating_add(file.size - have);
    }
    let available = fs4::available_space(&blobs)
        .map_err(|e| HubError::io("checking free disk space", &blobs, e))?;
    if available < needed {
        return Err(HubError::DiskFull {
            path: blobs,
            needed: Some(needed),
            available,
        });
    }
    Ok(())
}

/// Resolves `revision` in the cache and checks the snapshot is usable.
fn cached_snapshot(cache: &RepoCache, repo: &str, revision: &str) -> Result<Snapshot> {
    let not_cached = |detail: String| HubError::OfflineNotCached {
        repo: repo.to_owned(),
        revision: revision.to_owned(),
        cache: cache.root().to_path_buf(),
        detail,
    };
    if !cache.dir().is_dir() {
        return Err(not_cached(format!("no folder {}", cache.dir().display())));
    }
    let commit = if is_commit_hash(revision) && cache.snapshot_dir(revision).is_dir() {
        revision.to_owned()
    } else {
        let commit = cache
            .read_ref(revision)?
            .ok_or_else(|| not_cached(format!("no ref for {revision:?}")))?;
        if !is_commit_hash(&commit) {
            return Err(HubError::CorruptCache {
                path: cache.dir().join("refs").join(revision),
                detail: format!("holds {commit:?}, not a commit hash"),
            });
        }
        commit
    };
    let dir = cache.snapshot_dir(&commit);
    if !dir.is_dir() {
        return Err(not_cached(format!(
            "no snapshot folder for commit {commit}"
        )));
    }
    let corrupt = |name: &str, detail: String| HubError::CorruptCache {
        path: cache.snapshot_path(&commit, name),
        detail,
    };
    let mut files = Vec::new();
    for name in METADATA_FILES {
        match cache.check_entry(&commit, name, None, None) {
            Entry::Good(_) => files.push(name.to_owned()),
            Entry::Missing if name == CONFIG_FILE => {
                return Err(not_cached(format!("{CONFIG_FILE} is missing")))
            }
            Entry::Missing => {}
            Entry::Corrupt(why) => return Err(corrupt(name, why)),
        }
    }
    let mut weights = Vec::new();
    let entries = fs::read_dir(&dir).map_err(|e| HubError::io("listing the snapshot", &dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| HubError::io("listing the snapshot", &dir, e))?;
        if let Some(name) = entry.file_name().to_str() {
            if name.ends_with(".safetensors") {
                weights.push(name.to_owned());
            }
        }
    }
    weights.sort();
    for name in &weights {
        if let Entry::Corrupt(why) = cache.check_entry(&commit, name, None, None) {
            return Err(corrupt(name, why));
        }
    }
    if files.iter().any(|f| f == INDEX_FILE) {
        for shard in index_shards(&cache.snapshot_path(&commit, INDEX_FILE))? {
            if !weights.contains(&shard) {
                return Err(not_cached(format!(
                    "{shard}, named in {INDEX_FILE}, is missing"
                )));
            }
        }
    }
    if weights.is_empty() {
        return Err(not_cached("no *.safetensors weights".to_owned()));
    }
    files.extend(weights);
    Ok(Snapshot {
        repo: repo.to_owned(),
        revision: revision.to_owned(),
        commit,
        dir,
        files,
        downloaded_files: 0,
        downloaded_bytes: 0,
    })
}

/// The shard files a `model.safetensors.index.json` names.
fn index_shards(path: &Path) -> Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: std::collections::BTreeMap<String, String>,
    }
    let text = fs::read(path).map_err(|e| HubError::io("reading the shard index", path, e))?;
    let index: Index = serde_json::from_slice(&text).map_err(|e| HubError::CorruptCache {
        path: path.to_path_buf(),
        detail: format!("not a valid shard index: {e}"),
    })?;
    let mut shards: Vec<String> = index.weight_map.into_values().collect();
    shards.sort();
    shards.dedup();
    if let Some(bad) = shards
        .iter()
        .find(|s| unsafe_reason(s).is_some() || s.contains('/'))
    {
        return Err(HubError::CorruptCache {
            path: path.to_path_buf(),
            detail: format!("names a shard {bad:?} outside the snapshot folder"),
        });
    }
    Ok(shards)
}

/// Whether `text` reads as a hub repository id, `org/name` (a folder of
/// that name is the caller's to prefer).
pub fn is_repo_id(text: &str) -> bool {
    text.split('/').count() == 2 && !text.starts_with('.') && check_repo_id(text).is_ok()
}

/// Accepts `name` or `org/name` made of letters, digits, `-`, `_`, `.`.
fn check_repo_id(repo: &str) -> Result<()> {
    let invalid = |reason| HubError::InvalidInput {
        what: "repo id",
        value: repo.to_owned(),
        reason,
    };
    let parts: Vec<&str> = repo.split('/').collect();
    if parts.len() > 2 {
        return Err(invalid("expected org/name"));
    }
    for part in parts {
        if part.is_empty() || part.len() > 96 {
            return Err(invalid("expected org/name"));
        }
        if !part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(invalid(
                "only letters, digits, '-', '_' and '.' are allowed",
            ));
        }
        if part.contains("..") || part.contains("--") || part.starts_with('.') {
            return Err(invalid("'..', '--' and a leading '.' are not allowed"));
        }
    }
    Ok(())
}

/// A revision becomes a file under `refs/`: it must stay there.
fn check_revision(revision: &str) -> Result<()> {
    match unsafe_reason(revision) {
        Some(reason) => Err(HubError::InvalidInput {
            what: "revision",
            value: revision.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids() {
        for good in [DEFAULT_REPO, "gpt2", "a/b.c_d-e"] {
            assert!(check_repo_id(good).is_ok(), "{good}");
        }
        for bad in ["", "a/b/c", "../b", "a/..", "a/ b", "a--b/c", "/a", "a/"] {
            assert!(check_repo_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn revisions() {
        for good in ["main", "v1.0", "refs/pr/1", &"a".repeat(40)] {
            assert!(check_revision(good).is_ok(), "{good}");
        }
        for bad in ["", "../x", "/main", "a\\b", "a\nb"] {
            assert!(check_revision(bad).is_err(), "{bad:?}");
        }
    }
}
