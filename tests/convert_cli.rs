//! `o1 convert` as a user runs it: the binary, its output, its exit codes.

use std::path::Path;
use std::process::{Command, Output};

use o1_convert::synthetic::{self, Spec};

fn o1(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_o1"))
        .args(args)
        .current_dir(cwd)
        .env("O1_LOG_FILE", cwd.join("o1.log"))
        .env("O1_MODELS_DIR", cwd.join("store"))
        .env("O1_CONFIG", cwd.join("config.toml"))
        .env("O1_CACHE_DIR", cwd.join("cache"))
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
    let stored = dir.path().join("store/tiny-o1-q8_0.gguf");
    assert!(
        stdout.contains(&format!("wrote {} (q8_0", stored.display())),
        "{stdout}"
    );
    assert!(stdout.contains("verified: llama.cpp loads it"), "{stdout}");
    assert!(
        stored.is_file(),
        "the default output goes to the model store"
    );
    // Not a terminal: plain progress lines, no bar drawing, and llama.cpp's
    // log went to the log file.
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.first(), Some(&"o1: converting to q8_0"), "{stderr}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("o1: converting to q8_0: 100% (")),
        "{stderr}"
    );
    assert_eq!(lines.last(), Some(&"o1: verifying"), "{stderr}");
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("o1: ") && !l.contains('\x1b')),
        "{stderr}"
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
    assert!(
        text(&forced.stderr).is_empty(),
        "--quiet: {}",
        text(&forced.stderr)
    );

    // The store lists it, `info` finds it by name, `rm` deletes it.
    let ls = text(&o1(&["ls"], dir.path()).stdout);
    assert!(
        ls.contains("tiny-o1-q8_0") && ls.contains("q8_0") && ls.contains("tiny-o1"),
        "{ls}"
    );
    let info = o1(&["info", "tiny-o1-q8_0"], dir.path());
    assert!(
        text(&info.stdout).contains("source          tiny-o1"),
        "{}",
        text(&info.stdout)
    );
    assert!(o1(&["rm", "tiny-o1-q8_0"], dir.path()).status.success());
    assert!(!stored.exists());
    assert_eq!(
        o1(&["rm", "tiny-o1-q8_0"], dir.path()).status.code(),
        Some(3)
    );
    assert!(text(&o1(&["ls"], dir.path()).stdout).contains("no models in"));
}

#[test]
fn config_file_defaults_and_precedence() {
    let dir = tempfile::tempdir().unwrap();
    synthetic::write(&dir.path().join("ckpt"), &Spec::tiny()).unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        "type = \"q8_0\"\nctx = 2048\n",
    )
    .unwrap();
    // The file's type applies when no flag or variable sets one...
    let out = o1(&["convert", "ckpt", "--dry-run"], dir.path());
    assert!(
        text(&out.stdout).contains("ckpt-q8_0.gguf (q8_0"),
        "{}",
        text(&out.stdout)
    );
    // ...a flag wins over it...
    let out = o1(&["convert", "ckpt", "--dry-run", "-t", "f16"], dir.path());
    assert!(text(&out.stdout).contains("(f16"), "{}", text(&out.stdout));
    // ...and `o1 config` says where each value comes from.
    let cfg = text(&o1(&["config"], dir.path()).stdout);
    let line = |k: &str| {
        cfg.lines()
            .find(|l| l.starts_with(&format!("{k} ")))
            .unwrap()
            .to_string()
    };
    assert!(
        line("type").contains("q8_0") && line("type").ends_with("config file"),
        "{cfg}"
    );
    assert!(line("ctx").contains("2048"), "{cfg}");
    assert!(line("kv_type").ends_with("default"), "{cfg}");
    let with_env = Command::new(env!("CARGO_BIN_EXE_o1"))
        .arg("config")
        .env("O1_CONFIG", dir.path().join("config.toml"))
        .env("O1_TYPE", "q6_k")
        .output()
        .unwrap();
    let cfg = text(&with_env.stdout);
    assert!(
        cfg.lines().any(|l| l.starts_with("type ")
            && l.contains("q6_k")
            && l.ends_with("environment O1_TYPE")),
        "{cfg}"
    );

    std::fs::write(dir.path().join("config.toml"), "colour = \"blue\"\n").unwrap();
    let bad = o1(&["config"], dir.path());
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad.stderr).contains("unknown field `colour`"),
        "{}",
        text(&bad.stderr)
    );
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

fn edit_json(path: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, serde_json::to_vec(&v).unwrap()).unwrap();
}

#[test]
fn hostile_checkpoints_exit_1_with_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ckpt");
    synthetic::write(&ckpt, &Spec::tiny()).unwrap();
    // A size no model has: refused before anything is sized from it (it
    // used to abort on allocation, even in a dry run).
    edit_json(&ckpt.join("config.json"), |v| {
        v["vocab_size"] = 4_294_967_295u64.into()
    });
    for args in [
        &["convert", "ckpt", "--dry-run"][..],
        &["convert", "ckpt", "-o", "a.gguf"],
    ] {
        let out = o1(args, dir.path());
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(
                "config.json: `vocab_size` is 4294967295; expected a positive number at most"
            ),
            "{stderr}"
        );
    }

    // A tokenizer.json the tokenizers crate panics on while verifying.
    synthetic::write(&ckpt, &Spec::tiny()).unwrap();
    edit_json(
        &ckpt.join("tokenizer.json"),
        |v| {
            v["normalizer"] =
                serde_json::json!({"type": "Replace", "pattern": {"String": ""}, "content": "x"})
        },
    );
    let out = o1(&["convert", "ckpt", "-o", "b.gguf"], dir.path());
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the tokenizers crate panicked on") && stderr.contains("tokenizer.json"),
        "{stderr}"
    );
    assert!(!dir.path().join("b.gguf").exists());
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
        "q3_k_m",
        "iq3_m",
        "auto",
        "--force",
        "--quiet",
        "--no-verify",
        "--no-calibrate",
        "--imatrix",
        "--save-imatrix",
        "mean KLD vs bf16",
    ] {
        assert!(help.contains(needle), "help lacks {needle}:\n{help}");
    }
    assert!(
        !help.contains("--two-pass"),
        "the reference path stays hidden"
    );
}

/// Waits until the conversion in `dir` has created its temporary file.
fn wait_for_temporary(dir: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        let found = std::fs::read_dir(dir)
            .unwrap()
            .any(|e| e.unwrap().file_name().to_string_lossy().contains(".o1tmp-"));
        if found {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    panic!("no temporary output appeared");
}

fn signal(child: &std::process::Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} failed");
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn interrupted_or_killed_conversions_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    // Big enough that converting takes a few seconds.
    let spec = Spec {
        hidden: 512,
        heads: 8,
        kv_heads: 2,
        ffn: 2048,
        layers: 8,
        vocab_size: Some(32000),
        ..Spec::tiny()
    };
    synthetic::write(&dir.path().join("mid"), &spec).unwrap();
    let cache = tempfile::tempdir().unwrap();
    // q4_k_m is calibrated: the first runs are stopped in the calibration
    // pass or the conversion, whichever has its temporary out first.
    let start = || {
        Command::new(env!("CARGO_BIN_EXE_o1"))
            .args(["convert", "mid", "--no-verify"])
            .current_dir(dir.path())
            .env("O1_CACHE_DIR", cache.path())
            .env("O1_LOG_FILE", "/dev/null")
            .env("O1_MODELS_DIR", dir.path())
            .env("O1_CONFIG", dir.path().join("no-config.toml"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };

    // Ctrl+C: exit code 130, the temporary removed.
    let mut child = start();
    wait_for_temporary(dir.path());
    signal(&child, "-INT");
    assert_eq!(child.wait().unwrap().code(), Some(130));
    assert_eq!(entries(dir.path()), ["mid"]);

    // SIGTERM behaves the same.
    let mut child = start();
    wait_for_temporary(dir.path());
    signal(&child, "-TERM");
    assert_eq!(child.wait().unwrap().code(), Some(130));
    assert_eq!(entries(dir.path()), ["mid"]);

    // SIGKILL cannot be caught: the next run removes what it left.
    let mut child = start();
    wait_for_temporary(dir.path());
    signal(&child, "-KILL");
    child.wait().unwrap();
    assert_eq!(
        entries(dir.path()).len(),
        2,
        "the killed run's temporary stays until the next run"
    );
    let out = start().wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("removed 1 temporary file(s) left by an interrupted run"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(entries(dir.path()), ["mid", "mid-q4_k_m.gguf"]);
}

/// Types of 5 bits and fewer are calibrated by default: o1 computes its
/// matrix once per checkpoint (a q8_0 copy runs its calibration set), the
/// file records it, the next conversion reuses it; `--no-calibrate`,
/// `--imatrix` and `--save-imatrix` do what they say.
#[test]
fn calibration_is_computed_once_recorded_and_optional() {
    let dir = tempfile::tempdir().unwrap();
    synthetic::write(&dir.path().join("ckpt"), &Spec::tiny()).unwrap();
    let run = |args: &[&str]| {
        let out = o1(args, dir.path());
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        (text(&out.stdout), text(&out.stderr))
    };
    let keys = |name: &str| {
        let bytes = std::fs::read(dir.path().join(name)).unwrap();
        let f = o1_gguf::format::GgufFile::parse(&bytes).unwrap();
        let s = |k: &str| f.get(k).and_then(|v| v.as_str()).map(String::from);
        let n = |k: &str| f.get(k).and_then(|v| v.as_u64());
        (
            s("quantize.imatrix.file"),
            s("quantize.imatrix.dataset"),
            n("quantize.imatrix.entries_count"),
            n("quantize.imatrix.chunks_count"),
        )
    };

    let (stdout, stderr) = run(&[
        "convert",
        "ckpt",
        "-t",
        "q4_k_m",
        "-o",
        "a.gguf",
        "--save-imatrix",
        "m.gguf",
    ]);
    assert!(
        stderr.contains("o1: calibration: a q8_0 copy to run"),
        "{stderr}"
    );
    assert!(
        stdout.contains("calibrated with the importance matrix"),
        "{stdout}"
    );
    let (file, dataset, entries, chunks) = keys("a.gguf");
    let file = file.expect("the matrix is recorded");
    assert!(
        file.contains("imatrix") && std::path::Path::new(&file).is_file(),
        "{file}"
    );
    assert_eq!(dataset.as_deref(), Some("o1-calibration-v1"));
    let layers = Spec::tiny().layers as u64;
    assert_eq!(
        entries,
        Some(7 * layers),
        "every matrix product of every layer"
    );
    // A chunk per conversation run, as many as fit the token budget
    // (the tiny model's small vocabulary spends many tokens on each).
    assert!(chunks.unwrap() >= 5, "{chunks:?}");
    let saved = o1_convert::ImportanceMatrix::load(&dir.path().join("m.gguf")).unwrap();
    assert!(saved
        .entries
        .values()
        .all(|e| e.count > 0 && e.sums.iter().all(|&v| v >= 0.0)));
    assert_eq!(saved.entries.len() as u64, 7 * layers);

    // The second conversion reuses the cached matrix: no calibration pass.
    let (_, stderr) = run(&["convert", "ckpt", "-t", "q3_k_m", "-o", "b.gguf"]);
    assert!(!stderr.contains("calibration:"), "{stderr}");
    assert_eq!(keys("b.gguf").0.as_deref(), Some(file.as_str()));

    // Off, and from a given file (llama-imatrix's format, as saved above).
    run(&[
        "convert",
        "ckpt",
        "-t",
        "q4_k_m",
        "-o",
        "c.gguf",
        "--no-calibrate",
    ]);
    assert_eq!(keys("c.gguf").0, None);
    run(&[
        "convert",
        "ckpt",
        "-t",
        "q4_k_m",
        "-o",
        "d.gguf",
        "--imatrix",
        "m.gguf",
    ]);
    assert_eq!(keys("d.gguf").0.as_deref(), Some("m.gguf"));
    let bytes = |n: &str| std::fs::read(dir.path().join(n)).unwrap();
    let tensor = |b: &[u8]| {
        let f = o1_gguf::format::GgufFile::parse(b).unwrap();
        f.tensor_data("blk.0.ffn_gate.weight").unwrap().to_vec()
    };
    assert_eq!(
        tensor(&bytes("a.gguf")),
        tensor(&bytes("d.gguf")),
        "same matrix, same bytes"
    );
    assert_ne!(
        tensor(&bytes("a.gguf")),
        tensor(&bytes("c.gguf")),
        "the matrix changes the rounding"
    );
    // q8_0 and the float types are not calibrated by default.
    run(&["convert", "ckpt", "-t", "q8_0", "-o", "e.gguf"]);
    assert_eq!(keys("e.gguf").0, None);

    // A file that is no matrix is named.
    std::fs::write(dir.path().join("bad.dat"), b"nonsense").unwrap();
    let out = o1(
        &[
            "convert",
            "ckpt",
            "-t",
            "q4_k_m",
            "-o",
            "f.gguf",
            "--imatrix",
            "bad.dat",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("bad.dat is not an importance matrix"), "{err}");
    assert!(!dir.path().join("f.gguf").exists());
}

/// `-t auto` takes the least-drift type whose chat fits the memory allowed,
/// says why, and says so when nothing fits.
#[test]
fn type_auto_fits_the_memory() {
    let dir = tempfile::tempdir().unwrap();
    synthetic::write(&dir.path().join("ckpt"), &Spec::tiny()).unwrap();
    let best = o1::quality::choose::by_quality()[0].ty.name();
    let out = o1(
        &[
            "convert",
            "ckpt",
            "-t",
            "auto",
            "--max-memory",
            "64G",
            "--dry-run",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!("({best}, ")),
        "{}",
        text(&out.stdout)
    );
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("o1: type auto: {best}, the least drift measured")),
        "{err}"
    );

    let out = o1(
        &[
            "convert",
            "ckpt",
            "-t",
            "auto",
            "--max-memory",
            "1M",
            "--dry-run",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("no type fits") && err.contains("--max-memory"),
        "{err}"
    );
    let out = o1(&["convert", "ckpt", "-t", "q2_k"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("choose auto or one of"),
        "{}",
        text(&out.stderr)
    );
}
