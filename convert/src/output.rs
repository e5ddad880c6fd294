//! The output file appears only when complete: data goes to a temporary
//! name beside the target, renamed into place at the end and removed on any
//! failure. Temporaries left by a killed run (their process is gone) are
//! removed by the next conversion to the same output.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use crate::error::{write_error, ConvertError, Result};

const TEMP_TAG: &str = ".o1tmp-";

/// A temporary file that is deleted on drop unless persisted.
pub struct TempOutput {
    path: PathBuf,
    target: PathBuf,
    file: Option<File>,
    /// A second handle on the same file, to sync it after `file` is taken.
    handle: File,
}

/// Names tried per temporary before giving up: each one taken means a file
/// (or a planted link) already sits there.
const TEMP_ATTEMPTS: u32 = 100;

impl TempOutput {
    /// Creates `.{target name}.o1tmp-{pid}-{kind}` beside `target`, or the
    /// same name with `-{n}` after it if that one is taken. The name is
    /// predictable, so the file is created exclusively: never through a
    /// link planted there, never over someone else's file.
    pub fn create(target: &Path, kind: &str) -> Result<Self> {
        let base = temp_path(target, std::process::id(), kind);
        let mut last_error = None;
        for attempt in 0..TEMP_ATTEMPTS {
            let path = if attempt == 0 {
                base.clone()
            } else {
                let mut name = base.clone().into_os_string();
                name.push(format!("-{attempt}"));
                PathBuf::from(name)
            };
            match fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(file) => {
                    let handle = file.try_clone().map_err(|e| {
                        let _ = fs::remove_file(&path);
                        write_error(target, 0, e)
                    })?;
                    // A crash in native code (no unwinding, no drop) still
                    // leaves no partial file.
                    let doomed = path.clone();
                    o1_gguf::fault::on_fault(move |_| {
                        let _ = fs::remove_file(&doomed);
                    });
                    return Ok(Self {
                        path,
                        target: target.to_path_buf(),
                        file: Some(file),
                        handle,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last_error = Some(e),
                Err(e) => return Err(write_error(target, 0, e)),
            }
        }
        let e = last_error.expect("at least one attempt");
        Err(ConvertError::Write {
            path: target.to_path_buf(),
            source: std::io::Error::new(
                e.kind(),
                format!(
                    "{TEMP_ATTEMPTS} temporary names beside it are taken ({} and the next ones): {e}",
                    base.display()
                ),
            ),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file; taken once, to write into.
    pub fn take_file(&mut self) -> File {
        self.file.take().expect("temporary file taken twice")
    }

    /// Flushes the written data to disk; callable from another thread while
    /// the file is being read, so the wait overlaps other work.
    pub fn sync(&self) -> Result<()> {
        self.handle
            .sync_all()
            .map_err(|e| write_error(&self.target, 0, e))
    }

    /// Syncs the data to disk (quick when `sync` ran already) and renames
    /// the file onto `target`.
    pub fn persist(mut self) -> Result<()> {
        drop(self.file.take());
        self.sync()?;
        fs::rename(&self.path, &self.target).map_err(|e| write_error(&self.target, 0, e))?;
        self.path = PathBuf::new();
        Ok(())
    }
}

impl Drop for TempOutput {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn temp_path(target: &Path, pid: u32, kind: &str) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}{TEMP_TAG}{pid}-{kind}"))
}

/// Removes temporaries of `target` whose writing process no longer exists.
/// Returns how many were removed.
pub fn remove_stale_temporaries(target: &Path) -> usize {
    let Some(dir) = target.parent().map(|d| {
        if d.as_os_str().is_empty() {
            Path::new(".")
        } else {
            d
        }
    }) else {
        return 0;
    };
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = format!(".{name}{TEMP_TAG}");
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = file_name.strip_prefix(&prefix) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        // Only files a conversion could have left: a link or a folder under
        // such a name is someone else's.
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && !process_alive(pid) && fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    // SAFETY: signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Checks the target can be written: not an existing file without `force`,
/// a parent folder that exists, and enough free space for `needed` bytes.
pub fn check_target(target: &Path, force: bool, needed: u64) -> Result<()> {
    if target.is_dir() {
        return Err(ConvertError::Write {
            path: target.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::IsADirectory, "is a directory"),
        });
    }
    if target.exists() && !force {
        return Err(ConvertError::OutputExists(target.to_path_buf()));
    }
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return Err(ConvertError::Write {
            path: target.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "its folder does not exist"),
        });
    }
    if let Some(free) = free_space(parent) {
        if free < needed {
            return Err(ConvertError::DiskFull {
                path: target.to_path_buf(),
                needed_mb: needed.div_ceil(1 << 20),
            });
        }
    }
    Ok(())
}

/// Bytes available to this user in `dir`, if the file system says.
fn free_space(dir: &Path) -> Option<u64> {
    let stats = fs4::statvfs(dir).ok()?;
    // Pseudo file systems (/proc, /sys) report no blocks at all: unknown.
    (stats.total_space() != 0).then(|| stats.available_space())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_is_removed_unless_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("m.gguf");
        let t = TempOutput::create(&target, "out").unwrap();
        let tmp = t.path().to_path_buf();
        assert!(tmp.exists());
        drop(t);
        assert!(!tmp.exists() && !target.exists());

        let t = TempOutput::create(&target, "out").unwrap();
        t.persist().unwrap();
        assert!(target.exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_taken_temporary_name_is_never_opened() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("m.gguf");
        let base = temp_path(&target, std::process::id(), "out");
        fs::write(&base, b"someone else's").unwrap();
        let t = TempOutput::create(&target, "out").unwrap();
        assert_ne!(t.path(), base);
        assert_eq!(fs::read(&base).unwrap(), b"someone else's");
        drop(t);
        // Every name taken: a clear error, and nothing opened.
        for n in 1..TEMP_ATTEMPTS {
            fs::write(format!("{}-{n}", base.display()), b"x").unwrap();
        }
        let err = TempOutput::create(&target, "out").err().unwrap();
        assert!(
            err.to_string()
                .contains("100 temporary names beside it are taken"),
            "{err}"
        );
        assert_eq!(fs::read(&base).unwrap(), b"someone else's");
    }

    #[test]
    fn stale_temporaries_of_dead_processes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("m.gguf");
        // A pid that cannot exist (above the kernel's pid_max) and ours.
        let dead = temp_path(&target, 999_999_999, "out");
        let live = temp_path(&target, std::process::id(), "out");
        let other = dir.path().join(".other.gguf.o1tmp-999999999-out");
        for p in [&dead, &live, &other] {
            fs::write(p, b"x").unwrap();
        }
        assert_eq!(remove_stale_temporaries(&target), 1);
        assert!(!dead.exists() && live.exists() && other.exists());
    }

    #[test]
    fn target_checks() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("m.gguf");
        check_target(&target, false, 1).unwrap();
        fs::write(&target, b"x").unwrap();
        let err = check_target(&target, false, 1).unwrap_err();
        assert!(err.to_string().contains("pass --force"), "{err}");
        check_target(&target, true, 1).unwrap();
        let err = check_target(&dir.path().join("no/such/m.gguf"), false, 1).unwrap_err();
        assert!(err.to_string().contains("folder does not exist"), "{err}");
        let err = check_target(&target, true, u64::MAX).unwrap_err();
        assert!(matches!(err, ConvertError::DiskFull { .. }), "{err}");
    }
}
