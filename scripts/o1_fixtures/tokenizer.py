"""The tokenizer files of an O1 checkpoint.

O1 is Qwen2.5 with one special token added after Qwen2.5's own added tokens
(`<|endoftext|>` 151643 … `<|file_sep|>` 151664): `<|reasoning|>`, id 151665.
The files are those `PreTrainedTokenizerFast.save_pretrained` writes.
"""
import json
import os

REASONING = "<|reasoning|>"
LAST_QWEN25_ADDED_ID = 151664
END_OF_TEXT = "<|endoftext|>"


def with_reasoning_token(tokenizer):
    """`tokenizer` (a parsed tokenizer.json) cut to Qwen2.5's added tokens, plus
    `<|reasoning|>` as the next id; returns (tokenizer, reasoning id)."""
    added = [t for t in tokenizer["added_tokens"] if t["id"] <= LAST_QWEN25_ADDED_ID]
    reasoning_id = max(t["id"] for t in added) + 1
    added.append({"id": reasoning_id, "content": REASONING, "single_word": False, "lstrip": False,
                  "rstrip": False, "normalized": False, "special": True})
    return {**tokenizer, "added_tokens": added}, reasoning_id


def _dump(out_dir, name, value, **options):
    with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
        json.dump(value, f, **options)


def write(out_dir, tokenizer, chat_template, max_length):
    """Writes tokenizer.json, tokenizer_config.json, special_tokens_map.json,
    added_tokens.json, vocab.json and merges.txt."""
    added = tokenizer["added_tokens"]
    specials = [t["content"] for t in added if t["special"] and t["content"] != END_OF_TEXT]
    flags = ("content", "lstrip", "normalized", "rstrip", "single_word", "special")
    config = {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": {str(t["id"]): {k: t[k] for k in flags} for t in added},
        "additional_special_tokens": specials,
        "bos_token": None,
        "chat_template": chat_template,
        "clean_up_tokenization_spaces": False,
        "eos_token": END_OF_TEXT,
        "errors": "replace",
        "model_max_length": max_length,
        "pad_token": END_OF_TEXT,
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }
    _dump(out_dir, "tokenizer.json", tokenizer, ensure_ascii=False)
    _dump(out_dir, "tokenizer_config.json", config, ensure_ascii=False, indent=2)
    _dump(out_dir, "special_tokens_map.json",
          {"additional_special_tokens": specials, "eos_token": END_OF_TEXT, "pad_token": END_OF_TEXT},
          indent=2)
    _dump(out_dir, "added_tokens.json", {t["content"]: t["id"] for t in added}, indent=2)
    _dump(out_dir, "vocab.json", tokenizer["model"]["vocab"], ensure_ascii=False)
    with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for merge in tokenizer["model"]["merges"]:
            f.write(merge if isinstance(merge, str) else " ".join(merge))
            f.write("\n")
