//! `o1 --version`: what this build is, down to llama.cpp and the CPU paths
//! it carries.

/// The long version text.
pub fn long() -> String {
    let ggml = |f: unsafe extern "C" fn() -> *const std::ffi::c_char| {
        // SAFETY: ggml returns a static NUL-terminated string.
        unsafe { std::ffi::CStr::from_ptr(f()) }
            .to_string_lossy()
            .into_owned()
    };
    let dir = o1_gguf::llama::backends_dir();
    let paths: Vec<String> = o1_gguf::cpu::variants(&dir)
        .into_iter()
        .map(|v| {
            if v.score > 0 {
                v.name
            } else {
                format!("({})", v.name)
            }
        })
        .collect();
    let mut features = vec!["dynamic CPU backends"];
    if cfg!(feature = "cuda") {
        features.push("cuda");
    }
    format!(
        "{} (commit {})\n\
         llama.cpp: ggml {} (commit {}), llama-cpp-sys-2 {}\n\
         target: {}-{}\n\
         features: {}\n\
         CPU paths: {} (in {}; parenthesised: not for this CPU)",
        env!("CARGO_PKG_VERSION"),
        env!("O1_GIT_COMMIT"),
        ggml(llama_cpp_sys_2::ggml_version),
        ggml(llama_cpp_sys_2::ggml_commit),
        env!("O1_LLAMA_CPP_SYS_VERSION"),
        std::env::consts::ARCH,
        std::env::consts::OS,
        features.join(", "),
        if paths.is_empty() {
            "none found".to_string()
        } else {
            paths.join(", ")
        },
        dir.display(),
    )
}
