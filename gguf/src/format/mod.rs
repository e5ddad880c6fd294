//! GGUF v3: a streaming writer and a bounds-checked reader.
//!
//! The writer plans every tensor's offset while it writes the header, then
//! takes the tensors' bytes one tensor at a time and fails if what arrives
//! drifts from the plan, so the header can never disagree with the data.
//! The reader parses a file the caller has mapped; it backs `o1 info`, the
//! tests and the tensor-by-tensor comparisons.

mod read;
mod write;

pub use read::{tensor_differences, GgufError, GgufFile};
pub use write::GgufWriter;

use crate::ggml::GgmlType;

pub const MAGIC: &[u8; 4] = b"GGUF";
pub const VERSION: u32 = 3;
pub const ALIGNMENT: u64 = 32;

/// The GGUF value type ids.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    /// The fewest bytes a value of this type takes in a file.
    fn min_bytes(self) -> u64 {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 | String => 8,
            // Element type and length.
            Array => 12,
        }
    }

    fn from_raw(raw: u32) -> Option<Self> {
        use ValueType::*;
        Some(match raw {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }
}

/// A metadata value. Arrays hold their element type so empty arrays round-trip.
#[derive(Clone, PartialEq, Debug)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(ValueType, Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(..) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    pub fn strings<S: Into<String>>(items: impl IntoIterator<Item = S>) -> Self {
        Value::Array(
            ValueType::String,
            items.into_iter().map(|s| Value::String(s.into())).collect(),
        )
    }

    pub fn i32s(items: impl IntoIterator<Item = i32>) -> Self {
        Value::Array(ValueType::I32, items.into_iter().map(Value::I32).collect())
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// Any unsigned or non-negative integer value as u64.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(_, items) => Some(items),
            _ => None,
        }
    }
}

/// The key/value pairs of a file's header, in order.
pub type Metadata = Vec<(String, Value)>;

/// A tensor as the header describes it. `dims` are in GGUF order
/// (innermost first: the torch shape reversed).
#[derive(Clone, PartialEq, Debug)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: GgmlType,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Rows of `dims[0]` elements.
    pub fn n_rows(&self) -> u64 {
        self.dims[1..].iter().product()
    }

    /// Bytes of the tensor's data. Only for sizes known to fit: a parsed
    /// file's tensors (checked by the reader) or a checked plan.
    pub fn n_bytes(&self) -> u64 {
        self.ty.row_bytes(self.dims[0]) * self.n_rows()
    }

    /// Bytes of the tensor's data, `None` if its dimensions make it
    /// overflow u64 (or it has none).
    pub fn checked_n_bytes(&self) -> Option<u64> {
        let (&ne0, rest) = self.dims.split_first()?;
        let blocks = ne0 / self.ty.block_size();
        let row = blocks.checked_mul(self.ty.row_bytes(self.ty.block_size()))?;
        rest.iter().try_fold(row, |acc, &d| acc.checked_mul(d))
    }
}

pub fn align(n: u64) -> u64 {
    n.div_ceil(ALIGNMENT) * ALIGNMENT
}

#[cfg(test)]
mod tests {
    use super::write::write_string;
    use super::*;

    type Sample = (Vec<(String, Value)>, Vec<TensorInfo>, Vec<Vec<u8>>);

    fn sample() -> Sample {
        let metadata = vec![
            (
                "general.architecture".to_string(),
                Value::String("qwen2".into()),
            ),
            ("qwen2.block_count".to_string(), Value::U32(2)),
            ("qwen2.rope.freq_base".to_string(), Value::F32(1e6)),
            (
                "tokenizer.ggml.add_bos_token".to_string(),
                Value::Bool(false),
            ),
            (
                "tokenizer.ggml.tokens".to_string(),
                Value::strings(["a", "Ġb", "<|x|>"]),
            ),
            (
                "tokenizer.ggml.token_type".to_string(),
                Value::i32s([1, 1, 3]),
            ),
            ("empty".to_string(), Value::Array(ValueType::U32, vec![])),
            ("big".to_string(), Value::U64(u64::MAX)),
        ];
        let tensors = vec![
            TensorInfo {
                name: "a".into(),
                dims: vec![3],
                ty: GgmlType::F32,
            },
            TensorInfo {
                name: "b".into(),
                dims: vec![64, 2],
                ty: GgmlType::Q8_0,
            },
            TensorInfo {
                name: "c".into(),
                dims: vec![5, 1],
                ty: GgmlType::F16,
            },
        ];
        let data = tensors
            .iter()
            .enumerate()
            .map(|(i, t)| {
                (0..t.n_bytes())
                    .map(|b| (b as u8).wrapping_mul(7) ^ i as u8)
                    .collect()
            })
            .collect();
        (metadata, tensors, data)
    }

    fn write(chunked: bool) -> Vec<u8> {
        let (metadata, tensors, data) = sample();
        let mut w = GgufWriter::new(Vec::new(), &metadata, tensors).unwrap();
        for d in &data {
            if chunked {
                for c in d.chunks(3) {
                    w.write_tensor_data(c).unwrap();
                }
            } else {
                w.write_tensor_data(d).unwrap();
            }
        }
        w.finish().unwrap()
    }

    #[test]
    fn round_trip_through_own_reader() {
        let bytes = write(true);
        assert_eq!(bytes, write(false), "chunking must not change the file");
        let (metadata, tensors, data) = sample();
        let file = GgufFile::parse(&bytes).unwrap();
        assert_eq!(file.metadata, metadata);
        assert_eq!(file.tensors, tensors);
        for (t, d) in tensors.iter().zip(&data) {
            assert_eq!(file.tensor_data(&t.name).unwrap(), &d[..]);
        }
    }

    /// llama.cpp's own GGUF parser is the reader that matters: it checks
    /// offsets, alignment and sizes strictly.
    #[test]
    fn round_trip_through_llama_cpp_parser() {
        use llama_cpp_sys_2 as sys;
        use std::ffi::{CStr, CString};
        let bytes = write(true);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.gguf");
        std::fs::write(&path, &bytes).unwrap();
        let cpath = CString::new(path.to_str().unwrap()).unwrap();
        let (_, tensors, _) = sample();
        unsafe {
            let params = sys::gguf_init_params {
                no_alloc: true,
                ctx: std::ptr::null_mut(),
            };
            let ctx = sys::gguf_init_from_file(cpath.as_ptr(), params);
            assert!(!ctx.is_null(), "llama.cpp rejected the file");
            assert_eq!(sys::gguf_get_n_kv(ctx), 8);
            let key = CString::new("qwen2.block_count").unwrap();
            let id = sys::gguf_find_key(ctx, key.as_ptr());
            assert_eq!(sys::gguf_get_val_u32(ctx, id), 2);
            let key = CString::new("tokenizer.ggml.tokens").unwrap();
            let id = sys::gguf_find_key(ctx, key.as_ptr());
            assert_eq!(sys::gguf_get_arr_n(ctx, id), 3);
            let s = CStr::from_ptr(sys::gguf_get_arr_str(ctx, id, 1));
            assert_eq!(s.to_str().unwrap(), "Ġb");
            assert_eq!(sys::gguf_get_n_tensors(ctx), 3);
            let data_offset = sys::gguf_get_data_offset(ctx);
            assert_eq!(data_offset % 32, 0);
            for (i, t) in tensors.iter().enumerate() {
                let name = CStr::from_ptr(sys::gguf_get_tensor_name(ctx, i as i64));
                assert_eq!(name.to_str().unwrap(), t.name);
                assert_eq!(sys::gguf_get_tensor_type(ctx, i as i64), t.ty.raw());
                assert_eq!(sys::gguf_get_tensor_size(ctx, i as i64) as u64, t.n_bytes());
            }
            sys::gguf_free(ctx);
        }
    }

    #[test]
    fn tensor_differences_name_each_tensor() {
        let bytes = write(false);
        let a = GgufFile::parse(&bytes).unwrap();
        assert!(tensor_differences(&a, &a).is_empty());
        let (metadata, mut tensors, mut data) = sample();
        data[1][5] ^= 1;
        tensors[2].ty = GgmlType::BF16;
        let mut w = GgufWriter::new(Vec::new(), &metadata, tensors).unwrap();
        for d in &data {
            w.write_tensor_data(d).unwrap();
        }
        let other = w.finish().unwrap();
        let b = GgufFile::parse(&other).unwrap();
        assert_eq!(
            tensor_differences(&a, &b),
            [
                "b: same type q8_0, different bytes",
                "c: f16 [5, 1] vs bf16 [5, 1]"
            ]
        );
    }

    #[test]
    fn writer_rejects_drift() {
        let (metadata, tensors, _) = sample();
        let w = GgufWriter::new(Vec::new(), &metadata, tensors.clone()).unwrap();
        let err = w.finish().unwrap_err();
        assert!(
            err.to_string().contains("tensor a got 0 of 12 bytes"),
            "{err}"
        );

        let mut w = GgufWriter::new(Vec::new(), &metadata, tensors.clone()).unwrap();
        let total: u64 = tensors.iter().map(|t| t.n_bytes()).sum();
        let err = w
            .write_tensor_data(&vec![0; total as usize + 1])
            .unwrap_err();
        assert!(err.to_string().contains("past the last tensor"), "{err}");

        let bad = vec![TensorInfo {
            name: "q".into(),
            dims: vec![48, 2],
            ty: GgmlType::Q4_K,
        }];
        let err = GgufWriter::new(Vec::new(), &metadata, bad).err().unwrap();
        assert!(err.to_string().contains("block size"), "{err}");
    }

    /// A file with one tensor at offset 0, its header written by hand (the
    /// writer refuses what the reader must survive), and 64 bytes of data.
    fn one_tensor(dims: &[u64], ty: GgmlType) -> Vec<u8> {
        let mut f = MAGIC.to_vec();
        f.extend_from_slice(&VERSION.to_le_bytes());
        f.extend_from_slice(&1u64.to_le_bytes());
        f.extend_from_slice(&0u64.to_le_bytes());
        write_string(&mut f, "t");
        f.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for d in dims {
            f.extend_from_slice(&d.to_le_bytes());
        }
        f.extend_from_slice(&ty.raw().to_le_bytes());
        f.extend_from_slice(&0u64.to_le_bytes());
        f.resize(align(f.len() as u64) as usize + 64, 0);
        f
    }

    #[test]
    fn tensor_sizes_that_overflow_are_rejected() {
        // 2^62 + 1 f32 values: the element count fits in u64, the byte
        // size (4 × that) wrapped to 4 and passed the bounds check.
        for (dims, ty) in [
            (vec![(1u64 << 62) + 1], GgmlType::F32),
            (vec![1, (1u64 << 62) + 1], GgmlType::F32),
            // 5.5e17 blocks of 32 values fit in u64, of 34 bytes do not.
            (vec![550_000_000_000_000_000 * 32, 1], GgmlType::Q8_0),
        ] {
            let file = one_tensor(&dims, ty);
            let err = GgufFile::parse(&file).unwrap_err().to_string();
            assert!(err.contains("tensor t") && err.contains("size"), "{err}");
        }
        // Sound sizes still parse.
        let file = one_tensor(&[16], GgmlType::F32);
        assert_eq!(GgufFile::parse(&file).unwrap().n_params(), 16);
    }

    #[test]
    fn counts_beyond_the_file_are_rejected_before_allocating() {
        let good = write(false);
        // Tensor count (bytes 8..16) and key/value count (16..24).
        for (at, what) in [(8, "tensors"), (16, "key/value pairs")] {
            let mut bad = good.clone();
            bad[at..at + 8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
            let err = GgufFile::parse(&bad).unwrap_err().to_string();
            assert!(err.contains(what) && err.contains("bytes"), "{err}");
        }
        // An array of u32 claiming more elements than its bytes could hold.
        let mut f = MAGIC.to_vec();
        f.extend_from_slice(&VERSION.to_le_bytes());
        f.extend_from_slice(&0u64.to_le_bytes());
        f.extend_from_slice(&1u64.to_le_bytes());
        write_string(&mut f, "a");
        f.extend_from_slice(&(ValueType::Array as u32).to_le_bytes());
        f.extend_from_slice(&(ValueType::U32 as u32).to_le_bytes());
        f.extend_from_slice(&100u64.to_le_bytes());
        f.extend_from_slice(&[0; 200]);
        let err = GgufFile::parse(&f).unwrap_err().to_string();
        assert!(err.contains("claims 100 U32 array items"), "{err}");
    }

    #[test]
    fn arrays_longer_than_any_model_needs_are_refused() {
        // Five million one-byte items fit in a 5 MB file but would take
        // 160 MB as parsed values.
        let n = 5_000_000u64;
        let mut f = MAGIC.to_vec();
        f.extend_from_slice(&VERSION.to_le_bytes());
        f.extend_from_slice(&0u64.to_le_bytes());
        f.extend_from_slice(&1u64.to_le_bytes());
        write_string(&mut f, "a");
        f.extend_from_slice(&(ValueType::Array as u32).to_le_bytes());
        f.extend_from_slice(&(ValueType::U8 as u32).to_le_bytes());
        f.extend_from_slice(&n.to_le_bytes());
        f.resize(f.len() + n as usize, 0);
        let err = GgufFile::parse(&f).unwrap_err().to_string();
        assert!(
            err.contains("claims 5000000 U8 array items") && err.contains("at most 4194304"),
            "{err}"
        );
    }

    #[test]
    fn reader_rejects_truncation_and_garbage() {
        let bytes = write(false);
        // The last 22 bytes are padding after the last tensor; 32 cuts into its data.
        for cut in [0, 3, 10, 30, bytes.len() - 32] {
            assert!(
                GgufFile::parse(&bytes[..cut]).is_err(),
                "cut at {cut} accepted"
            );
        }
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert!(GgufFile::parse(&bad)
            .unwrap_err()
            .to_string()
            .contains("magic"));
    }
}
