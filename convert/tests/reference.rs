//! The converted file computes the same function as the checkpoint: the
//! logits llama.cpp gets from the f32 GGUF of a synthetic model match a
//! naive Qwen2 forward pass written here from the checkpoint's safetensors,
//! and quantized files keep the reference's top token.

mod common;

use common::{argmax, convert, llama_logits, Fixture};
use o1_convert::config::ModelConfig;
use o1_convert::safetensors::Weights;
use o1_convert::synthetic::Spec;
use o1_convert::OutputType;

/// A Qwen2 decoder in plain Rust, f32 throughout, one token at a time.
struct Reference {
    c: ModelConfig,
    w: Weights,
}

impl Reference {
    fn load(dir: &std::path::Path) -> Self {
        Self {
            c: ModelConfig::load(&dir.join("config.json")).unwrap(),
            w: Weights::open(dir).unwrap(),
        }
    }

    fn t(&self, name: &str) -> Vec<f32> {
        let t = self.w.get(name).unwrap_or_else(|| panic!("{name}"));
        let mut out = vec![0.0; t.n_elements()];
        t.dtype.to_f32(self.w.bytes(t), &mut out);
        out
    }

    /// y = W x (+ b), W stored [out, in] row-major as torch does.
    fn linear(&self, name: &str, x: &[f32], bias: bool) -> Vec<f32> {
        let w = self.t(&format!("{name}.weight"));
        let n_in = x.len();
        let mut y: Vec<f32> = w
            .chunks(n_in)
            .map(|row| row.iter().zip(x).map(|(a, b)| a * b).sum())
            .collect();
        if bias {
            for (y, b) in y.iter_mut().zip(self.t(&format!("{name}.bias"))) {
                *y += b;
            }
        }
        y
    }

    fn rms_norm(&self, name: &str, x: &[f32]) -> Vec<f32> {
        let w = self.t(name);
        let ms = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
        let scale = 1.0 / (ms + self.c.rms_norm_eps as f32).sqrt();
        x.iter().zip(w).map(|(v, w)| v * scale * w).collect()
    }

    /// NEOX-style rotary embedding: dimension i pairs with i + d/2.
    fn rope(&self, x: &mut [f32], pos: usize) {
        let d = self.c.head_dim();
        for head in x.chunks_mut(d) {
            for i in 0..d / 2 {
                let theta = pos as f64 * (self.c.rope_theta).powf(-2.0 * i as f64 / d as f64);
                let (sin, cos) = theta.sin_cos();
                let (a, b) = (head[i] as f64, head[i + d / 2] as f64);
                head[i] = (a * cos - b * sin) as f32;
                head[i + d / 2] = (a * sin + b * cos) as f32;
            }
        }
    }

    fn logits(&self, tokens: &[u32]) -> Vec<Vec<f32>> {
        let c = &self.c;
        let (h, d) = (c.hidden_size, c.head_dim());
        let group = c.num_attention_heads / c.n_kv_heads();
        let embed = self.t("model.embed_tokens.weight");
        let mut xs: Vec<Vec<f32>> = tokens
            .iter()
            .map(|&t| embed[t as usize * h..(t as usize + 1) * h].to_vec())
            .collect();
        for l in 0..c.num_hidden_layers {
            let p = |s: &str| format!("model.layers.{l}.{s}");
            let mut ks = Vec::new();
            let mut vs = Vec::new();
            for (pos, x) in xs.iter_mut().enumerate() {
                let hn = self.rms_norm(&p("input_layernorm.weight"), x);
                let mut q = self.linear(&p("self_attn.q_proj"), &hn, true);
                let mut k = self.linear(&p("self_attn.k_proj"), &hn, true);
                let v = self.linear(&p("self_attn.v_proj"), &hn, true);
                self.rope(&mut q, pos);
                self.rope(&mut k, pos);
                ks.push(k);
                vs.push(v);
                let mut attn = vec![0.0f32; c.num_attention_heads * d];
                for head in 0..c.num_attention_heads {
                    let kvh = head / group;
                    let qh = &q[head * d..(head + 1) * d];
                    let scores: Vec<f32> = ks
                        .iter()
                        .map(|k| {
                            qh.iter()
                                .zip(&k[kvh * d..(kvh + 1) * d])
                                .map(|(a, b)| a * b)
                                .sum::<f32>()
                                / (d as f32).sqrt()
                        })
                        .collect();
                    let max = scores.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                    let exps: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
                    let sum: f32 = exps.iter().sum();
                    for (e, v) in exps.iter().zip(&vs) {
                        for i in 0..d {
                            attn[head * d + i] += e / sum * v[kvh * d + i];
                        }
                    }
                }
                let o = self.linear(&p("self_attn.o_proj"), &attn, false);
                for (x, o) in x.iter_mut().zip(o) {
                    *x += o;
                }
                let hn = self.rms_norm(&p("post_attention_layernorm.weight"), x);
                let gate = self.linear(&p("mlp.gate_proj"), &hn, false);
                let up = self.linear(&p("mlp.up_proj"), &hn, false);
                let act: Vec<f32> = gate
                    .iter()
                    .zip(up)
                    .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
                    .collect();
                let down = self.linear(&p("mlp.down_proj"), &act, false);
                for (x, d) in x.iter_mut().zip(down) {
                    *x += d;
                }
            }
        }
        let head = if c.tie_word_embeddings {
            "model.embed_tokens"
        } else {
            "lm_head"
        };
        xs.iter()
            .map(|x| self.linear(head, &self.rms_norm("model.norm.weight", x), false))
            .collect()
    }
}

/// Token ids spread over the tokenizer, including the special tokens.
fn prompt(w: &o1_convert::synthetic::Written) -> Vec<u32> {
    let n = w.tokenizer_len as u32;
    (0..24)
        .map(|i| (i * 37 + 5) % n)
        .chain([w.reasoning_id, n - 5, 300, 17])
        .collect()
}

fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> (f32, f32) {
    let mut diff = 0.0f32;
    let mut scale = 0.0f32;
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.len(), y.len());
        for (p, q) in x.iter().zip(y) {
            diff = diff.max((p - q).abs());
            scale = scale.max(p.abs());
        }
    }
    (diff, scale)
}

fn check_f32_matches_reference(spec: &Spec) {
    let fx = Fixture::new(spec);
    let out = fx.out("f32.gguf");
    convert(&fx.ckpt(), &out, OutputType::F32).unwrap();
    let tokens = prompt(&fx.written);
    let expected = Reference::load(&fx.ckpt()).logits(&tokens);
    let got = llama_logits(&out, &tokens);
    assert_eq!(got[0].len(), fx.written.vocab_size);
    let (diff, scale) = max_abs_diff(&expected, &got);
    eprintln!("max |llama.cpp - reference| = {diff:e} over logits up to {scale:.2}");
    assert!(scale > 1.0, "logits too flat to compare ({scale})");
    assert!(
        diff < 1e-4,
        "llama.cpp logits differ from the reference by {diff}"
    );
}

#[test]
fn f32_gguf_logits_match_reference_forward_pass() {
    check_f32_matches_reference(&Spec::tiny());
}

#[test]
fn tied_and_padded_f16_checkpoint_matches_too() {
    let spec = Spec {
        tie: true,
        vocab_size: Some(640),
        dtype: o1_convert::safetensors::SourceDtype::F16,
        ..Spec::tiny()
    };
    check_f32_matches_reference(&spec);
}

#[test]
fn q8_0_keeps_the_reference_top_token() {
    let fx = Fixture::tiny();
    let out = fx.out("q8.gguf");
    convert(&fx.ckpt(), &out, OutputType::Q8_0).unwrap();
    let tokens = prompt(&fx.written);
    let expected = Reference::load(&fx.ckpt()).logits(&tokens);
    let got = llama_logits(&out, &tokens);
    let mut compared = 0;
    for (pos, (e, g)) in expected.iter().zip(&got).enumerate() {
        let top = argmax(e);
        let mut sorted = e.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        // Positions whose two best logits nearly tie say nothing about q8_0.
        if sorted[0] - sorted[1] < 0.1 {
            continue;
        }
        compared += 1;
        assert_eq!(argmax(g), top, "position {pos}: q8_0 top token differs");
    }
    assert!(
        compared >= tokens.len() / 2,
        "only {compared} positions had a clear top token"
    );
}
