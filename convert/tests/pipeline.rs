//! The single-pass converter produces exactly what llama.cpp's own path
//! produces (a lossless GGUF, then `llama_model_quantize`): the same type
//! and the same bytes for every tensor, for every output type.

mod common;

use common::{convert_with, Fixture};
use o1_convert::synthetic::Spec;
use o1_convert::{OutputType, Pipeline};
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
    let one = fx.out(&format!("{ty}-1.gguf"));
    let two = fx.out(&format!("{ty}-2.gguf"));
    convert_with(&fx.ckpt(), &one, ty, Pipeline::SinglePass).unwrap();
    convert_with(&fx.ckpt(), &two, ty, Pipeline::TwoPass).unwrap();
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
