//! The on-disk cache, laid out exactly as Python's huggingface_hub (and
//! llama.cpp) lay it out, so a model fetched by any of them is found by all:
//!
//! ```text
//! {root}/models--{org}--{name}/blobs/{etag}               file contents
//! {root}/models--{org}--{name}/blobs/{etag}.incomplete    partial download
//! {root}/models--{org}--{name}/refs/{revision}            commit hash
//! {root}/models--{org}--{name}/snapshots/{commit}/{path}  -> ../../blobs/{etag}
//! {root}/.locks/models--{org}--{name}/{etag}.lock         per-blob lock
//! ```
//!
//! The lock file sits where huggingface_hub puts its own, and is taken with
//! `flock` as its `filelock` package does on Unix, so a Python download of
//! the same blob is excluded as well.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{HubError, Result};

/// `org/name` → `models--org--name`.
pub(crate) fn repo_folder_name(repo: &str) -> String {
    format!("models--{}", repo.replace('/', "--"))
}

/// Why `path` (from the server, or a revision) is not a plain relative path
/// that stays inside its folder, or `None` when it is fine.
pub(crate) fn unsafe_reason(path: &str) -> Option<&'static str> {
    if path.is_empty() {
        return Some("empty");
    }
    if path.contains('\\') {
        return Some("contains a backslash");
    }
    // Harmless to the file system, but shown to the user: an escape
    // sequence in a name can rewrite the terminal, a bidi override make it
    // read as another name.
    if path
        .chars()
        .any(|c| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
    {
        return Some("contains a control character");
    }
    if path.starts_with('/') {
        return Some("is absolute");
    }
    for part in path.split('/') {
        if part.is_empty() {
            return Some("has an empty component");
        }
        if part == "." || part == ".." {
            return Some("has a . or .. component");
        }
    }
    // Belt and braces: the standard library must agree it is all plain names.
    if !Path::new(path)
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
    {
        return Some("is not a plain relative path");
    }
    None
}

/// Whether `s` can be a blob or lock file name: ASCII letters, digits, `-`, `_`.
pub(crate) fn is_plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `s` looks like a git commit hash (SHA-1 or SHA-256, lowercase hex).
pub(crate) fn is_commit_hash(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The relative symlink target from `snapshots/{commit}/{path}` to `blobs/{etag}`.
pub(crate) fn blob_link_target(path: &str, etag: &str) -> PathBuf {
    let depth = path.split('/').count() + 1;
    let mut target = PathBuf::new();
    for _ in 0..depth {
        target.push("..");
    }
    target.join("blobs").join(etag)
}

/// What a snapshot entry looks like on disk.
#[derive(Debug)]
pub(crate) enum Entry {
    /// No entry at all.
    Missing,
    /// Present and plausible (size matches when known), of this many bytes.
    Good(u64),
    /// Present but broken, with a reason for the user.
    Corrupt(String),
}

/// One repo's folder in the cache.
#[derive(Debug, Clone)]
pub(crate) struct RepoCache {
    root: PathBuf,
    dir: PathBuf,
    folder: String,
}

impl RepoCache {
    /// The cache folder of `repo` (already validated) under `root`.
    pub(crate) fn new(root: &Path, repo: &str) -> Self {
        let folder = repo_folder_name(repo);
        RepoCache {
            root: root.to_path_buf(),
            dir: root.join(&folder),
            folder,
        }
    }

    /// The cache root this repo lives in.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// `models--org--name`.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn blobs_dir(&self) -> PathBuf {
        self.dir.join("blobs")
    }

    pub(crate) fn blob_path(&self, etag: &str) -> PathBuf {
        self.blobs_dir().join(etag)
    }

    pub(crate) fn incomplete_path(&self, etag: &str) -> PathBuf {
        self.blobs_dir().join(format!("{etag}.incomplete"))
    }

    pub(crate) fn lock_path(&self, etag: &str) -> PathBuf {
        self.root
            .join(".locks")
            .join(&self.folder)
            .join(format!("{etag}.lock"))
    }

    pub(crate) fn snapshot_dir(&self, commit: &str) -> PathBuf {
        self.dir.join("snapshots").join(commit)
    }

    pub(crate) fn snapshot_path(&self, commit: &str, path: &str) -> PathBuf {
        self.snapshot_dir(commit).join(path)
    }

    /// The commit `refs/{revision}` points at, if that ref exists.
    pub(crate) fn read_ref(&self, revision: &str) -> Result<Option<String>> {
        let path = self.dir.join("refs").join(revision);
        match fs::read_to_string(&path) {
            Ok(s) => Ok(Some(s.trim().to_owned())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::IsADirectory => Ok(None),
            Err(e) => Err(HubError::io("reading the ref", &path, e)),
        }
    }

    /// Points `refs/{revision}` at `commit`, atomically (write then rename).
    pub(crate) fn write_ref(&self, revision: &str, commit: &str) -> Result<()> {
        let path = self.dir.join("refs").join(revision);
        if self.read_ref(revision)?.as_deref() == Some(commit) {
            return Ok(());
        }
        let parent = path.parent().expect("refs/… has a parent");
        create_dir_all(parent)?;
        let tmp = temp_sibling(&path);
        fs::write(&tmp, commit).map_err(|e| HubError::io("writing the ref", &tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            HubError::io("writing the ref", &path, e)
        })
    }

    /// Checks the snapshot entry for `path`: it must lead to a regular file
    /// (through the symlink), of `size` bytes when known, and, when the
    /// listing names its `blob` (the hash a blob is named by), link to it.
    pub(crate) fn check_entry(
        &self,
        commit: &str,
        path: &str,
        size: Option<u64>,
        blob: Option<&str>,
    ) -> Entry {
        let entry = self.snapshot_path(commit, path);
        let link = match fs::symlink_metadata(&entry) {
            Ok(m) => m,
            Err(_) => return Entry::Missing,
        };
        let target = match fs::metadata(&entry) {
            Ok(m) => m,
            Err(_) => {
                let to = fs::read_link(&entry)
                    .map(|t| t.display().to_string())
                    .unwrap_or_default();
                return Entry::Corrupt(format!("links to a missing blob {to}"));
            }
        };
        if !target.is_file() {
            return Entry::Corrupt("is not a regular file".to_owned());
        }
        if let Some(size) = size {
            if target.len() != size {
                return Entry::Corrupt(format!("has {} bytes, the hub says {size}", target.len()));
            }
        }
        if let (true, Some(blob)) = (link.file_type().is_symlink(), blob) {
            let target = fs::read_link(&entry).ok();
            let name = target.as_deref().and_then(Path::file_name);
            if name.and_then(|n| n.to_str()) != Some(blob) {
                return Entry::Corrupt(format!("links to a blob other than {blob}"));
            }
        }
        Entry::Good(target.len())
    }

    /// Removes a broken snapshot entry so it can be linked afresh.
    pub(crate) fn remove_entry(&self, commit: &str, path: &str) -> Result<()> {
        let entry = self.snapshot_path(commit, path);
        match fs::remove_file(&entry) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(HubError::io("removing a broken cache entry", &entry, e)),
        }
    }

    /// Makes `snapshots/{commit}/{path}` a relative symlink to `blobs/{etag}`,
    /// atomically: a temporary link renamed over whatever was there.
    pub(crate) fn link(&self, commit: &str, path: &str, etag: &str) -> Result<()> {
        let entry = self.snapshot_path(commit, path);
        let target = blob_link_target(path, etag);
        if fs::read_link(&entry).is_ok_and(|t| t == target) && entry.is_file() {
            return Ok(());
        }
        create_dir_all(entry.parent().expect("snapshot entry has a parent"))?;
        let tmp = temp_sibling(&entry);
        std::os::unix::fs::symlink(&target, &tmp)
            .map_err(|e| HubError::io("creating a snapshot link", &tmp, e))?;
        fs::rename(&tmp, &entry).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            HubError::io("creating a snapshot link", &entry, e)
        })
    }
}

/// A unique temporary name next to `path`, for write-then-rename.
fn temp_sibling(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

/// `fs::create_dir_all` with the path in the error.
pub(crate) fn create_dir_all(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| HubError::io("creating a cache folder", dir, e))
}

/// An exclusive `flock` on a lock file, released when dropped (the file is
/// closed). `flock` locks belong to the open file, so two threads of one
/// process exclude each other just as two processes do.
#[derive(Debug)]
pub(crate) struct FileLock {
    _file: File,
}

impl FileLock {
    /// Takes the lock at `path`, creating the file. If another holder has it,
    /// calls `waiting` once and then blocks until it is released.
    pub(crate) fn acquire(path: &Path, waiting: impl FnOnce()) -> Result<Self> {
        create_dir_all(path.parent().expect("lock file has a parent"))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| HubError::io("opening the lock file", path, e))?;
        if flock(&file, libc::LOCK_EX | libc::LOCK_NB).is_err() {
            waiting();
            flock(&file, libc::LOCK_EX).map_err(|e| HubError::io("locking", path, e))?;
        }
        Ok(FileLock { _file: file })
    }
}

fn flock(file: &File, op: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: the descriptor is open for the duration of the call.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names() {
        assert_eq!(
            repo_folder_name("Laurie/Qwen2.5-1.5B-O1"),
            "models--Laurie--Qwen2.5-1.5B-O1"
        );
        assert_eq!(repo_folder_name("gpt2"), "models--gpt2");
    }

    #[test]
    fn unsafe_paths() {
        for bad in [
            "",
            "../x",
            "a/../../x",
            "/etc/passwd",
            "a\\..\\x",
            "..",
            ".",
            "a//b",
            "a/",
            "./a",
            "a\0b",
            "x\u{1b}[2J.json",
            "x\u{9b}.json",
            "a\nb",
            "\u{202e}nosreh.safetensors",
        ] {
            assert!(unsafe_reason(bad).is_some(), "{bad:?} accepted");
        }
        for good in ["config.json", "sub/dir/model.safetensors", "a..b", "..a"] {
            assert_eq!(unsafe_reason(good), None, "{good:?} rejected");
        }
    }

    #[test]
    fn link_targets_are_relative() {
        assert_eq!(
            blob_link_target("config.json", "abc"),
            PathBuf::from("../../blobs/abc")
        );
        assert_eq!(
            blob_link_target("a/b/c.json", "abc"),
            PathBuf::from("../../../../blobs/abc")
        );
    }

    #[test]
    fn names_and_hashes() {
        assert!(is_plain_name("0123abcdef"));
        assert!(!is_plain_name("../x"));
        assert!(!is_plain_name(""));
        assert!(is_commit_hash(&"a".repeat(40)));
        assert!(!is_commit_hash(&"A".repeat(40)));
        assert!(!is_commit_hash("main"));
    }

    #[test]
    fn link_and_check() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = RepoCache::new(tmp.path(), "o/n");
        let commit = "c".repeat(40);
        assert!(matches!(
            cache.check_entry(&commit, "d/f", None, None),
            Entry::Missing
        ));
        cache.link(&commit, "d/f", "e1").unwrap();
        assert!(matches!(
            cache.check_entry(&commit, "d/f", None, None),
            Entry::Corrupt(_)
        ));
        create_dir_all(&cache.blobs_dir()).unwrap();
        fs::write(cache.blob_path("e1"), b"abc").unwrap();
        assert!(matches!(
            cache.check_entry(&commit, "d/f", Some(3), None),
            Entry::Good(3)
        ));
        assert!(matches!(
            cache.check_entry(&commit, "d/f", Some(4), None),
            Entry::Corrupt(_)
        ));
        assert!(matches!(
            cache.check_entry(&commit, "d/f", Some(3), Some("e2")),
            Entry::Corrupt(_)
        ));
        assert_eq!(
            fs::read(cache.snapshot_path(&commit, "d/f")).unwrap(),
            b"abc"
        );
        cache.write_ref("refs/pr/1", &commit).unwrap();
        assert_eq!(cache.read_ref("refs/pr/1").unwrap(), Some(commit));
        assert_eq!(cache.read_ref("main").unwrap(), None);
    }
}
