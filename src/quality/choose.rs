//! `o1 convert --type auto`: the type with the least measured drift whose
//! chat fits the memory allowed at the context wanted, as the memory
//! planner (`o1::memory`) works it out for the file that type would write.

use anyhow::Result;
use o1_gguf::ggml::OutputType;

use crate::memory::{self, FitError, Plan, Wanted};
use crate::model::ModelInfo;

/// One type's measured cost: `just bench-quality` on the 1.5B fixture,
/// o1's held-out conversations, 2 threads, as o1 writes the type by
/// default (calibrated at 5 bits and fewer).
#[derive(Clone, Copy, Debug)]
pub struct Measured {
    pub ty: OutputType,
    pub gigabytes: f64,
    /// Mean KL divergence from bf16's next-token distribution.
    pub mean_kld: f64,
    /// How often the most likely token is bf16's.
    pub same_top: f64,
}

const fn m(ty: OutputType, gigabytes: f64, mean_kld: f64, same_top: f64) -> Measured {
    Measured {
        ty,
        gigabytes,
        mean_kld,
        same_top,
    }
}

/// Only types measured so far take part (`auto` never guesses a figure).
pub const MEASURED: [Measured; 9] = [
    m(OutputType::Q8_0, 1.89, 0.00048, 0.9852),
    m(OutputType::Q6K, 1.46, 0.00273, 0.9736),
    m(OutputType::Q5KM, 1.29, 0.00285, 0.9741),
    m(OutputType::Q4KM, 1.12, 0.00346, 0.9704),
    m(OutputType::Q4KS, 1.07, 0.00449, 0.9697),
    m(OutputType::Iq4Xs, 1.02, 0.02169, 0.9336),
    m(OutputType::Q3KL, 0.98, 0.04821, 0.9063),
    m(OutputType::Q3KM, 0.92, 0.04967, 0.9065),
    m(OutputType::Iq3M, 0.88, 0.07049, 0.8900),
];

/// The types `auto` considers, least drift first.
pub fn by_quality() -> Vec<Measured> {
    let mut v = MEASURED.to_vec();
    v.sort_by(|a, b| a.mean_kld.total_cmp(&b.mean_kld));
    v
}

/// The table, for `o1 convert --help`.
pub fn table() -> String {
    let mut out = String::from("  type      1.5B file  mean KLD vs bf16  same top token\n");
    for r in by_quality() {
        out.push_str(&format!(
            "  {:8} {:7.2} GB {:17.4} {:14.1}%\n",
            r.ty.name(),
            r.gigabytes,
            r.mean_kld,
            100.0 * r.same_top
        ));
    }
    out
}

pub struct Choice {
    pub ty: OutputType,
    pub mean_kld: f64,
    pub plan: Plan,
    /// The better types that did not fit, and why.
    pub rejected: Vec<(OutputType, FitError)>,
}

/// The first type, least drift first, whose file `info_for` describes and
/// whose plan fits `wanted`.
pub fn choose(
    wanted: Wanted,
    mut info_for: impl FnMut(OutputType) -> Result<ModelInfo>,
) -> Result<Choice> {
    let mut rejected = Vec::new();
    for Measured { ty, mean_kld, .. } in by_quality() {
        let info = info_for(ty)?;
        match memory::plan(&info, wanted) {
            Ok(plan) => {
                return Ok(Choice {
                    ty,
                    mean_kld,
                    plan,
                    rejected,
                })
            }
            Err(e) => rejected.push((ty, e)),
        }
    }
    let smallest = rejected.pop().map(|(t, e)| format!("{t}: {e}"));
    anyhow::bail!(
        "no type fits: even the smallest, {}",
        smallest.unwrap_or_default()
    )
}
