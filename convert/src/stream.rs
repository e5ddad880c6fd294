//! Streams tensor data from the mapped checkpoint into a GGUF writer, with
//! the conversion arithmetic on all worker threads and the writing on the
//! calling thread, overlapped.
//!
//! Every tensor is cut into blocks of whole rows; blocks are numbered in
//! file order. Workers take the next block number, convert it (widen to f32,
//! then `ggml_quantize_chunk`) and hand the bytes back; the caller writes
//! them strictly in order. At most `WINDOW` blocks are in flight, which
//! bounds memory whatever the model's size, and each block's source pages
//! are released once converted.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use o1_gguf::format::GgufWriter;
use o1_gguf::ggml::GgmlType;

use crate::error::ConvertError;
use crate::plan::PlannedTensor;
use crate::progress::Progress;
use crate::safetensors::{SourceDtype, Weights};

/// Elements per block: 1 Mi values, 4 MiB as f32.
const BLOCK_ELEMENTS: usize = 1 << 20;

/// How far ahead of the writer the workers may convert, per worker, in
/// elements. Counted in elements, not blocks: a layer mixes tensors of a
/// few hundred values with tensors of millions.
const WINDOW_PER_WORKER: usize = 4 * BLOCK_ELEMENTS;

struct Block {
    tensor: usize,
    first_row: usize,
    rows: usize,
    /// Elements of all blocks before this one.
    start: usize,
}

/// Blocks done and waiting to be written, keyed by block number.
struct Shared {
    done: BTreeMap<usize, Vec<u8>>,
    /// Blocks written so far: workers may run at most a window ahead.
    written: usize,
    /// Empty buffers handed back by the writer for reuse.
    spare: Vec<Vec<u8>>,
    /// Finite values that overflowed f16, per tensor.
    overflow: BTreeMap<usize, usize>,
}

/// What went wrong while streaming.
pub enum StreamError {
    Io(std::io::Error),
    Interrupted,
}

impl StreamError {
    pub fn into_convert_error(
        self,
        map_io: impl FnOnce(std::io::Error) -> ConvertError,
    ) -> ConvertError {
        match self {
            StreamError::Io(e) => map_io(e),
            StreamError::Interrupted => ConvertError::Interrupted,
        }
    }
}

/// The GGUF type that stores a source dtype unchanged.
pub fn ggml_type_of(dtype: SourceDtype) -> GgmlType {
    match dtype {
        SourceDtype::F32 => GgmlType::F32,
        SourceDtype::F16 => GgmlType::F16,
        SourceDtype::Bf16 => GgmlType::BF16,
    }
}

/// Writes the data of every planned tensor, in order, into `writer`.
/// Returns a warning per tensor whose values overflowed f16.
pub fn write_tensors<W: Write>(
    writer: &mut GgufWriter<W>,
    planned: &[PlannedTensor],
    weights: &Weights,
    threads: usize,
    cancel: &AtomicBool,
    progress: &mut dyn Progress,
) -> Result<Vec<String>, StreamError> {
    let blocks = plan_blocks(planned);
    let threads = threads.max(1);
    let window = WINDOW_PER_WORKER * threads;
    // Elements written so far, as block starts: block `seq` may be converted
    // once `blocks[seq].start < blocks[written].start + window`.
    let start_of = |seq: usize| blocks.get(seq).map_or(usize::MAX, |b| b.start);
    let next = AtomicUsize::new(0);
    let abort = AtomicBool::new(false);
    let shared = Mutex::new(Shared {
        done: BTreeMap::new(),
        written: 0,
        spare: Vec::new(),
        overflow: BTreeMap::new(),
    });
    let block_ready = Condvar::new();
    let window_moved = Condvar::new();

    let result = std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut f32_buf = Vec::new();
                loop {
                    let seq = next.fetch_add(1, Ordering::Relaxed);
                    if seq >= blocks.len() {
                        return;
                    }
                    let mut out = {
                        let mut s = shared.lock().expect("stream state");
                        while blocks[seq].start >= start_of(s.written).saturating_add(window)
                            && !abort.load(Ordering::Relaxed)
                        {
                            s = window_moved.wait(s).expect("stream state");
                        }
                        if abort.load(Ordering::Relaxed) {
                            return;
                        }
                        s.spare.pop().unwrap_or_default()
                    };
                    let b = &blocks[seq];
                    let converted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        convert_block(&planned[b.tensor], weights, b, &mut f32_buf, &mut out)
                    }));
                    let mut s = shared.lock().expect("stream state");
                    let Ok(overflow) = converted else {
                        abort.store(true, Ordering::Relaxed);
                        block_ready.notify_all();
                        return;
                    };
                    if overflow > 0 {
                        *s.overflow.entry(b.tensor).or_insert(0) += overflow;
                    }
                    s.done.insert(seq, out);
                    block_ready.notify_all();
                }
            });
        }

        // The writer: this thread, so progress is reported from the caller's thread.
        let outcome = (|| {
            for (seq, b) in blocks.iter().enumerate() {
                let data = {
                    let mut s = shared.lock().expect("stream state");
                    loop {
                        if cancel.load(Ordering::Relaxed) {
                            return Err(StreamError::Interrupted);
                        }
                        if abort.load(Ordering::Relaxed) {
                            return Err(StreamError::Io(std::io::Error::other(
                                "a conversion worker failed",
                            )));
                        }
                        if let Some(data) = s.done.remove(&seq) {
                            break data;
                        }
                        s = block_ready
                            .wait_timeout(s, std::time::Duration::from_millis(100))
                            .expect("stream state")
                            .0;
                    }
                };
                writer.write_tensor_data(&data).map_err(StreamError::Io)?;
                let p = &planned[b.tensor];
                progress.advance(
                    (b.rows * p.info.dims[0] as usize * p.source.dtype.size()) as u64,
                    &p.info.name,
                );
                let mut s = shared.lock().expect("stream state");
                s.written = seq + 1;
                let mut data = data;
                data.clear();
                s.spare.push(data);
                window_moved.notify_all();
            }
            Ok(())
        })();
        if outcome.is_err() {
            abort.store(true, Ordering::Relaxed);
            let _guard = shared.lock().expect("stream state");
            window_moved.notify_all();
        }
        outcome
    });
    result?;

    let s = shared.into_inner().expect("stream state");
    Ok(s.overflow
        .into_iter()
        .map(|(t, n)| {
            format!(
                "{}: {n} values exceed the f16 range and became infinite; use bf16 or f32",
                planned[t].info.name
            )
        })
        .collect())
}

/// Cuts every tensor into blocks of whole rows, in file order.
fn plan_blocks(planned: &[PlannedTensor]) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut start = 0;
    for (tensor, p) in planned.iter().enumerate() {
        let n_per_row = p.info.dims[0] as usize;
        let n_rows = p.info.n_rows() as usize;
        // A tensor without elements has no data to stream.
        if n_per_row == 0 || n_rows == 0 {
            continue;
        }
        let block_rows = (BLOCK_ELEMENTS / n_per_row).max(1);
        for first_row in (0..n_rows).step_by(block_rows) {
            let rows = block_rows.min(n_rows - first_row);
            blocks.push(Block {
                tensor,
                first_row,
                rows,
                start,
            });
            start += rows * n_per_row;
        }
    }
    blocks
}

/// Rows converted at a time inside a block: the f32 scratch stays in the
/// core's cache between widening and quantizing (64 KiB, as llama.cpp's
/// own quantizer chunks its work).
const CHUNK_ELEMENTS: usize = 16 << 10;

/// Converts one block into `out`; returns the count of f16 overflows.
fn convert_block(
    p: &PlannedTensor,
    weights: &Weights,
    b: &Block,
    f32_buf: &mut Vec<f32>,
    out: &mut Vec<u8>,
) -> usize {
    let src = &p.source;
    let n_per_row = p.info.dims[0] as usize;
    let src_row = n_per_row * src.dtype.size();
    let range = b.first_row * src_row..(b.first_row + b.rows) * src_row;
    let bytes = &weights.bytes(src)[range.clone()];
    let mut overflow = 0;
    if p.info.ty == ggml_type_of(src.dtype) {
        out.extend_from_slice(bytes);
    } else {
        let out_row = p.info.ty.row_bytes(n_per_row as u64) as usize;
        out.resize(b.rows * out_row, 0);
        let chunk_rows = (CHUNK_ELEMENTS / n_per_row).max(1);
        let chunks = bytes
            .chunks(chunk_rows * src_row)
            .zip(out.chunks_mut(chunk_rows * out_row));
        for (src_chunk, dst_chunk) in chunks {
            f32_buf.resize(src_chunk.len() / src.dtype.size(), 0.0);
            src.dtype.to_f32(src_chunk, f32_buf);
            o1_gguf::fault::inject_at("quantize");
            p.info
                .ty
                .quantize_rows(f32_buf, dst_chunk, n_per_row, p.importance.as_deref());
            if p.info.ty == GgmlType::F16 {
                overflow += f32_buf
                    .iter()
                    .filter(|v| v.is_finite() && v.abs() > 65504.0)
                    .count();
            }
        }
    }
    weights.release(src, range);
    overflow
}
