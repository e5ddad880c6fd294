//! Seeded mutation testing for o1's parsers.
//!
//! Each parser test takes a few valid inputs, mutates them (bytes, or JSON
//! values for JSON files) and feeds every mutant to the parser. The property:
//! the parser returns (an `Ok` or an `Err` with a message); it never panics,
//! and no single allocation asks for more than a bound. A test binary installs
//! [`BoundedAlloc`] as its global allocator so that an allocation sized from
//! hostile input is seen (and refused before it can exhaust memory).
//!
//! Cases per parser: `O1_FUZZ_CASES` (default: what the test asks for, a few
//! thousand so that CI stays under a minute). `O1_FUZZ_SEED` replays one run;
//! a failing case prints its seed, case number and the mutant's path.

use std::alloc::{GlobalAlloc, Layout, System};
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// The largest single allocation a parser may ask for while checking one
/// mutant. Real o1 inputs (a tokenizer.json of a few MB, headers of a few
/// hundred KB) stay far below it.
pub const ALLOCATION_BOUND: usize = 256 << 20;

/// Requests above this are refused outright (the allocation fails and the
/// process aborts with a message) so that a runaway size cannot get the test
/// machine OOM-killed before the bound is reported.
const HARD_LIMIT: usize = 2 << 30;

static LARGEST_REQUEST: AtomicUsize = AtomicUsize::new(0);
static WATCHING: AtomicBool = AtomicBool::new(false);

/// A global allocator that records the largest request made while a case runs.
/// Install it in a fuzz test binary:
/// `#[global_allocator] static ALLOC: o1_fuzz::BoundedAlloc = o1_fuzz::BoundedAlloc;`
pub struct BoundedAlloc;

unsafe impl GlobalAlloc for BoundedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !note(layout.size()) {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !note(layout.size()) {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !note(new_size) {
            return std::ptr::null_mut();
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

fn note(size: usize) -> bool {
    if WATCHING.load(Ordering::Relaxed) {
        LARGEST_REQUEST.fetch_max(size, Ordering::Relaxed);
        if size > HARD_LIMIT {
            // About to abort: say which mutant did it (allocating is safe
            // again once nothing is watched).
            WATCHING.store(false, Ordering::Relaxed);
            if let Ok(current) = CURRENT.try_lock() {
                if let Some(Mutant {
                    name,
                    case,
                    seed,
                    input,
                }) = current.as_ref()
                {
                    let path = save(name, *case, input);
                    eprintln!(
                        "{name}: case {case} (O1_FUZZ_SEED={seed}) asked for one allocation of \
                         {size} bytes; the input is in {}",
                        path.display()
                    );
                }
            }
            return false;
        }
    }
    true
}

/// The mutant being checked, for the message when an allocation aborts the run.
static CURRENT: Mutex<Option<Mutant>> = Mutex::new(None);

struct Mutant {
    name: String,
    case: usize,
    seed: u64,
    input: Vec<u8>,
}

/// How many cases to run: `O1_FUZZ_CASES`, or `default`.
pub fn cases(default: usize) -> usize {
    std::env::var("O1_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn seed() -> u64 {
    std::env::var("O1_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x01_f022)
}

/// What a run saw, for the closing figures.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub cases: usize,
    pub accepted: usize,
    pub rejected: usize,
}

/// Feed `cases` mutants of `seeds` (byte-level mutations) to `parse`.
/// `parse` returns `Ok(())` or `Err(message)`; an empty error message fails the
/// run just as a panic or an allocation beyond [`ALLOCATION_BOUND`] does.
pub fn bytes<F>(name: &str, seeds: &[Vec<u8>], cases: usize, parse: F) -> Tally
where
    F: FnMut(&[u8]) -> Result<(), String>,
{
    run(name, seeds, cases, parse, |rng, input| {
        mutate_bytes(rng, input)
    })
}

/// Like [`bytes`] but for JSON files: half of the mutants change one value
/// of the parsed document (a number to an extreme, a string to a hostile one,
/// a type to another), half are byte-level.
pub fn json<F>(name: &str, seeds: &[Vec<u8>], cases: usize, parse: F) -> Tally
where
    F: FnMut(&[u8]) -> Result<(), String>,
{
    run(name, seeds, cases, parse, |rng, input| {
        if rng.bool() {
            if let Some(m) = mutate_json(rng, input) {
                return m;
            }
        }
        mutate_bytes(rng, input)
    })
}

fn run<F, M>(name: &str, seeds: &[Vec<u8>], cases: usize, mut parse: F, mut mutate: M) -> Tally
where
    F: FnMut(&[u8]) -> Result<(), String>,
    M: FnMut(&mut fastrand::Rng, &[u8]) -> Vec<u8>,
{
    assert!(!seeds.is_empty(), "{name}: no seed inputs");
    let seed = seed();
    let mut rng = fastrand::Rng::with_seed(seed ^ fnv(name));
    let mut tally = Tally::default();
    // Seeds themselves first: they must parse.
    for (i, s) in seeds.iter().enumerate() {
        if let Err(e) = parse(s) {
            panic!("{name}: seed input {i} does not parse: {e}");
        }
    }
    let previous_hook = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));
    for case in 0..cases {
        let base = &seeds[rng.usize(..seeds.len())];
        // Stack mutations: a few at once find more than one at a time.
        let mut input = mutate(&mut rng, base);
        for _ in 0..rng.usize(0..3) {
            input = mutate(&mut rng, &input);
        }
        *CURRENT.lock().unwrap() = Some(Mutant {
            name: name.to_string(),
            case,
            seed,
            input: input.clone(),
        });
        LARGEST_REQUEST.store(0, Ordering::Relaxed);
        WATCHING.store(true, Ordering::Relaxed);
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| parse(&input)));
        WATCHING.store(false, Ordering::Relaxed);
        let largest = LARGEST_REQUEST.load(Ordering::Relaxed);
        let failure = match &outcome {
            Err(p) => Some(format!("panicked: {}", panic_message(p))),
            Ok(Err(msg)) if msg.trim().is_empty() => Some("returned an empty error".into()),
            _ if largest > ALLOCATION_BOUND => Some(format!(
                "asked for one allocation of {largest} bytes (bound {ALLOCATION_BOUND})"
            )),
            _ => None,
        };
        if let Some(failure) = failure {
            panic::set_hook(previous_hook);
            let path = save(name, case, &input);
            panic!(
                "{name}: case {case} (O1_FUZZ_SEED={seed}) {failure}; the input is in {}",
                path.display()
            );
        }
        match outcome {
            Ok(Ok(())) => tally.accepted += 1,
            _ => tally.rejected += 1,
        }
        tally.cases += 1;
    }
    panic::set_hook(previous_hook);
    eprintln!(
        "{name}: {} mutants, {} accepted, {} rejected with an error",
        tally.cases, tally.accepted, tally.rejected
    );
    tally
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

fn save(name: &str, case: usize, input: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join("o1-fuzz-failures");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("{name}-{case}.bin"));
    let _ = std::fs::write(&path, input);
    path
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Integers that break size arithmetic, as little-endian bytes of every width.
const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    7,
    8,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX,
    u64::MAX - 1,
    1 << 40,
];

/// One byte-level mutation of `input`.
pub fn mutate_bytes(rng: &mut fastrand::Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    if out.is_empty() {
        out.push(rng.u8(..));
        return out;
    }
    let at = rng.usize(..out.len());
    match rng.u8(..8) {
        // Flip a bit.
        0 => out[at] ^= 1 << rng.u8(..8),
        // Set a byte to a random or boundary value.
        1 => {
            let random = rng.u8(..);
            let choices = [0u8, 0xff, 0x7f, 0x80, b'"', b'\\', 0x1b, random];
            out[at] = choices[rng.usize(..choices.len())];
        }
        // Overwrite with an interesting integer (1, 2, 4 or 8 bytes).
        2 => {
            let v = INTERESTING[rng.usize(..INTERESTING.len())];
            let width = [1usize, 2, 4, 8][rng.usize(..4)];
            for (i, b) in v.to_le_bytes().iter().take(width).enumerate() {
                if let Some(slot) = out.get_mut(at + i) {
                    *slot = *b;
                }
            }
        }
        // Truncate.
        3 => out.truncate(at),
        // Delete a run.
        4 => {
            let end = (at + rng.usize(1..=16)).min(out.len());
            out.drain(at..end);
        }
        // Duplicate a run somewhere else.
        5 => {
            let end = (at + rng.usize(1..=64)).min(out.len());
            let chunk = out[at..end].to_vec();
            let to = rng.usize(..=out.len());
            out.splice(to..to, chunk);
        }
        // Insert random bytes.
        6 => {
            let n = rng.usize(1..=8);
            let bytes: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
            out.splice(at..at, bytes);
        }
        // Replace an ASCII digit run with a huge number (headers, JSON offsets).
        _ => {
            if let Some(start) = out.iter().skip(at).position(u8::is_ascii_digit) {
                let start = at + start;
                let end = out[start..]
                    .iter()
                    .position(|b| !b.is_ascii_digit())
                    .map_or(out.len(), |e| start + e);
                let big = INTERESTING[rng.usize(..INTERESTING.len())].to_string();
                out.splice(start..end, big.into_bytes());
            } else {
                out[at] = rng.u8(..);
            }
        }
    }
    out
}

/// Change one value of a JSON document; `None` when `input` is not JSON.
pub fn mutate_json(rng: &mut fastrand::Rng, input: &[u8]) -> Option<Vec<u8>> {
    let mut doc: serde_json::Value = serde_json::from_slice(input).ok()?;
    let mut count = 0;
    count_values(&doc, &mut count);
    let target = rng.usize(..count.max(1));
    let mut seen = 0;
    replace_nth(&mut doc, target, &mut seen, rng);
    serde_json::to_vec(&doc).ok()
}

fn count_values(v: &serde_json::Value, n: &mut usize) {
    *n += 1;
    match v {
        serde_json::Value::Array(a) => a.iter().for_each(|x| count_values(x, n)),
        serde_json::Value::Object(o) => o.values().for_each(|x| count_values(x, n)),
        _ => {}
    }
}

fn replace_nth(
    v: &mut serde_json::Value,
    target: usize,
    seen: &mut usize,
    rng: &mut fastrand::Rng,
) -> bool {
    if *seen == target {
        *v = hostile_value(rng, v);
        return true;
    }
    *seen += 1;
    match v {
        serde_json::Value::Array(a) => a.iter_mut().any(|x| replace_nth(x, target, seen, rng)),
        serde_json::Value::Object(o) => {
            // Sometimes drop or add a key instead of changing a value.
            if rng.u8(..16) == 0 && !o.is_empty() {
                let key = o.keys().nth(rng.usize(..o.len())).cloned().unwrap();
                o.remove(&key);
                return true;
            }
            o.values_mut().any(|x| replace_nth(x, target, seen, rng))
        }
        _ => false,
    }
}

fn hostile_value(rng: &mut fastrand::Rng, old: &serde_json::Value) -> serde_json::Value {
    use serde_json::{json, Value};
    match rng.u8(..12) {
        0 => json!(0),
        1 => json!(-1),
        2 => json!(u32::MAX),
        3 => json!(u64::MAX),
        4 => json!(i64::MIN),
        5 => json!(1e308),
        6 => json!(-0.5),
        7 => Value::Null,
        8 => json!(""),
        9 => json!("\u{1b}]0;pwned\u{7}\u{1b}[2J\u{9b}"),
        10 => match old {
            Value::Number(n) => n
                .as_u64()
                .map(|n| json!(n.saturating_mul(rng.u64(2..1 << 20))))
                .unwrap_or(json!([])),
            Value::String(s) => json!(s.repeat(rng.usize(2..64))),
            Value::Array(a) => Value::Array(a.iter().cloned().cycle().take(a.len() * 2).collect()),
            _ => json!({}),
        },
        _ => json!([true, {"a": 1}]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_parser_fails_the_run() {
        let result = std::panic::catch_unwind(|| {
            bytes("panics", &[b"abc".to_vec()], 50, |input| {
                if input.len() != 3 {
                    panic!("boom");
                }
                Ok(())
            })
        });
        assert!(result.is_err());
    }

    #[test]
    fn an_empty_error_fails_the_run() {
        let result = std::panic::catch_unwind(|| {
            bytes("empty", &[b"abc".to_vec()], 50, |input| {
                if input == b"abc" {
                    Ok(())
                } else {
                    Err(String::new())
                }
            })
        });
        assert!(result.is_err());
    }

    #[test]
    fn json_mutants_stay_json_half_the_time() {
        let mut rng = fastrand::Rng::with_seed(1);
        let doc = br#"{"a": 1, "b": [1, 2, {"c": "x"}]}"#;
        let parsed = (0..100)
            .filter(|_| {
                let m = mutate_json(&mut rng, doc).unwrap();
                serde_json::from_slice::<serde_json::Value>(&m).is_ok() && m != doc
            })
            .count();
        assert!(parsed > 80, "{parsed}");
    }
}
