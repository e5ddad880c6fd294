//! With ggml's backends as libraries loaded at run time (`dynamic-backends`),
//! the o1 binary links llama.cpp's shared libraries: it looks for them in
//! its own folder first, so the binary and its libraries can be copied
//! anywhere together (as `scripts/build-cuda` does).
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_DYNAMIC_BACKENDS").is_some() {
        println!("cargo:rustc-link-arg-bins=-Wl,-rpath,$ORIGIN");
    }
}
