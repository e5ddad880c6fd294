//! Conversations saved as they go (one JSON file per conversation in the
//! data directory), reopened with `o1 tui --resume`, and exported as
//! Markdown with Ctrl+S.
//!
//! Conversations are private: the folder is 0700 and the files 0600. A file
//! is written to a temporary name, synced, renamed over the old one, and the
//! folder synced, so a crash leaves the old file or the new one, never half
//! of one. Each running o1 holds a lock on its conversation's file, so two
//! `--resume`s of the same one do not overwrite each other.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use o1_gguf::files::replace_privately;

use super::transcript::{ModelSummary, Turn};

const FORMAT: u32 = 1;

/// Larger than any conversation o1 writes (a turn is some tens of KB).
const MAX_FILE_BYTES: u64 = 64 << 20;

#[derive(Serialize, Deserialize)]
struct SessionFile {
    format: u32,
    model: ModelSummary,
    turns: Vec<Turn>,
    /// Absent in files of earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tokens: Option<Tokens>,
}

/// The conversation's size in the model's context when it was last saved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    pub used: usize,
    pub reasoning: usize,
}

#[derive(Debug)]
pub struct Session {
    /// The folder of session files.
    pub dir: PathBuf,
    /// Where Ctrl+S writes transcripts.
    pub export_dir: PathBuf,
    /// File stem: seconds since the epoch when the conversation began, and milliseconds.
    pub id: String,
    pub model: ModelSummary,
    /// The turns as loaded (a resumed session); the app keeps the live ones.
    pub turns: Vec<Turn>,
    pub tokens: Option<Tokens>,
    /// What the user should hear about opening it (files skipped on resume,
    /// a conversation open elsewhere).
    pub notes: Vec<String>,
    lock: Option<Lock>,
}

fn now_id() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}-{:03}", d.as_secs(), d.subsec_millis())
}

/// An id's (seconds, milliseconds), for ordering; 0 for a name o1 did not make.
fn id_time(id: &str) -> (u64, u32) {
    let (s, ms) = id.split_once('-').unwrap_or((id, "0"));
    (s.parse().unwrap_or(0), ms.parse().unwrap_or(0))
}

/// A new id later than `id`: now, or one millisecond after `id`.
fn id_after(id: &str) -> String {
    let now = now_id();
    if id_time(&now) > id_time(id) {
        return now;
    }
    let (s, ms) = id_time(id);
    let next = s * 1000 + u64::from(ms) + 1;
    format!("{}-{:03}", next / 1000, next % 1000)
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("{}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

impl SessionError {
    /// What is wrong, without the path.
    fn reason(&self) -> String {
        match self {
            SessionError::Read { source, .. } => source.to_string(),
            SessionError::Invalid { message, .. } => message.clone(),
        }
    }
}

impl Session {
    pub fn new(dir: PathBuf, export_dir: PathBuf) -> Self {
        Session {
            dir,
            export_dir,
            id: now_id(),
            model: ModelSummary::default(),
            turns: Vec::new(),
            tokens: None,
            notes: Vec::new(),
            lock: None,
        }
    }

    /// A new, empty conversation in the same folders.
    pub fn fresh(&self) -> Self {
        let mut s = Session::new(self.dir.clone(), self.export_dir.clone());
        if id_time(&s.id) <= id_time(&self.id) {
            s.id = id_after(&self.id);
        }
        s
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(format!("{}.json", self.id))
    }

    /// Reads a session file.
    pub fn open(path: &Path, export_dir: PathBuf) -> Result<Session, SessionError> {
        let read = |source| SessionError::Read {
            path: path.to_path_buf(),
            source,
        };
        let invalid = |message| SessionError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let file = File::open(path).map_err(read)?;
        let size = file.metadata().map_err(read)?.len();
        if size > MAX_FILE_BYTES {
            return Err(invalid(format!(
                "{size} bytes, more than the {MAX_FILE_BYTES} of any conversation o1 writes"
            )));
        }
        let mut bytes = Vec::new();
        io::Read::read_to_end(&mut io::Read::take(file, MAX_FILE_BYTES + 1), &mut bytes)
            .map_err(read)?;
        let file = parse(&bytes).map_err(invalid)?;
        let id = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Session {
            dir: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
            export_dir,
            id,
            model: file.model,
            turns: file.turns,
            tokens: file.tokens,
            notes: Vec::new(),
            lock: None,
        })
    }

    /// The most recent readable conversation in `dir`, if any. Unreadable
    /// newer ones are skipped, each with a note that says why.
    pub fn latest(dir: &Path, export_dir: PathBuf) -> io::Result<Option<Session>> {
        let Ok(entries) = fs::read_dir(dir) else {
            return Ok(None);
        };
        let mut ids: Vec<String> = entries
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".json")
                    .map(str::to_string)
            })
            .collect();
        // Ids are seconds and milliseconds: sort numerically, newest first.
        ids.sort_by_key(|id| std::cmp::Reverse(id_time(id)));
        let mut skipped = Vec::new();
        for id in &ids {
            match Session::open(&dir.join(format!("{id}.json")), export_dir.clone()) {
                Ok(mut session) => {
                    session.notes = skipped;
                    return Ok(Some(session));
                }
                Err(e) => {
                    tracing::warn!("resuming: skipped {e}");
                    skipped.push(format!("skipped {id}.json: {}", e.reason()));
                }
            }
        }
        if skipped.is_empty() {
            Ok(None)
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "no readable conversation in {}: {}",
                    dir.display(),
                    skipped.join("; ")
                ),
            ))
        }
    }

    /// Takes this conversation's file for this process. When another o1
    /// holds it (the same conversation resumed twice), this one continues in
    /// a new file, and a note says so.
    pub fn claim(&mut self) -> io::Result<()> {
        if self.lock.is_some() {
            return Ok(());
        }
        private_dir(&self.dir)?;
        let first = self.id.clone();
        loop {
            if let Some(lock) = Lock::take(&self.dir.join(format!("{}.lock", self.id)))? {
                self.lock = Some(lock);
                break;
            }
            self.id = id_after(&self.id);
        }
        if self.id != first {
            // First: it says where this conversation now goes.
            self.notes.insert(
                0,
                format!(
                    "{first}.json is open in another o1: this one continues in {}.json",
                    self.id
                ),
            );
        }
        Ok(())
    }

    /// Writes the conversation (nothing for an empty one).
    pub fn save(&mut self, turns: &[Turn]) -> io::Result<()> {
        if turns.is_empty() {
            return Ok(());
        }
        self.claim()?;
        let file = SessionFile {
            format: FORMAT,
            model: self.model.clone(),
            turns: turns.to_vec(),
            tokens: self.tokens,
        };
        replace_privately(&self.path(), &serde_json::to_vec_pretty(&file)?)
    }

    /// Writes the transcript as Markdown; returns its path. A symbolic link
    /// at that name is refused, never written through.
    pub fn export_markdown(&self, turns: &[Turn]) -> io::Result<PathBuf> {
        let path = self.export_dir.join(format!("o1-chat-{}.md", self.id));
        if fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} is a symbolic link; not writing through it",
                    path.display()
                ),
            ));
        }
        replace_privately(&path, markdown(&self.model, turns).as_bytes())?;
        Ok(path)
    }
}

/// The session file's contents, checked.
fn parse(bytes: &[u8]) -> Result<SessionFile, String> {
    let file: SessionFile =
        serde_json::from_slice(bytes).map_err(|e| format!("not an o1 conversation: {e}"))?;
    if file.format != FORMAT {
        return Err(format!(
            "format {} (this o1 reads format {FORMAT}; a newer o1 wrote it?)",
            file.format
        ));
    }
    Ok(file)
}

/// Creates `dir` if need be and makes it private (0700).
fn private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// An exclusive lock on a lock file (released when the process ends, however
/// it ends); the file goes when the lock is dropped.
#[derive(Debug)]
struct Lock {
    path: PathBuf,
    _file: File,
}

impl Lock {
    /// The lock, or `None` when another process holds it.
    fn take(path: &Path) -> io::Result<Option<Lock>> {
        loop {
            let mut options = OpenOptions::new();
            options.write(true).create(true).truncate(false);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let file = options.open(path)?;
            match fs4::FileExt::try_lock(&file) {
                Ok(()) => {}
                Err(fs4::TryLockError::WouldBlock) => return Ok(None),
                Err(fs4::TryLockError::Error(e)) => return Err(e),
            }
            // The holder before may have removed the file between our open
            // and our lock: then the lock is on a file nobody else sees.
            if same_file(&file, path) {
                return Ok(Some(Lock {
                    path: path.to_path_buf(),
                    _file: file,
                }));
            }
        }
    }
}

#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_: &File, path: &Path) -> bool {
    path.exists()
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Removed while still locked, so no one locks the old file meanwhile.
        let _ = fs::remove_file(&self.path);
    }
}

/// The transcript as a Markdown document.
pub fn markdown(model: &ModelSummary, turns: &[Turn]) -> String {
    let mut out = format!(
        "# o1 conversation\n\nModel: {} ({})\n",
        model.name, model.file_type
    );
    for (i, t) in turns.iter().enumerate() {
        out.push_str(&format!(
            "\n## Turn {}\n\n**You:** {}\n\n",
            i + 1,
            t.question
        ));
        out.push_str("<details><summary>Reasoning</summary>\n\n");
        out.push_str(&t.reasoning);
        if let Some(s) = t.reasoning_stop.filter(|s| s.is_cut()) {
            out.push_str(&format!("\n\n*[reasoning cut: {}]*", s));
        }
        out.push_str("\n\n</details>\n\n");
        out.push_str(&t.answer);
        if let Some(s) = t.answer_stop.filter(|s| s.is_cut()) {
            out.push_str(&format!("\n\n*[answer cut: {}]*", s));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Stop;

    fn turn(q: &str) -> Turn {
        Turn {
            question: q.into(),
            reasoning: "thinking".into(),
            answer: "**yes**".into(),
            reasoning_stop: Some(Stop::AnswerNow),
            answer_stop: Some(Stop::EndOfTurn),
            notes: vec![],
        }
    }

    #[test]
    fn save_and_resume_the_latest() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Session::new(dir.path().into(), dir.path().into());
        a.id = "100-000".into();
        a.save(&[turn("old")]).unwrap();
        let mut b = a.fresh();
        b.id = "1000-000".into();
        b.save(&[turn("new"), turn("newer")]).unwrap();
        let latest = Session::latest(dir.path(), dir.path().into())
            .unwrap()
            .unwrap();
        assert_eq!(latest.id, "1000-000", "numeric order, not text order");
        assert_eq!(latest.turns.len(), 2);
        assert_eq!(latest.turns[1], turn("newer"));
        assert!(Session::latest(&dir.path().join("none"), dir.path().into())
            .unwrap()
            .is_none());
    }

    #[test]
    fn markdown_export() {
        let md = markdown(
            &ModelSummary {
                name: "o1".into(),
                file_type: "q4_k_m".into(),
                ..Default::default()
            },
            &[turn("Is it?")],
        );
        assert!(md.contains("## Turn 1\n\n**You:** Is it?"), "{md}");
        assert!(
            md.contains("thinking\n\n*[reasoning cut: cut short]*"),
            "{md}"
        );
        assert!(md.contains("**yes**\n"), "{md}");
    }

    #[cfg(unix)]
    #[test]
    fn conversations_are_private_files_in_a_private_folder() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let sessions = dir.path().join("sessions");
        fs::create_dir(&sessions).unwrap();
        fs::set_permissions(&sessions, fs::Permissions::from_mode(0o755)).unwrap();
        let mut s = Session::new(sessions.clone(), dir.path().into());
        s.save(&[turn("private")]).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&sessions), 0o700);
        assert_eq!(mode(&s.path()), 0o600);
        let md = s.export_markdown(&[turn("private")]).unwrap();
        assert_eq!(mode(&md), 0o600);
        let left: Vec<_> = fs::read_dir(&sessions)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[cfg(unix)]
    #[test]
    fn saving_never_writes_through_a_link_planted_at_the_temporary_name() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "precious").unwrap();
        let mut s = Session::new(dir.path().join("sessions"), dir.path().into());
        s.claim().unwrap();
        for name in [
            format!("{}.json.tmp", s.id),
            format!(".{}.json.{}.tmp", s.id, std::process::id()),
        ] {
            std::os::unix::fs::symlink(&victim, s.dir.join(name)).unwrap();
        }
        s.save(&[turn("q")]).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        assert!(Session::open(&s.path(), dir.path().into()).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn the_export_refuses_a_planted_link() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "precious").unwrap();
        let s = Session::new(dir.path().join("sessions"), dir.path().into());
        let target = dir.path().join(format!("o1-chat-{}.md", s.id));
        std::os::unix::fs::symlink(&victim, &target).unwrap();
        let err = s.export_markdown(&[turn("q")]).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        // A dangling link is refused just the same (no file made through it).
        fs::remove_file(&victim).unwrap();
        assert!(s.export_markdown(&[turn("q")]).is_err());
        assert!(!victim.exists());
        // A second export of the same conversation replaces the first.
        fs::remove_file(&target).unwrap();
        s.export_markdown(&[turn("one")]).unwrap();
        s.export_markdown(&[turn("two")]).unwrap();
        assert!(fs::read_to_string(&target).unwrap().contains("two"));
    }

    #[test]
    fn a_corrupt_newest_conversation_falls_back_to_the_one_before() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Session::new(dir.path().into(), dir.path().into());
        a.id = "100-000".into();
        a.save(&[turn("old")]).unwrap();
        fs::write(dir.path().join("200-000.json"), "{\"format\": 1, \"tur").unwrap();
        fs::write(
            dir.path().join("300-000.json"),
            "{\"format\": 9, \"model\": {\"name\": \"\", \"file_type\": \"\", \"gpu_layers\": 0, \"n_layers\": 0, \"n_ctx\": 0}, \"turns\": []}",
        )
        .unwrap();
        let latest = Session::latest(dir.path(), dir.path().into())
            .unwrap()
            .unwrap();
        assert_eq!(latest.id, "100-000");
        assert_eq!(latest.turns, [turn("old")]);
        let notes = latest.notes.join("\n");
        assert!(notes.contains("300-000.json: format 9"), "{notes}");
        assert!(
            notes.contains("200-000.json: not an o1 conversation"),
            "{notes}"
        );
        // Nothing readable at all: an error that lists what was skipped.
        fs::remove_file(a.path()).unwrap();
        let err = Session::latest(dir.path(), dir.path().into())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("200-000.json") && err.contains("300-000.json"),
            "{err}"
        );
    }

    #[test]
    fn a_conversation_resumed_twice_continues_in_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = Session::new(dir.path().into(), dir.path().into());
        first.id = "100-000".into();
        first.save(&[turn("old")]).unwrap();
        drop(first);
        let mut one = Session::latest(dir.path(), dir.path().into())
            .unwrap()
            .unwrap();
        one.claim().unwrap();
        let mut two = Session::latest(dir.path(), dir.path().into())
            .unwrap()
            .unwrap();
        two.claim().unwrap();
        assert_eq!(one.id, "100-000");
        assert_ne!(two.id, one.id);
        assert!(one.notes.is_empty());
        assert!(
            two.notes[0].contains("100-000.json is open in another o1"),
            "{:?}",
            two.notes
        );
        one.save(&[turn("old"), turn("one")]).unwrap();
        two.save(&[turn("old"), turn("two")]).unwrap();
        let read = |s: &Session| Session::open(&s.path(), dir.path().into()).unwrap().turns;
        assert_eq!(read(&one)[1], turn("one"));
        assert_eq!(read(&two)[1], turn("two"));
        // Once the first has quit, its conversation can be taken again.
        let path = one.path();
        drop(one);
        let mut three = Session::open(&path, dir.path().into()).unwrap();
        three.claim().unwrap();
        assert_eq!(three.id, "100-000");
    }
}
