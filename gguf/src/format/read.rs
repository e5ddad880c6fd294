//! The bounds-checked reader of a mapped GGUF file.

use super::*;

/// A parsed GGUF file borrowing the caller's bytes.
#[derive(Debug)]
pub struct GgufFile<'a> {
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<TensorInfo>,
    offsets: Vec<u64>,
    data: &'a [u8],
    /// Where `data` starts in the file.
    data_start: u64,
    n_params: u64,
}

/// Caps on what a header may declare, beyond what its bytes can hold: each
/// parsed value takes tens of bytes of memory, so a file of tiny values
/// could otherwise ask for many times its size. Far above real files (a
/// few dozen pairs, a thousand or so tensors, arrays of one entry per token).
const MAX_KV: u64 = 1 << 16;
const MAX_TENSORS: u64 = 1 << 20;
const MAX_ARRAY_ITEMS: u64 = 1 << 22;

/// The fewest bytes a key/value pair takes: key length, value type, one byte.
const MIN_KV_BYTES: u64 = 8 + 4 + 1;
/// The fewest bytes a tensor info takes: name length, dimension count, one
/// dimension, type and offset.
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 8 + 4 + 8;

/// Why a byte string is not a GGUF file this reader accepts.
#[derive(Debug, thiserror::Error)]
#[error("not a valid GGUF file: {0}")]
pub struct GgufError(pub String);

impl<'a> GgufFile<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, GgufError> {
        let mut r = Reader { bytes, pos: 0 };
        if r.take(4)? != MAGIC {
            return Err(GgufError("bad magic (expected `GGUF`)".into()));
        }
        let version = r.u32()?;
        if version != 2 && version != VERSION {
            return Err(GgufError(format!("unsupported version {version}")));
        }
        let n_tensors = r.u64()?;
        let n_kv = r.u64()?;
        // Counts come from the file: each entry takes bytes of it, so a
        // count the file cannot hold is refused before anything is sized.
        r.fits(n_kv, MIN_KV_BYTES, MAX_KV, "key/value pairs")?;
        let mut metadata = Vec::new();
        for _ in 0..n_kv {
            let key = r.string()?;
            let ty = r.value_type()?;
            let value = r.value(ty, 0)?;
            metadata.push((key, value));
        }
        let alignment = metadata
            .iter()
            .find(|(k, _)| k == "general.alignment")
            .and_then(|(_, v)| v.as_u64())
            .unwrap_or(ALIGNMENT);
        if alignment == 0 || !alignment.is_power_of_two() {
            return Err(GgufError(format!("bad alignment {alignment}")));
        }
        r.fits(n_tensors, MIN_TENSOR_INFO_BYTES, MAX_TENSORS, "tensors")?;
        let mut tensors = Vec::new();
        let mut offsets = Vec::new();
        for _ in 0..n_tensors {
            let name = r.string()?;
            let n_dims = r.u32()?;
            if n_dims == 0 || n_dims > 4 {
                return Err(GgufError(format!("tensor {name}: {n_dims} dimensions")));
            }
            let dims = (0..n_dims)
                .map(|_| r.u64())
                .collect::<Result<Vec<_>, _>>()?;
            let raw = r.u32()?;
            let ty = GgmlType::from_raw(raw)
                .ok_or_else(|| GgufError(format!("tensor {name}: unknown ggml type {raw}")))?;
            let offset = r.u64()?;
            if dims[0] % ty.block_size() != 0 {
                return Err(GgufError(format!(
                    "tensor {name}: row of {} is not a multiple of the {ty} block size",
                    dims[0]
                )));
            }
            let info = TensorInfo { name, dims, ty };
            let elements = info
                .dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d));
            if elements.is_none() || info.checked_n_bytes().is_none() {
                return Err(GgufError(format!(
                    "tensor {}: size {:?} of {ty} overflows",
                    info.name, info.dims
                )));
            }
            tensors.push(info);
            offsets.push(offset);
        }
        let data_start = (r.pos as u64)
            .checked_next_multiple_of(alignment)
            .filter(|&start| start <= bytes.len() as u64)
            .ok_or_else(|| GgufError("file ends before the tensor data".into()))?;
        let data = &bytes[data_start as usize..];
        let mut n_params = 0u64;
        for (t, &off) in tensors.iter().zip(&offsets) {
            // Checked while parsing: every size below fits in u64.
            let size = t.n_bytes();
            if off.checked_add(size).is_none_or(|e| e > data.len() as u64) {
                return Err(GgufError(format!(
                    "tensor {}: data at {off}+{size} lies past the end of the file",
                    t.name
                )));
            }
            n_params = n_params.checked_add(t.n_elements()).ok_or_else(|| {
                GgufError(format!("tensor {}: the parameter count overflows", t.name))
            })?;
        }
        Ok(Self {
            metadata,
            tensors,
            offsets,
            data,
            data_start,
            n_params,
        })
    }

    /// Elements of all tensors together (checked not to overflow).
    pub fn n_params(&self) -> u64 {
        self.n_params
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Each tensor with the byte range it takes in the file.
    pub fn tensor_ranges(&self) -> impl Iterator<Item = (&TensorInfo, std::ops::Range<u64>)> {
        self.tensors.iter().zip(&self.offsets).map(|(t, &off)| {
            let start = self.data_start + off;
            (t, start..start + t.n_bytes())
        })
    }

    /// The bytes of the tensor named `name`.
    pub fn tensor_data(&self, name: &str) -> Option<&'a [u8]> {
        let i = self.tensors.iter().position(|t| t.name == name)?;
        let start = self.offsets[i] as usize;
        Some(&self.data[start..start + self.tensors[i].n_bytes() as usize])
    }
}

/// Tensor-by-tensor differences between two files: names, types, shapes
/// and bytes. Empty when every tensor is identical (metadata may differ).
pub fn tensor_differences(a: &GgufFile, b: &GgufFile) -> Vec<String> {
    let mut diffs = Vec::new();
    for t in &a.tensors {
        let Some(u) = b.tensor(&t.name) else {
            diffs.push(format!("{}: only in the first file", t.name));
            continue;
        };
        if (t.ty, &t.dims) != (u.ty, &u.dims) {
            diffs.push(format!(
                "{}: {} {:?} vs {} {:?}",
                t.name, t.ty, t.dims, u.ty, u.dims
            ));
        } else if a.tensor_data(&t.name) != b.tensor_data(&t.name) {
            diffs.push(format!("{}: same type {}, different bytes", t.name, t.ty));
        }
    }
    for u in &b.tensors {
        if a.tensor(&u.name).is_none() {
            diffs.push(format!("{}: only in the second file", u.name));
        }
    }
    diffs
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: u64) -> Result<&'a [u8], GgufError> {
        let end = (self.pos as u64)
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len() as u64)
            .ok_or_else(|| GgufError(format!("truncated header at byte {}", self.pos)))?;
        let s = &self.bytes[self.pos..end as usize];
        self.pos = end as usize;
        Ok(s)
    }

    /// Fails unless `count` is at most `max` and `count` entries of at least
    /// `min_bytes` each fit in the rest of the file.
    fn fits(&self, count: u64, min_bytes: u64, max: u64, what: &str) -> Result<(), GgufError> {
        let left = (self.bytes.len() - self.pos) as u64;
        if count > left / min_bytes {
            return Err(GgufError(format!(
                "the header claims {count} {what} at byte {}, more than the {left} bytes left can hold",
                self.pos
            )));
        }
        if count > max {
            return Err(GgufError(format!(
                "the header claims {count} {what} at byte {}; o1 reads at most {max}",
                self.pos
            )));
        }
        Ok(())
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], GgufError> {
        Ok(self.take(N as u64)?.try_into().expect("length checked"))
    }

    fn u32(&mut self) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn string(&mut self) -> Result<String, GgufError> {
        let n = self.u64()?;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| GgufError(format!("string at byte {} is not UTF-8", self.pos)))
    }

    fn value_type(&mut self) -> Result<ValueType, GgufError> {
        let raw = self.u32()?;
        ValueType::from_raw(raw).ok_or_else(|| GgufError(format!("unknown value type {raw}")))
    }

    fn value(&mut self, ty: ValueType, depth: u32) -> Result<Value, GgufError> {
        Ok(match ty {
            ValueType::U8 => Value::U8(self.array::<1>()?[0]),
            ValueType::I8 => Value::I8(i8::from_le_bytes(self.array()?)),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array()?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array()?)),
            ValueType::U32 => Value::U32(self.u32()?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array()?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array()?)),
            ValueType::Bool => Value::Bool(self.array::<1>()?[0] != 0),
            ValueType::String => Value::String(self.string()?),
            ValueType::U64 => Value::U64(self.u64()?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array()?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array()?)),
            ValueType::Array => {
                if depth > 0 {
                    return Err(GgufError("nested arrays".into()));
                }
                let elem = self.value_type()?;
                let n = self.u64()?;
                self.fits(
                    n,
                    elem.min_bytes(),
                    MAX_ARRAY_ITEMS,
                    &format!("{elem:?} array items"),
                )?;
                let items = (0..n)
                    .map(|_| self.value(elem, depth + 1))
                    .collect::<Result<Vec<_>, _>>()?;
                Value::Array(elem, items)
            }
        })
    }
}
