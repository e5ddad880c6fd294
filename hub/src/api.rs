//! The repo listing (`/api/models/{repo}/revision/{rev}?blobs=true`) and the
//! choice of the files a conversion needs.

use serde::Deserialize;

use crate::cache::{is_commit_hash, unsafe_reason};
use crate::error::{HubError, Result};
use crate::http::{encode, shown, Ctx, Http};
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

/// The listing as the hub sends it, as far as a pull needs it.
#[derive(Debug, Deserialize)]
struct RepoInfo {
    /// The commit the revision resolves to.
    pub sha: String,
    #[serde(default)]
    pub siblings: Vec<Sibling>,
}

/// One file of the repo.
#[derive(Debug, Deserialize)]
struct Sibling {
    rfilename: String,
    #[serde(default)]
    size: Option<u64>,
    /// The git blob id (of the LFS pointer, for an LFS file).
    #[serde(default, rename = "blobId")]
    blob_id: Option<String>,
    #[serde(default)]
    lfs: Option<Lfs>,
}

/// LFS metadata: the content's SHA-256 and size.
#[derive(Debug, Deserialize)]
struct Lfs {
    sha256: String,
    #[serde(default)]
    size: Option<u64>,
}

/// What a pull takes from the listing of a repo at a revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    /// The commit the revision resolves to (a lowercase hex hash).
    pub commit: String,
    /// The files a conversion needs, each a plain name in the snapshot.
    pub files: Vec<ListedFile>,
}

/// A file to have in the snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedFile {
    /// Its name in the repo: a plain file name at the top level.
    pub path: String,
    /// From the listing; `None` if the hub did not say.
    pub size: Option<u64>,
    /// Lowercase hex SHA-256, for LFS files.
    pub sha256: Option<String>,
    /// Lowercase hex git blob id (SHA-1), for regular files when listed.
    pub blob_id: Option<String>,
}

/// Fetches the listing of `repo` at `revision`.
pub(crate) fn list(
    http: &Http,
    repo: &str,
    revision: &str,
    progress: &mut dyn PullProgress,
) -> Result<Listing> {
    let url = http.url(&format!(
        "api/models/{repo}/revision/{}?blobs=true",
        encode(revision, false)
    ))?;
    let ctx = Ctx {
        repo,
        revision,
        file: None,
    };
    let body = http.get_listing(&url, ctx, progress)?;
    parse_listing(repo, url.as_str(), &body)
}

/// Reads the listing of `repo` (the body of `/api/models/{repo}/revision/
/// {rev}?blobs=true`, fetched from `url`) and picks the files a conversion
/// needs (see [`pull`](crate::pull)). Fails on JSON it cannot read, a commit
/// that is not a hash, a wanted file whose name is unsafe to write (`..`, an
/// absolute path, a backslash, a control character) or whose hash or size
/// is malformed, and on a repo without `config.json` or weights.
pub fn parse_listing(repo: &str, url: &str, body: &[u8]) -> Result<Listing> {
    let protocol = |detail: String| HubError::Protocol {
        url: url.to_owned(),
        detail,
    };
    let info: RepoInfo =
        serde_json::from_slice(body).map_err(|e| protocol(format!("invalid JSON: {e}")))?;
    if !is_commit_hash(&info.sha) {
        return Err(protocol(format!(
            "the commit {} is not a commit hash",
            shown(&info.sha)
        )));
    }
    let files = select(repo, url, &info)?;
    Ok(Listing {
        commit: info.sha,
        files,
    })
}

/// `s` if it is `len` hex digits, in lowercase.
fn hex_hash(s: &str, len: usize) -> Option<String> {
    (s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_ascii_lowercase())
}

/// Whether a file name (the last path component) is one a conversion needs.
pub(crate) fn is_wanted(name: &str) -> bool {
    METADATA_FILES.contains(&name) || name.ends_with(".safetensors")
}

/// The files of the listing a conversion needs: the metadata files and the
/// `*.safetensors` weights at the repo's top level (subfolders hold other
/// variants). A wanted name whose path would escape the cache is an error.
fn select(repo: &str, url: &str, info: &RepoInfo) -> Result<Vec<ListedFile>> {
    let protocol = |path: &str, detail: String| HubError::Protocol {
        url: url.to_owned(),
        detail: format!("{path}: {detail}"),
    };
    let mut files = Vec::new();
    for sibling in &info.siblings {
        let path = sibling.rfilename.as_str();
        let name = path.rsplit(['/', '\\']).next().unwrap_or(path);
        if !is_wanted(name) {
            continue;
        }
        if let Some(reason) = unsafe_reason(path) {
            return Err(HubError::UnsafePath {
                repo: repo.to_owned(),
                path: path.to_owned(),
                reason,
            });
        }
        if path.contains('/') || files.iter().any(|f: &ListedFile| f.path == path) {
            continue;
        }
        let (sha256, blob_id, size) = match &sibling.lfs {
            Some(lfs) => {
                let sha = hex_hash(&lfs.sha256, 64).ok_or_else(|| {
                    protocol(path, format!("bad LFS sha256 {}", shown(&lfs.sha256)))
                })?;
                let size = match (lfs.size, sibling.size) {
                    (Some(a), Some(b)) if a != b => {
                        return Err(protocol(
                            path,
                            format!("the listing gives two sizes, {a} and {b}"),
                        ))
                    }
                    (a, b) => a.or(b),
                };
                // The blob id of an LFS file is its pointer's: not the content's.
                (Some(sha), None, size)
            }
            None => {
                let blob_id =
                    match &sibling.blob_id {
                        Some(id) => Some(hex_hash(id, 40).ok_or_else(|| {
                            protocol(path, format!("bad git blob id {}", shown(id)))
                        })?),
                        None => None,
                    };
                (None, blob_id, sibling.size)
            }
        };
        files.push(ListedFile {
            path: path.to_owned(),
            size,
            sha256,
            blob_id,
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
                    blob_id: None,
                    lfs: None,
                })
                .collect(),
        }
    }

    fn select(repo: &str, info: &RepoInfo) -> Result<Vec<ListedFile>> {
        super::select(repo, "http://hub/api", info)
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
        let sha = "AB".repeat(32);
        let json = format!(
            r#"{{"sha":"{}","siblings":[{{"rfilename":"a.safetensors","size":5,
            "lfs":{{"sha256":"{sha}","size":5,"pointerSize":130}}}},
            {{"rfilename":"config.json","blobId":"{}"}}],"other":1}}"#,
            "c".repeat(40),
            "D".repeat(40)
        );
        let listing = parse_listing("o/n", "http://hub/api", json.as_bytes()).unwrap();
        assert_eq!(listing.commit, "c".repeat(40));
        assert_eq!(
            listing.files,
            [
                ListedFile {
                    path: "a.safetensors".into(),
                    size: Some(5),
                    sha256: Some("ab".repeat(32)),
                    blob_id: None,
                },
                ListedFile {
                    path: "config.json".into(),
                    size: None,
                    sha256: None,
                    blob_id: Some("d".repeat(40)),
                },
            ]
        );
    }

    #[test]
    fn rejects_malformed_hashes_and_commits() {
        let listing = |commit: &str, blob: &str, lfs: &str| {
            format!(
                r#"{{"sha":"{commit}","siblings":[{{"rfilename":"a.safetensors",
                "lfs":{{"sha256":"{lfs}"}}}},{{"rfilename":"config.json","blobId":"{blob}"}}]}}"#
            )
        };
        let (c, b, l) = ("c".repeat(40), "b".repeat(40), "a".repeat(64));
        assert!(parse_listing("o/n", "u", listing(&c, &b, &l).as_bytes()).is_ok());
        for json in [
            listing("main", &b, &l),
            listing(&c, "xyz", &l),
            listing(&c, &b, &l[1..]),
            listing(&c, &b, &"g".repeat(64)),
        ] {
            let err = parse_listing("o/n", "u", json.as_bytes()).unwrap_err();
            assert!(matches!(err, HubError::Protocol { .. }), "{json}: {err}");
        }
    }
}
