//! From nothing to an answer, as a new user goes: `o1 pull` → `o1 convert`
//! → `o1 run` against a local hub (HF_ENDPOINT), from an empty cache, and
//! the one-command first run (`o1 run --yes`). The synthetic model runs
//! everywhere; the real 0.5B checkpoint runs through `just test`.

mod fixture;
#[path = "../hub/tests/common/mod.rs"]
mod hub;

use std::path::Path;
use std::process::{Command, Output};

use hub::{FileSpec, RepoSpec, TestHub};
use o1_convert::synthetic::{self, Spec};

const REPO: &str = "Laurie/Qwen2.5-1.5B-O1";

/// Serves the files of a checkpoint folder as the default repo, on `main`.
fn serve(checkpoint: &Path) -> TestHub {
    serve_revisions(checkpoint, &["main"])
}

/// Serves the files of a checkpoint folder as the default repo, under
/// these branch names.
fn serve_revisions(checkpoint: &Path, revisions: &[&str]) -> TestHub {
    let hub = TestHub::start();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(checkpoint).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let lfs = name.ends_with(".safetensors");
        files.push(FileSpec {
            name,
            content: std::fs::read(&path).unwrap(),
            lfs,
        });
    }
    hub.add_repo(RepoSpec {
        id: REPO.into(),
        commit: "0123456789abcdef0123456789abcdef01234567".into(),
        revisions: revisions.iter().map(|r| r.to_string()).collect(),
        files,
        token: None,
    });
    hub
}

/// A hub serving a tiny synthetic checkpoint as the default repo under
/// these branch names, and a user with an empty home who talks to it.
fn hub_and_user(revisions: &[&str]) -> (TestHub, User) {
    let dir = tempfile::tempdir().unwrap();
    synthetic::write(&dir.path().join("ckpt"), &Spec::tiny()).unwrap();
    let hub = serve_revisions(&dir.path().join("ckpt"), revisions);
    let user = User {
        home: tempfile::tempdir().unwrap(),
        endpoint: hub.endpoint.clone(),
    };
    (hub, user)
}

struct User {
    home: tempfile::TempDir,
    endpoint: String,
}

impl User {
    fn o1(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let h = self.home.path();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_o1"));
        cmd.args(args)
            .current_dir(h)
            .env("HF_ENDPOINT", &self.endpoint)
            .env("HF_HUB_CACHE", h.join("hf"))
            .env("O1_MODELS_DIR", h.join("models"))
            .env("O1_CONFIG", h.join("config.toml"))
            .env("O1_LOG_FILE", h.join("o1.log"))
            .env("XDG_DATA_HOME", h.join("data"))
            .env_remove("HF_TOKEN")
            .env_remove("HF_HUB_OFFLINE")
            .env_remove("O1_MODEL");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn check(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({:?}): {}",
        out.status.code(),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn pull_convert_run(checkpoint: &Path, ty: &str) {
    let hub = serve(checkpoint);
    let user = User {
        home: tempfile::tempdir().unwrap(),
        endpoint: hub.endpoint.clone(),
    };

    let pulled = check(&user.o1(&["pull"], &[]), "o1 pull");
    assert!(
        pulled.contains(&format!("pulled {REPO}@0123456789ab")),
        "{pulled}"
    );
    let converted = check(
        &user.o1(&["convert", REPO, "-t", ty, "--quiet"], &[]),
        "o1 convert",
    );
    let stored = format!("Laurie--Qwen2.5-1.5B-O1-{ty}");
    assert!(converted.contains(&format!("{stored}.gguf")), "{converted}");
    assert!(converted.contains("verified"), "{converted}");

    // No model argument: the store's default model for this type.
    let answer = check(
        &user.o1(
            &[
                "run",
                "What is 2+2?",
                "--json",
                "--max-reasoning",
                "8",
                "--max-answer",
                "8",
            ],
            &[("O1_TYPE", ty)],
        ),
        "o1 run",
    );
    let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert!(
        v["stats"]["answer"]["generated_tokens"].as_u64().unwrap() > 0,
        "{v}"
    );
    let ls = check(&user.o1(&["ls"], &[]), "o1 ls");
    assert!(
        ls.contains(&stored) && ls.contains(&format!("{REPO}@0123456789abcdef")),
        "{ls}"
    );

    // Offline, everything is already here: the same flow needs no network.
    drop(hub);
    let offline = user.o1(
        &["convert", REPO, "-t", ty, "--quiet", "--force"],
        &[("HF_HUB_OFFLINE", "1")],
    );
    check(&offline, "offline convert");
}

#[test]
fn pull_convert_run_from_an_empty_cache() {
    let dir = tempfile::tempdir().unwrap();
    synthetic::write(&dir.path().join("ckpt"), &Spec::tiny()).unwrap();
    pull_convert_run(&dir.path().join("ckpt"), "q8_0");
}

#[test]
fn first_run_downloads_and_converts_with_yes() {
    let (hub, user) = hub_and_user(&["main"]);
    let q = ["run", "Hello", "--max-reasoning", "4", "--max-answer", "4"];

    // Not a terminal and no --yes: say what to do, change nothing.
    let refused = user.o1(&q, &[("O1_TYPE", "q8_0")]);
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused.stderr));
    assert!(
        text(&refused.stderr).contains("pass --yes"),
        "{}",
        text(&refused.stderr)
    );

    // Offline with nothing cached: a clear message and its own exit code.
    let offline = user.o1(
        &[&q[..], &["--yes"]].concat(),
        &[("O1_TYPE", "q8_0"), ("HF_HUB_OFFLINE", "1")],
    );
    assert_eq!(offline.status.code(), Some(17), "{}", text(&offline.stderr));
    assert!(
        text(&offline.stderr).contains("is not fully in the cache"),
        "{}",
        text(&offline.stderr)
    );

    // The first run's report goes to stderr; stdout holds the answer only,
    // as it does on every later run (`answer=$(o1 run --yes …)`).
    let first = user.o1(
        &[&q[..], &["--yes", "--hide-reasoning"]].concat(),
        &[("O1_TYPE", "q8_0")],
    );
    let answer = check(&first, "o1 run --yes");
    let log = text(&first.stderr);
    assert!(
        log.contains("wrote ") && log.contains("Laurie--Qwen2.5-1.5B-O1-q8_0.gguf"),
        "{log}"
    );
    assert!(log.contains("verified: "), "{log}");
    let again = user.o1(
        &[&q[..], &["--hide-reasoning"]].concat(),
        &[("O1_TYPE", "q8_0")],
    );
    assert_eq!(
        answer,
        check(&again, "second run"),
        "the same answer, nothing else"
    );
    assert!(
        !text(&again.stderr).contains("wrote "),
        "the second run starts from the store"
    );
    assert_eq!(hub.downloads(), 5, "each file was downloaded once");

    // The model is named for its repo, not for the snapshot's commit folder.
    let info = check(
        &user.o1(&["info", "Laurie--Qwen2.5-1.5B-O1-q8_0"], &[]),
        "o1 info",
    );
    assert!(
        info.lines()
            .any(|l| l.starts_with("name ") && l.ends_with(" Qwen2.5-1.5B-O1")),
        "{info}"
    );
    assert!(info.contains(&format!("{REPO}@0123456789abcdef")), "{info}");
}

#[test]
fn without_a_type_the_first_run_picks_the_one_that_fits_and_later_runs_find_it() {
    let (_hub, user) = hub_and_user(&["main"]);
    let q = [
        "run",
        "Hello",
        "--max-reasoning",
        "4",
        "--max-answer",
        "4",
        "--hide-reasoning",
    ];

    // Not even the smallest type fits 1 MiB: said, and nothing stored.
    let cramped = user.o1(&[&q[..], &["--yes", "--max-memory", "1M"]].concat(), &[]);
    assert!(!cramped.status.success());
    assert!(
        text(&cramped.stderr).contains("no type fits"),
        "{}",
        text(&cramped.stderr)
    );

    // The tiny model fits at every type: the least drift measured, q8_0.
    let first = user.o1(&[&q[..], &["--yes"]].concat(), &[]);
    let answer = check(&first, "first run");
    let log = text(&first.stderr);
    assert!(
        log.contains("type auto: q8_0, the least drift measured"),
        "{log}"
    );
    assert!(log.contains("Laurie--Qwen2.5-1.5B-O1-q8_0.gguf"), "{log}");

    // Later runs without a type use it, with nothing to convert.
    let again = user.o1(&q, &[]);
    assert_eq!(answer, check(&again, "second run"));
    assert!(
        !text(&again.stderr).contains("wrote "),
        "{}",
        text(&again.stderr)
    );
}

#[test]
fn first_run_with_json_prints_one_document() {
    let (_hub, user) = hub_and_user(&["main"]);
    let out = user.o1(
        &[
            "run",
            "Hi",
            "--yes",
            "--json",
            "--max-reasoning",
            "3",
            "--max-answer",
            "3",
        ],
        &[("O1_TYPE", "q8_0")],
    );
    let stdout = check(&out, "o1 run --yes --json");
    let v: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {stdout}"));
    assert!(v["stats"]["answer"].is_object(), "{v}");
    assert!(
        text(&out.stderr).contains("wrote "),
        "{}",
        text(&out.stderr)
    );
}

/// `o1 config` and the first run read `revision` (and every other
/// setting) through the same resolver: what one reports, the other pulls.
#[test]
fn first_run_pulls_the_revision_o1_config_reports() {
    let (_hub, user) = hub_and_user(&["main", "v1"]);
    let q = [
        "run",
        "Hi",
        "--yes",
        "--max-reasoning",
        "2",
        "--max-answer",
        "2",
    ];
    let env = [("O1_TYPE", "q8_0"), ("O1_REVISION", "v1")];

    let config = check(&user.o1(&["config"], &env), "o1 config");
    assert!(
        config.lines().any(|l| l.starts_with("revision ")
            && l.contains(" v1 ")
            && l.ends_with("environment O1_REVISION")),
        "{config}"
    );
    check(&user.o1(&q, &env), "first run on revision v1");
    let refs = user
        .home
        .path()
        .join("hf/models--Laurie--Qwen2.5-1.5B-O1/refs");
    let mut pulled: Vec<String> = std::fs::read_dir(&refs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pulled.sort();
    assert_eq!(
        pulled,
        ["v1"],
        "the first run pulled what o1 config reports"
    );

    // A revision the hub does not have is an error, not a silent `main`.
    std::fs::remove_dir_all(user.home.path().join("models")).unwrap();
    let missing = user.o1(&q, &[("O1_TYPE", "q8_0"), ("O1_REVISION", "v2")]);
    assert_eq!(missing.status.code(), Some(10), "{}", text(&missing.stderr));
}

#[test]
fn hub_errors_have_their_exit_codes() {
    let hub = TestHub::start();
    let user = User {
        home: tempfile::tempdir().unwrap(),
        endpoint: hub.endpoint.clone(),
    };
    let missing = user.o1(&["pull", "someone/nothing-here"], &[]);
    assert_eq!(missing.status.code(), Some(10), "{}", text(&missing.stderr));
    let not_pulled = user.o1(&["convert", "someone/nothing-here"], &[]);
    assert!(
        text(&not_pulled.stderr)
            .contains("is not pulled yet: run `o1 pull someone/nothing-here` first"),
        "{}",
        text(&not_pulled.stderr)
    );
}

#[test]
#[ignore = "needs the real 0.5B checkpoint: run through `just test`"]
fn real_model_pull_convert_run_from_an_empty_cache() {
    pull_convert_run(&fixture::checkpoint_0_5b(), "q4_k_m");
}
