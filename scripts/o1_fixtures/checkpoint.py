"""Builds a Hugging Face checkpoint shaped like Qwen2.5-1.5B-O1 from real weights.

The real O1 model is a Qwen2.5 fine-tune whose tokenizer gained `<|reasoning|>`,
after which `resize_token_embeddings` fitted the embedding matrix to the new
vocabulary. This rebuilds that shape from public Qwen2.5 weights (a Q4_K_M GGUF,
dequantized to float32) so the converter and the runtime are tested on a real
model without access to the model hub:

- the embedding keeps one row per token (151666, or rounded up with
  --pad-to-multiple-of); the new row, and any row past the source's, is the mean
  of the source's token rows, as `resize_token_embeddings` initialises them;
- tensors carry Hugging Face names, sorted, in one safetensors file or --shards N
  with an index;
- lm_head is tied to the embedding as in the source unless --untie writes a copy
  (--tie drops a source lm_head);
- --off-grid moves each quantized weight to a random point of the interval that
  rounds to it (uniform, seeded): dequantized weights sit exactly on the source's
  grid, so re-quantizing them to that type is nearly lossless and calibration has
  nothing to win; off the grid they spread as a bf16 model's do, for measuring
  quantization as it is on a real fine-tune.

    python -m o1_fixtures.checkpoint OUT_DIR [--size 0.5b|1.5b] [--dtype bf16|f16|f32]
        [--shards N] [--pad-to-multiple-of N] [--tie | --untie] [--off-grid]
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np
from gguf import GGUFReader, GGMLQuantizationType
from gguf.quants import dequantize

from . import safetensors, sources, tokenizer

# Qwen2 tensor names: GGUF's per-layer suffix -> Hugging Face's.
LAYER_TENSORS = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_v.bias": "self_attn.v_proj.bias",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
EMBEDDING = "model.embed_tokens.weight"
LM_HEAD = "lm_head.weight"
GLOBAL_TENSORS = {"token_embd.weight": EMBEDDING, "output_norm.weight": "model.norm.weight",
                  "output.weight": LM_HEAD}
# Qwen2.5's <|endoftext|>, its bos and eos in config.json.
END_OF_TEXT_ID = 151643
# What `save_pretrained` records; o1 reads none of it.
TRANSFORMERS_VERSION = "4.46.3"


def hf_name(gguf_name):
    if gguf_name in GLOBAL_TENSORS:
        return GLOBAL_TENSORS[gguf_name]
    _blk, layer, suffix = gguf_name.split(".", 2)
    return f"model.layers.{layer}.{LAYER_TENSORS[suffix]}"


def resized_rows(matrix, rows, reasoning_id):
    """A vocabulary matrix cut or grown to `rows`, with the new token's row (and
    any added past the source) set to the mean of the source's token rows."""
    mean = matrix[:min(len(matrix), reasoning_id)].mean(axis=0)
    out = np.empty((rows, matrix.shape[1]), dtype=np.float32)
    kept = min(len(matrix), rows)
    out[:kept] = matrix[:kept]
    out[kept:] = mean
    out[reasoning_id] = mean
    return out


# Levels of each quantized type's blocks of 32 (K-quants: per sub-block).
LEVELS = {GGMLQuantizationType.Q4_0: 16, GGMLQuantizationType.Q4_1: 16,
          GGMLQuantizationType.Q5_0: 32, GGMLQuantizationType.Q5_1: 32,
          GGMLQuantizationType.Q8_0: 256, GGMLQuantizationType.Q4_K: 16,
          GGMLQuantizationType.Q5_K: 32, GGMLQuantizationType.Q6_K: 64}


def off_grid(values, levels, rng):
    """`values` each moved by up to half its block's step: the step of a block of
    32 is its range over the levels between, as its scale would have made it."""
    blocks = values.reshape(-1, 32)
    step = (blocks.max(axis=1) - blocks.min(axis=1)) / (levels - 1)
    noise = rng.uniform(-0.5, 0.5, size=blocks.shape).astype(np.float32)
    return (blocks + noise * step[:, None]).reshape(values.shape)


def read_tensors(reader, rows, reasoning_id, rng=None):
    """[(Hugging Face name, float32 array)] of every tensor in the GGUF; with
    `rng`, quantized ones moved off their grid (see `off_grid`)."""
    tensors = []
    for t in reader.tensors:
        values = dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)
        if rng is not None and t.tensor_type in LEVELS:
            values = off_grid(values, LEVELS[t.tensor_type], rng)
        elif rng is not None and t.tensor_type not in (GGMLQuantizationType.F32, GGMLQuantizationType.F16):
            sys.exit(f"{t.name}: --off-grid does not know {t.tensor_type.name}")
        # GGUF lists dimensions innermost first.
        values = values.reshape([int(d) for d in reversed(t.shape)])
        name = hf_name(t.name)
        if name in (EMBEDDING, LM_HEAD):
            values = resized_rows(values, rows, reasoning_id)
        tensors.append((name, values))
    return tensors


def apply_tie(tensors, tie, untie):
    """The tensors with lm_head dropped (--tie) or added (--untie); and whether
    the checkpoint ends up tied."""
    names = [name for name, _ in tensors]
    if tie:
        return [(n, v) for n, v in tensors if n != LM_HEAD], True
    if LM_HEAD in names:
        return tensors, False
    if untie:
        embedding = tensors[names.index(EMBEDDING)][1]
        return tensors + [(LM_HEAD, embedding.copy())], False
    return tensors, True


def write_weights(out_dir, tensors, dtype, shards):
    """model.safetensors, or `shards` files and their index; the total data size."""
    if shards <= 1:
        return safetensors.write(os.path.join(out_dir, "model.safetensors"), tensors, dtype)
    per_shard = -(-len(tensors) // shards)
    weight_map, total = {}, 0
    for i in range(shards):
        part = tensors[i * per_shard:(i + 1) * per_shard]
        file = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        total += safetensors.write(os.path.join(out_dir, file), part, dtype)
        weight_map.update((name, file) for name, _ in part)
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    return total


def model_config(meta, rows, tied, dtype):
    """config.json as `Qwen2Config.save_pretrained` writes it, from GGUF metadata."""
    return {
        "architectures": ["Qwen2ForCausalLM"],
        "attention_dropout": 0.0,
        "bos_token_id": END_OF_TEXT_ID,
        "eos_token_id": END_OF_TEXT_ID,
        "hidden_act": "silu",
        "hidden_size": int(meta("embedding_length")),
        "initializer_range": 0.02,
        "intermediate_size": int(meta("feed_forward_length")),
        "max_position_embeddings": int(meta("context_length")),
        "max_window_layers": int(meta("block_count")),
        "model_type": "qwen2",
        "num_attention_heads": int(meta("attention.head_count")),
        "num_hidden_layers": int(meta("block_count")),
        "num_key_value_heads": int(meta("attention.head_count_kv")),
        "rms_norm_eps": float(meta("attention.layer_norm_rms_epsilon")),
        "rope_scaling": None,
        "rope_theta": float(meta("rope.freq_base")),
        "sliding_window": None,
        "tie_word_embeddings": tied,
        "torch_dtype": {"bf16": "bfloat16", "f16": "float16", "f32": "float32"}[dtype],
        "transformers_version": TRANSFORMERS_VERSION,
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": rows,
    }


def build(gguf_file, tokenizer_file, out_dir, dtype, shards, pad_to, tie, untie, off):
    is_checkpoint = os.path.exists(os.path.join(out_dir, "config.json"))
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not is_checkpoint:
        sys.exit(f"{out_dir} exists and is not a checkpoint: not replacing it")
    reader = GGUFReader(gguf_file)

    def field(key):
        return reader.fields[key].contents() if key in reader.fields else None

    if field("general.architecture") != "qwen2":
        sys.exit(f"{gguf_file}: not a qwen2 model")

    with open(tokenizer_file, encoding="utf-8") as f:
        tok, reasoning_id = tokenizer.with_reasoning_token(json.load(f))
    vocab = reasoning_id + 1
    rows = -(-vocab // pad_to) * pad_to if pad_to else vocab

    rng = np.random.default_rng(0) if off else None
    tensors, tied = apply_tie(read_tensors(reader, rows, reasoning_id, rng), tie, untie)
    tensors.sort(key=lambda named: named[0])
    # Written beside OUT_DIR and renamed at the end: an interrupted build leaves no
    # folder that looks finished.
    staging = out_dir.rstrip("/") + ".partial"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    size = write_weights(staging, tensors, dtype, shards)

    config = model_config(lambda key: field(f"qwen2.{key}"), rows, tied, dtype)
    generation = {"bos_token_id": END_OF_TEXT_ID, "eos_token_id": END_OF_TEXT_ID,
                  "max_new_tokens": 2048, "do_sample": False,
                  "transformers_version": TRANSFORMERS_VERSION}
    for name, value in (("config.json", config), ("generation_config.json", generation)):
        with open(os.path.join(staging, name), "w") as f:
            json.dump(value, f, indent=2)
    tokenizer.write(staging, tok, field("tokenizer.chat_template"), config["max_position_embeddings"])
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(staging, out_dir)
    print(f"{out_dir}: {len(tensors)} tensors, {size / 1e9:.2f} GB {dtype}, {vocab} tokens in "
          f"{rows} rows, {tokenizer.REASONING} = {reasoning_id}, tied: {tied}", file=sys.stderr)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir")
    parser.add_argument("--size", default="0.5b", choices=sorted(sources.WEIGHTS))
    parser.add_argument("--dtype", default="bf16", choices=sorted(safetensors.DTYPES))
    parser.add_argument("--shards", type=int, default=1)
    parser.add_argument("--pad-to-multiple-of", type=int, default=0, metavar="N",
                        help="embedding rows rounded up as resize_token_embeddings(pad_to_multiple_of=N)")
    tying = parser.add_mutually_exclusive_group()
    tying.add_argument("--tie", action="store_true", help="no lm_head: tied to the embedding")
    tying.add_argument("--untie", action="store_true", help="an lm_head even where the source ties it")
    parser.add_argument("--off-grid", action="store_true",
                        help="each quantized weight moved at random within its rounding interval")
    parser.add_argument("--cache", default=os.path.expanduser("~/.cache/o1"),
                        help="downloads and the assembled source files (default ~/.cache/o1)")
    args = parser.parse_args()
    build(sources.gguf_path(args.cache, args.size), sources.tokenizer_path(args.cache), args.out_dir,
          args.dtype, args.shards, args.pad_to_multiple_of, args.tie, args.untie, args.off_grid)


if __name__ == "__main__":
    main()
