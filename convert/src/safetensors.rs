//! The checkpoint's weights: one `model.safetensors`, or the shards that
//! `model.safetensors.index.json` lists, each mapped read-only.
//!
//! Parsing is the `safetensors` crate's (it checks the header length, the
//! offsets and that tensors neither overlap nor leave gaps); this module adds
//! the file names to its errors, checks the index against the shards and
//! gives out tensor bytes without copying them.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::{Mmap, UncheckedAdvice};
use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;

use crate::error::{ConvertError, Result};

pub const SINGLE_FILE: &str = "model.safetensors";
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// The element types o1 reads.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SourceDtype {
    F32,
    F16,
    Bf16,
}

impl SourceDtype {
    pub fn size(self) -> usize {
        match self {
            SourceDtype::F32 => 4,
            SourceDtype::F16 | SourceDtype::Bf16 => 2,
        }
    }

    /// Widens `src` (little-endian elements of this type) into `dst`.
    pub fn to_f32(self, src: &[u8], dst: &mut [f32]) {
        assert_eq!(src.len(), dst.len() * self.size());
        match self {
            SourceDtype::F32 => {
                for (d, s) in dst.iter_mut().zip(src.chunks_exact(4)) {
                    *d = f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
                }
            }
            SourceDtype::F16 => {
                for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
                    *d = half::f16::from_le_bytes([s[0], s[1]]).to_f32();
                }
            }
            SourceDtype::Bf16 => {
                // bf16 is the top half of an f32: exact.
                for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
                    *d = f32::from_bits(u32::from(u16::from_le_bytes([s[0], s[1]])) << 16);
                }
            }
        }
    }
}

/// One tensor in one shard.
#[derive(Clone, Debug)]
pub struct SourceTensor {
    pub name: String,
    pub shard: usize,
    pub dtype: SourceDtype,
    /// Torch order (outermost first).
    pub shape: Vec<usize>,
    /// Byte range within the shard file.
    pub start: usize,
    pub end: usize,
}

impl SourceTensor {
    pub fn n_elements(&self) -> usize {
        self.shape.iter().product()
    }
}

struct Shard {
    path: PathBuf,
    map: Mmap,
}

/// All weight files of a checkpoint, mapped.
pub struct Weights {
    shards: Vec<Shard>,
    tensors: BTreeMap<String, SourceTensor>,
}

#[derive(Deserialize)]
struct Index {
    weight_map: BTreeMap<String, String>,
}

impl Weights {
    /// Opens `model.safetensors.index.json` and its shards if present,
    /// otherwise `model.safetensors`.
    pub fn open(dir: &Path) -> Result<Self> {
        let index_path = dir.join(INDEX_FILE);
        if index_path.exists() {
            return Self::open_index(dir, &index_path);
        }
        let single = dir.join(SINGLE_FILE);
        if !single.exists() {
            return Err(ConvertError::MissingFile {
                path: single,
                what:
                    "the weights: model.safetensors or model.safetensors.index.json with its shards",
            });
        }
        let mut weights = Weights {
            shards: Vec::new(),
            tensors: BTreeMap::new(),
        };
        weights.add_shard(single)?;
        Ok(weights)
    }

    fn open_index(dir: &Path, index_path: &Path) -> Result<Self> {
        let index: Index = crate::config::read_json(index_path)?;
        let mut weights = Weights {
            shards: Vec::new(),
            tensors: BTreeMap::new(),
        };
        // Shard file -> a tensor the index places in it (for error messages).
        let mut files: BTreeMap<&str, &str> = BTreeMap::new();
        for (tensor, file) in &index.weight_map {
            files.entry(file).or_insert(tensor);
        }
        for (file, tensor) in &files {
            if file.contains('/') || file.contains('\\') || *file == ".." {
                return Err(ConvertError::BadField {
                    path: index_path.to_path_buf(),
                    field: "weight_map".into(),
                    problem: format!(
                        "names {file:?}, which is not a file in the checkpoint folder"
                    ),
                });
            }
            let path = dir.join(file);
            if !path.is_file() {
                return Err(ConvertError::MissingShard {
                    index: index_path.to_path_buf(),
                    shard: file.to_string(),
                    tensor: tensor.to_string(),
                });
            }
            weights.add_shard(path)?;
        }
        for (tensor, file) in &index.weight_map {
            let found = weights
                .tensors
                .get(tensor)
                .map(|t| &weights.shards[t.shard].path);
            if found.is_none_or(|p| p.file_name().and_then(|n| n.to_str()) != Some(file)) {
                return Err(ConvertError::BadField {
                    path: index_path.to_path_buf(),
                    field: "weight_map".into(),
                    problem: format!(
                        "places `{tensor}` in {file}, but that shard does not hold it"
                    ),
                });
            }
        }
        Ok(weights)
    }

    fn add_shard(&mut self, path: PathBuf) -> Result<()> {
        let read_err = |source| ConvertError::Read {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(read_err)?;
        // SAFETY: the file is opened read-only; o1 does not modify checkpoints
        // while converting them (a concurrent writer could change the bytes
        // under the map, as with any reader of a mapped file).
        let map = unsafe { Mmap::map(&file) }.map_err(read_err)?;
        let corrupt = |problem: String| ConvertError::CorruptSafetensors {
            path: path.clone(),
            problem,
        };
        let (header_len, metadata) = SafeTensors::read_metadata(&map).map_err(|e| match e {
            safetensors::SafeTensorError::TensorInvalidInfo => corrupt(find_size_mismatch(&map)),
            e => corrupt(describe(e)),
        })?;
        let data_start = 8 + header_len;
        let shard = self.shards.len();
        for (name, info) in metadata.tensors() {
            let dtype = match info.dtype {
                Dtype::F32 => SourceDtype::F32,
                Dtype::F16 => SourceDtype::F16,
                Dtype::BF16 => SourceDtype::Bf16,
                other => {
                    return Err(ConvertError::UnsupportedDtype {
                        path: path.clone(),
                        tensor: name,
                        dtype: format!("{other:?}"),
                    })
                }
            };
            let (start, end) = info.data_offsets;
            let tensor = SourceTensor {
                name: name.clone(),
                shard,
                dtype,
                shape: info.shape.clone(),
                start: data_start + start,
                end: data_start + end,
            };
            if let Some(prev) = self.tensors.insert(name.clone(), tensor) {
                return Err(ConvertError::DuplicateTensor {
                    tensor: name,
                    first: self.shards[prev.shard].path.clone(),
                    second: path.clone(),
                });
            }
        }
        self.shards.push(Shard { path, map });
        Ok(())
    }

    pub fn tensors(&self) -> impl Iterator<Item = &SourceTensor> {
        self.tensors.values()
    }

    pub fn get(&self, name: &str) -> Option<&SourceTensor> {
        self.tensors.get(name)
    }

    pub fn shard_path(&self, t: &SourceTensor) -> &Path {
        &self.shards[t.shard].path
    }

    /// The raw little-endian bytes of a tensor, straight from the map.
    pub fn bytes(&self, t: &SourceTensor) -> &[u8] {
        &self.shards[t.shard].map[t.start..t.end]
    }

    /// Total bytes of tensor data over all shards.
    pub fn total_bytes(&self) -> u64 {
        self.tensors
            .values()
            .map(|t| (t.end - t.start) as u64)
            .sum()
    }

    /// Drops the mapped pages of `range` (bytes of tensor `t`) from this
    /// process, so that reading a whole model does not grow the resident set.
    pub fn release(&self, t: &SourceTensor, range: std::ops::Range<usize>) {
        let map = &self.shards[t.shard].map;
        let page = page_size();
        // Only whole pages inside the range: neighbours may still be in use.
        let start = (t.start + range.start).div_ceil(page) * page;
        let end = (t.start + range.end) / page * page;
        if end > start {
            // SAFETY: the map is a read-only private file mapping; dropped
            // pages are read back from the file if touched again.
            let _ = unsafe {
                map.unchecked_advise_range(UncheckedAdvice::DontNeed, start, end - start)
            };
        }
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
}

/// Names the tensor whose shape and byte span disagree (the `safetensors`
/// crate reports the problem without the name).
fn find_size_mismatch(file: &[u8]) -> String {
    let generic = "a tensor's shape does not match its byte size".to_string();
    // Sizes here come straight from the file: all arithmetic is checked.
    let header_end = file
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        .and_then(|n| usize::try_from(n).ok()?.checked_add(8));
    let Some(Ok(header)) = header_end
        .and_then(|end| file.get(8..end))
        .map(serde_json::from_slice::<BTreeMap<String, serde_json::Value>>)
    else {
        return generic;
    };
    for (name, info) in &header {
        let (Some(dtype), Some(shape), Some(offsets)) = (
            info["dtype"].as_str(),
            info["shape"].as_array(),
            info["data_offsets"].as_array(),
        ) else {
            continue;
        };
        let size: u64 = match dtype {
            "F64" | "I64" | "U64" => 8,
            "F32" | "I32" | "U32" => 4,
            "F16" | "BF16" | "I16" | "U16" => 2,
            _ => 1,
        };
        let dims: Vec<u64> = shape.iter().filter_map(|d| d.as_u64()).collect();
        let needed = dims.iter().try_fold(size, |acc, &d| acc.checked_mul(d));
        let span = offsets
            .get(1)
            .and_then(|e| e.as_u64())
            .unwrap_or(0)
            .saturating_sub(offsets.first().and_then(|s| s.as_u64()).unwrap_or(0));
        if needed != Some(span) {
            let needed = needed.map_or("more than 2^64".to_string(), |n| n.to_string());
            return format!(
                "tensor `{name}`: shape {dims:?} of {dtype} needs {needed} bytes, its offsets span {span}"
            );
        }
    }
    generic
}

fn describe(e: safetensors::SafeTensorError) -> String {
    use safetensors::SafeTensorError::*;
    match e {
        HeaderTooSmall => "the file is shorter than its 8-byte header length".into(),
        HeaderTooLarge | InvalidHeaderLength => {
            "the header length points past the end of the file (truncated or not safetensors)".into()
        }
        InvalidHeaderStart => "the header does not start with `{`".into(),
        InvalidHeader(_) => "the header is not UTF-8".into(),
        InvalidHeaderDeserialization(e) => format!("the header is not valid JSON: {e}"),
        InvalidOffset(name) => format!(
            "tensor `{name}` has data offsets out of range, overlapping another tensor or leaving a gap"
        ),
        MetadataIncompleteBuffer => "the tensor data does not fill the file exactly (truncated?)".into(),
        TensorInvalidInfo => "a tensor's shape does not match its byte size".into(),
        ValidationOverflow => "a tensor's size overflows".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_mismatch_with_an_overflowing_shape_is_named_not_wrapped() {
        let header =
            br#"{"t":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,16]}}"#;
        let mut file = (header.len() as u64).to_le_bytes().to_vec();
        file.extend_from_slice(header);
        file.extend_from_slice(&[0; 16]);
        let problem = find_size_mismatch(&file);
        assert!(problem.contains("needs more than 2^64 bytes"), "{problem}");
        // A header length near u64::MAX is not followed either.
        file[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(
            find_size_mismatch(&file),
            "a tensor's shape does not match its byte size"
        );
    }
}
