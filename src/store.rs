//! The model store: converted GGUF files in o1's data directory, found by
//! name (`o1 ls`, `o1 rm`, `o1 run NAME`). A name is the file's stem, e.g.
//! `Laurie--Qwen2.5-1.5B-O1-q4_k_m` for the default repo and type.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::model::{ModelError, ModelInfo};

pub struct Store {
    dir: PathBuf,
}

/// One stored model, as `o1 ls` lists it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub path: PathBuf,
    pub file_type: String,
    pub bytes: u64,
    pub modified: SystemTime,
    pub source: String,
}

impl Store {
    /// The store in the data directory (or `$O1_MODELS_DIR`).
    pub fn open_default() -> Self {
        Store {
            dir: crate::paths::models_dir(),
        }
    }

    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Store { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path a model of this name has (whether or not it exists).
    pub fn path_of(&self, name: &str) -> PathBuf {
        let name = name.strip_suffix(".gguf").unwrap_or(name);
        self.dir.join(format!("{name}.gguf"))
    }

    /// The store name for a conversion of `source` (a repo id or a folder) to `ty`.
    pub fn name_for(source: &str, ty: &str) -> String {
        let source = source.trim_end_matches('/');
        let base = if o1_hub::is_repo_id(source) {
            source.replace('/', "--")
        } else {
            Path::new(source)
                .file_name()
                .map_or(source.to_string(), |n| n.to_string_lossy().into_owned())
        };
        format!("{base}-{ty}")
    }

    /// Whether `name` can name a stored model: a plain file name, so that
    /// joining it to the store's folder stays inside it.
    pub fn is_name(name: &str) -> bool {
        let mut parts = Path::new(name).components();
        matches!(
            (parts.next(), parts.next()),
            (Some(std::path::Component::Normal(_)), None)
        ) && !name.contains(['/', '\\', '\0'])
    }

    /// A stored model by name; `None` for a name that is not a plain file name.
    pub fn find(&self, name: &str) -> Option<PathBuf> {
        if !Self::is_name(name) {
            return None;
        }
        let path = self.path_of(name);
        path.is_file().then_some(path)
    }

    /// Every stored model, sorted by name. Unreadable files are listed with
    /// their problem as the type.
    pub fn list(&self) -> std::io::Result<Vec<Entry>> {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return Ok(Vec::new());
        };
        let mut entries = Vec::new();
        for e in dir.flatten() {
            let path = e.path();
            if path.extension().and_then(|x| x.to_str()) != Some("gguf") {
                continue;
            }
            let meta = e.metadata()?;
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let (file_type, source) = match ModelInfo::read(&path) {
                Ok(i) => (i.file_type.clone(), i.source.unwrap_or_default()),
                Err(err) => (format!("unusable: {}", short_reason(&err)), String::new()),
            };
            entries.push(Entry {
                name,
                path,
                file_type,
                bytes: meta.len(),
                modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                source,
            });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// Deletes a stored model. Only a plain name is accepted: a path, even
    /// one that leads back into the store, is refused and nothing is touched.
    pub fn remove(&self, name: &str) -> Result<PathBuf, ModelError> {
        if !Self::is_name(name) {
            return Err(ModelError::NotAStoreName(name.to_string()));
        }
        let path = self
            .find(name)
            .ok_or_else(|| ModelError::NotFound(self.path_of(name)))?;
        std::fs::remove_file(&path).map_err(|error| ModelError::Unreadable {
            path: path.clone(),
            error,
        })?;
        Ok(path)
    }
}

fn short_reason(e: &ModelError) -> String {
    match e {
        ModelError::NotGguf { .. } => "not GGUF".into(),
        ModelError::WrongArchitecture { arch, .. } => format!("{arch} model"),
        ModelError::NoReasoningToken(_) => "no <|reasoning|> token".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_for_repos_and_folders() {
        assert_eq!(
            Store::name_for("Laurie/Qwen2.5-1.5B-O1", "q4_k_m"),
            "Laurie--Qwen2.5-1.5B-O1-q4_k_m"
        );
        assert_eq!(
            Store::name_for("/data/ckpt/o1-0.5b/", "bf16"),
            "o1-0.5b-bf16"
        );
        let s = Store::at("/x");
        assert_eq!(s.path_of("a-q8_0"), PathBuf::from("/x/a-q8_0.gguf"));
        assert_eq!(s.path_of("a-q8_0.gguf"), PathBuf::from("/x/a-q8_0.gguf"));
    }

    #[test]
    fn remove_refuses_anything_but_a_plain_name() {
        let root = tempfile::tempdir().unwrap();
        let store_dir = root.path().join("data/models");
        std::fs::create_dir_all(&store_dir).unwrap();
        let victim = root.path().join("x.gguf");
        std::fs::write(&victim, b"keep me").unwrap();
        std::fs::write(store_dir.join("m.gguf"), b"stored").unwrap();
        let s = Store::at(&store_dir);
        let outside = victim.with_extension("");
        for name in [
            "../../x",
            "../../x.gguf",
            outside.to_str().unwrap(),
            "./m",
            "sub/../m",
            "..",
            ".",
            "",
            "a\\..\\..\\x",
        ] {
            let err = s.remove(name).unwrap_err();
            assert!(matches!(err, ModelError::NotAStoreName(_)), "{name}: {err}");
            assert!(err.to_string().contains("not a stored model's name"));
            assert!(s.find(name).is_none(), "{name}");
        }
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
        assert!(store_dir.join("m.gguf").exists());
        s.remove("m").unwrap();
        assert!(!store_dir.join("m.gguf").exists());
    }

    #[test]
    fn list_find_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::at(dir.path());
        assert!(s.list().unwrap().is_empty());
        std::fs::write(dir.path().join("junk.gguf"), b"nope").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"ignored").unwrap();
        let l = s.list().unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(
            (l[0].name.as_str(), l[0].file_type.as_str()),
            ("junk", "unusable: not GGUF")
        );
        assert!(s.find("junk").is_some() && s.find("other").is_none());
        s.remove("junk").unwrap();
        assert!(matches!(s.remove("junk"), Err(ModelError::NotFound(_))));
    }
}
