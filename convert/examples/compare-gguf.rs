//! Compares two GGUF files tensor by tensor (type, shape and bytes).
//!
//!   compare-gguf A.gguf B.gguf
//!
//! Exits 0 when every tensor is identical, 1 otherwise (listing the
//! differences), 2 when a file cannot be read.

use std::process::ExitCode;

use o1_gguf::format::{tensor_differences, GgufFile};

fn main() -> ExitCode {
    let paths: Vec<String> = std::env::args().skip(1).collect();
    let [a, b] = paths.as_slice() else {
        eprintln!("usage: compare-gguf A.gguf B.gguf");
        return ExitCode::from(2);
    };
    let map = |p: &str| -> Result<memmap2::Mmap, String> {
        let f = std::fs::File::open(p).map_err(|e| format!("{p}: {e}"))?;
        // SAFETY: read-only map of a file nobody writes while we compare.
        unsafe { memmap2::Mmap::map(&f) }.map_err(|e| format!("{p}: {e}"))
    };
    let (ma, mb) = match (map(a), map(b)) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("compare-gguf: {e}");
            return ExitCode::from(2);
        }
    };
    let (fa, fb) = match (GgufFile::parse(&ma), GgufFile::parse(&mb)) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("compare-gguf: {e}");
            return ExitCode::from(2);
        }
    };
    let diffs = tensor_differences(&fa, &fb);
    if diffs.is_empty() {
        println!("identical: {} tensors", fa.tensors.len());
        ExitCode::SUCCESS
    } else {
        for d in &diffs {
            println!("{d}");
        }
        println!("{} of {} tensors differ", diffs.len(), fa.tensors.len());
        ExitCode::from(1)
    }
}
