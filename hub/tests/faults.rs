//! Pulls against a misbehaving fake hub: dropped connections, bad content,
//! auth, missing repos, server errors, stalls, hostile file names, a full
//! disk, cancellation.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use o1_hub::{pull, HubError, NoProgress, PullProgress};

fn blobs_dir(cache: &Path) -> PathBuf {
    cache.join("models--test-org--tiny-model/blobs")
}

fn setup() -> (TestHub, RepoSpec, tempfile::TempDir) {
    let hub = TestHub::start();
    let spec = tiny_repo();
    hub.add_repo(spec.clone());
    (hub, spec, tempfile::tempdir().unwrap())
}

/// The GETs of `file` (CDN for LFS files, hub otherwise), in order.
fn gets(hub: &TestHub, spec: &RepoSpec, file: &str) -> Vec<Logged> {
    let f = spec_file(spec, file);
    hub.log()
        .into_iter()
        .filter(|l| l.method == "GET")
        .filter(|l| {
            if f.lfs {
                l.side == Side::Cdn && l.target.contains(&f.sha256())
            } else {
                l.side == Side::Hub && l.target.ends_with(&format!("/{file}"))
            }
        })
        .collect()
}

#[test]
fn resumes_after_a_dropped_connection() {
    let (hub, spec, tmp) = setup();
    hub.drop_after(SHARD1, 100_000, 1);
    hub.drop_after("tokenizer.json", 5_000, 1);
    let mut rec = Recorder::default();

    let snap = pull(REPO, "main", &options(&hub, tmp.path()), &mut rec).unwrap();

    for (file, cut) in [(SHARD1, 100_000), ("tokenizer.json", 5_000)] {
        let gets = gets(&hub, &spec, file);
        assert_eq!(gets.len(), 2, "{file}: {gets:?}");
        assert_eq!(gets[0].header("range"), None);
        assert_eq!(
            gets[1].header("range"),
            Some(format!("bytes={cut}-").as_str())
        );
        assert_eq!(
            fs::read(snap.dir.join(file)).unwrap(),
            spec_file(&spec, file).content
        );
    }
    assert!(
        rec.messages
            .iter()
            .any(|m| m.contains("resuming at byte 100000")),
        "{:?}",
        rec.messages
    );
    // Progress counted every byte once.
    assert_eq!(rec.advanced[SHARD1], 300_000);
}

#[test]
fn resumes_a_partial_file_left_by_an_earlier_run() {
    let (hub, spec, tmp) = setup();
    let shard = spec_file(&spec, SHARD1);
    let blobs = blobs_dir(tmp.path());
    fs::create_dir_all(&blobs).unwrap();
    fs::write(
        blobs.join(format!("{}.incomplete", shard.sha256())),
        &shard.content[..120_000],
    )
    .unwrap();
    let mut rec = Recorder::default();

    let snap = pull(REPO, "main", &options(&hub, tmp.path()), &mut rec).unwrap();

    let gets = gets(&hub, &spec, SHARD1);
    assert_eq!(gets.len(), 1);
    assert_eq!(gets[0].header("range"), Some("bytes=120000-"));
    assert!(rec.started.contains(&(SHARD1.to_owned(), 300_000, 120_000)));
    assert_eq!(fs::read(snap.dir.join(SHARD1)).unwrap(), shard.content);
    assert!(!names(&blobs).iter().any(|n| n.ends_with(".incomplete")));
}

#[test]
fn a_bad_partial_file_is_restarted_from_scratch() {
    let (hub, spec, tmp) = setup();
    let shard = spec_file(&spec, SHARD1);
    let blobs = blobs_dir(tmp.path());
    fs::create_dir_all(&blobs).unwrap();
    fs::write(
        blobs.join(format!("{}.incomplete", shard.sha256())),
        vec![7u8; 120_000],
    )
    .unwrap();
    let mut rec = Recorder::default();

    let snap = pull(REPO, "main", &options(&hub, tmp.path()), &mut rec).unwrap();

    let gets = gets(&hub, &spec, SHARD1);
    assert_eq!(gets.len(), 2);
    assert_eq!(gets[1].header("range"), None);
    assert_eq!(fs::read(snap.dir.join(SHARD1)).unwrap(), shard.content);
    assert!(
        rec.messages.iter().any(|m| m.contains("starting over")),
        "{:?}",
        rec.messages
    );
}

#[test]
fn a_server_ignoring_range_makes_the_download_restart() {
    let (hub, spec, tmp) = setup();
    hub.drop_after(SHARD1, 100_000, 1);
    hub.ignore_range(true);
    let mut rec = Recorder::default();

    let snap = pull(REPO, "main", &options(&hub, tmp.path()), &mut rec).unwrap();

    let gets = gets(&hub, &spec, SHARD1);
    assert_eq!(gets.len(), 2);
    assert_eq!(gets[1].header("range"), Some("bytes=100000-"));
    assert_eq!(
        fs::read(snap.dir.join(SHARD1)).unwrap(),
        spec_file(&spec, SHARD1).content
    );
    assert!(rec.started.contains(&(SHARD1.to_owned(), 300_000, 0)));
    assert!(
        rec.messages.iter().any(|m| m.contains("does not resume")),
        "{:?}",
        rec.messages
    );
}

#[test]
fn a_hash_mismatch_is_rejected_and_nothing_is_left() {
    let (hub, spec, tmp) = setup();
    hub.corrupt(SHARD1);

    let err = pull(REPO, "main", &options(&hub, tmp.path()), &mut NoProgress).unwrap_err();

    assert!(matches!(err, HubError::HashMismatch { .. }), "{err}");
    assert_eq!(err.exit_code(), 14);
    assert!(err.to_string().contains(SHARD1), "{err}");
    let sha = spec_file(&spec, SHARD1).sha256();
    let blobs = names(&blobs_dir(tmp.path()));
    assert!(!blobs.iter().any(|b| b.starts_with(&sha)), "{blobs:?}");
    let entry = tmp
        .path()
        .join("models--test-org--tiny-model/snapshots")
        .join(COMMIT)
        .join(SHARD1);
    assert!(fs::symlink_metadata(entry).is_err());
    // The hash is not a transient failure: no retry.
    assert_eq!(gets(&hub, &spec, SHARD1).len(), 1);
}

#[test]
fn gated_repo_needs_a_token_that_never_reaches_the_cdn() {
    let hub = TestHub::start();
    let mut spec = tiny_repo();
    let secret = "hf_test_secret_123";
    spec.token = Some(secret.to_owned());
    hub.add_repo(spec.clone());
    let tmp = tempfile::tempdir().unwrap();

    let err = pull(REPO, "main", &options(&hub, tmp.path()), &mut NoProgress).unwrap_err();
    assert!(
        matches!(err, HubError::Unauthorized { status: 401, .. }),
        "{err}"
    );
    assert_eq!(err.exit_code(), 11);
    assert!(err.to_string().contains("HF_TOKEN"), "{err}");
    assert_eq!(hub.log().len(), 1, "401 is not retried");

    let wrong = with_token(options(&hub, tmp.path()), "hf_wrong");
    let err = pull(REPO, "main", &wrong, &mut NoProgress).unwrap_err();
    assert!(err.to_string().contains("rejected"), "{err}");
    assert!(!format!("{err} {err:?} {wrong:?}").contains("hf_wrong"));

    hub.clear_log();
    let o = with_token(options(&hub, tmp.path()), secret);
    let snap = pull(REPO, "main", &o, &mut NoProgress).unwrap();
    assert_eq!(snap.downloaded_files, WANTED.len());
    assert!(!format!("{o:?} {snap:?}").contains(secret));

    let log = hub.log();
    let bearer = format!("Bearer {secret}");
    let (cdn, own): (Vec<_>, Vec<_>) = log.iter().partition(|l| l.side == Side::Cdn);
    assert!(!cdn.is_empty());
    for l in cdn {
        assert!(
            l.header("authorization").is_none(),
            "token sent to the CDN: {l:?}"
        );
    }
    for l in own {
        assert_eq!(l.header("authorization"), Some(bearer.as_str()), "{l:?}");
    }
}

#[test]
fn a_missing_repo_or_revision_is_not_found() {
    let (hub, _, tmp) = setup();

    let err = pull(
        "nobody/nothing",
        "main",
        &options(&hub, tmp.path()),
        &mut NoProgress,
    )
    .unwrap_err();
    assert!(matches!(err, HubError::NotFound { .. }), "{err}");
    assert_eq!(err.exit_code(), 10);
    assert!(err.to_string().contains("nobody/nothing"), "{err}");
    assert_eq!(hub.log().len(), 1, "404 is not retried");

    let err = pull(
        REPO,
        "no-such-branch",
        &options(&hub, tmp.path()),
        &mut NoProgress,
    )
    .unwrap_err();
    assert!(matches!(err, HubError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("no-such-branch"), "{err}");
}

#[test]
fn server_errors_are_retried_until_they_pass() {
    let (hub, spec, tmp) = setup();
    hub.fail("/api/models/", 500, 2);
    hub.fail(&spec_file(&spec, SHARD2).sha256(), 503, 1);
    let mut rec = Recorder::default();

    let snap = pull(REPO, "main", &options(&hub, tmp.path()), &mut rec).unwrap();

    assert_eq!(snap.downloaded_files, WANTED.len());
    assert_eq!(hub.count(Side::Hub, "GET", "/api/models/"), 3);
    assert_eq!(gets(&hub, &spec, SHARD2).len(), 2);
    assert_eq!(rec.messages.len(), 3, "{:?}", rec.messages);
}

#[test]
fn persistent_server_errors_give_up() {
    let (hub, _, tmp) = setup();
    hub.fail("/api/models/", 500, 100);

    let err = pull(REPO, "main", &options(&hub, tmp.path()), &mut NoProgress).unwrap_err();

    assert!(matches!(err, HubError::Server { status: 500, .. }), "{err}");
    assert_eq!(err.exit_code(), 13);
    assert_eq!(
        hub.count(Side::Hub, "GET", "/api/models/"),
        4,
        "1 try + 3 retries"
    );
}

#[test]
fn a_stalled_response_times_out_and_is_retried() {
    let (hub, spec, tmp) = setup();
    hub.stall(
        &spec_file(&spec, SHARD1).sha256(),
        Duration::from_secs(3),
        1,
    );
    let mut o = options(&hub, tmp.path());
    o.stall_timeout = Duration::from_millis(300);

    let snap = pull(REPO, "main", &o, &mut NoProgress).unwrap();

    assert_eq!(gets(&hub, &spec, SHARD1).len(), 2);
    assert_eq!(
        fs::read(snap.dir.join(SHARD1)).unwrap(),
        spec_file(&spec, SHARD1).content
    );
}

#[test]
fn file_names_escaping_the_cache_are_rejected() {
    for bad in [
        "../evil.safetensors",
        "..\\evil.safetensors",
        "/tmp/evil.safetensors",
        "sub/../../evil.safetensors",
    ] {
        let hub = TestHub::start();
        let mut spec = tiny_repo();
        spec.files.push(FileSpec {
            name: bad.to_owned(),
            content: bytes(100, 9),
            lfs: true,
        });
        hub.add_repo(spec);
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("hub");

        let err = pull(REPO, "main", &options(&hub, &cache), &mut NoProgress).unwrap_err();

        assert!(matches!(err, HubError::UnsafePath { .. }), "{bad}: {err}");
        assert_eq!(err.exit_code(), 18);
        assert!(
            err.to_string().contains(bad) || err.to_string().contains("evil"),
            "{err}"
        );
        assert_eq!(hub.downloads(), 0);
        assert!(names(tmp.path()).iter().all(|n| n == "hub"));
    }
}

#[test]
fn not_enough_disk_space_fails_before_downloading() {
    let (hub, _, tmp) = setup();
    let mut o = options(&hub, tmp.path());
    o.keep_free = u64::MAX / 2;

    let err = pull(REPO, "main", &o, &mut NoProgress).unwrap_err();

    assert!(matches!(err, HubError::DiskFull { .. }), "{err}");
    assert_eq!(err.exit_code(), 16);
    assert!(err.to_string().contains("HF_HUB_CACHE"), "{err}");
    assert_eq!(hub.downloads(), 0);
}

/// Sets the cancel flag as soon as bytes flow.
struct CancelOnFirstBytes(Arc<AtomicBool>);

impl PullProgress for CancelOnFirstBytes {
    fn file_advanced(&mut self, _: &str, _: u64) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[test]
fn cancelling_stops_and_a_later_pull_finishes() {
    let (hub, spec, tmp) = setup();
    let flag = Arc::new(AtomicBool::new(false));
    let mut o = options(&hub, tmp.path());
    o.cancel = Some(flag.clone());

    let err = pull(REPO, "main", &o, &mut CancelOnFirstBytes(flag.clone())).unwrap_err();
    assert!(matches!(err, HubError::Interrupted), "{err}");
    assert_eq!(err.exit_code(), 130);

    flag.store(false, Ordering::SeqCst);
    let snap = pull(REPO, "main", &o, &mut NoProgress).unwrap();
    for name in WANTED {
        assert_eq!(
            fs::read(snap.dir.join(name)).unwrap(),
            spec_file(&spec, name).content
        );
    }
}

/// Runs `f` on a thread and waits at most `limit` for it: a pull that hangs
/// fails the test instead of hanging it.
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("still running after {limit:?}"))
}

#[test]
fn an_endless_listing_stops_at_the_size_cap() {
    for declared in [None, Some(1 << 40)] {
        let (hub, _, tmp) = setup();
        hub.endless_listing(EndlessListing::Flood(declared));
        let o = options(&hub, tmp.path());
        let started = std::time::Instant::now();

        let err = within(Duration::from_secs(30), move || {
            pull(REPO, "main", &o, &mut NoProgress).unwrap_err()
        });

        assert!(matches!(err, HubError::Protocol { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("/api/models/test-org/tiny-model/"), "{text}");
        assert!(text.contains("10 MiB"), "{text}");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(
            hub.count(Side::Hub, "GET", "/api/models/"),
            1,
            "not retried"
        );
    }
}

#[test]
fn a_dripping_listing_fails_at_the_metadata_deadline() {
    let (hub, _, tmp) = setup();
    hub.endless_listing(EndlessListing::Drip);
    let mut o = options(&hub, tmp.path());
    o.metadata_timeout = Duration::from_secs(1);
    let started = std::time::Instant::now();

    let err = within(Duration::from_secs(20), move || {
        pull(REPO, "main", &o, &mut NoProgress).unwrap_err()
    });

    let elapsed = started.elapsed();
    assert!(matches!(err, HubError::Network { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("/api/models/test-org/tiny-model/"), "{text}");
    assert!(text.contains("within 1 s"), "{text}");
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
}

#[test]
fn a_stalled_file_header_request_fails_at_the_metadata_deadline() {
    let (hub, _, tmp) = setup();
    hub.stall("/resolve/", Duration::from_secs(20), 100);
    let mut o = options(&hub, tmp.path());
    o.metadata_timeout = Duration::from_secs(1);
    let started = std::time::Instant::now();

    let err = within(Duration::from_secs(40), move || {
        pull(REPO, "main", &o, &mut NoProgress).unwrap_err()
    });

    assert!(matches!(err, HubError::Network { .. }), "{err}");
    assert!(err.to_string().contains("/resolve/"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(hub.downloads(), 0);
}

#[test]
fn a_file_without_a_listed_size_is_sized_by_its_headers_before_the_space_check() {
    let (hub, _, tmp) = setup();
    hub.unlisted_size(SHARD1);
    hub.linked_size(SHARD1, Some(1 << 60));

    let err = pull(REPO, "main", &options(&hub, tmp.path()), &mut NoProgress).unwrap_err();

    assert!(matches!(err, HubError::DiskFull { .. }), "{err}");
    assert_eq!(hub.downloads(), 0);
}

#[test]
fn a_file_with_no_size_anywhere_fails_before_downloading() {
    let (hub, _, tmp) = setup();
    hub.unlisted_size(SHARD2);
    hub.linked_size(SHARD2, None);

    let err = pull(REPO, "main", &options(&hub, tmp.path()), &mut NoProgress).unwrap_err();

    assert!(matches!(err, HubError::Protocol { .. }), "{err}");
    assert!(err.to_string().contains(SHARD2), "{err}");
    assert!(err.to_string().contains("no size"), "{err}");
    assert_eq!(hub.downloads(), 0);
}

#[test]
fn a_tampered_small_file_fails_its_git_blob_hash_and_leaves_nothing() {
    let (hub, spec, tmp) = setup();
    hub.corrupt("tokenizer.json");

    let err = pull(REPO, "main", &options(&hub, tmp.path()), &mut NoProgress).unwrap_err();

    assert!(matches!(err, HubError::HashMismatch { .. }), "{err}");
    assert_eq!(err.exit_code(), 14);
    let text = err.to_string();
    assert!(text.contains("tokenizer.json"), "{text}");
    assert!(text.contains("git blob SHA-1"), "{text}");
    let etag = spec_file(&spec, "tokenizer.json").etag();
    assert!(text.contains(&etag), "{text}");
    let blobs = names(&blobs_dir(tmp.path()));
    assert!(!blobs.iter().any(|b| b.starts_with(&etag)), "{blobs:?}");
    let entry = tmp
        .path()
        .join("models--test-org--tiny-model/snapshots")
        .join(COMMIT)
        .join("tokenizer.json");
    assert!(fs::symlink_metadata(entry).is_err());
}

#[test]
fn a_file_name_with_control_characters_is_refused() {
    let hub = TestHub::start();
    let mut spec = tiny_repo();
    let bad = "\u{1b}]0;pwned\u{7}\u{1b}[2Jmodel.safetensors";
    spec.files.push(FileSpec {
        name: bad.to_owned(),
        content: bytes(100, 9),
        lfs: true,
    });
    hub.add_repo(spec);
    let tmp = tempfile::tempdir().unwrap();

    let err = pull(REPO, "main", &options(&hub, tmp.path()), &mut NoProgress).unwrap_err();

    assert!(matches!(err, HubError::UnsafePath { .. }), "{err}");
    let text = err.to_string();
    assert!(!text.chars().any(char::is_control), "{text:?}");
    assert!(text.contains("control character"), "{text}");
    assert_eq!(hub.downloads(), 0);
}
