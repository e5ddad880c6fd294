//! Importance matrices: for each weight matrix, the mean square of every
//! input column's activation over a calibration text. Quantizing with it
//! (llama.cpp's `ggml_quantize_chunk(..., imatrix)`) rounds the weights that
//! meet large activations more carefully.
//!
//! The file format is llama.cpp's (`llama-imatrix`'s GGUF output, and its
//! older `.dat` format for reading), so a matrix made by either tool works
//! with the other. The collector follows `llama-imatrix`'s defaults: only
//! the layers' matrix products (`blk.*`), from batches of 16 tokens or more.

use std::collections::BTreeMap;
use std::ffi::{c_void, CStr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use llama_cpp_sys_2 as sys;
use o1_gguf::files::replace_privately;
use o1_gguf::format::{GgufFile, GgufWriter, TensorInfo, Value};
use o1_gguf::ggml::GgmlType;

/// llama.cpp's metadata keys of an imatrix file.
const KEY_DATASETS: &str = "imatrix.datasets";
const KEY_CHUNK_COUNT: &str = "imatrix.chunk_count";
const KEY_CHUNK_SIZE: &str = "imatrix.chunk_size";
const SUFFIX_SUMS: &str = ".in_sum2";
const SUFFIX_COUNTS: &str = ".counts";

/// The keys a GGUF quantized with a matrix records (`llama-quantize`'s).
pub const KEY_QUANTIZE_FILE: &str = "quantize.imatrix.file";
pub const KEY_QUANTIZE_DATASET: &str = "quantize.imatrix.dataset";
pub const KEY_QUANTIZE_ENTRIES: &str = "quantize.imatrix.entries_count";
pub const KEY_QUANTIZE_CHUNKS: &str = "quantize.imatrix.chunks_count";

/// One weight matrix's statistics: the sum of each input column's squared
/// activations, and how many activation rows were summed.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub sums: Vec<f32>,
    pub count: u64,
}

impl Entry {
    /// The importance of each column, as `llama-quantize` computes it from
    /// the file (the sum over the count; 1 where nothing was seen).
    pub fn values(&self) -> Vec<f32> {
        if self.count == 0 {
            return vec![1.0; self.sums.len()];
        }
        let count = self.count as f32;
        self.sums.iter().map(|s| s / count).collect()
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImportanceMatrix {
    /// Keyed by GGUF tensor name (`blk.0.attn_q.weight`).
    pub entries: BTreeMap<String, Entry>,
    /// What the matrix was computed on.
    pub datasets: Vec<String>,
    pub chunk_count: u32,
    /// Tokens per chunk.
    pub chunk_size: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ImatrixError {
    #[error("cannot read the importance matrix {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the importance matrix {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not an importance matrix: {problem}")]
    Invalid { path: PathBuf, problem: String },
}

impl ImportanceMatrix {
    /// The importance row of a tensor, if the matrix has one of its width.
    pub fn values_for(&self, tensor: &str, n_per_row: usize) -> Option<Vec<f32>> {
        let e = self.entries.get(tensor)?;
        (e.sums.len() == n_per_row).then(|| e.values())
    }

    /// Reads llama.cpp's GGUF imatrix format, or its older `.dat` format.
    pub fn load(path: &Path) -> Result<Self, ImatrixError> {
        let bytes = std::fs::read(path).map_err(|source| ImatrixError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let invalid = |problem: String| ImatrixError::Invalid {
            path: path.to_path_buf(),
            problem,
        };
        let m = if bytes.starts_with(b"GGUF") {
            Self::from_gguf(&bytes).map_err(invalid)?
        } else {
            Self::from_dat(&bytes).map_err(invalid)?
        };
        if m.entries.is_empty() {
            return Err(invalid("it holds no entries".into()));
        }
        if let Some((name, _)) = m
            .entries
            .iter()
            .find(|(_, e)| e.sums.iter().any(|v| !v.is_finite() || *v < 0.0))
        {
            return Err(invalid(format!("{name} has negative or non-finite values")));
        }
        Ok(m)
    }

    fn from_gguf(bytes: &[u8]) -> Result<Self, String> {
        let file = GgufFile::parse(bytes).map_err(|e| e.0)?;
        let datasets = file
            .get(KEY_DATASETS)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let u32_key = |k| file.get(k).and_then(Value::as_u64).unwrap_or(0) as u32;
        let floats = |name: &str| -> Result<Vec<f32>, String> {
            let info = file.tensor(name).ok_or(format!("{name} is missing"))?;
            if info.ty != GgmlType::F32 {
                return Err(format!("{name} is {}, not f32", info.ty));
            }
            let data = file
                .tensor_data(name)
                .ok_or(format!("{name} has no data"))?;
            Ok(data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect())
        };
        let mut entries = BTreeMap::new();
        for t in &file.tensors {
            let Some(name) = t.name.strip_suffix(SUFFIX_SUMS) else {
                continue;
            };
            let sums = floats(&t.name)?;
            let counts = floats(&format!("{name}{SUFFIX_COUNTS}"))?;
            // One count per expert; o1's models are dense.
            let [count] = counts[..] else {
                return Err(format!(
                    "{name} has {} counts (a mixture of experts?)",
                    counts.len()
                ));
            };
            entries.insert(
                name.to_string(),
                Entry {
                    sums,
                    count: count.round().max(0.0) as u64,
                },
            );
        }
        Ok(Self {
            entries,
            datasets,
            chunk_count: u32_key(KEY_CHUNK_COUNT),
            chunk_size: u32_key(KEY_CHUNK_SIZE),
        })
    }

    /// llama.cpp's legacy format: entries of (name, calls, values already
    /// divided by the calls), then optionally the chunk count and dataset.
    fn from_dat(bytes: &[u8]) -> Result<Self, String> {
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8], String> {
            let s = bytes.get(at..at + n).ok_or("the file ends early")?;
            at += n;
            Ok(s)
        };
        fn i32_of(b: &[u8]) -> i32 {
            i32::from_le_bytes([b[0], b[1], b[2], b[3]])
        }
        let n_entries = i32_of(take(4)?);
        if n_entries < 1 {
            return Err("it holds no entries".into());
        }
        let mut m = Self::default();
        for _ in 0..n_entries {
            let len = i32_of(take(4)?);
            let name = String::from_utf8(take(len.max(0) as usize)?.to_vec())
                .map_err(|_| "a name is not UTF-8")?;
            let calls = i32_of(take(4)?).max(0) as u64;
            let n = i32_of(take(4)?);
            if n < 1 {
                return Err(format!("{name} has no values"));
            }
            let values: Vec<f32> = take(n as usize * 4)?
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            // Stored as mean × calls; keep sums so that values() divides back.
            m.entries.insert(
                name,
                Entry {
                    sums: values,
                    count: calls,
                },
            );
        }
        if let Ok(chunks) = take(4) {
            m.chunk_count = i32_of(chunks).max(0) as u32;
            if let Ok(len) = take(4).map(i32_of) {
                if let Ok(name) = take(len.max(0) as usize) {
                    m.datasets.push(String::from_utf8_lossy(name).into_owned());
                }
            }
        }
        Ok(m)
    }

    /// Writes the matrix in llama.cpp's GGUF format, whole or not at all.
    pub fn save(&self, path: &Path) -> Result<(), ImatrixError> {
        let err = |source| ImatrixError::Write {
            path: path.to_path_buf(),
            source,
        };
        let meta = vec![
            ("general.type".to_string(), Value::String("imatrix".into())),
            (
                KEY_DATASETS.to_string(),
                Value::strings(self.datasets.clone()),
            ),
            (KEY_CHUNK_COUNT.to_string(), Value::U32(self.chunk_count)),
            (KEY_CHUNK_SIZE.to_string(), Value::U32(self.chunk_size)),
        ];
        let mut infos = Vec::new();
        let mut data: Vec<Vec<f32>> = Vec::new();
        for (name, e) in &self.entries {
            infos.push(TensorInfo {
                name: format!("{name}{SUFFIX_SUMS}"),
                dims: vec![e.sums.len() as u64, 1],
                ty: GgmlType::F32,
            });
            data.push(e.sums.clone());
            infos.push(TensorInfo {
                name: format!("{name}{SUFFIX_COUNTS}"),
                dims: vec![1, 1],
                ty: GgmlType::F32,
            });
            data.push(vec![e.count as f32]);
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let mut bytes = Vec::new();
        let mut w = GgufWriter::new(&mut bytes, &meta, infos).map_err(err)?;
        for values in &data {
            let row: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            w.write_tensor_data(&row).map_err(err)?;
        }
        w.finish().map_err(err)?;
        replace_privately(path, &bytes).map_err(err)
    }

    /// The metadata a GGUF quantized with this matrix records, as
    /// `llama-quantize --imatrix FILE` writes it (`file` is what it names).
    pub fn quantize_metadata(&self, file: &str) -> Vec<(String, Value)> {
        let mut kv = vec![(KEY_QUANTIZE_FILE.to_string(), Value::String(file.into()))];
        if let Some(first) = self.datasets.first() {
            kv.push((
                KEY_QUANTIZE_DATASET.to_string(),
                Value::String(first.clone()),
            ));
        }
        kv.push((
            KEY_QUANTIZE_ENTRIES.to_string(),
            Value::U32(self.entries.len() as u32),
        ));
        if self.chunk_count > 0 {
            kv.push((
                KEY_QUANTIZE_CHUNKS.to_string(),
                Value::U32(self.chunk_count),
            ));
        }
        kv
    }
}

/// Gathers a matrix from llama.cpp's evaluation callback while a model runs.
/// Pass [`Collector::callback`] and a pointer to the collector as
/// `cb_eval` / `cb_eval_user_data` of the context.
#[derive(Default)]
pub struct Collector {
    entries: Mutex<BTreeMap<String, Entry>>,
}

/// `llama-imatrix` skips batches smaller than this (a single decoded token
/// says little and would weigh the last positions).
const MIN_ROWS: i64 = 16;

impl Collector {
    pub fn new() -> Self {
        Self::default()
    }

    /// The matrix gathered so far.
    pub fn finish(
        self,
        datasets: Vec<String>,
        chunk_count: u32,
        chunk_size: u32,
    ) -> ImportanceMatrix {
        ImportanceMatrix {
            entries: self.entries.into_inner().unwrap_or_else(|e| e.into_inner()),
            datasets,
            chunk_count,
            chunk_size,
        }
    }

    /// ggml's scheduler asks (`ask`) whether a node's data is wanted, then
    /// calls again once it is computed.
    ///
    /// # Safety
    /// `user_data` must point to a live `Collector`; ggml passes a valid node.
    pub unsafe extern "C" fn callback(
        t: *mut sys::ggml_tensor,
        ask: bool,
        user_data: *mut c_void,
    ) -> bool {
        let (t, this) = (&*t, &*(user_data as *const Collector));
        let (src0, src1) = (t.src[0], t.src[1]);
        if t.op != sys::GGML_OP_MUL_MAT || src0.is_null() || src1.is_null() {
            return !ask;
        }
        let (src0, src1) = (&*src0, &*src1);
        let name = weight_name(src0);
        let wanted =
            name.starts_with("blk.") && src1.ne[1] >= MIN_ROWS && src1.type_ == sys::GGML_TYPE_F32;
        if ask {
            return wanted;
        }
        if !wanted {
            return true;
        }
        // The CPU backend computes in host memory; copy otherwise.
        let host = sys::ggml_backend_buffer_is_host(src1.buffer);
        let owned: Vec<u8>;
        let base = if host {
            src1.data as *const u8
        } else {
            let n = sys::ggml_nbytes(src1);
            let mut buf = vec![0u8; n];
            sys::ggml_backend_tensor_get(src1, buf.as_mut_ptr().cast(), 0, n);
            owned = buf;
            owned.as_ptr()
        };
        this.add(&name, src1, base);
        true
    }

    /// Adds every activation row of `src1` (`ne[0]` columns) to `name`'s sums.
    unsafe fn add(&self, name: &str, src1: &sys::ggml_tensor, base: *const u8) {
        let ne0 = src1.ne[0] as usize;
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let e = entries.entry(name.to_string()).or_insert_with(|| Entry {
            sums: vec![0.0; ne0],
            count: 0,
        });
        if e.sums.len() != ne0 {
            return;
        }
        for i3 in 0..src1.ne[3] {
            for i2 in 0..src1.ne[2] {
                for row in 0..src1.ne[1] {
                    let off = row as usize * src1.nb[1]
                        + i2 as usize * src1.nb[2]
                        + i3 as usize * src1.nb[3];
                    let x = std::slice::from_raw_parts(base.add(off) as *const f32, ne0);
                    for (acc, v) in e.sums.iter_mut().zip(x) {
                        *acc += v * v;
                    }
                }
                e.count += src1.ne[1] as u64;
            }
        }
    }
}

/// The weight's own name: the scheduler may decorate copies
/// (`CUDA0#blk.0.attn_k.weight#0`).
fn weight_name(t: &sys::ggml_tensor) -> String {
    // SAFETY: ggml keeps names NUL-terminated within the array.
    let full = unsafe { CStr::from_ptr(t.name.as_ptr()) }.to_string_lossy();
    match full.split_once('#') {
        Some((_, rest)) => rest.split('#').next().unwrap_or(rest).to_string(),
        None => full.into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ImportanceMatrix {
        let mut entries = BTreeMap::new();
        entries.insert(
            "blk.0.attn_q.weight".to_string(),
            Entry {
                sums: vec![4.0, 8.0, 0.5],
                count: 4,
            },
        );
        entries.insert(
            "blk.0.ffn_down.weight".to_string(),
            Entry {
                sums: vec![1.0; 5],
                count: 0,
            },
        );
        ImportanceMatrix {
            entries,
            datasets: vec!["o1-calibration".into()],
            chunk_count: 3,
            chunk_size: 512,
        }
    }

    #[test]
    fn gguf_format_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        let m = sample();
        m.save(&path).unwrap();
        assert_eq!(ImportanceMatrix::load(&path).unwrap(), m);
        let e = &m.entries["blk.0.attn_q.weight"];
        assert_eq!(e.values(), [1.0, 2.0, 0.125]);
        assert_eq!(m.entries["blk.0.ffn_down.weight"].values(), [1.0; 5]);
        assert_eq!(m.values_for("blk.0.attn_q.weight", 3).unwrap().len(), 3);
        assert!(m.values_for("blk.0.attn_q.weight", 4).is_none());
    }

    #[test]
    fn legacy_dat_format_reads() {
        let mut b = Vec::new();
        b.extend(1i32.to_le_bytes());
        let name = b"blk.1.attn_k.weight";
        b.extend((name.len() as i32).to_le_bytes());
        b.extend(name);
        b.extend(10i32.to_le_bytes());
        b.extend(2i32.to_le_bytes());
        b.extend(30f32.to_le_bytes());
        b.extend(5f32.to_le_bytes());
        b.extend(7i32.to_le_bytes());
        b.extend(4i32.to_le_bytes());
        b.extend(b"wiki");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.dat");
        std::fs::write(&path, &b).unwrap();
        let m = ImportanceMatrix::load(&path).unwrap();
        assert_eq!(m.entries["blk.1.attn_k.weight"].values(), [3.0, 0.5]);
        assert_eq!(
            (m.chunk_count, m.datasets.clone()),
            (7, vec!["wiki".to_string()])
        );
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.dat");
        std::fs::write(&path, [1, 0, 0, 0, 200, 0, 0, 0]).unwrap();
        let err = ImportanceMatrix::load(&path).unwrap_err().to_string();
        assert!(err.contains("m.dat") && err.contains("ends early"), "{err}");
        let err = ImportanceMatrix::load(&dir.path().join("none"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot read"), "{err}");
    }
}
