//! `o1 eval` as a user runs it: drift figures that mean what they say, the
//! reference's side cached, `o1 info` showing the result, clear errors.

mod fixture;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn o1(args: &[&str], home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_o1"))
        .args(args)
        .current_dir(home)
        .env("O1_LOG_FILE", home.join("o1.log"))
        .env("O1_MODELS_DIR", home.join("store"))
        .env("O1_CONFIG", home.join("config.toml"))
        .env("O1_CACHE_DIR", home.join("cache"))
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn eval_json(args: &[&str], home: &Path) -> Value {
    let out = o1(args, home);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A plain text long enough for a few chunks of 64 tokens.
fn write_text(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("text.txt");
    let mut s = String::new();
    for i in 0..60 {
        s.push_str(&format!(
            "Line {i}: the quick brown fox jumps over the lazy dog, and counts to {}.\n",
            i * 7
        ));
    }
    std::fs::write(&path, s).unwrap();
    path
}

#[test]
fn a_file_against_itself_has_no_drift_and_errors_are_named() {
    let tiny = fixture::tiny();
    let home = tempfile::tempdir().unwrap();
    let model = tiny.model.to_str().unwrap();
    let text_file = write_text(home.path());
    let t = text_file.to_str().unwrap();

    let args = [
        "eval",
        model,
        "--reference",
        model,
        "--text",
        t,
        "--ctx",
        "64",
        "--json",
    ];
    let v = eval_json(&args, home.path());
    assert!(v["chunks"].as_u64().unwrap() >= 2, "{v}");
    assert_eq!(v["scored_tokens"], v["chunks"].as_u64().unwrap() * 31);
    assert!(v["mean_kld"]["mean"].as_f64().unwrap().abs() < 1e-6, "{v}");
    assert_eq!(v["same_top"]["mean"], 1.0);
    assert!(
        v["agreement"].is_null(),
        "a plain text has no greedy prompts"
    );
    assert_eq!(v["reference_cached"], false);
    // The second run reads the reference's side from the cache.
    let again = eval_json(&args, home.path());
    assert_eq!(again["reference_cached"], true);
    assert_eq!(again["mean_kld"], v["mean_kld"]);

    // o1 info shows the measured drift of that file.
    let info = o1(&["info", model], home.path());
    let info = text(&info.stdout);
    assert!(info.contains("drift           mean KLD 0.0000"), "{info}");

    // No stored reference: say how to make one.
    let out = o1(&["eval", model], home.path());
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("no lossless conversion of") && err.contains("--type bf16"),
        "{err}"
    );
    // A text shorter than one chunk.
    std::fs::write(home.path().join("short.txt"), "Too short.").unwrap();
    let out = o1(
        &["eval", model, "--reference", model, "--text", "short.txt"],
        home.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("fewer than one chunk of 512"), "{err}");
}

/// On the real 0.5B: q8_0 drifts less than an uncalibrated q4_0, both
/// drift, and bf16 against itself follows itself in the two-phase format.
#[test]
#[ignore = "needs the real 0.5B checkpoint: run through `just test`"]
fn real_model_drift_orders_the_types() {
    let ckpt = fixture::checkpoint_0_5b();
    let home = tempfile::tempdir().unwrap();
    let convert = |ty: &str, extra: &[&str]| {
        let out = home.path().join(format!("{ty}.gguf"));
        let mut args = vec![
            "convert",
            ckpt.to_str().unwrap(),
            "--quiet",
            "--no-verify",
            "-t",
            ty,
        ];
        args.extend_from_slice(extra);
        args.extend(["-o", out.to_str().unwrap()]);
        let o = o1(&args, home.path());
        assert!(o.status.success(), "{}", text(&o.stderr));
        out
    };
    let bf16 = convert("bf16", &[]);
    let q8 = convert("q8_0", &[]);
    let q4 = convert("q4_0", &["--no-calibrate"]);
    let eval = |m: &Path| {
        eval_json(
            &[
                "eval",
                m.to_str().unwrap(),
                "--reference",
                bf16.to_str().unwrap(),
                "--chunks",
                "2",
                "--json",
            ],
            home.path(),
        )
    };
    let (same, v8, v4) = (eval(&bf16), eval(&q8), eval(&q4));
    let kld = |v: &Value| v["mean_kld"]["mean"].as_f64().unwrap();
    let top = |v: &Value| v["same_top"]["mean"].as_f64().unwrap();
    eprintln!(
        "mean KLD: bf16 {} q8_0 {} q4_0 {}",
        kld(&same),
        kld(&v8),
        kld(&v4)
    );
    assert!(kld(&same) < 1e-6 && top(&same) == 1.0);
    assert!(
        0.0 < kld(&v8) && kld(&v8) * 3.0 < kld(&v4),
        "q8_0 {v8}\nq4_0 {v4}"
    );
    assert!(top(&v8) > 0.95 && top(&v8) > top(&v4));
    assert_eq!(
        v8["reference_cached"], true,
        "the second file reuses the reference"
    );
    let a = &same["agreement"];
    assert_eq!(a["prompts"], 8);
    for phase in ["reasoning", "answer"] {
        let (got, max) = (
            a[format!("{phase}_tokens")].as_f64().unwrap(),
            a[format!("{phase}_max")].as_f64().unwrap(),
        );
        assert!(max > 0.0 && got >= 0.9 * max, "{phase}: {a}");
    }
}
