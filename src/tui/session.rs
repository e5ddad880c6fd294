//! Conversations saved as they go (one JSON file per conversation in the
//! data directory, written to a temporary name and renamed), reopened with
//! `o1 tui --resume`, and exported as Markdown with Ctrl+S.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::transcript::{ModelSummary, Turn};

const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct SessionFile {
    format: u32,
    model: ModelSummary,
    turns: Vec<Turn>,
}

#[derive(Clone, Debug)]
pub struct Session {
    /// The folder of session files.
    pub dir: PathBuf,
    /// Where Ctrl+S writes transcripts.
    pub export_dir: PathBuf,
    /// File stem: seconds since the epoch when the conversation began.
    pub id: String,
    pub model: ModelSummary,
    /// The turns as loaded (a resumed session); the app keeps the live ones.
    pub turns: Vec<Turn>,
}

fn now_id() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}-{:03}", d.as_secs(), d.subsec_millis())
}

impl Session {
    pub fn new(dir: PathBuf, export_dir: PathBuf) -> Self {
        Session {
            dir,
            export_dir,
            id: now_id(),
            model: ModelSummary::default(),
            turns: Vec::new(),
        }
    }

    /// A new, empty conversation in the same folders.
    pub fn fresh(&self) -> Self {
        Session::new(self.dir.clone(), self.export_dir.clone())
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(format!("{}.json", self.id))
    }

    /// The most recent conversation in `dir`, if any.
    pub fn latest(dir: &Path, export_dir: PathBuf) -> io::Result<Option<Session>> {
        let Ok(entries) = std::fs::read_dir(dir) else {
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
        // Ids are zero-padded-free seconds: sort numerically, newest last.
        ids.sort_by_key(|id| {
            let (s, ms) = id.split_once('-').unwrap_or((id, "0"));
            (
                s.parse::<u64>().unwrap_or(0),
                ms.parse::<u32>().unwrap_or(0),
            )
        });
        let Some(id) = ids.pop() else { return Ok(None) };
        let bytes = std::fs::read(dir.join(format!("{id}.json")))?;
        let file: SessionFile = serde_json::from_slice(&bytes)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{id}.json: {e}")))?;
        Ok(Some(Session {
            dir: dir.to_path_buf(),
            export_dir,
            id,
            model: file.model,
            turns: file.turns,
        }))
    }

    /// Writes the conversation (nothing for an empty one).
    pub fn save(&self, turns: &[Turn]) -> io::Result<()> {
        if turns.is_empty() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir)?;
        let file = SessionFile {
            format: FORMAT,
            model: self.model.clone(),
            turns: turns.to_vec(),
        };
        let path = self.path();
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&file)?)?;
        std::fs::rename(&tmp, &path)
    }

    /// Writes the transcript as Markdown; returns its path.
    pub fn export_markdown(&self, turns: &[Turn]) -> io::Result<PathBuf> {
        let path = self.export_dir.join(format!("o1-chat-{}.md", self.id));
        std::fs::write(&path, markdown(&self.model, turns))?;
        Ok(path)
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
}
