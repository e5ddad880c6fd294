//! `o1 tui` end to end: the real binary in a real terminal (tmux), on a
//! converted synthetic model: ask, wait for both phases, check the panes and
//! the meter, quit, and check the terminal is back to normal; the same when
//! a signal or a panic in the engine ends it.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use o1_convert::synthetic::{self, Spec};

mod fixture;

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux")
        .args(args)
        .output()
        .expect("tmux is installed (scripts/setup)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_for(session: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let screen = tmux(&["capture-pane", "-p", "-t", session]);
        if pred(&screen) {
            return screen;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; screen:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn meter_used(screen: &str) -> usize {
    let line = screen
        .lines()
        .find(|l| l.contains(" ctx "))
        .expect("meter line");
    let before = line.split(" / ").next().unwrap();
    before
        .split_whitespace()
        .last()
        .unwrap()
        .replace(',', "")
        .parse()
        .unwrap()
}

#[test]
#[ignore = "needs tmux: `just test` runs it"]
fn chat_in_a_real_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let guard = start_tui(dir.path(), "e2e", "");
    let session = guard.0.clone();
    let stderr = dir.path().join("stderr");

    tmux(&["send-keys", "-t", &session, "-l", "Hello model"]);
    tmux(&["send-keys", "-t", &session, "Enter"]);
    let screen = wait_for(&session, "the answer", |s| {
        s.contains("· idle ·") && s.contains("last answer")
    });
    assert!(screen.contains("╭ Reasoning"), "{screen}");
    assert!(screen.contains("╭ Answer"), "{screen}");
    assert!(
        screen.contains("── turn 1 · Hello model"),
        "reasoning pane: {screen}"
    );
    assert!(screen.contains("You: Hello model"), "answer pane: {screen}");
    assert!(
        screen.contains("[reasoning cut: token limit]")
            || screen.contains("[answer cut: token limit]"),
        "{screen}"
    );
    assert!(
        meter_used(&screen) > 10,
        "the meter shows the context in use: {screen}"
    );

    tmux(&["send-keys", "-t", &session, "C-q"]);
    let after = wait_for(&session, "o1 to exit", |s| s.contains("EXIT="));
    assert!(after.contains("EXIT=0"), "{after}");
    assert!(
        !after.contains("╭ Answer"),
        "the alternate screen was left: {after}"
    );
    let err = std::fs::read_to_string(&stderr).unwrap();
    assert!(err.contains("conversation saved to"), "{err}");
    assert!(saved_sessions(&dir.path().join("data/o1/sessions")) == 1);
    drop(guard);
}

fn saved_sessions(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

struct KillOnDrop(String);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .output();
    }
}

/// A tiny model converted into `dir`.
fn tiny_model(dir: &Path) -> std::path::PathBuf {
    let ckpt = dir.join("ckpt");
    synthetic::write(&ckpt, &Spec::tiny()).unwrap();
    let model = dir.join("tiny-q8_0.gguf");
    let opts = o1_convert::ConvertOptions::new(&ckpt, &model, o1_convert::OutputType::Q8_0);
    o1_convert::convert(&opts, &mut o1_convert::NoProgress, &Default::default()).unwrap();
    model
}

/// Starts `o1 tui` on a tiny model in a tmux session; after it exits the
/// pane shows its exit status and whether the terminal is in cooked mode
/// (`STTY=icanon,echo,`) or was left raw.
fn start_tui(dir: &Path, name: &str, env: &str) -> KillOnDrop {
    let model = tiny_model(dir);
    start_tui_on(dir, name, env, &model, "--max-reasoning 8 --max-answer 8")
}

/// [`start_tui`] on `model` with `args`.
fn start_tui_on(dir: &Path, name: &str, env: &str, model: &Path, args: &str) -> KillOnDrop {
    let session = format!("o1-{name}-{}", std::process::id());
    let script = format!(
        "{env} XDG_DATA_HOME={data} O1_LOG_FILE={log} O1_CONFIG={config} {bin} tui {model} {args} 2>{stderr}; \
         echo EXIT=$?; echo STTY=$(stty -a | tr ' ;' '\\n\\n' | grep -xE -- '-?(icanon|echo)' | tr '\\n' ,); sleep 30",
        config = dir.join("config.toml").display(),
        data = dir.join("data").display(),
        log = dir.join("o1.log").display(),
        bin = env!("CARGO_BIN_EXE_o1"),
        model = model.display(),
        stderr = dir.join("stderr").display(),
    );
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "100",
        "-y",
        "30",
        &script,
    ]);
    let guard = KillOnDrop(session.clone());
    wait_for(&session, "the model to load", |s| s.contains("· idle"));
    guard
}

fn ask(session: &str, question: &str) {
    tmux(&["send-keys", "-t", session, "-l", question]);
    tmux(&["send-keys", "-t", session, "Enter"]);
}

/// The pid of the `o1` process running in the tmux session's pane.
fn o1_pid(session: &str) -> u32 {
    let shell: u32 = tmux(&["list-panes", "-t", session, "-F", "#{pane_pid}"])
        .trim()
        .parse()
        .unwrap();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // pid (comm) state ppid ...
            let after = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
            stat.contains("(o1)")
                && after.split_whitespace().nth(1) == Some(shell.to_string().as_str())
        })
        .expect("o1 runs in the pane")
}

/// After `o1 tui` ended: the pane is back on the main screen, in cooked
/// mode, and the conversation was saved. Returns o1's exit status and stderr.
fn after_exit(session: &str, dir: &Path) -> (String, String) {
    let after = wait_for(session, "o1 to exit", |s| s.contains("STTY="));
    assert!(
        after.contains("STTY=icanon,echo,"),
        "the terminal was left in raw mode: {after}"
    );
    assert!(
        !after.contains("╭ Answer"),
        "the alternate screen was left: {after}"
    );
    let status = after
        .lines()
        .find_map(|l| l.strip_prefix("EXIT="))
        .unwrap()
        .trim()
        .to_string();
    let err = std::fs::read_to_string(dir.join("stderr")).unwrap();
    assert!(err.contains("conversation saved to"), "{err}");
    assert_eq!(saved_sessions(&dir.join("data/o1/sessions")), 1);
    (status, err)
}

#[test]
#[ignore = "needs tmux: `just test` runs it"]
fn sigterm_and_sighup_restore_the_terminal_and_save_the_conversation() {
    for (signal, status) in [("TERM", "143"), ("HUP", "129")] {
        let dir = tempfile::tempdir().unwrap();
        let guard = start_tui(dir.path(), &format!("sig{signal}"), "");
        ask(&guard.0, "Hello model");
        wait_for(&guard.0, "the answer", |s| {
            s.contains("· idle ·") && s.contains("last answer")
        });
        let pid = o1_pid(&guard.0);
        Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .unwrap();
        let (exit, err) = after_exit(&guard.0, dir.path());
        assert_eq!(exit, status, "SIG{signal}: {err}");
        assert!(err.contains(&format!("terminated by SIG{signal}")), "{err}");
    }
}

#[test]
#[ignore = "needs tmux: `just test` runs it"]
fn an_engine_panic_restores_the_terminal_saves_and_exits_with_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let guard = start_tui(dir.path(), "panic", "O1_TEST_ENGINE_PANIC=2");
    ask(&guard.0, "Hello model");
    wait_for(&guard.0, "the answer", |s| {
        s.contains("· idle ·") && s.contains("last answer")
    });
    ask(&guard.0, "Again");
    let (exit, err) = after_exit(&guard.0, dir.path());
    assert_eq!(exit, "1", "{err}");
    assert!(
        err.contains("thread 'o1-engine' panicked at") && err.contains("divide by zero"),
        "{err}"
    );
    assert_eq!(
        err.matches("panicked").count(),
        1,
        "the message once, after the terminal is back: {err}"
    );
}

#[test]
#[ignore = "needs tmux: `just test` runs it"]
fn a_panic_of_the_ui_restores_the_terminal_saves_and_exits_with_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let guard = start_tui(dir.path(), "uipanic", "O1_TEST_UI_PANIC=1");
    ask(&guard.0, "Hello model");
    wait_for(&guard.0, "the answer", |s| {
        s.contains("· idle ·") && s.contains("last answer")
    });
    tmux(&["send-keys", "-t", &guard.0, "F12"]);
    let (exit, err) = after_exit(&guard.0, dir.path());
    assert_eq!(exit, "1", "{err}");
    assert!(
        err.contains("thread 'main' panicked at") && err.contains("injected UI panic"),
        "{err}"
    );
    assert_eq!(err.matches("panicked").count(), 1, "{err}");
}

#[test]
#[ignore = "needs tmux: `just test` runs it"]
fn a_crash_in_native_code_restores_the_terminal_saves_and_exits_with_128_plus_the_signal() {
    let dir = tempfile::tempdir().unwrap();
    let guard = start_tui(dir.path(), "fault", "O1_INJECT_FAULT=SIGILL@decode");
    ask(&guard.0, "Hello model");
    let (exit, err) = after_exit(&guard.0, dir.path());
    assert_eq!(exit, "132", "{err}");
    let crashed = err
        .find("o1: crashed: illegal instruction (SIGILL) in native code")
        .unwrap_or_else(|| panic!("{err}"));
    // What happened is said once the terminal is back and the conversation saved.
    assert!(
        err.find("conversation saved to").unwrap() < crashed,
        "{err}"
    );
    assert!(err.contains("o1: CPU path: "), "{err}");
    assert!(err.contains("to force a CPU path: O1_CPU_PATH="), "{err}");
}

#[test]
#[ignore = "needs tmux: `just test` runs it"]
fn the_tui_chats_through_a_local_o1_serve_that_has_its_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let served = dir.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    // Slow tokens and a long reasoning budget: the keys come mid-reasoning.
    let server = fixture::Served::start(
        &model,
        &served,
        &["--ctx", "2048"],
        &[("O1_TEST_TOKEN_DELAY_MS", "40")],
    );
    let env = format!("O1_PORT={}", server.port);
    let guard = start_tui_on(
        dir.path(),
        "attached",
        &env,
        &model,
        "--max-reasoning 400 --max-answer 6",
    );
    let session = guard.0.clone();
    wait_for(&session, "the server in the status line", |s| {
        s.contains("on o1 serve")
    });

    // Ctrl+X: the reasoning stops, the server answers after it.
    ask(&session, "Hello model");
    wait_for(&session, "the reasoning", |s| s.contains("reasoning…"));
    std::thread::sleep(Duration::from_millis(600));
    tmux(&["send-keys", "-t", &session, "C-x"]);
    let screen = wait_for(&session, "the answer", |s| {
        s.contains("· idle ·") && s.contains("last answer")
    });
    assert!(screen.contains("[reasoning cut: cut short]"), "{screen}");
    assert!(
        screen.contains(" / 2,048 tokens"),
        "the server's context: {screen}"
    );
    let used = meter_used(&screen);
    assert!(
        used > 10 && used < 200,
        "the meter shows the server's count: {screen}"
    );

    // Esc: the turn stops, the reasoning kept and marked.
    ask(&session, "Again");
    wait_for(&session, "the reasoning", |s| s.contains("reasoning…"));
    std::thread::sleep(Duration::from_millis(600));
    tmux(&["send-keys", "-t", &session, "Escape"]);
    let screen = wait_for(&session, "the stop", |s| {
        s.contains("· idle ·") && s.contains("[reasoning cut: stopped]")
    });
    assert!(meter_used(&screen) >= used, "{screen}");

    tmux(&["send-keys", "-t", &session, "C-q"]);
    let (exit, err) = after_exit(&session, dir.path());
    assert_eq!(exit, "0", "{err}");
    drop(server);
}
