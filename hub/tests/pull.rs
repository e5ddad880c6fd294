//! Pulls against the fake hub: the cache layout, re-use of what is cached,
//! offline mode, repair of broken entries, concurrent pulls.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use o1_hub::{find_cached, pull, HubError, NoProgress, DEFAULT_REPO, DEFAULT_REVISION};

fn repo_dir(cache: &Path) -> PathBuf {
    cache.join("models--test-org--tiny-model")
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

#[test]
fn defaults() {
    assert_eq!(DEFAULT_REPO, "Laurie/Qwen2.5-1.5B-O1");
    assert_eq!(DEFAULT_REVISION, "main");
}

#[test]
fn full_pull_from_empty_cache() {
    let hub = TestHub::start();
    let spec = tiny_repo();
    hub.add_repo(spec.clone());
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    let mut rec = Recorder::default();

    let snap = pull(REPO, "main", &options(&hub, &cache), &mut rec).unwrap();

    assert_eq!(snap.commit, COMMIT);
    assert_eq!(snap.repo, REPO);
    assert_eq!(snap.dir, repo_dir(&cache).join("snapshots").join(COMMIT));
    let mut files = snap.files.clone();
    files.sort();
    assert_eq!(files, sorted(&WANTED));
    for name in WANTED {
        let f = spec_file(&spec, name);
        let entry = snap.dir.join(name);
        assert_eq!(fs::read(&entry).unwrap(), f.content, "{name}");
        assert!(fs::symlink_metadata(&entry)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(
            fs::read_link(&entry).unwrap(),
            PathBuf::from(format!("../../blobs/{}", f.etag()))
        );
    }
    assert!(!snap.dir.join("README.md").exists());
    assert!(!snap.dir.join("onnx").exists());
    assert_eq!(
        fs::read_to_string(repo_dir(&cache).join("refs/main")).unwrap(),
        COMMIT
    );
    let blobs: Vec<String> = WANTED.iter().map(|n| spec_file(&spec, n).etag()).collect();
    let blobs: Vec<&str> = blobs.iter().map(String::as_str).collect();
    assert_eq!(names(&repo_dir(&cache).join("blobs")), sorted(&blobs));

    let total: u64 = WANTED
        .iter()
        .map(|n| spec_file(&spec, n).content.len() as u64)
        .sum();
    assert_eq!(snap.downloaded_files, WANTED.len());
    assert_eq!(snap.downloaded_bytes, total);
    assert_eq!(rec.totals, Some((WANTED.len(), total, 0)));
    assert_eq!(rec.done.len(), WANTED.len());
    assert_eq!(rec.advanced.values().sum::<u64>(), total);
    assert!(rec.messages.is_empty(), "{:?}", rec.messages);
    assert_eq!(hub.downloads(), WANTED.len());
    // The LFS files came from the CDN, the others from the hub itself.
    assert_eq!(hub.count(Side::Cdn, "GET", "/lfs/"), 2);
    // HEAD stops at the redirect to the CDN, whose headers describe the file.
    assert_eq!(hub.count(Side::Cdn, "HEAD", "/"), 0);
    assert_eq!(hub.count(Side::Hub, "HEAD", "/resolve/"), WANTED.len());
    for l in hub.log() {
        assert!(l.header("authorization").is_none());
        assert_eq!(l.header("accept-encoding"), Some("identity"), "{l:?}");
    }

    // Pulling again changes nothing and downloads nothing: one listing only.
    hub.clear_log();
    let mut rec = Recorder::default();
    let again = pull(REPO, "main", &options(&hub, &cache), &mut rec).unwrap();
    assert_eq!(again.dir, snap.dir);
    assert_eq!(again.downloaded_files, 0);
    assert_eq!(rec.totals, Some((WANTED.len(), total, total)));
    assert_eq!(hub.log().len(), 1, "{:?}", hub.log());
}

/// Writes the hub layout by hand, as Python's huggingface_hub would.
fn write_foreign_cache(cache: &Path, spec: &RepoSpec) {
    let dir = repo_dir(cache);
    fs::create_dir_all(dir.join("blobs")).unwrap();
    fs::create_dir_all(dir.join("refs")).unwrap();
    let snap = dir.join("snapshots").join(COMMIT);
    fs::create_dir_all(&snap).unwrap();
    for name in WANTED {
        let f = spec_file(spec, name);
        fs::write(dir.join("blobs").join(f.etag()), &f.content).unwrap();
        std::os::unix::fs::symlink(format!("../../blobs/{}", f.etag()), snap.join(name)).unwrap();
    }
    fs::write(dir.join("refs/main"), COMMIT).unwrap();
}

#[test]
fn reuses_a_cache_written_by_another_tool() {
    let hub = TestHub::start();
    let spec = tiny_repo();
    hub.add_repo(spec.clone());
    let tmp = tempfile::tempdir().unwrap();
    write_foreign_cache(tmp.path(), &spec);

    let snap = pull(REPO, "main", &options(&hub, tmp.path()), &mut NoProgress).unwrap();

    assert_eq!(snap.downloaded_files, 0);
    assert_eq!(hub.downloads(), 0);
    assert_eq!(hub.count(Side::Hub, "HEAD", "/resolve/"), 0);
    assert_eq!(
        fs::read(snap.dir.join(SHARD2)).unwrap(),
        spec_file(&spec, SHARD2).content
    );
}

#[test]
fn offline_without_cache_is_a_clear_error_and_sends_nothing() {
    let hub = TestHub::start();
    hub.add_repo(tiny_repo());
    let tmp = tempfile::tempdir().unwrap();
    let mut o = options(&hub, tmp.path());
    o.offline = true;

    let err = pull(REPO, "main", &o, &mut NoProgress).unwrap_err();

    assert!(matches!(err, HubError::OfflineNotCached { .. }), "{err}");
    assert_eq!(err.exit_code(), 17);
    let msg = err.to_string();
    assert!(
        msg.contains(REPO) && msg.contains("HF_HUB_OFFLINE"),
        "{msg}"
    );
    assert!(hub.log().is_empty());
}

#[test]
fn offline_with_cache_sends_nothing() {
    let hub = TestHub::start();
    hub.add_repo(tiny_repo());
    let tmp = tempfile::tempdir().unwrap();
    let online = pull(REPO, "main", &options(&hub, tmp.path()), &mut NoProgress).unwrap();
    hub.clear_log();
    let mut o = options(&hub, tmp.path());
    o.offline = true;

    let offline = pull(REPO, "main", &o, &mut NoProgress).unwrap();
    let by_commit = pull(REPO, COMMIT, &o, &mut NoProgress).unwrap();

    assert!(hub.log().is_empty(), "{:?}", hub.log());
    assert_eq!(offline.commit, COMMIT);
    assert_eq!(offline.dir, online.dir);
    assert_eq!(by_commit.dir, online.dir);
    let mut files = offline.files.clone();
    files.sort();
    assert_eq!(files, sorted(&WANTED));
    assert_eq!(
        find_cached(REPO, "main", tmp.path()).unwrap().dir,
        online.dir
    );
    // Another revision is not cached.
    let err = pull(REPO, "v2", &o, &mut NoProgress).unwrap_err();
    assert!(matches!(err, HubError::OfflineNotCached { .. }), "{err}");
}

#[test]
fn offline_reports_a_missing_shard_and_a_dangling_link() {
    let hub = TestHub::start();
    let spec = tiny_repo();
    hub.add_repo(spec.clone());
    let tmp = tempfile::tempdir().unwrap();
    let snap = pull(REPO, "main", &options(&hub, tmp.path()), &mut NoProgress).unwrap();
    let mut o = options(&hub, tmp.path());
    o.offline = true;

    let blob = repo_dir(tmp.path())
        .join("blobs")
        .join(spec_file(&spec, SHARD1).etag());
    fs::remove_file(&blob).unwrap();
    let err = pull(REPO, "main", &o, &mut NoProgress).unwrap_err();
    assert!(matches!(err, HubError::CorruptCache { .. }), "{err}");
    assert_eq!(err.exit_code(), 19);

    fs::remove_file(snap.dir.join(SHARD1)).unwrap();
    let err = pull(REPO, "main", &o, &mut NoProgress).unwrap_err();
    assert!(err.to_string().contains(SHARD1), "{err}");
    assert!(matches!(err, HubError::OfflineNotCached { .. }), "{err}");
}

#[test]
fn corrupted_cache_entries_are_fetched_again() {
    let hub = TestHub::start();
    let spec = tiny_repo();
    hub.add_repo(spec.clone());
    let tmp = tempfile::tempdir().unwrap();
    let snap = pull(REPO, "main", &options(&hub, tmp.path()), &mut NoProgress).unwrap();
    let blobs = repo_dir(tmp.path()).join("blobs");
    // A dangling link (blob deleted) and a truncated blob.
    fs::remove_file(blobs.join(spec_file(&spec, SHARD2).etag())).unwrap();
    let tokenizer = blobs.join(spec_file(&spec, "tokenizer.json").etag());
    fs::write(&tokenizer, b"trunc").unwrap();
    hub.clear_log();
    let mut rec = Recorder::default();

    let again = pull(REPO, "main", &options(&hub, tmp.path()), &mut rec).unwrap();

    assert_eq!(again.downloaded_files, 2);
    assert_eq!(hub.downloads(), 2);
    for name in [SHARD2, "tokenizer.json"] {
        assert_eq!(
            fs::read(snap.dir.join(name)).unwrap(),
            spec_file(&spec, name).content
        );
        assert!(
            rec.messages
                .iter()
                .any(|m| m.contains(name) && m.contains("again")),
            "{:?}",
            rec.messages
        );
    }
}

#[test]
fn concurrent_pulls_download_each_blob_once() {
    let hub = TestHub::start();
    let spec = tiny_repo();
    hub.add_repo(spec.clone());
    hub.chunk_delay(Duration::from_millis(5));
    let tmp = tempfile::tempdir().unwrap();
    let o = options(&hub, tmp.path());

    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| s.spawn(|| pull(REPO, "main", &o, &mut Recorder::default())))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    for result in &results {
        let snap = result.as_ref().unwrap();
        assert_eq!(snap.commit, COMMIT);
    }
    let downloaded: usize = results
        .iter()
        .map(|r| r.as_ref().unwrap().downloaded_files)
        .sum();
    assert_eq!(downloaded, WANTED.len());
    for name in WANTED {
        let f = spec_file(&spec, name);
        let gets = if f.lfs {
            hub.count(Side::Cdn, "GET", &f.sha256())
        } else {
            hub.count(Side::Hub, "GET", &format!("/resolve/{COMMIT}/{name}"))
        };
        assert_eq!(gets, 1, "{name} downloaded {gets} times");
        assert_eq!(
            fs::read(results[0].as_ref().unwrap().dir.join(name)).unwrap(),
            f.content
        );
    }
    let blobs = names(&repo_dir(tmp.path()).join("blobs"));
    assert!(
        blobs.iter().all(|b| !b.ends_with(".incomplete")),
        "{blobs:?}"
    );
}

#[test]
fn a_revision_with_a_slash_is_escaped_and_gets_a_nested_ref() {
    let hub = TestHub::start();
    let mut spec = tiny_repo();
    spec.revisions.push("refs/pr/1".to_owned());
    hub.add_repo(spec);
    let tmp = tempfile::tempdir().unwrap();

    pull(
        REPO,
        "refs/pr/1",
        &options(&hub, tmp.path()),
        &mut NoProgress,
    )
    .unwrap();

    assert_eq!(
        hub.count(Side::Hub, "GET", "/revision/refs%2Fpr%2F1?blobs=true"),
        1
    );
    assert_eq!(
        fs::read_to_string(repo_dir(tmp.path()).join("refs/refs/pr/1")).unwrap(),
        COMMIT
    );
}

/// An address nothing listens on: port 1 on loopback refuses at once.
/// (A port freed by a closed listener could be taken by another test's hub
/// running in parallel.)
fn dead_endpoint() -> String {
    "http://127.0.0.1:1".to_string()
}

#[test]
fn network_down_is_reported_after_retries() {
    let hub = TestHub::start();
    let tmp = tempfile::tempdir().unwrap();
    let mut o = options(&hub, tmp.path());
    o.endpoint = dead_endpoint();
    let mut rec = Recorder::default();

    let err = pull(REPO, "main", &o, &mut rec).unwrap_err();

    assert!(matches!(err, HubError::Network { .. }), "{err}");
    assert_eq!(err.exit_code(), 12);
    assert!(err.to_string().contains("HF_HUB_OFFLINE"), "{err}");
    assert_eq!(
        rec.messages.len(),
        3,
        "one notice per retry: {:?}",
        rec.messages
    );
}

#[test]
fn network_down_falls_back_to_the_cache() {
    let hub = TestHub::start();
    hub.add_repo(tiny_repo());
    let tmp = tempfile::tempdir().unwrap();
    let online = pull(REPO, "main", &options(&hub, tmp.path()), &mut NoProgress).unwrap();
    let mut o = options(&hub, tmp.path());
    o.endpoint = dead_endpoint();
    let mut rec = Recorder::default();

    let snap = pull(REPO, "main", &o, &mut rec).unwrap();

    assert_eq!(snap.dir, online.dir);
    assert!(
        rec.messages.iter().any(|m| m.contains("cached snapshot")),
        "{:?}",
        rec.messages
    );
}

#[test]
fn a_renamed_repo_is_followed_through_relative_redirects() {
    let hub = TestHub::start();
    let spec = tiny_repo();
    hub.add_repo(spec.clone());
    hub.rename("old-org/tiny-model", REPO);
    let tmp = tempfile::tempdir().unwrap();

    let snap = pull(
        "old-org/tiny-model",
        "main",
        &options(&hub, tmp.path()),
        &mut NoProgress,
    )
    .unwrap();

    // Cached under the name asked for, as huggingface_hub does.
    assert!(snap
        .dir
        .starts_with(tmp.path().join("models--old-org--tiny-model")));
    assert_eq!(
        fs::read(snap.dir.join(SHARD1)).unwrap(),
        spec_file(&spec, SHARD1).content
    );
    let heads = hub.count(Side::Hub, "HEAD", "/old-org/tiny-model/resolve/");
    assert_eq!(heads, WANTED.len());
    assert_eq!(
        hub.count(Side::Hub, "HEAD", "/test-org/tiny-model/resolve/"),
        WANTED.len()
    );
}

#[test]
fn a_new_commit_downloads_only_the_changed_files() {
    let hub = TestHub::start();
    let spec = tiny_repo();
    hub.add_repo(spec.clone());
    let tmp = tempfile::tempdir().unwrap();
    let first = pull(REPO, "main", &options(&hub, tmp.path()), &mut NoProgress).unwrap();
    let mut next = spec.clone();
    next.commit = "fedcba9876543210fedcba9876543210fedcba98".to_owned();
    let shard2 = next.files.iter_mut().find(|f| f.name == SHARD2).unwrap();
    shard2.content = bytes(200_000, 99);
    let new_content = shard2.content.clone();
    hub.replace_repo(next.clone());
    hub.clear_log();

    let second = pull(REPO, "main", &options(&hub, tmp.path()), &mut NoProgress).unwrap();

    assert_eq!(second.commit, next.commit);
    assert_ne!(second.dir, first.dir);
    assert_eq!(second.downloaded_files, 1, "unchanged blobs are shared");
    assert_eq!(hub.downloads(), 1);
    assert_eq!(fs::read(second.dir.join(SHARD2)).unwrap(), new_content);
    assert_eq!(
        fs::read(first.dir.join(SHARD2)).unwrap(),
        spec_file(&spec, SHARD2).content
    );
    assert_eq!(
        fs::read_to_string(repo_dir(tmp.path()).join("refs/main")).unwrap(),
        next.commit
    );
}
