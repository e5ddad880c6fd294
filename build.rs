//! llama.cpp comes as shared libraries (and one library per CPU family):
//! the o1 binary looks for them in its own folder first, so the binary and
//! its libraries can be copied anywhere together (`just dist`). Also names
//! the git commit and the llama-cpp-sys-2 version for `o1 --version`.
use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-link-arg-bins=-Wl,-rpath,$ORIGIN");
    // Then llama.cpp's build folder, so that the binary of a build runs in
    // place (`target/release/o1`); `just dist` keeps only `$ORIGIN`.
    if let Ok(backends) = std::env::var("DEP_LLAMA_BACKENDS_DIR") {
        let lib = std::path::Path::new(&backends).with_file_name("lib");
        println!("cargo:rustc-link-arg-bins=-Wl,-rpath,{}", lib.display());
        complete_library_links(&lib);
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

/// llama-cpp-sys-2 hard-links its libraries' unversioned names into the
/// target folder (`libllama.so`, a symbolic link to `libllama.so.0`) but
/// not the versioned files they name: links to nothing, on which its build
/// script fails whenever it runs again ("File exists"). Links to the
/// versioned files beside them make them whole.
fn complete_library_links(lib: &Path) {
    let Some(out) = std::env::var_os("OUT_DIR") else {
        return;
    };
    // OUT_DIR is <target>/<profile>/build/o1-<hash>/out.
    let Some(profile) = Path::new(&out).ancestors().nth(3) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(lib) else {
        return;
    };
    let versioned: Vec<_> = entries
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| {
            let n = n.to_string_lossy();
            n.rsplit_once(".so.")
                .is_some_and(|(_, v)| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    for dir in [
        profile.to_path_buf(),
        profile.join("deps"),
        profile.join("examples"),
    ] {
        if !dir.is_dir() {
            continue;
        }
        for name in &versioned {
            let link = dir.join(name);
            if std::fs::symlink_metadata(&link).is_err() {
                let _ = std::os::unix::fs::symlink(lib.join(name), &link);
            }
        }
    }
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
