//! Chatting on a server (`o1 tui --server`, and `o1 tui`/`o1 run` attached
//! to a local `o1 serve`): the turns o1 gets over o1 serve are the turns it
//! runs here; cancel and answer-now work over it; `o1 run` attaches to a
//! local server with the same model and loads its own with `--local`; and
//! llama-server on the 0.5B, which only applies o1's template, is driven
//! phase by phase.

use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use o1::chat::{Phase, Role};
use o1::engine::{follow_turn, Engine, EngineConfig, Event, Limits, Stop};
use o1::remote::{self, Kind, RemoteEngine};

mod fixture;

fn limits(reasoning: usize, answer: usize) -> Limits {
    Limits { reasoning, answer }
}

fn config(model: &Path, limits: Limits) -> EngineConfig {
    let mut c = EngineConfig::new(model);
    c.limits = limits;
    c.n_ctx = Some(2048);
    c
}

/// What a turn showed: each phase's text and why it stopped, and the
/// context's use at its end.
#[derive(Debug, Default, PartialEq)]
struct Shown {
    reasoning: String,
    reasoning_stop: Option<Stop>,
    answer: String,
    answer_stop: Option<Stop>,
    used: usize,
}

/// Runs a turn through `turn`, calling `during` at the first reasoning text.
fn shown(turn: impl FnOnce(mpsc::Sender<Event>), mut during: impl FnMut()) -> Shown {
    let (tx, rx) = mpsc::channel();
    turn(tx);
    let mut s = Shown::default();
    let mut streamed = (String::new(), String::new());
    let mut first = true;
    let usage = follow_turn(rx, |event| match event {
        Event::Text { phase, text } => {
            if first && phase == Phase::Reasoning {
                first = false;
                during();
            }
            match phase {
                Phase::Reasoning => streamed.0.push_str(&text),
                Phase::Answer => streamed.1.push_str(&text),
            }
        }
        Event::PhaseFinished {
            phase, text, stop, ..
        } => match phase {
            Phase::Reasoning => (s.reasoning, s.reasoning_stop) = (text, Some(stop)),
            Phase::Answer => (s.answer, s.answer_stop) = (text, Some(stop)),
        },
        _ => {}
    })
    .expect("the turn ends");
    // What streamed is what each phase ends with.
    assert_eq!(
        (streamed.0.as_str(), streamed.1.as_str()),
        (s.reasoning.as_str(), s.answer.as_str())
    );
    s.used = usage.used;
    s
}

#[test]
fn turns_over_o1_serve_are_the_turns_o1_runs_here() {
    let tiny = fixture::tiny();
    let dir = tempfile::tempdir().unwrap();
    let l = limits(6, 5);
    let local = Engine::start(config(&tiny.model, l), |_| true).unwrap();
    let server = fixture::Served::start(&tiny.model, dir.path(), &["--ctx", "2048"], &[]);
    let info = remote::probe(&server.base, None, Duration::from_secs(5)).unwrap();
    assert!(matches!(info.kind, Kind::O1(_)), "{info:?}");
    assert_eq!(info.n_ctx, Some(2048));
    assert_eq!(info.digest, o1::serve::digest_of_file(&tiny.model));
    let remote = RemoteEngine::new(info, None, &config(&tiny.model, l)).unwrap();

    // Greedy on both sides: the same texts, turn after turn (the second
    // turn's prompt carries the first's reasoning, sent back to the server).
    for q in ["Hello there", "And what comes next?"] {
        let here = shown(|tx| local.turn(q.to_string(), tx).unwrap(), || {});
        let there = shown(|tx| remote.turn(q.into(), tx).unwrap(), || {});
        assert_eq!(
            (
                &here.reasoning,
                here.reasoning_stop,
                &here.answer,
                here.answer_stop
            ),
            (
                &there.reasoning,
                there.reasoning_stop,
                &there.answer,
                there.answer_stop
            ),
            "turn {q:?}"
        );
        // The server counts what its context holds: the same conversation,
        // give or take the end-of-turn markers each side counts.
        assert!(
            there.used.abs_diff(here.used) <= 3,
            "{} vs {}",
            there.used,
            here.used
        );
    }
    assert_eq!(
        remote.history().iter().map(|m| m.role).collect::<Vec<_>>(),
        [Role::User, Role::Reasoning, Role::Assistant].repeat(2)
    );
    remote.reset();
    assert!(remote.history().is_empty());
}

#[test]
fn cancel_and_answer_now_work_over_o1_serve() {
    let tiny = fixture::tiny();
    let dir = tempfile::tempdir().unwrap();
    // Slow tokens and a long reasoning budget: the keys come mid-reasoning.
    let l = limits(400, 5);
    let server = fixture::Served::start(
        &tiny.model,
        dir.path(),
        &["--ctx", "2048"],
        &[("O1_TEST_TOKEN_DELAY_MS", "30")],
    );
    let info = remote::probe(&server.base, None, Duration::from_secs(5)).unwrap();
    let remote = RemoteEngine::new(info, None, &config(&tiny.model, l)).unwrap();

    let cut = shown(
        |tx| remote.turn("Think it over".into(), tx).unwrap(),
        || remote.answer_now(),
    );
    assert_eq!(cut.reasoning_stop, Some(Stop::AnswerNow), "{cut:?}");
    assert!(!cut.reasoning.is_empty());
    assert!(
        matches!(cut.answer_stop, Some(Stop::EndOfTurn | Stop::Limit)),
        "{cut:?}"
    );
    // The answer came after that reasoning: the server's context holds the
    // question, the cut reasoning and the answer, far less than 400 tokens.
    assert!(cut.used > 0 && cut.used < 200, "{cut:?}");

    let started = std::time::Instant::now();
    let stopped = shown(
        |tx| remote.turn("Think again".into(), tx).unwrap(),
        || remote.cancel(),
    );
    assert_eq!(stopped.reasoning_stop, Some(Stop::Cancelled), "{stopped:?}");
    assert_eq!(stopped.answer_stop, None);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "cancelled at once"
    );
    let roles: Vec<Role> = remote.history().iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [
            Role::User,
            Role::Reasoning,
            Role::Assistant,
            Role::User,
            Role::Reasoning
        ]
    );
    assert!(remote.history()[4].cut);

    // The server left the cancelled request: the next one runs at once.
    let next = shown(
        |tx| remote.turn("Once more".into(), tx).unwrap(),
        || remote.answer_now(),
    );
    assert_eq!(next.reasoning_stop, Some(Stop::AnswerNow));
}

/// `o1 run MODEL Hi` (4 tokens a phase) where a local o1 serve listens on
/// `server`'s port, with a config of its own; its stdout and stderr.
fn o1_run_beside(
    server: &fixture::Served,
    model: &Path,
    dir: &Path,
    extra: &[&str],
) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_o1"))
        .args(["run", model.to_str().unwrap(), "Hi"])
        .args(["--max-reasoning", "4", "--max-answer", "4"])
        .args(extra)
        .env("O1_PORT", server.port.to_string())
        .env("O1_CONFIG", dir.join("client.toml"))
        .env("O1_LOG_FILE", dir.join("run.log"))
        .env_remove("O1_SERVER")
        .env_remove("O1_SERVER_API_KEY")
        .env_remove("O1_API_KEY")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

#[test]
fn o1_run_uses_a_local_server_with_its_model_and_loads_its_own_with_local() {
    let tiny = fixture::tiny();
    let dir = tempfile::tempdir().unwrap();
    let short = ["--max-reasoning", "4", "--max-answer", "4"];
    let server = fixture::Served::start(&tiny.model, dir.path(), &short, &[]);
    let (attached_out, attached_err) = o1_run_beside(&server, &tiny.model, dir.path(), &[]);
    assert!(
        attached_err.contains("chatting through o1 serve"),
        "{attached_err}"
    );
    let (local_out, local_err) = o1_run_beside(&server, &tiny.model, dir.path(), &["--local"]);
    assert!(!local_err.contains("chatting through"), "{local_err}");
    assert!(
        local_err.contains("has this model loaded") && local_err.contains("MiB more"),
        "a second copy is named with its memory: {local_err}"
    );
    assert_eq!(attached_out, local_out, "the same greedy answer either way");

    // Another model on that port is not used.
    let other = dir.path().join("other.gguf");
    std::fs::copy(&tiny.model, &other).unwrap();
    let (_, other_err) = o1_run_beside(&server, &other, dir.path(), &[]);
    assert!(!other_err.contains("chatting through"), "{other_err}");
}

#[test]
fn a_local_server_that_wants_a_key_is_named_before_a_second_copy_loads() {
    let tiny = fixture::tiny();
    let dir = tempfile::tempdir().unwrap();
    let short = ["--max-reasoning", "4", "--max-answer", "4"];
    let server =
        fixture::Served::start(&tiny.model, dir.path(), &short, &[("O1_API_KEY", "s3cret")]);
    let (_, without) = o1_run_beside(&server, &tiny.model, dir.path(), &[]);
    assert!(!without.contains("chatting through"), "{without}");
    assert!(
        without.contains(&format!("the server on port {} did not say", server.port))
            && without.contains("401")
            && without.contains("--server-api-key")
            && without.contains("MiB more"),
        "the refusal, the way in and the second copy's memory are named: {without}"
    );
    let (_, with) = o1_run_beside(
        &server,
        &tiny.model,
        dir.path(),
        &["--server-api-key", "s3cret"],
    );
    assert!(with.contains("chatting through o1 serve"), "{with}");
}

#[test]
fn a_server_that_is_not_there_is_named_in_the_error() {
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let e = remote::probe(&format!("http://{free}"), None, Duration::from_secs(2)).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains(&format!(
            "no OpenAI-compatible server answers at http://{free}"
        )),
        "{text}"
    );
    assert!(text.to_lowercase().contains("refused"), "{text}");
}

/// llama-server (scripts/build-llama-tools) on the 0.5B q4_k_m: its chat
/// API applies the file's template, which knows the `<|reasoning|>` role,
/// so o1 runs each phase as a request of its own. Runs when
/// `O1_LLAMA_SERVER` names the binary (`just test` sets it when built).
#[test]
#[ignore = "needs the real 0.5B: `just test` runs it"]
fn llama_server_on_the_0_5b_is_driven_phase_by_phase() {
    let Some(binary) = std::env::var_os("O1_LLAMA_SERVER").filter(|b| !b.is_empty()) else {
        eprintln!(
            "skipped: O1_LLAMA_SERVER is not set (scripts/build-llama-tools builds llama-server)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("o1-0.5b-q4_k_m.gguf");
    let status = Command::new(env!("CARGO_BIN_EXE_o1"))
        .args(["convert", "--quiet", "--no-calibrate", "-t", "q4_k_m", "-o"])
        .arg(&model)
        .arg(fixture::checkpoint_0_5b())
        .status()
        .unwrap();
    assert!(status.success());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new(binary)
        .args([
            "-m",
            model.to_str().unwrap(),
            "--port",
            &port.to_string(),
            "-c",
            "4096",
            "-t",
            "2",
        ])
        // cargo points the library path at o1's own llama.cpp build, which
        // is not the one llama-server was built with.
        .env_remove("LD_LIBRARY_PATH")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _kill = scopeguard(move || {
        let _ = server.kill();
        let _ = server.wait();
    });
    let base = format!("http://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let info = loop {
        match remote::probe(&base, None, Duration::from_secs(2)) {
            Ok(info) => break info,
            Err(e) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "llama-server never answered: {e}"
                );
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    };
    assert_eq!(info.kind, Kind::Template, "{info:?}");
    assert_eq!(info.n_ctx, Some(4096));
    let l = limits(48, 32);
    let remote = RemoteEngine::new(info, None, &config(&model, l)).unwrap();
    let local = Engine::start(config(&model, l), |_| true).unwrap();

    let q = "What is 12 + 30? Answer briefly.";
    let there = shown(|tx| remote.turn(q.into(), tx).unwrap(), || {});
    let here = shown(|tx| local.turn(q.to_string(), tx).unwrap(), || {});
    assert!(!there.answer.trim().is_empty(), "{there:?}");
    // Greedy both: llama.cpp's server writes what o1 writes here.
    assert_eq!(
        (&there.reasoning, &there.answer),
        (&here.reasoning, &here.answer)
    );
    assert!(
        there.used.abs_diff(here.used) <= 3,
        "{} vs {}",
        there.used,
        here.used
    );

    // Answer-now: the reasoning request ends, the answer comes after it.
    let cut = shown(
        |tx| {
            remote
                .turn("Explain how a bicycle works, in detail.".into(), tx)
                .unwrap()
        },
        || remote.answer_now(),
    );
    assert_eq!(cut.reasoning_stop, Some(Stop::AnswerNow), "{cut:?}");
    assert!(cut.answer_stop.is_some(), "{cut:?}");
    let stopped = shown(
        |tx| remote.turn("And a car?".into(), tx).unwrap(),
        || remote.cancel(),
    );
    assert_eq!(
        (stopped.reasoning_stop, stopped.answer_stop),
        (Some(Stop::Cancelled), None)
    );
    assert_eq!(
        remote.history().iter().map(|m| m.role).collect::<Vec<_>>(),
        [
            Role::User,
            Role::Reasoning,
            Role::Assistant,
            Role::User,
            Role::Reasoning,
            Role::Assistant,
            Role::User,
            Role::Reasoning,
        ]
    );
}

/// Runs `f` when dropped.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}
