//! The streaming writer: the header with every tensor's planned offset,
//! then the tensors' bytes, checked against the plan as they arrive.

use std::io::{self, Write};

use super::*;

/// Streams a GGUF file: header first, then each tensor's bytes in plan order.
pub struct GgufWriter<W: Write> {
    out: W,
    tensors: Vec<TensorInfo>,
    /// Index of the tensor being written, and bytes of it written so far.
    current: usize,
    written_in_current: u64,
    /// Bytes written since the start of the data section.
    data_pos: u64,
    header_len: u64,
}

impl<W: Write> GgufWriter<W> {
    /// Writes the header for `metadata` and `tensors`; tensor data must then
    /// follow in the same order.
    pub fn new(
        mut out: W,
        metadata: &[(String, Value)],
        tensors: Vec<TensorInfo>,
    ) -> io::Result<Self> {
        let mut header = Vec::new();
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&VERSION.to_le_bytes());
        header.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
        header.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
        for (key, value) in metadata {
            write_string(&mut header, key);
            header.extend_from_slice(&(value.value_type() as u32).to_le_bytes());
            write_value(&mut header, value)?;
        }
        let mut offset = 0u64;
        for t in &tensors {
            if t.dims.is_empty() || t.dims[0] % t.ty.block_size() != 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "tensor {}: row of {:?} elements is not a multiple of the {} block size",
                        t.name,
                        t.dims.first(),
                        t.ty
                    ),
                ));
            }
            write_string(&mut header, &t.name);
            header.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                header.extend_from_slice(&d.to_le_bytes());
            }
            header.extend_from_slice(&t.ty.raw().to_le_bytes());
            header.extend_from_slice(&offset.to_le_bytes());
            offset = t
                .checked_n_bytes()
                .and_then(|n| offset.checked_add(n))
                .and_then(|end| end.checked_next_multiple_of(ALIGNMENT))
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("tensor {}: size {:?} overflows", t.name, t.dims),
                    )
                })?;
        }
        let padded = align(header.len() as u64) as usize;
        header.resize(padded, 0);
        out.write_all(&header)?;
        Ok(Self {
            out,
            tensors,
            current: 0,
            written_in_current: 0,
            data_pos: 0,
            header_len: padded as u64,
        })
    }

    /// Bytes of the header, padding included: where the tensor data starts.
    pub fn header_len(&self) -> u64 {
        self.header_len
    }

    /// Appends bytes to the current tensor; a tensor is complete once it has
    /// received exactly its planned size, and the writer moves to the next.
    pub fn write_tensor_data(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let Some(t) = self.tensors.get(self.current) else {
                return Err(drift("data past the last tensor".into()));
            };
            let left = t.n_bytes() - self.written_in_current;
            let n = (left as usize).min(data.len());
            self.out.write_all(&data[..n])?;
            self.written_in_current += n as u64;
            self.data_pos += n as u64;
            data = &data[n..];
            if self.written_in_current == t.n_bytes() {
                let pad = align(self.data_pos) - self.data_pos;
                self.out
                    .write_all(&[0u8; ALIGNMENT as usize][..pad as usize])?;
                self.data_pos += pad;
                self.current += 1;
                self.written_in_current = 0;
            }
        }
        Ok(())
    }

    /// Checks every planned tensor arrived in full and returns the sink.
    pub fn finish(mut self) -> io::Result<W> {
        // Zero-sized tensors complete without data.
        while let Some(t) = self.tensors.get(self.current) {
            if t.n_bytes() != 0 || self.written_in_current != 0 {
                return Err(drift(format!(
                    "tensor {} got {} of {} bytes",
                    t.name,
                    self.written_in_current,
                    t.n_bytes()
                )));
            }
            self.current += 1;
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

fn drift(msg: String) -> io::Error {
    io::Error::other(format!("GGUF writer: {msg}"))
}

pub(super) fn write_string(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u64).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

fn write_value(buf: &mut Vec<u8>, value: &Value) -> io::Result<()> {
    match value {
        Value::U8(v) => buf.push(*v),
        Value::I8(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::U16(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::I16(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::U32(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::I32(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::F32(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::Bool(v) => buf.push(u8::from(*v)),
        Value::String(s) => write_string(buf, s),
        Value::U64(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::I64(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::F64(v) => buf.extend_from_slice(&v.to_le_bytes()),
        Value::Array(elem, items) => {
            if *elem == ValueType::Array {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "nested GGUF arrays are not supported",
                ));
            }
            buf.extend_from_slice(&(*elem as u32).to_le_bytes());
            buf.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                if item.value_type() != *elem {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("GGUF array of {elem:?} holds a {:?}", item.value_type()),
                    ));
                }
                write_value(buf, item)?;
            }
        }
    }
    Ok(())
}
