//! Downloading one blob: under its lock, into `blobs/{etag}.incomplete`,
//! resuming with `Range` after a dropped connection or a previous run, then
//! checking size and hash (SHA-256 for LFS files, the git blob id for the
//! others) before renaming it to `blobs/{etag}`. A blob name therefore always
//! holds complete, verified content.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use reqwest::header::CONTENT_RANGE;
use reqwest::{StatusCode, Url};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::cache::{create_dir_all, FileLock, RepoCache};
use crate::error::{HubError, Result};
use crate::http::{network_error, shown, Ctx, Failure, Http};
use crate::progress::PullProgress;

/// Read size for bodies.
const CHUNK: usize = 256 * 1024;

/// One blob to have in the cache.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Blob<'a> {
    pub repo: &'a str,
    pub revision: &'a str,
    /// The file's path in the repo, for messages and progress.
    pub path: &'a str,
    /// Its resolve URL.
    pub url: &'a Url,
    /// The blob's name in the cache.
    pub etag: &'a str,
    pub size: u64,
    /// The content's expected hash; without one, only the size is checked.
    pub hash: Option<Hash<'a>>,
}

/// A content hash to verify, lowercase hex.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hash<'a> {
    /// SHA-256 of the content (LFS files).
    Sha256(&'a str),
    /// Git's blob id: SHA-1 of `blob {size}\0` and the content (regular files).
    GitBlob(&'a str),
}

impl Hash<'_> {
    fn expected(&self) -> &str {
        match self {
            Hash::Sha256(hex) | Hash::GitBlob(hex) => hex,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Hash::Sha256(_) => "SHA-256",
            Hash::GitBlob(_) => "git blob SHA-1",
        }
    }
}

/// How the blob came to be in the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fetched {
    /// It was already there (possibly just finished by another process).
    Cached,
    /// Downloaded now; the number of bytes transferred in this call.
    Downloaded(u64),
}

/// Makes sure `blobs/{etag}` holds the blob, downloading it if needed.
pub(crate) fn fetch(
    http: &Http,
    cache: &RepoCache,
    blob: &Blob<'_>,
    progress: &mut dyn PullProgress,
) -> Result<Fetched> {
    let _lock = FileLock::acquire(&cache.lock_path(blob.etag), || {
        progress.message(&format!(
            "{}: waiting for another download of the same file",
            blob.path
        ))
    })?;
    let final_path = cache.blob_path(blob.etag);
    match fs::metadata(&final_path) {
        Ok(m) if m.is_file() && m.len() == blob.size => {
            progress.file_started(blob.path, blob.size, blob.size);
            return Ok(Fetched::Cached);
        }
        Ok(m) => {
            progress.message(&format!(
                "{}: cached blob has {} bytes instead of {}; downloading it again",
                blob.path,
                m.len(),
                blob.size
            ));
            remove_if_present(&final_path)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(HubError::io("checking the cached blob", &final_path, e)),
    }
    create_dir_all(&cache.blobs_dir())?;
    let part_path = cache.incomplete_path(blob.etag);
    let mut part = Partial::open(&part_path, blob.size, blob.hash)?;
    let transferred = download(http, blob, &mut part, progress)?;
    part.file
        .sync_all()
        .map_err(|e| HubError::io("flushing the download", &part_path, e))?;
    drop(part);
    fs::rename(&part_path, &final_path)
        .map_err(|e| HubError::io("moving the finished download into place", &final_path, e))?;
    Ok(Fetched::Downloaded(transferred))
}

/// Transfers until the partial file is complete and verified; returns the
/// bytes transferred. Deletes the partial file on a size or hash mismatch.
fn download(
    http: &Http,
    blob: &Blob<'_>,
    part: &mut Partial,
    progress: &mut dyn PullProgress,
) -> Result<u64> {
    let policy = http.retry_policy().clone();
    let mut failures = 0;
    let mut last_failure_at = part.written;
    // A partial file from an earlier run may hold bad bytes: on a hash
    // mismatch after resuming it, start over once before giving up.
    let mut resumed = part.written > 0;
    let mut transferred = 0;
    progress.file_started(blob.path, blob.size, part.written);
    loop {
        while part.written < blob.size {
            http.check_cancel()?;
            let before = part.written;
            let result = transfer(http, blob, part, progress);
            transferred += part.written.saturating_sub(before);
            match result {
                Ok(()) => {}
                Err(failure) if failure.transient => {
                    if part.written > last_failure_at {
                        failures = 0; // progress was made: a flaky link, not a dead one
                    }
                    last_failure_at = part.written;
                    if failures >= policy.max_retries {
                        return Err(failure.error);
                    }
                    let wait = policy.backoff(failures);
                    failures += 1;
                    progress.message(&format!(
                        "{}: {}; resuming at byte {} in {:.1}s ({failures}/{})",
                        blob.path,
                        failure.error,
                        part.written,
                        wait.as_secs_f64(),
                        policy.max_retries
                    ));
                    http.sleep(wait)?;
                }
                Err(failure) => return Err(failure.error),
            }
        }
        let Some(hash) = blob.hash else {
            return Ok(transferred);
        };
        let actual = part.digest();
        if actual.eq_ignore_ascii_case(hash.expected()) {
            return Ok(transferred);
        }
        if resumed {
            resumed = false;
            progress.message(&format!(
                "{}: {} mismatch after resuming an earlier partial download; starting over",
                blob.path,
                hash.name()
            ));
            part.restart()?;
            progress.file_started(blob.path, blob.size, 0);
            continue;
        }
        part.discard();
        return Err(HubError::HashMismatch {
            repo: blob.repo.to_owned(),
            file: blob.path.to_owned(),
            algorithm: hash.name(),
            expected: hash.expected().to_owned(),
            actual,
        });
    }
}

/// One request: from `part.written` to the end of the body. A body that ends
/// early is a transient failure, so the caller resumes with `Range`.
fn transfer(
    http: &Http,
    blob: &Blob<'_>,
    part: &mut Partial,
    progress: &mut dyn PullProgress,
) -> Result<(), Failure> {
    let ctx = Ctx {
        repo: blob.repo,
        revision: blob.revision,
        file: Some(blob.path),
    };
    let from = part.written;
    let mut resp = http.get_file(blob.url, from, ctx)?;
    let status = resp.status();
    let restart = if status == StatusCode::RANGE_NOT_SATISFIABLE {
        if from == 0 {
            return Err(Failure::fatal(HubError::Protocol {
                url: resp.url().to_string(),
                detail: "HTTP 416 without a Range request".to_owned(),
            }));
        }
        Some(format!("the server refused to resume at byte {from}"))
    } else if status == StatusCode::PARTIAL_CONTENT {
        let range = resp
            .headers()
            .get(CONTENT_RANGE)
            .map(|v| parse_content_range(v.as_bytes()));
        match range {
            Some(Ok(range)) if range.total.is_some_and(|total| total != blob.size) => {
                return Err(Failure::fatal(HubError::Protocol {
                    url: resp.url().to_string(),
                    detail: format!(
                        "{}: the server says the file has {} bytes, the hub announced {}",
                        blob.path,
                        range.total.unwrap_or_default(),
                        blob.size
                    ),
                }));
            }
            Some(Ok(range)) if range.start == from => None,
            _ => Some("the server resumed at the wrong offset".to_owned()),
        }
    } else if from > 0 {
        Some("the server does not resume downloads".to_owned())
    } else {
        None
    };
    if let Some(reason) = restart {
        progress.message(&format!("{}: {reason}; starting over", blob.path));
        part.restart()?;
        progress.file_started(blob.path, blob.size, 0);
        if status != StatusCode::OK {
            return Ok(()); // ask again, from byte 0
        }
        // A 200 carries the whole file: read it from the start.
    }
    let url = resp.url().clone();
    let mut buf = vec![0; CHUNK];
    loop {
        http.check_cancel()?;
        let n = match resp.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Failure::transient(network_error(&url, &e))),
        };
        if part.written + n as u64 > blob.size {
            let actual = part.written + n as u64;
            part.discard();
            return Err(Failure::fatal(HubError::SizeMismatch {
                repo: blob.repo.to_owned(),
                file: blob.path.to_owned(),
                expected: blob.size,
                actual,
            }));
        }
        part.write(&buf[..n])?;
        progress.file_advanced(blob.path, n as u64);
    }
    if part.written < blob.size {
        return Err(Failure::transient(HubError::Network {
            host: url.host_str().unwrap_or_default().to_owned(),
            detail: format!(
                "the connection closed after {} of {} bytes of {}",
                part.written, blob.size, blob.path
            ),
        }));
    }
    Ok(())
}

/// The bytes a 206 answer carries, from its `Content-Range`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContentRange {
    /// The first byte.
    pub start: u64,
    /// The last byte (inclusive).
    pub end: u64,
    /// The whole file's length, unless the server gave `*`.
    pub total: Option<u64>,
}

/// Reads a `Content-Range: bytes {start}-{end}/{total}` value (`total` may
/// be `*`). Fails on anything else, on `end < start`, and on a range that
/// does not fit in `total`.
pub fn parse_content_range(value: &[u8]) -> Result<ContentRange, String> {
    let bad = || {
        format!(
            "malformed Content-Range {}",
            shown(&String::from_utf8_lossy(value))
        )
    };
    let text = std::str::from_utf8(value).map_err(|_| bad())?.trim();
    let rest = text.strip_prefix("bytes ").ok_or_else(bad)?;
    let (range, total) = rest.split_once('/').ok_or_else(bad)?;
    let (start, end) = range.split_once('-').ok_or_else(bad)?;
    let number = |s: &str| {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
            .ok_or_else(bad)
    };
    let (start, end) = (number(start)?, number(end)?);
    let total = match total.trim() {
        "*" => None,
        total => Some(number(total)?),
    };
    if end < start || total.is_some_and(|total| end >= total) {
        return Err(format!(
            "Content-Range {} is not a range within the file",
            shown(text)
        ));
    }
    Ok(ContentRange { start, end, total })
}

/// A running hash over the content, as [`Hash`] says.
#[derive(Clone)]
enum Hasher {
    Sha256(Sha256),
    GitBlob(Sha1),
}

impl Hasher {
    /// A hasher for a blob of `size` bytes, before any content.
    fn new(hash: Hash<'_>, size: u64) -> Self {
        match hash {
            Hash::Sha256(_) => Hasher::Sha256(Sha256::new()),
            Hash::GitBlob(_) => {
                let mut sha1 = Sha1::new();
                sha1.update(format!("blob {size}\0"));
                Hasher::GitBlob(sha1)
            }
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::GitBlob(h) => h.update(bytes),
        }
    }

    /// Lowercase hex of the hash so far.
    fn hex(&self) -> String {
        let digest = match self.clone() {
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::GitBlob(h) => h.finalize().to_vec(),
        };
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The `.incomplete` file: its length so far and, when the content is to be
/// verified, the hash state over exactly those bytes.
struct Partial {
    file: File,
    path: PathBuf,
    written: u64,
    /// The hash state before any content, to start over from.
    fresh: Option<Hasher>,
    hasher: Option<Hasher>,
}

impl Partial {
    /// Opens (or creates) the partial file, hashing what it already holds;
    /// one longer than the blob is stale and emptied.
    fn open(path: &Path, size: u64, hash: Option<Hash<'_>>) -> Result<Self> {
        let io_err = |e| HubError::io("opening the partial download", path, e);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io_err)?;
        let mut len = file.metadata().map_err(io_err)?.len();
        if len > size {
            file.set_len(0).map_err(io_err)?;
            len = 0;
        }
        let fresh = hash.map(|hash| Hasher::new(hash, size));
        let mut hasher = fresh.clone();
        if let Some(hasher) = hasher.as_mut() {
            let mut buf = vec![0; CHUNK];
            let mut left = len;
            while left > 0 {
                let want = left.min(CHUNK as u64) as usize;
                file.read_exact(&mut buf[..want]).map_err(io_err)?;
                hasher.update(&buf[..want]);
                left -= want as u64;
            }
        }
        file.seek(SeekFrom::Start(len)).map_err(io_err)?;
        Ok(Partial {
            file,
            path: path.to_path_buf(),
            written: len,
            fresh,
            hasher,
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.file
            .write_all(bytes)
            .map_err(|e| HubError::io("writing the download", &self.path, e))?;
        if let Some(hasher) = self.hasher.as_mut() {
            hasher.update(bytes);
        }
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Empties the file to download it from the first byte.
    fn restart(&mut self) -> Result<()> {
        let io_err = |e| HubError::io("restarting the download", &self.path, e);
        self.file.set_len(0).map_err(io_err)?;
        self.file.seek(SeekFrom::Start(0)).map_err(io_err)?;
        self.hasher = self.fresh.clone();
        self.written = 0;
        Ok(())
    }

    /// Lowercase hex of the hash of the content so far.
    fn digest(&self) -> String {
        self.hasher.as_ref().map(Hasher::hex).unwrap_or_default()
    }

    /// Deletes the partial file: its content is known to be wrong.
    fn discard(&mut self) {
        let _ = fs::remove_file(&self.path);
        self.written = 0;
    }
}

/// Removes a file, ignoring that it may already be gone.
fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(HubError::io("removing a bad blob", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        let range = |s: &str| parse_content_range(s.as_bytes());
        assert_eq!(
            range("bytes 5-9/10"),
            Ok(ContentRange {
                start: 5,
                end: 9,
                total: Some(10)
            })
        );
        assert_eq!(range(" bytes 0-0/*").unwrap().total, None);
        for bad in [
            "bytes 5-4/10",
            "bytes 5-10/10",
            "bytes -5/10",
            "bytes 5-9",
            "items 5-9/10",
            "bytes +5-9/10",
            "bytes 5-99999999999999999999999/*",
            "bytes */10",
        ] {
            assert!(range(bad).is_err(), "{bad}");
        }
        assert!(parse_content_range(b"bytes \xff-1/2").is_err());
    }

    #[test]
    fn git_blob_hash_covers_the_header_and_restarts_clean() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("x.incomplete");
        // `git hash-object` of "hello\n".
        let id = "ce013625030ba8dba906f756967f9e9ca394464a";
        let mut part = Partial::open(&path, 6, Some(Hash::GitBlob(id))).unwrap();
        part.write(b"jello\n").unwrap();
        assert_ne!(part.digest(), id);
        part.restart().unwrap();
        part.write(b"hello\n").unwrap();
        assert_eq!(part.digest(), id);
        drop(part);
        let part = Partial::open(&path, 6, Some(Hash::GitBlob(id))).unwrap();
        assert_eq!((part.written, part.digest()), (6, id.to_owned()));
    }
}
