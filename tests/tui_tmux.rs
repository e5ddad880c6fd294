//! `o1 tui` end to end: the real binary in a real terminal (tmux), on a
//! converted synthetic model: ask, wait for both phases, check the panes and
//! the meter, quit, and check the terminal is back to normal.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use o1_convert::synthetic::{self, Spec};

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
    let ckpt = dir.path().join("ckpt");
    synthetic::write(&ckpt, &Spec::tiny()).unwrap();
    let model = dir.path().join("tiny-q8_0.gguf");
    let opts = o1_convert::ConvertOptions::new(&ckpt, &model, o1_convert::OutputType::Q8_0);
    o1_convert::convert(&opts, &mut o1_convert::NoProgress, &Default::default()).unwrap();

    let session = format!("o1-e2e-{}", std::process::id());
    let stderr = dir.path().join("stderr");
    let script = format!(
        "XDG_DATA_HOME={data} O1_LOG_FILE={log} {bin} tui {model} --max-reasoning 8 --max-answer 8 2>{stderr}; echo EXIT=$?; sleep 30",
        data = dir.path().join("data").display(),
        log = dir.path().join("o1.log").display(),
        bin = env!("CARGO_BIN_EXE_o1"),
        model = model.display(),
        stderr = stderr.display(),
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
