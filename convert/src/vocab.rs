//! `tokenizer.json` → the GGUF vocabulary (`tokenizer.ggml.*`).
//!
//! One string per embedding row: BPE tokens in their byte-level form
//! (`Ġthe`), added tokens as their text, and `[PAD{id}]` for the rows the
//! tokenizer does not define (the enlarged O1 vocabulary can be padded).
//! `<|reasoning|>` is a CONTROL token, so llama.cpp parses it as one token
//! only when asked to parse special tokens.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use o1_gguf::keys::REASONING_TOKEN;
use serde::Deserialize;

use crate::config::{ModelConfig, TokenizerConfig};
use crate::error::{ConvertError, Result};

/// llama.cpp's token types (`llama_token_type`).
pub mod token_type {
    pub const NORMAL: i32 = 1;
    pub const CONTROL: i32 = 3;
    pub const USER_DEFINED: i32 = 4;
    pub const UNUSED: i32 = 5;
}

#[derive(Deserialize)]
struct TokenizerJson {
    model: BpeModel,
    #[serde(default)]
    added_tokens: Vec<AddedToken>,
    #[serde(default)]
    pre_tokenizer: Option<serde_json::Value>,
    #[serde(default)]
    normalizer: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct BpeModel {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    vocab: HashMap<String, u32>,
    #[serde(default)]
    merges: Vec<Merge>,
}

/// Older tokenizer.json files store merges as `"a b"`, newer ones as `["a", "b"]`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Merge {
    Joined(String),
    Pair([String; 2]),
}

#[derive(Deserialize, Clone)]
struct AddedToken {
    id: u32,
    content: String,
    #[serde(default)]
    special: bool,
}

/// The vocabulary as GGUF stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct Vocab {
    /// One string per embedding row.
    pub tokens: Vec<String>,
    pub token_types: Vec<i32>,
    pub merges: Vec<String>,
    /// Entries the tokenizer defines (the rest of `tokens` is padding).
    pub tokenizer_len: usize,
    pub reasoning_id: u32,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub pad_id: Option<u32>,
    pub add_bos: bool,
}

/// llama.cpp's rule: added tokens flagged special, or whose text looks like
/// `<|...|>`, are CONTROL; the other added tokens are USER_DEFINED.
fn looks_special(text: &str) -> bool {
    (text.starts_with("<|") && text.ends_with("|>"))
        || (text.starts_with("<｜") && text.ends_with("｜>"))
}

impl Vocab {
    pub fn load(
        tokenizer_path: &Path,
        tokenizer_config: &TokenizerConfig,
        config: &ModelConfig,
    ) -> Result<Self> {
        let parsed: TokenizerJson = crate::config::read_json(tokenizer_path)?;
        Self::build(parsed, tokenizer_path, tokenizer_config, config)
    }

    fn build(
        tok: TokenizerJson,
        path: &Path,
        tokenizer_config: &TokenizerConfig,
        config: &ModelConfig,
    ) -> Result<Self> {
        let bad = |field: &str, problem: String| ConvertError::BadField {
            path: path.to_path_buf(),
            field: field.to_string(),
            problem,
        };
        if let Some(kind) = tok.model.kind.as_deref() {
            if kind != "BPE" {
                return Err(bad(
                    "model.type",
                    format!("is {kind:?}; Qwen2 uses a byte-level \"BPE\" model"),
                ));
            }
        }
        let byte_level = tok
            .pre_tokenizer
            .as_ref()
            .is_some_and(|p| p.to_string().contains("\"ByteLevel\""));
        if !byte_level {
            return Err(bad(
                "pre_tokenizer",
                "is not byte-level; Qwen2's tokenizer is".into(),
            ));
        }
        // SentencePiece's precompiled normalizer has no place in a byte-level
        // BPE tokenizer, and the tokenizers crate sizes an allocation from
        // its bytes and indexes them unchecked (a panic or an abort in
        // verification).
        let precompiled = tok
            .normalizer
            .as_ref()
            .is_some_and(|n| n.to_string().contains("\"Precompiled\""));
        if precompiled {
            return Err(bad(
                "normalizer",
                "is SentencePiece's \"Precompiled\"; Qwen2's byte-level tokenizer has none (or NFC)"
                    .into(),
            ));
        }

        // id -> (text, type), from the BPE vocabulary then the added tokens.
        let mut by_id: BTreeMap<u32, (String, i32)> = BTreeMap::new();
        for (text, &id) in &tok.model.vocab {
            if let Some((other, _)) = by_id.insert(id, (text.clone(), token_type::NORMAL)) {
                return Err(bad(
                    "model.vocab",
                    format!("gives id {id} to both {other:?} and {text:?}"),
                ));
            }
        }
        for added in &tok.added_tokens {
            let ty = if added.special || looks_special(&added.content) {
                token_type::CONTROL
            } else {
                token_type::USER_DEFINED
            };
            match by_id.get(&added.id) {
                Some((text, _)) if *text != added.content => {
                    return Err(bad(
                        "added_tokens",
                        format!(
                            "gives id {} to {:?}, which the vocabulary gives to {text:?}",
                            added.id, added.content
                        ),
                    ));
                }
                _ => {}
            }
            by_id.insert(added.id, (added.content.clone(), ty));
        }
        let tokenizer_len = by_id.keys().next_back().map_or(0, |&id| id as usize + 1);
        if config.vocab_size < tokenizer_len {
            return Err(ConvertError::Vocab(format!(
                "config.json vocab_size is {} but tokenizer.json defines {} tokens; the embedding must have a row for every token",
                config.vocab_size, tokenizer_len
            )));
        }

        let reasoning_id = tok
            .added_tokens
            .iter()
            .find(|t| t.content == REASONING_TOKEN)
            .map(|t| t.id)
            .ok_or_else(|| {
                bad(
                    "added_tokens",
                    format!("has no {REASONING_TOKEN} token: this is not an O1 checkpoint (its enlarged vocabulary is missing)"),
                )
            })?;

        let mut tokens = Vec::with_capacity(config.vocab_size);
        let mut token_types = Vec::with_capacity(config.vocab_size);
        for id in 0..config.vocab_size as u32 {
            match by_id.remove(&id) {
                Some((text, ty)) => {
                    tokens.push(text);
                    token_types.push(ty);
                }
                None => {
                    tokens.push(format!("[PAD{id}]"));
                    token_types.push(token_type::UNUSED);
                }
            }
        }
        let mut seen = HashMap::with_capacity(tokens.len());
        for (id, text) in tokens.iter().enumerate() {
            if let Some(first) = seen.insert(text.as_str(), id) {
                return Err(ConvertError::Vocab(format!(
                    "token {text:?} appears at ids {first} and {id}; GGUF token strings must be unique"
                )));
            }
        }

        let merges = tok
            .model
            .merges
            .into_iter()
            .map(|m| match m {
                Merge::Joined(s) => s,
                Merge::Pair([a, b]) => format!("{a} {b}"),
            })
            .collect();

        let id_of = |r: &Option<crate::config::TokenRef>, field: &str| -> Result<Option<u32>> {
            match r {
                None => Ok(None),
                Some(r) => tokens
                    .iter()
                    .position(|t| t == r.content())
                    .map(|i| Some(i as u32))
                    .ok_or_else(|| {
                        ConvertError::Vocab(format!(
                            "tokenizer_config.json {field} {:?} is not in the vocabulary",
                            r.content()
                        ))
                    }),
            }
        };
        let bos_id = id_of(&tokenizer_config.bos_token, "bos_token")?.or(config.bos_token_id);
        let eos_id = id_of(&tokenizer_config.eos_token, "eos_token")?
            .or(config.eos_token_id.as_ref().and_then(|e| e.first()));
        let pad_id = id_of(&tokenizer_config.pad_token, "pad_token")?;
        for (name, id) in [("bos", bos_id), ("eos", eos_id), ("pad", pad_id)] {
            if let Some(id) = id {
                if id as usize >= config.vocab_size {
                    return Err(ConvertError::Vocab(format!(
                        "{name} token id {id} is outside the {} embedding rows",
                        config.vocab_size
                    )));
                }
            }
        }

        Ok(Vocab {
            tokens,
            token_types,
            merges,
            tokenizer_len,
            reasoning_id,
            bos_id,
            eos_id,
            pad_id,
            add_bos: tokenizer_config.add_bos_token.unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TokenRef;

    fn config(vocab_size: usize) -> ModelConfig {
        serde_json::from_value(serde_json::json!({
            "architectures": ["Qwen2ForCausalLM"], "vocab_size": vocab_size, "hidden_size": 8,
            "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
            "bos_token_id": 0, "eos_token_id": [4, 5]
        }))
        .unwrap()
    }

    fn tokenizer(merges: serde_json::Value) -> TokenizerJson {
        serde_json::from_value(serde_json::json!({
            "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "Ġa": 3}, "merges": merges},
            "pre_tokenizer": {"type": "ByteLevel"},
            "added_tokens": [
                {"id": 4, "content": "<|endoftext|>", "special": true},
                {"id": 5, "content": "<|im_end|>", "special": false},
                {"id": 6, "content": "<tool_call>", "special": false},
                {"id": 8, "content": "<|reasoning|>", "special": true}
            ]
        }))
        .unwrap()
    }

    fn build(tok: TokenizerJson, vocab_size: usize, tc: &TokenizerConfig) -> Result<Vocab> {
        Vocab::build(tok, Path::new("tokenizer.json"), tc, &config(vocab_size))
    }

    #[test]
    fn token_types_padding_and_special_ids() {
        let tc = TokenizerConfig {
            eos_token: Some(TokenRef::Text("<|endoftext|>".into())),
            pad_token: Some(TokenRef::Object {
                content: "<|endoftext|>".into(),
            }),
            ..Default::default()
        };
        let v = build(tokenizer(serde_json::json!(["a b"])), 12, &tc).unwrap();
        assert_eq!(
            v.tokens,
            [
                "a",
                "b",
                "ab",
                "Ġa",
                "<|endoftext|>",
                "<|im_end|>",
                "<tool_call>",
                "[PAD7]",
                "<|reasoning|>",
                "[PAD9]",
                "[PAD10]",
                "[PAD11]"
            ]
        );
        use token_type::*;
        assert_eq!(
            v.token_types,
            [
                NORMAL,
                NORMAL,
                NORMAL,
                NORMAL,
                CONTROL,
                CONTROL,
                USER_DEFINED,
                UNUSED,
                CONTROL,
                UNUSED,
                UNUSED,
                UNUSED
            ]
        );
        assert_eq!(v.tokenizer_len, 9);
        assert_eq!(v.reasoning_id, 8);
        assert_eq!((v.bos_id, v.eos_id, v.pad_id), (Some(0), Some(4), Some(4)));
        assert!(!v.add_bos);
    }

    #[test]
    fn merges_in_both_formats() {
        let tc = TokenizerConfig::default();
        let joined = build(tokenizer(serde_json::json!(["a b", "Ġ a"])), 9, &tc).unwrap();
        let pairs = build(
            tokenizer(serde_json::json!([["a", "b"], ["Ġ", "a"]])),
            9,
            &tc,
        )
        .unwrap();
        assert_eq!(joined.merges, ["a b", "Ġ a"]);
        assert_eq!(pairs.merges, joined.merges);
        // eos falls back to config.json's first eos id.
        assert_eq!(pairs.eos_id, Some(4));
    }

    #[test]
    fn vocab_size_smaller_than_tokenizer_is_an_error() {
        let err = build(
            tokenizer(serde_json::json!([])),
            8,
            &TokenizerConfig::default(),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("vocab_size is 8") && msg.contains("defines 9 tokens"),
            "{msg}"
        );
    }

    #[test]
    fn missing_reasoning_token_is_an_error() {
        let mut tok = tokenizer(serde_json::json!([]));
        tok.added_tokens.retain(|t| t.content != REASONING_TOKEN);
        let err = build(tok, 9, &TokenizerConfig::default()).unwrap_err();
        assert!(
            err.to_string().contains("has no <|reasoning|> token"),
            "{err}"
        );
    }

    #[test]
    fn conflicting_ids_and_unknown_special_tokens_are_errors() {
        let mut tok = tokenizer(serde_json::json!([]));
        tok.added_tokens.push(AddedToken {
            id: 1,
            content: "<x>".into(),
            special: true,
        });
        let err = build(tok, 9, &TokenizerConfig::default()).unwrap_err();
        assert!(err.to_string().contains("gives id 1 to \"<x>\""), "{err}");

        let tc = TokenizerConfig {
            eos_token: Some(TokenRef::Text("</s>".into())),
            ..Default::default()
        };
        let err = build(tokenizer(serde_json::json!([])), 9, &tc).unwrap_err();
        assert!(
            err.to_string()
                .contains("eos_token \"</s>\" is not in the vocabulary"),
            "{err}"
        );
    }
}
