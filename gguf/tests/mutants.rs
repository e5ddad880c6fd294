//! Mutation testing of the GGUF reader: mutants of small valid files must
//! parse or fail with a message, never panic or allocate beyond the bound,
//! and whatever parses must give out every tensor's bytes.

#[global_allocator]
static ALLOC: o1_fuzz::BoundedAlloc = o1_fuzz::BoundedAlloc;

use o1_gguf::format::{GgufFile, GgufWriter, TensorInfo, Value, ValueType};
use o1_gguf::ggml::GgmlType;

/// A file with every value type, arrays of numbers and strings, and tensors
/// of float and block types, written by the crate's own writer.
fn seed(alignment: Option<u32>) -> Vec<u8> {
    let mut metadata = vec![
        (
            "general.architecture".to_string(),
            Value::String("qwen2".into()),
        ),
        ("general.name".to_string(), Value::String("tiny".into())),
        ("qwen2.block_count".to_string(), Value::U32(2)),
        ("qwen2.rope.freq_base".to_string(), Value::F32(1e6)),
        ("u8".to_string(), Value::U8(7)),
        ("i8".to_string(), Value::I8(-7)),
        ("u16".to_string(), Value::U16(700)),
        ("i16".to_string(), Value::I16(-700)),
        ("i32".to_string(), Value::I32(-70_000)),
        ("u64".to_string(), Value::U64(1 << 40)),
        ("i64".to_string(), Value::I64(-(1 << 40))),
        ("f64".to_string(), Value::F64(0.5)),
        ("bool".to_string(), Value::Bool(true)),
        (
            "tokenizer.ggml.tokens".to_string(),
            Value::strings(["a", "Ġb", "<|reasoning|>", ""]),
        ),
        (
            "tokenizer.ggml.token_type".to_string(),
            Value::i32s([1, 1, 3, 5]),
        ),
        ("empty".to_string(), Value::Array(ValueType::U8, vec![])),
    ];
    if let Some(a) = alignment {
        metadata.push(("general.alignment".to_string(), Value::U32(a)));
    }
    let tensors = vec![
        TensorInfo {
            name: "token_embd.weight".into(),
            dims: vec![32, 4],
            ty: GgmlType::Q8_0,
        },
        TensorInfo {
            name: "output_norm.weight".into(),
            dims: vec![5],
            ty: GgmlType::F32,
        },
        TensorInfo {
            name: "blk.0.attn_q.weight".into(),
            dims: vec![3, 2, 1],
            ty: GgmlType::F16,
        },
        TensorInfo {
            name: "blk.0.ffn_down.weight".into(),
            dims: vec![256, 1],
            ty: GgmlType::Q4_K,
        },
    ];
    let sizes: Vec<u64> = tensors.iter().map(|t| t.n_bytes()).collect();
    let mut w = GgufWriter::new(Vec::new(), &metadata, tensors).unwrap();
    for (i, n) in sizes.iter().enumerate() {
        let data: Vec<u8> = (0..*n).map(|b| (b as u8) ^ (i as u8 * 31)).collect();
        w.write_tensor_data(&data).unwrap();
    }
    w.finish().unwrap()
}

fn parse(input: &[u8]) -> Result<(), String> {
    let file = GgufFile::parse(input).map_err(|e| e.to_string())?;
    let mut elements = 0u64;
    for t in &file.tensors {
        let data = file
            .tensor_data(&t.name)
            .ok_or_else(|| format!("{}: parsed but its data is missing", t.name))?;
        assert_eq!(data.len() as u64, t.n_bytes(), "{}", t.name);
        elements += t.n_elements();
    }
    assert_eq!(file.n_params(), elements);
    Ok(())
}

#[test]
fn mutants_gguf_reader() {
    // With the default alignment, and with `general.alignment` set.
    let seeds = [seed(None), seed(Some(32))];
    let tally = o1_fuzz::bytes("gguf", &seeds, o1_fuzz::cases(20_000), parse);
    assert!(tally.rejected > 0 && tally.accepted > 0, "{tally:?}");
}
