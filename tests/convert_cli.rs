//! `o1 convert` as a user runs it: the binary, its output, its exit codes.

use std::path::Path;
use std::process::{Command, Output};

use o1_convert::synthetic::{self, Spec};

fn o1(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_o1"))
        .args(args)
        .current_dir(cwd)
        .env("O1_LOG_FILE", cwd.join("o1.log"))
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn converts_with_default_output_name_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("tiny-o1");
    synthetic::write(&ckpt, &Spec::tiny()).unwrap();
    let out = o1(&["convert", "tiny-o1", "--type", "q8_0"], dir.path());
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("wrote tiny-o1-q8_0.gguf (q8_0"), "{stdout}");
    assert!(stdout.contains("verified: llama.cpp loads it"), "{stdout}");
    assert!(dir.path().join("tiny-o1-q8_0.gguf").is_file());
    // Not a terminal: no progress bar, and llama.cpp's log went to the log file.
    assert!(
        text(&out.stderr).is_empty(),
        "stderr: {}",
        text(&out.stderr)
    );
    assert!(std::fs::read_to_string(dir.path().join("o1.log"))
        .unwrap()
        .contains("llama.cpp"));

    // A second run refuses to overwrite, with --force it does.
    let again = o1(&["convert", "tiny-o1", "--type", "q8_0"], dir.path());
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("already exists (pass --force"),
        "{}",
        text(&again.stderr)
    );
    let forced = o1(
        &["convert", "tiny-o1", "--type", "q8_0", "--force", "--quiet"],
        dir.path(),
    );
    assert!(forced.status.success(), "{}", text(&forced.stderr));
}

#[test]
fn bad_input_exits_non_zero_with_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let out = o1(&["convert", "missing-dir"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("o1: error: missing-dir: no such directory"),
        "{}",
        text(&out.stderr)
    );

    let out = o1(&["convert", ".", "--type", "q3_k"], dir.path());
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
    assert!(
        text(&out.stderr).contains("unknown type `q3_k`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn help_lists_types_and_options() {
    let out = o1(&["convert", "--help"], Path::new("."));
    assert!(out.status.success());
    let help = text(&out.stdout);
    for needle in [
        "--output",
        "--type",
        "q4_k_m",
        "iq4_xs",
        "--force",
        "--quiet",
        "--no-verify",
    ] {
        assert!(help.contains(needle), "help lacks {needle}:\n{help}");
    }
    assert!(
        !help.contains("--two-pass"),
        "the reference path stays hidden"
    );
}
