//! llama.cpp comes as shared libraries (and one library per CPU family):
//! the o1 binary looks for them in its own folder first, so the binary and
//! its libraries can be copied anywhere together (`just dist`). Also names
//! the git commit and the llama-cpp-sys-2 version for `o1 --version`.
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-link-arg-bins=-Wl,-rpath,$ORIGIN");
    // Then llama.cpp's build folder, so that the binary of a build runs in
    // place (`target/release/o1`); `just dist` keeps only `$ORIGIN`.
    if let Ok(backends) = std::env::var("DEP_LLAMA_BACKENDS_DIR") {
        let lib = std::path::Path::new(&backends).with_file_name("lib");
        println!("cargo:rustc-link-arg-bins=-Wl,-rpath,{}", lib.display());
    }

    println!("cargo:rerun-if-env-changed=O1_GIT_COMMIT");
    for f in [".git/HEAD", ".git/index", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={f}");
    }
    let commit = std::env::var("O1_GIT_COMMIT").ok().or_else(git_commit);
    println!(
        "cargo:rustc-env=O1_GIT_COMMIT={}",
        commit.unwrap_or_else(|| "unknown".into())
    );
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    let sys = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"llama-cpp-sys-2\""))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .map_or("unknown".to_string(), |v| v.trim_matches('"').to_string());
    println!("cargo:rustc-env=O1_LLAMA_CPP_SYS_VERSION={sys}");
}

/// The checkout's commit, `+changes` when the work tree differs from it.
fn git_commit() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let mut commit = String::from_utf8(out.stdout).ok()?.trim().to_string();
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .is_ok_and(|o| !o.stdout.is_empty());
    if dirty {
        commit.push_str("+changes");
    }
    Some(commit)
}
