//! llama.cpp's CPU path as a user meets it: `o1 --version` lists the paths
//! built in, the best one that this CPU supports and that runs is chosen
//! (a path whose probe traps is skipped, and the choice is kept), a path can
//! be forced, and a crash in native code in any command prints what
//! happened, the path in use and how to force another, then exits with
//! 128 + the signal's number.

use std::path::Path;
use std::process::{Command, Output, Stdio};

mod fixture;

fn o1(cache: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let f = fixture::tiny();
    Command::new(env!("CARGO_BIN_EXE_o1"))
        .args(args)
        .env("O1_LOG_FILE", f.dir.path().join("o1.log"))
        .env("O1_MODELS_DIR", f.dir.path().join("store"))
        .env("O1_CONFIG", f.dir.path().join("config.toml"))
        .env("O1_CACHE_DIR", cache)
        .env_remove("O1_MODEL")
        .env_remove("O1_CPU_PATH")
        .env_remove("O1_INJECT_FAULT")
        .env_remove("O1_TEST_CPU_TRAP")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn model() -> &'static str {
    fixture::tiny().model.to_str().unwrap()
}

/// The paths `o1 --version` lists for this CPU, best first.
fn paths_for_this_cpu() -> Vec<String> {
    let cache = tempfile::tempdir().unwrap();
    let out = o1(cache.path(), &["--version"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let version = text(&out.stdout);
    let line = version
        .lines()
        .find_map(|l| l.strip_prefix("CPU paths: "))
        .unwrap_or_else(|| panic!("no CPU paths line: {version}"));
    let list = line.split(" (in ").next().unwrap();
    list.split(", ")
        .filter(|p| !p.starts_with('('))
        .map(str::to_string)
        .collect()
}

/// `o1 info`'s `cpu path` line.
fn cpu_path_line(out: &Output) -> String {
    let stdout = text(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("cpu path"))
        .unwrap_or_else(|| panic!("no cpu path line: {stdout}{}", text(&out.stderr)))
        .trim()
        .to_string()
}

#[test]
fn version_names_the_build_llama_cpp_and_the_cpu_paths() {
    let cache = tempfile::tempdir().unwrap();
    let out = o1(cache.path(), &["--version"], &[]);
    let v = text(&out.stdout);
    assert!(out.status.success());
    assert!(
        v.starts_with(&format!("o1 {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{v}"
    );
    assert!(v.contains("llama.cpp: ggml "), "{v}");
    assert!(v.contains("features: dynamic CPU backends"), "{v}");
    let paths = paths_for_this_cpu();
    assert!(!paths.is_empty(), "{v}");
    #[cfg(target_arch = "x86_64")]
    for built_in in ["x64", "haswell", "sapphirerapids"] {
        assert!(v.contains(built_in), "{built_in} missing: {v}");
    }
}

#[test]
fn the_best_path_that_works_is_chosen_once_and_a_trapping_one_is_skipped() {
    let paths = paths_for_this_cpu();
    if paths.len() < 2 {
        // An armv8.0 CPU has one path: nothing to fall back to.
        eprintln!("one CPU path here ({paths:?}): no fallback to check");
        return;
    }
    let cache = tempfile::tempdir().unwrap();

    // The best path's probe executes an illegal instruction, as AMX does
    // on the hosts that trap: the next one is used, and says why.
    let trap = [("O1_TEST_CPU_TRAP", paths[0].as_str())];
    let out = o1(cache.path(), &["info", model()], &trap);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let line = cpu_path_line(&out);
    assert_eq!(
        line,
        format!(
            "{} (proven on this CPU); {} skipped: illegal instruction (SIGILL)",
            paths[1], paths[0]
        )
    );

    // Kept: the next run does not probe again (a trap would change nothing).
    let out = o1(cache.path(), &["info", model()], &[]);
    let line = cpu_path_line(&out);
    assert!(
        line.starts_with(&format!("{} (proven on this CPU earlier", paths[1])),
        "{line}"
    );
    assert!(cache.path().join("cpu-paths.json").is_file());

    // A run answers on the path chosen, and says which.
    let out = o1(
        cache.path(),
        &[
            "run",
            model(),
            "Hi",
            "--json",
            "--max-reasoning",
            "4",
            "--max-answer",
            "4",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let used = report["stats"]["cpu_path"].as_str().unwrap();
    assert!(used.starts_with(&paths[1]), "{used}");
}

#[test]
fn a_forced_path_is_used_as_it_is_and_a_wrong_name_is_a_clear_error() {
    let cache = tempfile::tempdir().unwrap();
    let paths = paths_for_this_cpu();
    let last = paths.last().unwrap();
    let out = o1(cache.path(), &["info", model()], &[("O1_CPU_PATH", last)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        cpu_path_line(&out),
        format!("{last} (forced by O1_CPU_PATH)")
    );

    let out = o1(
        cache.path(),
        &["info", model(), "--cpu-path", &paths[0]],
        &[],
    );
    assert_eq!(
        cpu_path_line(&out),
        format!("{} (forced by --cpu-path)", paths[0])
    );

    let out = o1(
        cache.path(),
        &["info", model(), "--cpu-path", "pentium4"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("the CPU path `pentium4` (--cpu-path) is not one of this installation's:"),
        "{err}"
    );
    assert!(err.contains(last.as_str()), "{err}");
}

/// A fault injected in `args`'s native work: the message and the exit code.
fn assert_fault(args: &[&str], fault: &str, signal: i32, name: &str) {
    let cache = tempfile::tempdir().unwrap();
    let out = o1(cache.path(), args, &[("O1_INJECT_FAULT", fault)]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(128 + signal), "{args:?}: {err}");
    assert!(
        err.contains(&format!("o1: crashed: {name} in native code")),
        "{args:?}: {err}"
    );
    assert!(err.contains("o1: CPU path: "), "{args:?}: {err}");
    assert!(
        err.contains("to force a CPU path: O1_CPU_PATH="),
        "{args:?}: {err}"
    );
}

#[test]
fn a_fault_in_native_code_is_a_message_and_128_plus_the_signal_in_every_command() {
    let short = ["--max-reasoning", "4", "--max-answer", "4"];
    assert_fault(
        &[&["run", model(), "Hi"][..], &short].concat(),
        "SIGILL@decode",
        4,
        "illegal instruction (SIGILL)",
    );
    assert_fault(
        &["bench", model(), "-p", "8", "-n", "4", "-r", "1"],
        "SIGSEGV@decode",
        11,
        "segmentation fault (SIGSEGV)",
    );
    assert_fault(
        &["info", model()],
        "SIGFPE@backend",
        8,
        "arithmetic exception (SIGFPE)",
    );
}

#[test]
fn a_fault_during_a_conversion_leaves_no_output_file() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ckpt");
    o1_convert::synthetic::write(&ckpt, &o1_convert::synthetic::Spec::tiny()).unwrap();
    let out_file = dir.path().join("out.gguf");
    let args = [
        "convert",
        ckpt.to_str().unwrap(),
        "-o",
        out_file.to_str().unwrap(),
        "-t",
        "q8_0",
        "--quiet",
    ];
    assert_fault(&args, "SIGBUS@quantize", 7, "bus error (SIGBUS)");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != "ckpt")
        .collect();
    assert!(left.is_empty(), "a half-written output was left: {left:?}");
}
