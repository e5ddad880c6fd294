//! What can go wrong in a conversion. Every variant names the file, tensor
//! or field at fault, so the message alone tells the user what to fix.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The checkpoint path does not exist.
    #[error("{}: no such directory", .0.display())]
    NoSuchDirectory(PathBuf),

    /// The checkpoint path is a file, not a directory.
    #[error("{}: not a directory (give the folder that holds config.json and the safetensors files)", .0.display())]
    NotADirectory(PathBuf),

    /// A file the checkpoint needs is missing.
    #[error("{}: missing ({what})", path.display())]
    MissingFile { path: PathBuf, what: &'static str },

    /// Reading a file failed.
    #[error("{}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },

    /// A JSON file does not parse or lacks a field.
    #[error("{}: {source}", path.display())]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },

    /// A field has a value o1 cannot use.
    #[error("{}: `{field}` {problem}", path.display())]
    BadField {
        path: PathBuf,
        field: String,
        problem: String,
    },

    /// The checkpoint is not a Qwen2 model.
    #[error("{}: architecture {found} is not supported: o1 converts only Qwen2 models (Qwen2ForCausalLM)", path.display())]
    UnsupportedArchitecture { path: PathBuf, found: String },

    /// A safetensors file is truncated or corrupt.
    #[error("{}: corrupt safetensors file: {problem}", path.display())]
    CorruptSafetensors { path: PathBuf, problem: String },

    /// A tensor is stored in a dtype o1 does not convert.
    #[error("{}: tensor `{tensor}` has dtype {dtype}; o1 converts BF16, F16 and F32 tensors", path.display())]
    UnsupportedDtype {
        path: PathBuf,
        tensor: String,
        dtype: String,
    },

    /// A tensor's shape disagrees with config.json.
    #[error("{}: tensor `{tensor}` has shape {found:?} but config.json implies {expected:?}", path.display())]
    ShapeMismatch {
        path: PathBuf,
        tensor: String,
        found: Vec<usize>,
        expected: Vec<usize>,
    },

    /// A tensor the model needs is not in any weights file.
    #[error("tensor `{tensor}` is missing from the checkpoint's weights")]
    MissingTensor { tensor: String },

    /// A tensor o1 does not know how to place.
    #[error("{}: unexpected tensor `{tensor}` (not part of a Qwen2 model)", path.display())]
    UnexpectedTensor { path: PathBuf, tensor: String },

    /// The same tensor appears in two shards.
    #[error("tensor `{tensor}` appears in both {} and {}", first.display(), second.display())]
    DuplicateTensor {
        tensor: String,
        first: PathBuf,
        second: PathBuf,
    },

    /// A shard named in the index does not exist.
    #[error("{}: shard {shard} (holding `{tensor}`) is missing", index.display())]
    MissingShard {
        index: PathBuf,
        shard: String,
        tensor: String,
    },

    /// The tokenizer's vocabulary does not fit the model.
    #[error("vocabulary mismatch: {0}")]
    Vocab(String),

    /// The output exists and `--force` was not given.
    #[error("{}: already exists (pass --force to overwrite it)", .0.display())]
    OutputExists(PathBuf),

    /// The output cannot be created or written.
    #[error("{}: cannot write the output: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },

    /// The output's file system is full.
    #[error("{}: no space left on the device ({needed_mb} MB needed at least); nothing was kept", path.display())]
    DiskFull { path: PathBuf, needed_mb: u64 },

    /// llama.cpp's quantizer reported a failure.
    #[error("llama.cpp could not quantize {}: {detail}", path.display())]
    Quantize { path: PathBuf, detail: String },

    /// Computing the importance matrix failed.
    #[error("calibrating for {} failed: {detail}", path.display())]
    Calibrate { path: PathBuf, detail: String },

    /// The converted file failed a verification check.
    #[error("verification of {} failed: {problem}", path.display())]
    Verify { path: PathBuf, problem: String },

    /// The conversion was interrupted (Ctrl+C); nothing was kept.
    #[error("interrupted; no output was written")]
    Interrupted,
}

impl ConvertError {
    /// A verification error names the temporary file it checked; report
    /// it under the output's own name.
    pub(crate) fn at(self, output: &std::path::Path) -> Self {
        match self {
            ConvertError::Verify { problem, .. } => ConvertError::Verify {
                path: output.to_path_buf(),
                problem,
            },
            other => other,
        }
    }
}

pub type Result<T, E = ConvertError> = std::result::Result<T, E>;

/// Maps an I/O error while writing `path` to `DiskFull` or `Write`.
pub(crate) fn write_error(
    path: &std::path::Path,
    needed_bytes: u64,
    source: io::Error,
) -> ConvertError {
    if source.kind() == io::ErrorKind::StorageFull || source.raw_os_error() == Some(28) {
        ConvertError::DiskFull {
            path: path.to_path_buf(),
            needed_mb: needed_bytes.div_ceil(1 << 20),
        }
    } else {
        ConvertError::Write {
            path: path.to_path_buf(),
            source,
        }
    }
}
