//! Progress reporting, left to the caller: the crate draws nothing, so the
//! binary can render bars (indicatif) and tests can record events.

/// Receives progress events during a pull. Every method has an empty default.
pub trait PullProgress {
    /// After listing: the number of files in the snapshot, their total size,
    /// and how many of those bytes are already in the cache.
    fn totals(&mut self, files: usize, total_bytes: u64, cached_bytes: u64) {
        let _ = (files, total_bytes, cached_bytes);
    }

    /// A file's transfer begins with `already` of its `total` bytes present
    /// (a resumed partial file). Called again with `already = 0` when the
    /// server forces a restart from scratch.
    fn file_started(&mut self, path: &str, total: u64, already: u64) {
        let _ = (path, total, already);
    }

    /// `bytes` more bytes of the file were written.
    fn file_advanced(&mut self, path: &str, bytes: u64) {
        let _ = (path, bytes);
    }

    /// The file is complete, verified and in the snapshot.
    fn file_done(&mut self, path: &str) {
        let _ = path;
    }

    /// A one-line notice for the user: a retry, a repaired cache entry,
    /// waiting for another process, falling back to the cache.
    fn message(&mut self, msg: &str) {
        let _ = msg;
    }
}

/// Ignores all progress.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl PullProgress for NoProgress {}
