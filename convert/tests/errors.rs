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
    let fx = Fixture::tiny();
    edit_json(&fx.ckpt().join("config.json"), |v| {
        v["vocab_size"] = 100.into()
    });
    let err = fails(&fx);
    assert!(
        msg(&err).contains("vocab_size is 100 but tokenizer.json defines"),
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
    assert!(msg(&fails(&fx)).contains("tensor `model.layers.2.input_layernorm.weight` is missing"));
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
