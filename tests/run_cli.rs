//! `o1 run`, `o1 bench` and `o1 info` as a user runs them: output streams,
//! JSON, and the exit code of every kind of bad input.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use o1_convert::synthetic::{self, Spec};

mod fixture;

/// The tiny synthetic model the tests serve.
fn fixture() -> &'static fixture::Tiny {
    fixture::tiny()
}

fn o1(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_o1"))
        .args(args)
        .env("O1_LOG_FILE", fixture().dir.path().join("o1.log"))
        .env("O1_MODELS_DIR", fixture().dir.path().join("store"))
        .env("O1_CONFIG", fixture().dir.path().join("config.toml"))
        .env("O1_CACHE_DIR", fixture().dir.path().join("cache"))
        .env_remove("O1_MODEL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn model() -> &'static str {
    fixture().model.to_str().unwrap()
}

const SHORT: [&str; 4] = ["--max-reasoning", "6", "--max-answer", "5"];

#[test]
fn run_streams_reasoning_to_stderr_and_answer_to_stdout() {
    let out = o1(
        &[&["run", model(), "Hello there"][..], &SHORT].concat(),
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(!stdout.trim().is_empty(), "no answer");
    assert!(stderr.contains("[reasoning cut: token limit]"), "{stderr}");
    assert!(!stderr.contains("llama"), "llama.cpp logs leaked: {stderr}");

    let hidden = o1(
        &[
            &["run", model(), "Hello there", "--hide-reasoning"][..],
            &SHORT,
        ]
        .concat(),
        None,
    );
    assert!(hidden.status.success());
    assert!(text(&hidden.stderr).is_empty(), "{}", text(&hidden.stderr));
    assert_eq!(
        text(&hidden.stdout),
        stdout,
        "greedy decoding is deterministic"
    );
}

#[test]
fn run_json_reports_both_phases_with_stats() {
    let out = o1(
        &[
            &["run", model(), "-", "--json", "--system", "Be brief."][..],
            &SHORT,
        ]
        .concat(),
        Some("What is 2+2?"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["reasoning"].is_string() && v["answer"].is_string());
    let r = &v["stats"]["reasoning"];
    assert_eq!(r["stop"], "limit");
    assert_eq!(r["generated_tokens"], 6);
    assert!(r["prompt_tokens"].as_u64().unwrap() > 10);
    assert!(r["tokens_per_second"].as_f64().unwrap() > 0.0);
    let a = &v["stats"]["answer"];
    assert!(
        a["reused_tokens"].as_u64().unwrap() >= r["prompt_tokens"].as_u64().unwrap(),
        "{a}"
    );
    assert!(v["stats"]["context_used"].as_u64().unwrap() > 0);
    assert!(
        v["stats"]["peak_memory"].as_u64().unwrap() > 10 << 20,
        "o1 run reports its peak memory"
    );
    // This machine has no GPU: whatever the build, the model ran on the CPU.
    assert!(
        v["stats"]["device"].as_str().unwrap().starts_with("CPU"),
        "{v}"
    );
}

#[test]
fn run_sampling_options_change_the_output_deterministically() {
    fn args(seed: &str) -> Vec<&str> {
        [
            &[
                "run",
                model(),
                "Tell me a story",
                "--json",
                "--temperature",
                "1.5",
                "--seed",
                seed,
            ][..],
            &SHORT,
        ]
        .concat()
    }
    let a = o1(&args("1"), None);
    let b = o1(&args("1"), None);
    let c = o1(&args("2"), None);
    assert!(a.status.success(), "{}", text(&a.stderr));
    let answer = |o: &Output| {
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["reasoning"].clone()
    };
    assert_eq!(answer(&a), answer(&b), "same seed, same text");
    assert_ne!(answer(&a), answer(&c), "another seed, another text");
}

#[test]
fn run_bad_input_exit_codes() {
    // A small context still answers a short question; not one this long.
    let long_question = "word ".repeat(300);
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["run", "/nonexistent/model.gguf", "hi"],
            3,
            "no such model file",
        ),
        (
            &["run", "hi"],
            3,
            "no model yet: Laurie--Qwen2.5-1.5B-O1-q4_k_m is not in the model store",
        ),
        (
            &["run", "some-name", "hi"],
            3,
            "some-name.gguf: no such model file (o1 ls lists",
        ),
        (&["run", model(), "   "], 1, "the question is empty"),
        (
            &["run", model(), &long_question, "--ctx", "64"],
            5,
            "cannot hold this turn",
        ),
        (
            &["run", model(), "hi", "--gpu-layers", "lots"],
            2,
            "not auto, all or a number",
        ),
        (
            &["run", model(), "hi", "--max-memory", "1M"],
            6,
            "MiB allowed (--max-memory); allow",
        ),
        (&["run", model(), "hi", "--max-memory", "lots"], 2, "lots"),
    ];
    for (args, code, msg) in cases {
        let out = o1(args, None);
        assert_eq!(
            out.status.code(),
            Some(*code),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(msg),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn unusable_model_files_exit_4() {
    let dir = fixture().dir.path();
    let write = |name: &str, bytes: &[u8]| -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let original = std::fs::read(model()).unwrap();
    let not_gguf = write("notes.gguf", b"just some text, not a model");
    let truncated = write("truncated.gguf", &original[..original.len() / 2]);
    let mut llama = original.clone();
    let at = llama.windows(5).position(|w| w == b"qwen2").unwrap();
    llama[at..at + 5].copy_from_slice(b"llama");
    let other_arch = write("llama.gguf", &llama);
    // A key is its length (u64) and its bytes, then the value's type (u32),
    // then a u32 value.
    let with_u32 = |key: &str, value: u32| {
        let mut bytes = original.clone();
        let mut pattern = (key.len() as u64).to_le_bytes().to_vec();
        pattern.extend_from_slice(key.as_bytes());
        let at = bytes
            .windows(pattern.len())
            .position(|w| w == pattern)
            .unwrap()
            + pattern.len();
        bytes[at + 4..at + 8].copy_from_slice(&value.to_le_bytes());
        bytes
    };
    let no_layers = write("no-layers.gguf", &with_u32("qwen2.block_count", 0));
    let no_heads = write("no-heads.gguf", &with_u32("qwen2.attention.head_count", 0));
    let huge = write("huge.gguf", &with_u32("qwen2.embedding_length", u32::MAX));
    for (path, msg) in [
        (&not_gguf, "not a GGUF model file"),
        (&truncated, "not a GGUF model file"),
        (&other_arch, "a llama model; o1 runs Qwen2.5-O1 models"),
        (&no_layers, "qwen2.block_count is 0: must be from 1 to 1024"),
        (&no_heads, "qwen2.attention.head_count is 0"),
        (&huge, "qwen2.embedding_length is 4294967295"),
    ] {
        let out = o1(&["run", path.to_str().unwrap(), "hi"], None);
        assert_eq!(
            out.status.code(),
            Some(4),
            "{}: {}",
            path.display(),
            text(&out.stderr)
        );
        assert!(text(&out.stderr).contains(msg), "{}", text(&out.stderr));
    }
}

#[test]
fn bench_reports_pp_and_tg() {
    let out = o1(
        &["bench", model(), "-p", "32", "-n", "8", "-r", "2", "--json"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(
        (results[0]["test"].as_str(), results[1]["test"].as_str()),
        (Some("pp32"), Some("tg8"))
    );
    for r in results {
        assert_eq!(r["samples"].as_array().unwrap().len(), 2);
        assert!(r["mean"].as_f64().unwrap() > 0.0);
    }
    let table = o1(
        &["bench", model(), "-p", "16", "-n", "4", "-r", "1", "--chat"],
        None,
    );
    let t = text(&table.stdout);
    assert!(
        t.contains("pp16") && t.contains("tg4") && t.contains("chat: answer of turn 5"),
        "{t}"
    );
    // Where it ran: this machine has no GPU, whatever the build.
    assert!(t.contains(" threads, on CPU"), "{t}");
    assert!(v["device"].as_str().unwrap().starts_with("CPU"), "{v}");
}

/// The lookup benchmark runs every prompt both ways and reports each phase
/// with the same text. It loads the model as `--lookup on` does: with a
/// q8_0 KV cache where the heads allow it; this fixture's heads of 16
/// dimensions do not, so the cache stays f16, lookup does not probe, and
/// nothing is drafted. (The probe and drafts where batches are exact:
/// `engine.rs`; the real model: `real_model.rs`.)
#[test]
fn bench_lookup_set_compares_lookup_with_plain_decoding() {
    let out = o1(
        &["bench", model(), "--lookup-set", "--ctx", "2048", "--json"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 20, "10 prompts, 2 phases");
    for r in rows {
        assert_eq!(r["same_text"], true, "{r}");
        assert_eq!(r["drafted"], 0, "{r}");
        assert!(r["ratio"].as_f64().unwrap() > 0.0, "{r}");
    }
    let lookup = &v["lookup"];
    assert!(lookup["probe"].is_null(), "{lookup}");
    assert_eq!(lookup["max_draft"], 0, "{lookup}");
    // The table says why.
    let out = o1(&["bench", model(), "--lookup-set", "--ctx", "2048"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("lookup did not probe this machine"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn info_prints_metadata_and_memory() {
    let out = o1(&["info", model(), "--ctx", "1000"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let t = text(&out.stdout);
    // Tiny model: 2 layers × 2 KV heads × 16 dims × K and V × 2 bytes = 256 bytes per token.
    for needle in [
        "architecture    qwen2",
        "type            q8_0",
        "<|reasoning|> = ",
        "KV per token    256 bytes (f16)",
        "at 1000 tokens, f16 KV cache, batches of 512",
        "KV cache 0 MiB, compute 2 MiB, process 64 MiB",
        "devices         CPU",
    ] {
        assert!(t.contains(needle), "lacks {needle:?}:\n{t}");
    }
    // The plan for a budget: the same context, in a smaller shape.
    let out = o1(
        &["info", model(), "--ctx", "1000", "--max-memory", "66M"],
        None,
    );
    let t = text(&out.stdout);
    assert!(
        t.contains("at 1000 tokens, f16 KV cache, batches of 256 (66 MiB allowed: chosen to fit)"),
        "{t}"
    );
    let missing = o1(&["info", "/nonexistent.gguf"], None);
    assert_eq!(missing.status.code(), Some(3));
}

#[test]
fn ctrl_c_while_text_streams_stops_and_prints_the_partial_json() {
    // A reasoning limit the model would take minutes to reach.
    let child = Command::new(env!("CARGO_BIN_EXE_o1"))
        .args(["run", model(), "Hello there", "--json", "--ctx", "24576"])
        .args(["--max-reasoning", "20000", "--max-answer", "5"])
        .env("O1_LOG_FILE", fixture().dir.path().join("o1.log"))
        .env("O1_MODELS_DIR", fixture().dir.path().join("store"))
        .env("O1_CONFIG", fixture().dir.path().join("config.toml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Loading the tiny model takes well under this; then tokens stream.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let sent = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    let waited = sent.elapsed();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}): {}", text(&out.stdout)));
    assert_eq!(json["stats"]["reasoning"]["stop"], "cancelled", "{json}");
    assert!(!json["reasoning"].as_str().unwrap().is_empty());
    assert!(
        waited < std::time::Duration::from_secs(10),
        "took {waited:?} to stop"
    );
}

#[test]
fn a_small_context_still_answers_and_says_so_once() {
    let out = o1(
        &[
            "run",
            model(),
            "Hello there",
            "--ctx",
            "256",
            "--max-reasoning",
            "3000",
            "--max-answer",
            "3000",
        ],
        None,
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr.matches("holds less than the phase limits").count(),
        1,
        "{stderr}"
    );
    assert!(!text(&out.stdout).trim().is_empty(), "no answer: {stderr}");
}

#[test]
fn rm_touches_nothing_outside_the_store() {
    let root = tempfile::tempdir().unwrap();
    let victim = root.path().join("x.gguf");
    std::fs::write(&victim, b"keep me").unwrap();
    let store = root.path().join("a/b");
    std::fs::create_dir_all(&store).unwrap();
    let outside = victim.with_extension("");
    for name in ["../../x", outside.to_str().unwrap()] {
        let out = Command::new(env!("CARGO_BIN_EXE_o1"))
            .args(["rm", name])
            .env("O1_MODELS_DIR", &store)
            .env("O1_CONFIG", fixture().dir.path().join("config.toml"))
            .env("O1_LOG_FILE", fixture().dir.path().join("o1.log"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("not a stored model's name"),
            "{}",
            text(&out.stderr)
        );
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
    }
}

#[test]
fn ls_and_info_show_control_characters_in_model_strings_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ckpt");
    synthetic::write(&ckpt, &Spec::tiny()).unwrap();
    let store = dir.path().join("store");
    std::fs::create_dir_all(&store).unwrap();
    let model = store.join("evil\u{1b}[2J.gguf");
    let mut opts = o1_convert::ConvertOptions::new(&ckpt, &model, o1_convert::OutputType::Q8_0);
    opts.name = Some("name\u{1b}]0;pwned\u{7}".into());
    opts.source = Some("src\u{9b}31m".into());
    o1_convert::convert(&opts, &mut o1_convert::NoProgress, &Default::default()).unwrap();
    for args in [vec!["ls"], vec!["info", model.to_str().unwrap()]] {
        let out = Command::new(env!("CARGO_BIN_EXE_o1"))
            .args(&args)
            .env("O1_MODELS_DIR", &store)
            .env("O1_CONFIG", dir.path().join("config.toml"))
            .env("O1_LOG_FILE", dir.path().join("o1.log"))
            .output()
            .unwrap();
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert!(
            !stdout.contains(['\u{1b}', '\u{7}', '\u{9b}']),
            "{args:?}: {stdout:?}"
        );
        assert!(
            stdout.contains(if args[0] == "ls" {
                "evil\\x1b[2J"
            } else {
                "name\\x1b]0;pwned\\x07"
            }),
            "{args:?}: {stdout}"
        );
        assert!(stdout.contains("src\\x9b31m"), "{args:?}: {stdout}");
    }
}

/// This machine has no GPU: asking for one still answers, on the CPU, and
/// says so (a CPU build: no GPU backend; a CUDA build: no CUDA device).
#[test]
fn asking_for_a_gpu_without_one_says_it_runs_on_the_cpu() {
    let out = o1(
        &[&["run", model(), "Hi", "--gpu-layers", "all"][..], &SHORT].concat(),
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).trim().is_empty());
    assert!(
        text(&out.stderr).contains(": running on the CPU"),
        "{}",
        text(&out.stderr)
    );
}
