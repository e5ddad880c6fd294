//! Mutation tests of the root crate's parsers: the saved conversation
//! (`o1 tui --resume`) and the config file. Valid files, mutated; each
//! mutant must be read or refused with a message, never panic or allocate
//! beyond the bound. `O1_FUZZ_CASES` runs more (`just fuzz`).

#[global_allocator]
static ALLOC: o1_fuzz::BoundedAlloc = o1_fuzz::BoundedAlloc;

use std::path::Path;

use o1::engine::Stop;
use o1::settings::Settings;
use o1::tui::session::{Session, Tokens};
use o1::tui::transcript::{ModelSummary, Turn};

/// Writes each mutant to one file in one folder and reads it with `read`.
fn through_a_file(
    name: &str,
    read: impl Fn(&Path) -> Result<(), String>,
) -> impl FnMut(&[u8]) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    move |input| {
        let _keep = &dir;
        std::fs::write(&path, input).map_err(|e| e.to_string())?;
        read(&path)
    }
}

fn session_seeds() -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let turn = |q: &str, stop: Option<Stop>| Turn {
        question: q.into(),
        reasoning: "The user wants **this**.\n\n- one\n- two".into(),
        answer: "```rust\nfn main() {}\n```\n递归 🦀".into(),
        reasoning_stop: stop,
        answer_stop: Some(Stop::EndOfTurn),
        notes: vec!["context full: dropped 1 old turn(s)".into()],
    };
    let mut seeds = Vec::new();
    for (i, tokens) in [
        None,
        Some(Tokens {
            used: 1234,
            reasoning: 300,
        }),
    ]
    .into_iter()
    .enumerate()
    {
        let mut s = Session::new(dir.path().into(), dir.path().into());
        s.id = format!("{}-000", 100 + i);
        s.model = ModelSummary {
            name: "o1-1.5b".into(),
            file_type: "q4_k_m".into(),
            gpu_layers: 29,
            n_layers: 28,
            n_ctx: 32768,
            ..Default::default()
        };
        s.tokens = tokens;
        s.save(&[turn("First?", Some(Stop::AnswerNow)), turn("Second", None)])
            .unwrap();
        seeds.push(std::fs::read(s.path()).unwrap());
    }
    seeds
}

#[test]
fn mutants_session_file() {
    let export = std::env::temp_dir();
    o1_fuzz::json(
        "session_file",
        &session_seeds(),
        o1_fuzz::cases(3000),
        through_a_file("1-000.json", |path| {
            Session::open(path, export.clone())
                .map(drop)
                .map_err(|e| e.to_string())
        }),
    );
}

const CONFIGS: &[&str] = &[
    "",
    "model = \"o1-1.5b-q4_k_m\"\ntype = \"q8_0\"\nctx = 8192\ngpu_layers = \"all\"\nkv_type = \"q8_0\"\n",
    "repo = \"someone/o1\"\nrevision = \"main\"\nthreads = 4\nsystem = \"Be brief.\"\nmax_reasoning = 2000\nmax_answer = 1000\non_full = \"stop\"\n",
    "temperature = 0.7\ntop_k = 40\ntop_p = 0.95\nmin_p = 0.05\nrepeat_penalty = 1.1\nseed = 42\nreasoning = \"collapsed\"\ngpu_layers = 12\n",
    "# comment\nctx = 4096 # inline\n\nsystem = '''\nmany\nlines\n'''\n",
];

#[test]
fn mutants_config_file() {
    let seeds: Vec<Vec<u8>> = CONFIGS.iter().map(|c| c.as_bytes().to_vec()).collect();
    o1_fuzz::bytes(
        "config_file",
        &seeds,
        o1_fuzz::cases(3000),
        through_a_file("config.toml", |path| {
            let settings = Settings::read(path).map_err(|e| e.to_string())?;
            // What every command does with it next.
            settings.effective().map(drop).map_err(|e| e.to_string())
        }),
    );
}

/// A model file's header as `o1 info`, `o1 ls` and the engine read it: a
/// small real GGUF, mutated.
#[test]
fn mutants_model_info() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ckpt");
    o1_convert::synthetic::write(&ckpt, &o1_convert::synthetic::Spec::tiny()).unwrap();
    let model = dir.path().join("tiny.gguf");
    let opts = o1_convert::ConvertOptions::new(&ckpt, &model, o1_convert::OutputType::Q8_0);
    o1_convert::convert(&opts, &mut o1_convert::NoProgress, &Default::default()).unwrap();
    let seed = std::fs::read(&model).unwrap();
    o1_fuzz::bytes(
        "model_info",
        &[seed],
        o1_fuzz::cases(3000),
        through_a_file("m.gguf", |path| {
            let info = o1::model::ModelInfo::read(path).map_err(|e| e.to_string())?;
            // What the engine and `o1 info` compute from it must not overflow.
            for kv in [o1::model::KvType::F16, o1::model::KvType::Q8_0] {
                let _ = info
                    .kv_bytes_per_token(kv)
                    .checked_mul(u64::from(info.n_ctx_train));
            }
            Ok(())
        }),
    );
}
