//! Bad input: every kind gets an error that names the file, tensor or
//! field at fault, and no output (not even a temporary) is left behind.

mod common;

use std::fs;
use std::path::Path;

use common::{convert, files_in, Fixture};
use o1_convert::synthetic::Spec;
use o1_convert::{ConvertError, OutputType};

/// Converts and returns the error, checking nothing was written.
fn fails(fx: &Fixture) -> ConvertError {
    let before = files_in(fx.dir.path());
    let err = convert(&fx.ckpt(), &fx.out("out.gguf"), OutputType::Q8_0).unwrap_err();
    assert_eq!(
        files_in(fx.dir.path()),
        before,
        "files left behind after: {err}"
    );
    err
}

fn edit_json(path: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
    f(&mut v);
    fs::write(path, serde_json::to_vec(&v).unwrap()).unwrap();
}

/// Rewrites the safetensors header of `file` through `f`, keeping the data.
fn edit_header(file: &Path, f: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let bytes = fs::read(file).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    f(&mut header);
    let mut h = serde_json::to_vec(&header).unwrap();
    h.resize(h.len().div_ceil(8) * 8, b' ');
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(&bytes[8 + n..]);
    fs::write(file, out).unwrap();
}

fn msg(e: &ConvertError) -> String {
    e.to_string()
}

#[test]
fn missing_directory() {
    let fx = Fixture::tiny();
    let err = convert(
        &fx.dir.path().join("nope"),
        &fx.out("o.gguf"),
        OutputType::Q8_0,
    )
    .unwrap_err();
    assert!(matches!(err, ConvertError::NoSuchDirectory(_)), "{err}");
    assert!(msg(&err).contains("nope: no such directory"));
}

#[test]
fn not_a_directory() {
    let fx = Fixture::tiny();
    let file = fx.ckpt().join("config.json");
    let err = convert(&file, &fx.out("o.gguf"), OutputType::Q8_0).unwrap_err();
    assert!(msg(&err).contains("config.json: not a directory"), "{err}");
}

#[test]
fn missing_config_tokenizer_or_weights() {
    for (file, what) in [
        ("config.json", "model configuration"),
        ("tokenizer.json", "tokenizer"),
        ("model.safetensors", "the weights"),
    ] {
        let fx = Fixture::tiny();
        fs::remove_file(fx.ckpt().join(file)).unwrap();
        let err = fails(&fx);
        assert!(matches!(err, ConvertError::MissingFile { .. }), "{err}");
        assert!(
            msg(&err).contains(file) && msg(&err).contains(what),
            "{err}"
        );
    }
}

#[test]
fn unknown_architecture() {
    let fx = Fixture::tiny();
    edit_json(&fx.ckpt().join("config.json"), |v| {
        v["architectures"] = serde_json::json!(["LlamaForCausalLM"])
    });
    let err = fails(&fx);
    assert!(
        msg(&err).contains("LlamaForCausalLM is not supported: o1 converts only Qwen2"),
        "{err}"
    );
}

#[test]
fn malformed_json() {
    let fx = Fixture::tiny();
    fs::write(fx.ckpt().join("config.json"), b"{\"hidden_size\": 64,,}").unwrap();
    let err = fails(&fx);
    assert!(matches!(err, ConvertError::Json { .. }), "{err}");
    assert!(
        msg(&err).contains("config.json") && msg(&err).contains("line 1"),
        "{err}"
    );

    let fx = Fixture::tiny();
    edit_json(&fx.ckpt().join("config.json"), |v| {
        v.as_object_mut().unwrap().remove("hidden_size");
    });
    let err = fails(&fx);
    assert!(msg(&err).contains("missing field `hidden_size`"), "{err}");

    let fx = Fixture::tiny();
    fs::write(fx.ckpt().join("tokenizer.json"), b"not json").unwrap();
    assert!(msg(&fails(&fx)).contains("tokenizer.json"));
}

#[test]
fn truncated_safetensors() {
    let fx = Fixture::tiny();
    let path = fx.ckpt().join("model.safetensors");
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    let err = fails(&fx);
    assert!(
        matches!(err, ConvertError::CorruptSafetensors { .. }),
        "{err}"
    );
    assert!(
        msg(&err).contains("model.safetensors: corrupt safetensors file"),
        "{err}"
    );
}

#[test]
fn header_length_past_the_end() {
    let fx = Fixture::tiny();
    let path = fx.ckpt().join("model.safetensors");
    let mut bytes = fs::read(&path).unwrap();
    let too_long = bytes.len() as u64 * 2;
    bytes[..8].copy_from_slice(&too_long.to_le_bytes());
    fs::write(&path, &bytes).unwrap();
    let err = fails(&fx);
    assert!(
        msg(&err).contains("header length points past the end"),
        "{err}"
    );
}

#[test]
fn offsets_out_of_range() {
    let fx = Fixture::tiny();
    edit_header(&fx.ckpt().join("model.safetensors"), |h| {
        // The same size, a megabyte past the end of the file.
        let t = h.get_mut("model.norm.weight").unwrap();
        let (start, end) = (
            t["data_offsets"][0].as_u64().unwrap(),
            t["data_offsets"][1].as_u64().unwrap(),
        );
        t["data_offsets"] = serde_json::json!([start + 1_000_000, end + 1_000_000]);
    });
    let err = fails(&fx);
    assert!(
        msg(&err).contains("`model.norm.weight` has data offsets out of range"),
        "{err}"
    );

    // Offsets whose span disagrees with the shape.
    let fx = Fixture::tiny();
    edit_header(&fx.ckpt().join("model.safetensors"), |h| {
        h.get_mut("model.norm.weight").unwrap()["shape"] = serde_json::json!([65]);
    });
    let err = fails(&fx);
    assert!(
        msg(&err).contains(
            "tensor `model.norm.weight`: shape [65] of BF16 needs 130 bytes, its offsets span 128"
        ),
        "{err}"
    );
}

#[test]
fn overlapping_tensors() {
    let fx = Fixture::tiny();
    edit_header(&fx.ckpt().join("model.safetensors"), |h| {
        // Point the second tensor at the first one's bytes.
        let mut by_offset: Vec<(String, u64)> = h
            .iter()
            .filter(|(k, _)| *k != "__metadata__")
            .map(|(k, v)| (k.clone(), v["data_offsets"][0].as_u64().unwrap()))
            .collect();
        by_offset.sort_by_key(|x| x.1);
        let first = h[&by_offset[0].0]["data_offsets"].clone();
        h.get_mut(&by_offset[1].0).unwrap()["data_offsets"] = first;
    });
    let err = fails(&fx);
    assert!(msg(&err).contains("overlapping another tensor"), "{err}");
}

#[test]
fn shape_disagrees_with_config() {
    let fx = Fixture::tiny();
    edit_json(&fx.ckpt().join("config.json"), |v| {
        v["intermediate_size"] = 128.into()
    });
    let err = fails(&fx);
    assert!(matches!(err, ConvertError::ShapeMismatch { .. }), "{err}");
    assert!(
        msg(&err).contains("model.layers.0.mlp.down_proj.weight` has shape [64, 96] but config.json implies [64, 128]"),
        "{err}"
    );
}

#[test]
fn vocab_size_smaller_than_tokenizer() {
    // config.json and the embedding agree; the tokenizer defines more.
    let fx = Fixture::tiny();
    let rows = fx.written.vocab_size;
    edit_json(&fx.ckpt().join("tokenizer.json"), |v| {
        let added = v["added_tokens"].as_array_mut().unwrap();
        added.push(serde_json::json!({"id": rows + 9, "content": "<|beyond|>", "special": true}));
    });
    let err = fails(&fx);
    assert!(
        msg(&err).contains(&format!(
            "vocab_size is {rows} but tokenizer.json defines {} tokens",
            rows + 10
        )),
        "{err}"
    );
}

#[test]
fn unsupported_dtype() {
    let fx = Fixture::tiny();
    edit_header(&fx.ckpt().join("model.safetensors"), |h| {
        // Same byte size (2 per element): I16 instead of BF16.
        h.get_mut("model.norm.weight").unwrap()["dtype"] = "I16".into();
    });
    let err = fails(&fx);
    assert!(
        matches!(err, ConvertError::UnsupportedDtype { .. }),
        "{err}"
    );
    assert!(
        msg(&err).contains("`model.norm.weight` has dtype I16"),
        "{err}"
    );
}

#[test]
fn shard_named_in_index_but_missing() {
    let fx = Fixture::new(&Spec {
        shards: 3,
        ..Spec::tiny()
    });
    fs::remove_file(fx.ckpt().join("model-00002-of-00003.safetensors")).unwrap();
    let err = fails(&fx);
    assert!(matches!(err, ConvertError::MissingShard { .. }), "{err}");
    assert!(
        msg(&err).contains("shard model-00002-of-00003.safetensors"),
        "{err}"
    );
}

#[test]
fn missing_and_unexpected_tensors() {
    let fx = Fixture::tiny();
    edit_header(&fx.ckpt().join("model.safetensors"), |h| {
        let t = h.remove("model.layers.1.mlp.up_proj.weight").unwrap();
        h.insert("model.layers.1.mlp.experts.weight".into(), t);
    });
    assert!(msg(&fails(&fx)).contains("unexpected tensor `model.layers.1.mlp.experts.weight`"));

    let fx = Fixture::tiny();
    edit_json(&fx.ckpt().join("config.json"), |v| {
        v["num_hidden_layers"] = 3.into()
    });
    assert!(msg(&fails(&fx)).contains("`num_hidden_layers` is 3 but the weights hold 2 layers"));

    let fx = Fixture::tiny();
    let file = fx.ckpt().join("model.safetensors");
    let bytes = fs::read(&file).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let kept = st
        .tensors()
        .into_iter()
        .filter(|(name, _)| name != "model.layers.1.mlp.up_proj.weight");
    fs::write(&file, safetensors::serialize(kept, None).unwrap()).unwrap();
    assert!(msg(&fails(&fx)).contains("tensor `model.layers.1.mlp.up_proj.weight` is missing"));
}

#[test]
fn unwritable_output_path() {
    let fx = Fixture::tiny();
    let err = convert(
        &fx.ckpt(),
        &fx.dir.path().join("no/such/dir/o.gguf"),
        OutputType::Q8_0,
    )
    .unwrap_err();
    assert!(
        msg(&err).contains("cannot write the output")
            && msg(&err).contains("folder does not exist"),
        "{err}"
    );
    // A folder where nobody (not even root) can create files.
    let err = convert(
        &fx.ckpt(),
        Path::new("/proc/o1-test.gguf"),
        OutputType::Q8_0,
    )
    .unwrap_err();
    assert!(
        msg(&err).contains("/proc/o1-test.gguf: cannot write the output"),
        "{err}"
    );
}

#[test]
fn existing_output_needs_force() {
    let fx = Fixture::tiny();
    let out = fx.out("o.gguf");
    fs::write(&out, b"keep me").unwrap();
    let err = convert(&fx.ckpt(), &out, OutputType::Q8_0).unwrap_err();
    assert!(msg(&err).contains("already exists (pass --force"), "{err}");
    assert_eq!(fs::read(&out).unwrap(), b"keep me");
    let mut o = common::options(&fx.ckpt(), &out, OutputType::Q8_0);
    o.force = true;
    o1_convert::convert(&o, &mut o1_convert::NoProgress, &Default::default()).unwrap();
    assert_ne!(fs::read(&out).unwrap(), b"keep me");
}

#[test]
fn interrupted_conversion_leaves_nothing() {
    let fx = Fixture::tiny();
    let before = files_in(fx.dir.path());
    let o = common::options(&fx.ckpt(), &fx.out("o.gguf"), OutputType::Q8_0);
    let err = o1_convert::convert(
        &o,
        &mut o1_convert::NoProgress,
        &std::sync::atomic::AtomicBool::new(true),
    )
    .unwrap_err();
    assert!(matches!(err, ConvertError::Interrupted), "{err}");
    assert_eq!(files_in(fx.dir.path()), before);
}

/// A real full file system: a 1 MiB tmpfs. Mounting needs root, as in CI.
#[test]
#[ignore = "needs root to mount a tmpfs (runs in CI through `just test`)"]
fn full_disk() {
    let fx = Fixture::new(&Spec {
        hidden: 256,
        ffn: 512,
        ..Spec::tiny()
    });
    let mnt = fx.dir.path().join("small");
    fs::create_dir(&mnt).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mount -t tmpfs failed (run as root)");
    let result = convert(&fx.ckpt(), &mnt.join("o.gguf"), OutputType::F32);
    let left = files_in(&mnt);
    std::process::Command::new("umount")
        .arg(&mnt)
        .status()
        .unwrap();
    let err = result.unwrap_err();
    assert!(matches!(err, ConvertError::DiskFull { .. }), "{err}");
    assert!(msg(&err).contains("no space left on the device"), "{err}");
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Fails both a dry run (`plan_only`) and a conversion; returns the two messages.
fn fails_planned_and_converted(fx: &Fixture) -> [String; 2] {
    let opts = common::options(&fx.ckpt(), &fx.out("out.gguf"), OutputType::Q8_0);
    let planned = o1_convert::plan_only(&opts).unwrap_err();
    [msg(&planned), msg(&fails(fx))]
}

#[test]
fn config_sizes_beyond_sane_bounds_are_refused_before_allocating() {
    // The vocabulary used to be sized from config.json alone: 4294967295
    // aborted on allocation, a value near 3e8 exhausted memory.
    for value in [2_000_000u64, 4_294_967_295, 300_000_000] {
        let fx = Fixture::tiny();
        edit_json(&fx.ckpt().join("config.json"), |v| {
            v["vocab_size"] = value.into()
        });
        for m in fails_planned_and_converted(&fx) {
            assert!(
                m.contains(&format!("`vocab_size` is {value}")) && m.contains("at most"),
                "{m}"
            );
        }
    }
    for (key, value) in [
        ("num_hidden_layers", 2000u64),
        ("num_hidden_layers", 4_294_967_295),
        ("hidden_size", 1 << 20),
        ("intermediate_size", 4_294_967_295),
        ("num_attention_heads", 4_294_967_295),
        ("num_key_value_heads", 4_294_967_295),
        ("max_position_embeddings", 4_294_967_295),
    ] {
        let fx = Fixture::tiny();
        edit_json(&fx.ckpt().join("config.json"), |v| v[key] = value.into());
        for m in fails_planned_and_converted(&fx) {
            assert!(m.contains(&format!("`{key}` is {value}")), "{m}");
        }
    }
}

#[test]
fn config_values_must_match_the_tensors() {
    // Within the bounds but not what the weights hold: the key is named.
    let fx = Fixture::tiny();
    let rows = fx.written.vocab_size;
    let value = rows + 64;
    edit_json(&fx.ckpt().join("config.json"), |v| {
        v["vocab_size"] = value.into()
    });
    for m in fails_planned_and_converted(&fx) {
        assert!(
            m.contains(&format!(
                "`vocab_size` is {value} but model.embed_tokens.weight has {rows} rows"
            )),
            "{m}"
        );
    }
    for layers in [1, 3, 1000] {
        let fx = Fixture::tiny();
        edit_json(&fx.ckpt().join("config.json"), |v| {
            v["num_hidden_layers"] = layers.into()
        });
        for m in fails_planned_and_converted(&fx) {
            assert!(
                m.contains(&format!(
                    "`num_hidden_layers` is {layers} but the weights hold 2 layers"
                )),
                "{m}"
            );
        }
    }
}

/// Rewrites `file` with the tensors `f` gives a new (empty) shape to.
fn empty_tensors(file: &Path, f: impl Fn(&str, &[usize]) -> Option<Vec<usize>>) {
    let bytes = fs::read(file).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tensors: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| match f(&name, view.shape()) {
            Some(shape) => {
                let empty = safetensors::tensor::TensorView::new(view.dtype(), shape, &[]);
                (name, empty.unwrap())
            }
            None => (name, view),
        })
        .collect();
    fs::write(file, safetensors::serialize(tensors, None).unwrap()).unwrap();
}

#[test]
fn head_dim_zero_with_empty_attention_tensors_is_an_error() {
    // safetensors accepts zero-sized tensors, so every shape matched
    // config.json and the converter divided by the empty rows.
    let fx = Fixture::tiny();
    edit_json(&fx.ckpt().join("config.json"), |v| v["head_dim"] = 0.into());
    empty_tensors(&fx.ckpt().join("model.safetensors"), |name, shape| {
        if !name.contains(".self_attn.") {
            None
        } else if name.contains("o_proj") {
            Some(vec![shape[0], 0])
        } else if name.ends_with(".bias") {
            Some(vec![0])
        } else {
            Some(vec![0, shape[1]])
        }
    });
    for m in fails_planned_and_converted(&fx) {
        assert!(m.contains("`head_dim` is 0"), "{m}");
    }
}

#[test]
fn head_dim_too_large_is_an_error_not_an_overflow() {
    // 4 heads × 2^62 wrapped to 0 in the expected tensor shapes.
    for value in [1u64 << 62, 4096] {
        let fx = Fixture::tiny();
        edit_json(&fx.ckpt().join("config.json"), |v| {
            v["head_dim"] = value.into()
        });
        for m in fails_planned_and_converted(&fx) {
            assert!(m.contains(&format!("`head_dim` is {value}")), "{m}");
        }
    }
}

#[cfg(unix)]
#[test]
fn a_symlink_planted_at_the_temporary_name_is_not_followed() {
    let fx = Fixture::tiny();
    let out = fx.out("o.gguf");
    let victim = fx.out("victim");
    fs::write(&victim, b"precious").unwrap();
    // The temporary's name is predictable: `.{output}.o1tmp-{pid}-{kind}`,
    // and a planted link of a dead process must not be followed either.
    let pid = std::process::id();
    for name in [
        format!(".o.gguf.o1tmp-{pid}-out"),
        ".o.gguf.o1tmp-999999999-out".to_string(),
    ] {
        std::os::unix::fs::symlink(&victim, fx.out(&name)).unwrap();
    }
    let report = convert(&fx.ckpt(), &out, OutputType::Q8_0).unwrap();
    assert!(
        fs::read(&victim).unwrap() == b"precious",
        "the conversion wrote through the planted link"
    );
    assert!(!fs::symlink_metadata(&out).unwrap().file_type().is_symlink());
    assert_eq!(report.output_bytes, fs::metadata(&out).unwrap().len());
    let file = fs::read(&out).unwrap();
    o1_gguf::format::GgufFile::parse(&file).unwrap();
}

#[test]
fn generation_defaults_out_of_range_are_named() {
    // Stored as f32 for the runtime's sampler: 1e300 became infinite.
    for (key, value) in [
        ("temperature", 1e300),
        ("temperature", -1.0),
        ("top_p", 1.5),
        ("min_p", -0.1),
        ("repetition_penalty", 0.0),
    ] {
        let fx = Fixture::tiny();
        edit_json(&fx.ckpt().join("generation_config.json"), |v| {
            v[key] = value.into()
        });
        for m in fails_planned_and_converted(&fx) {
            assert!(
                m.contains("generation_config.json")
                    && m.contains(&format!("`{key}` is {value:?}")),
                "{m}"
            );
        }
    }
}

#[test]
fn config_floats_must_stay_positive_and_finite_as_f32() {
    // GGUF stores them as f32: 1e300 became infinite, 1e-300 zero.
    for (key, value, shown) in [
        (
            "rms_norm_eps",
            serde_json::json!(1e300),
            "`rms_norm_eps` is 1e300",
        ),
        (
            "rms_norm_eps",
            serde_json::json!(1e-300),
            "`rms_norm_eps` is 1e-300",
        ),
        (
            "rope_theta",
            serde_json::json!(-1.0),
            "`rope_theta` is -1.0",
        ),
        (
            "rope_scaling",
            serde_json::json!({"type": "linear", "factor": 1e40}),
            "`rope_scaling.factor` is 1e40",
        ),
    ] {
        let fx = Fixture::tiny();
        edit_json(&fx.ckpt().join("config.json"), |v| v[key] = value.clone());
        for m in fails_planned_and_converted(&fx) {
            assert!(m.contains(shown), "{m}");
        }
    }
}
