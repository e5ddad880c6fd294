//! The repo listing (`/api/models/{repo}/revision/{rev}?blobs=true`) and the
//! choice of the files a conversion needs.

use serde::Deserialize;

use crate::cache::unsafe_reason;
use crate::error::{HubError, Result};
use crate::http::{encode, Ctx, Http};
use crate::progress::PullProgress;

/// Small files a conversion reads, fetched when the repo has them.
pub(crate) const METADATA_FILES: [&str; 6] = [
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "model.safetensors.index.json",
];

/// The file without which there is no checkpoint.
pub(crate) const CONFIG_FILE: &str = "config.json";

/// The shard index of a sharded checkpoint.
pub(crate) const INDEX_FILE: &str = "model.safetensors.index.json";

/// The listing, as far as a pull needs it.
#[derive(Debug, Deserialize)]
pub(crate) struct RepoInfo {
    /// The commit the revision resolves to.
    pub sha: String,
    #[serde(default)]
    pub siblings: Vec<Sibling>,
}

/// One file of the repo.
#[derive(Debug, Deserialize)]
pub(crate) struct Sibling {
    pub rfilename: String,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub lfs: Option<Lfs>,
}

/// LFS metadata: the content's SHA-256 and size.
#[derive(Debug, Deserialize)]
pub(crate) struct Lfs {
    pub sha256: String,
    pub size: u64,
}

/// A file to have in the snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RemoteFile {
    pub path: String,
    /// From the listing; `None` if the hub did not say.
    pub size: Option<u64>,
    /// Lowercase hex SHA-256, for LFS files.
    pub sha256: Option<String>,
}

/// Fetches the listing of `repo` at `revision`.
pub(crate) fn list(
    http: &Http,
    repo: &str,
    revision: &str,
    progress: &mut dyn PullProgress,
) -> Result<RepoInfo> {
    let url = http.url(&format!(
        "api/models/{repo}/revision/{}?blobs=true",
        encode(revision, false)
    ))?;
    let ctx = Ctx {
        repo,
        revision,
        file: None,
    };
    http.get_json(&url, ctx, progress)
}

/// Whether a file name (the last path component) is one a conversion needs.
pub(crate) fn is_wanted(name: &str) -> bool {
    METADATA_FILES.contains(&name) || name.ends_with(".safetensors")
}

/// The files of the listing a conversion needs: the metadata files and the
/// `*.safetensors` weights at the repo's top level (subfolders hold other
/// variants). A wanted name whose path would escape the cache is an error.
pub(crate) fn select(repo: &str, info: &RepoInfo) -> Result<Vec<RemoteFile>> {
    let mut files = Vec::new();
    for sibling in &info.siblings {
        let path = sibling.rfilename.as_str();
        let name = path.rsplit(['/', '\\']).next().unwrap_or(path);
        if !is_wanted(name) {
            continue;
        }
        if unsafe_reason(path).is_some() {
            return Err(HubError::UnsafePath {
                repo: repo.to_owned(),
                path: path.to_owned(),
            });
        }
        if path.contains('/') || files.iter().any(|f: &RemoteFile| f.path == path) {
            continue;
        }
        let sha256 = match &sibling.lfs {
            Some(lfs) => {
                let sha = lfs.sha256.to_ascii_lowercase();
                if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(HubError::Protocol {
                        url: format!("listing of {repo}"),
                        detail: format!("{path}: bad LFS sha256 {:?}", lfs.sha256),
                    });
                }
                Some(sha)
            }
            None => None,
        };
        files.push(RemoteFile {
            path: path.to_owned(),
            size: sibling.lfs.as_ref().map(|l| l.size).or(sibling.size),
            sha256,
        });
    }
    let missing = |what: &str| HubError::NotFound {
        repo: repo.to_owned(),
        what: what.to_owned(),
        hint: "; the repo does not look like a transformers checkpoint".to_owned(),
    };
    if !files.iter().any(|f| f.path == CONFIG_FILE) {
        return Err(missing("config.json"));
    }
    if !files.iter().any(|f| f.path.ends_with(".safetensors")) {
        return Err(missing("*.safetensors weights"));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(names: &[&str]) -> RepoInfo {
        RepoInfo {
            sha: "0".repeat(40),
            siblings: names
                .iter()
                .map(|n| Sibling {
                    rfilename: n.to_string(),
                    size: Some(1),
                    lfs: None,
                })
                .collect(),
        }
    }

    #[test]
    fn selects_conversion_files() {
        let files = select(
            "o/n",
            &info(&[
                "README.md",
                "config.json",
                "model.safetensors",
                "onnx/model.safetensors",
                "tokenizer.json",
                "pytorch_model.bin",
            ]),
        )
        .unwrap();
        let names: Vec<_> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            names,
            ["config.json", "model.safetensors", "tokenizer.json"]
        );
    }

    #[test]
    fn rejects_escaping_names() {
        for bad in [
            "../model.safetensors",
            "/abs/config.json",
            "a\\..\\x.safetensors",
        ] {
            let err = select("o/n", &info(&["config.json", "model.safetensors", bad])).unwrap_err();
            assert!(matches!(err, HubError::UnsafePath { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn requires_config_and_weights() {
        assert!(matches!(
            select("o/n", &info(&["model.safetensors"])),
            Err(HubError::NotFound { .. })
        ));
        assert!(matches!(
            select("o/n", &info(&["config.json"])),
            Err(HubError::NotFound { .. })
        ));
    }

    #[test]
    fn parses_listing() {
        let json = r#"{"sha":"abc","siblings":[{"rfilename":"a.safetensors","size":5,
            "lfs":{"sha256":"AB","size":5,"pointerSize":130}},{"rfilename":"config.json"}],
            "other":1}"#;
        let info: RepoInfo = serde_json::from_str(json).unwrap();
        assert_eq!(info.sha, "abc");
        assert_eq!(info.siblings.len(), 2);
        assert_eq!(info.siblings[0].lfs.as_ref().unwrap().size, 5);
        assert_eq!(info.siblings[1].size, None);
    }
}
