//! The single-pass converter produces exactly what llama.cpp's own path
//! produces (a lossless GGUF, then `llama_model_quantize`): the same type
//! and the same bytes for every tensor, for every output type.

mod common;

use std::sync::Arc;

use common::{convert_calibrated, Fixture};
use o1_convert::imatrix::{Entry, ImportanceMatrix};
use o1_convert::synthetic::Spec;
use o1_convert::{Calibration, OutputType, Pipeline};
use o1_gguf::format::GgufFile;

/// Rows of 256 so the k-quants apply, an FFN of 320 so `ffn_down` needs
/// the fallback types, 8 layers so the Q4_K_M/Q5_K_M layer pattern varies,
/// and one KV head so IQ4_XS's grouped-query rule applies.
fn spec(tie: bool) -> Spec {
    Spec {
        hidden: 256,
        heads: 4,
        kv_heads: 1,
        ffn: 320,
        layers: 8,
        tie,
        vocab_size: Some(600),
        ..Spec::tiny()
    }
}

fn compare(fx: &Fixture, ty: OutputType) -> usize {
    compare_calibrated(fx, ty, None)
}

/// An importance matrix for every layer weight of `spec`, with columns of
/// very different weight (as real activations have), from a fixed seed.
fn matrix(spec: &Spec) -> ImportanceMatrix {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    let q = spec.hidden;
    let mut m = ImportanceMatrix {
        datasets: vec!["test".into()],
        chunk_count: 2,
        chunk_size: 64,
        ..Default::default()
    };
    for l in 0..spec.layers {
        for (name, width) in [
            ("attn_q", spec.hidden),
            ("attn_k", spec.hidden),
            ("attn_v", spec.hidden),
            ("attn_output", q),
            ("ffn_gate", spec.hidden),
            ("ffn_up", spec.hidden),
            ("ffn_down", spec.ffn),
        ] {
            let sums = (0..width).map(|_| 64.0 * next().powi(4) + 0.01).collect();
            m.entries
                .insert(format!("blk.{l}.{name}.weight"), Entry { sums, count: 64 });
        }
    }
    m
}

fn compare_calibrated(fx: &Fixture, ty: OutputType, calibration: Option<Calibration>) -> usize {
    let tag = if calibration.is_some() { "-cal" } else { "" };
    let one = fx.out(&format!("{ty}{tag}-1.gguf"));
    let two = fx.out(&format!("{ty}{tag}-2.gguf"));
    convert_calibrated(
        &fx.ckpt(),
        &one,
        ty,
        Pipeline::SinglePass,
        calibration.clone(),
    )
    .unwrap();
    convert_calibrated(&fx.ckpt(), &two, ty, Pipeline::TwoPass, calibration).unwrap();
    let (a, b) = (std::fs::read(&one).unwrap(), std::fs::read(&two).unwrap());
    let (a, b) = (GgufFile::parse(&a).unwrap(), GgufFile::parse(&b).unwrap());
    let diffs = o1_gguf::format::tensor_differences(&a, &b);
    assert!(
        diffs.is_empty(),
        "{ty}: single pass differs from llama_model_quantize:\n{}",
        diffs.join("\n")
    );
    let order = |f: &GgufFile| f.tensors.iter().map(|t| t.name.clone()).collect::<Vec<_>>();
    assert_eq!(order(&a), order(&b), "{ty}: tensor order");
    assert_eq!(a.get("general.file_type"), b.get("general.file_type"));
    a.tensors
        .iter()
        .filter(|t| t.ty.is_quantized())
        .map(|t| t.ty)
        .collect::<std::collections::HashSet<_>>()
        .len()
}

#[test]
fn single_pass_equals_llama_quantize_for_every_type() {
    let fx = Fixture::new(&spec(false));
    for ty in OutputType::ALL {
        compare(&fx, ty);
    }
    // The mixes really are mixes here (e.g. q4_K, q6_K and the q5_0 fallback).
    assert!(compare(&fx, OutputType::Q4KM) >= 3);
}

/// With an importance matrix both pipelines round alike, the mixes change
/// as llama.cpp's do (q4_0's first layers, iq4_xs's ffn_down), the matrix
/// changes the bytes, and the file records it.
#[test]
fn calibrated_single_pass_equals_llama_quantize() {
    let spec = spec(false);
    let fx = Fixture::new(&spec);
    let calibration = Calibration {
        matrix: Arc::new(matrix(&spec)),
        file: "test.imatrix.gguf".into(),
    };
    for ty in OutputType::ALL
        .into_iter()
        .filter(|t| t.calibrated_by_default())
    {
        compare_calibrated(&fx, ty, Some(calibration.clone()));
    }
    compare(&fx, OutputType::Q4KM);
    let read = |name: &str| std::fs::read(fx.out(name)).unwrap();
    let (plain, cal) = (read("q4_k_m-1.gguf"), read("q4_k_m-cal-1.gguf"));
    let (plain, cal) = (
        GgufFile::parse(&plain).unwrap(),
        GgufFile::parse(&cal).unwrap(),
    );
    let name = "blk.3.ffn_gate.weight";
    assert_eq!(plain.tensor(name).unwrap().ty, cal.tensor(name).unwrap().ty);
    assert_ne!(
        plain.tensor_data(name),
        cal.tensor_data(name),
        "the matrix changed nothing"
    );
    assert_eq!(
        cal.get("quantize.imatrix.file").and_then(|v| v.as_str()),
        Some("test.imatrix.gguf")
    );
    assert_eq!(
        cal.get("quantize.imatrix.entries_count")
            .and_then(|v| v.as_u64()),
        Some(56)
    );
    assert!(plain.get("quantize.imatrix.file").is_none());
    let q4_0 = read("q4_0-cal-1.gguf");
    let q4_0 = GgufFile::parse(&q4_0).unwrap();
    assert_eq!(
        q4_0.tensor("blk.0.ffn_down.weight").unwrap().ty,
        o1_gguf::ggml::GgmlType::Q4_1
    );
}

#[test]
fn single_pass_equals_llama_quantize_with_tied_embeddings() {
    let fx = Fixture::new(&spec(true));
    for ty in [
        OutputType::Q4KM,
        OutputType::Q5KM,
        OutputType::Q4_0,
        OutputType::Iq4Xs,
        OutputType::Q8_0,
    ] {
        compare(&fx, ty);
    }
}

#[test]
fn plan_only_predicts_the_exact_file_size() {
    let fx = Fixture::new(&spec(false));
    for ty in [OutputType::Q4KM, OutputType::F16, OutputType::Iq4Xs] {
        let out = fx.out(&format!("{ty}-plan.gguf"));
        let opts = common::options(&fx.ckpt(), &out, ty);
        let plan = o1_convert::plan_only(&opts).unwrap();
        assert!(!out.exists(), "a dry run writes nothing");
        let report = common::convert(&fx.ckpt(), &out, ty).unwrap();
        assert_eq!(
            plan.output_bytes,
            std::fs::metadata(&out).unwrap().len(),
            "{ty}"
        );
        assert_eq!(plan.type_counts, report.type_counts);
    }
}
