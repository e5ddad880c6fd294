//! Which of llama.cpp's CPU paths this process runs on.
//!
//! o1 ships llama.cpp's CPU code as one library per CPU family
//! (`libggml-cpu-<path>.so`: x64, sse42, haswell, skylakex, icelake, zen4,
//! sapphirerapids with AMX, ...; armv8.0 to armv9.2 on ARM). Each library
//! scores itself from CPUID; the best that this CPU supports is tried
//! first. A CPU can advertise what it cannot run (AMX under some
//! hypervisors traps in llama.cpp's own kernels), so a path is used only
//! once a child process has run a tiny model through it ([`probe`]); a path
//! whose probe fails is skipped for the next. The result is kept per CPU
//! and per build of the libraries, so the probe runs once.
//!
//! `O1_CPU_PATH` (o1's `cpu_path` setting) forces a path without a probe.

pub mod probe;

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use llama_cpp_sys_2 as sys;
use serde::{Deserialize, Serialize};

/// The environment variable that forces a path (`auto`: probe).
pub const PATH_ENV: &str = "O1_CPU_PATH";

/// Paths used only once proven, even when no probe can run: their kernels
/// trap on hosts that advertise them (AMX under hypervisors).
const NEED_PROOF: &[&str] = &["sapphirerapids"];

/// How the process chooses its path; set by [`configure`] before the
/// backend starts (defaults: `O1_CPU_PATH`, the cache in o1's cache folder).
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// A path to use as it is, and who asked (e.g. "O1_CPU_PATH").
    pub forced: Option<(String, String)>,
    /// Where proven paths are kept (`None`: not kept).
    pub cache_file: Option<PathBuf>,
}

static OPTIONS: OnceLock<Options> = OnceLock::new();
static CHOSEN: OnceLock<CpuPath> = OnceLock::new();

/// Sets how the path is chosen; only before the backend starts (later
/// calls change nothing). A forced `auto` or empty name means: probe.
pub fn configure(mut options: Options) {
    options.forced = options
        .forced
        .filter(|(name, _)| !name.is_empty() && name != "auto");
    let _ = OPTIONS.set(options);
    crate::fault::set_context(format!(
        "o1: CPU path: none loaded yet\no1: to force a CPU path: {PATH_ENV}=NAME (or o1's \
         --cpu-path flag, or cpu_path in its config file); `o1 --version` lists them\n"
    ));
}

/// Where proven paths are kept by default: `cpu-paths.json` in o1's cache folder.
pub fn default_cache_file() -> PathBuf {
    crate::cache_dir().join("cpu-paths.json")
}

fn options() -> &'static Options {
    if OPTIONS.get().is_none() {
        configure(Options {
            forced: std::env::var(PATH_ENV)
                .ok()
                .map(|v| (v, PATH_ENV.to_string())),
            cache_file: Some(default_cache_file()),
        });
    }
    OPTIONS.get().expect("configured above")
}

/// One of the CPU libraries beside the binary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variant {
    /// ggml's name for it: `haswell`, `icelake`, ...
    pub name: String,
    pub file: PathBuf,
    /// Its own score for this CPU: 0 when the CPU lacks what it needs.
    pub score: i32,
}

/// The path in use, and how it was chosen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuPath {
    pub name: String,
    pub how: How,
    /// Better-scored paths that failed their probe, and why.
    pub rejected: Vec<(String, String)>,
    /// Every path this CPU supports, best first.
    pub supported: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum How {
    /// Probed now.
    Probed,
    /// Probed before (cached for this CPU and these libraries).
    Cached,
    /// Forced by the setting named.
    Forced(String),
    /// Chosen by score alone: no probe could run (why).
    Unproven(String),
}

impl CpuPath {
    /// One line: the path, how it was chosen, what was rejected.
    pub fn summary(&self) -> String {
        let how = match &self.how {
            How::Probed => "proven on this CPU".to_string(),
            How::Cached => "proven on this CPU earlier".to_string(),
            How::Forced(by) => format!("forced by {by}"),
            How::Unproven(why) => format!("not proven: {why}"),
        };
        let mut s = format!("{} ({how})", self.name);
        for (name, why) in &self.rejected {
            s.push_str(&format!("; {name} skipped: {why}"));
        }
        s
    }

    /// How to force another path, for messages.
    pub fn how_to_change(&self) -> String {
        let other = self
            .supported
            .iter()
            .find(|n| **n != self.name)
            .map_or("NAME", String::as_str);
        format!(
            "to force a CPU path: {PATH_ENV}={other} (or o1's --cpu-path flag, or cpu_path in its \
             config file); paths for this CPU, best first: {}",
            self.supported.join(", ")
        )
    }
}

/// The path this process runs on, once the backend has started.
pub fn chosen() -> Option<&'static CpuPath> {
    CHOSEN.get()
}

/// Why no CPU path could be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    #[error("no CPU library (libggml-cpu-*.so) in {0}: the o1 installation is incomplete")]
    NoLibraries(PathBuf),
    #[error(
        "the CPU path `{name}` ({by}) is not one of this installation's: {}",
        available.join(", ")
    )]
    UnknownPath {
        name: String,
        by: String,
        available: Vec<String>,
    },
    #[error("the CPU path `{name}` ({by}) needs instructions this CPU lacks; paths for this CPU: {}", supported.join(", "))]
    Unsupported {
        name: String,
        by: String,
        supported: Vec<String>,
    },
    #[error("no CPU path works on this CPU: {}", tried.iter().map(|(n, w)| format!("{n}: {w}")).collect::<Vec<_>>().join("; "))]
    NoneWorks { tried: Vec<(String, String)> },
    #[error("llama.cpp could not load {0}")]
    LoadFailed(PathBuf),
}

/// The name of a CPU library file (`libggml-cpu-icelake.so` -> `icelake`).
pub fn variant_name(file: &Path) -> Option<String> {
    let name = file.file_name()?.to_str()?;
    let rest = name.strip_prefix("libggml-cpu-")?;
    Some(rest.strip_suffix(".so").unwrap_or(rest).to_string())
}

/// The CPU libraries in `dir`, best score first (unsupported ones last).
pub fn variants(dir: &Path) -> Vec<Variant> {
    let mut found: Vec<Variant> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let file = e.path();
            let name = variant_name(&file)?;
            Some(Variant {
                score: score(&file),
                name,
                file,
            })
        })
        .collect();
    found.sort_by(|a, b| b.score.cmp(&a.score).then_with(|| a.name.cmp(&b.name)));
    found
}

/// The library's own score for this CPU (ggml's `ggml_backend_score`, as
/// ggml's loader asks it): 0 when it cannot run here or will not load.
fn score(file: &Path) -> i32 {
    let Ok(path) = CString::new(file.as_os_str().as_encoded_bytes()) else {
        return 0;
    };
    // SAFETY: loading a ggml backend library runs only its initialisers, as
    // ggml's own loader does; the symbol has the documented signature.
    unsafe {
        let handle = libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        if handle.is_null() {
            return 0;
        }
        let sym = libc::dlsym(handle, c"ggml_backend_score".as_ptr());
        let score = if sym.is_null() {
            0
        } else {
            let f: extern "C" fn() -> i32 = std::mem::transmute(sym);
            f()
        };
        libc::dlclose(handle);
        score
    }
}

/// Chooses the path (forced, cached, or probed best first) and loads it
/// into ggml. Called once, by [`crate::llama::backend`].
pub(crate) fn load(dir: &Path) -> Result<&'static CpuPath, CpuError> {
    if let Some(done) = CHOSEN.get() {
        return Ok(done);
    }
    let all = variants(dir);
    if all.is_empty() {
        return Err(CpuError::NoLibraries(dir.to_path_buf()));
    }
    let supported: Vec<&Variant> = all.iter().filter(|v| v.score > 0).collect();
    let names = |vs: &[&Variant]| vs.iter().map(|v| v.name.clone()).collect::<Vec<_>>();
    let options = options();
    let (variant, path) = if let Some((name, by)) = &options.forced {
        let Some(v) = all.iter().find(|v| v.name == *name) else {
            return Err(CpuError::UnknownPath {
                name: name.clone(),
                by: by.clone(),
                available: all.iter().map(|v| v.name.clone()).collect(),
            });
        };
        if v.score == 0 {
            return Err(CpuError::Unsupported {
                name: name.clone(),
                by: by.clone(),
                supported: names(&supported),
            });
        }
        (
            v,
            CpuPath {
                name: v.name.clone(),
                how: How::Forced(by.clone()),
                rejected: vec![],
                supported: names(&supported),
            },
        )
    } else {
        choose(&supported, options.cache_file.as_deref())?
    };
    let c = CString::new(variant.file.as_os_str().as_encoded_bytes())
        .map_err(|_| CpuError::LoadFailed(variant.file.clone()))?;
    // SAFETY: a NUL-terminated path; ggml returns null on failure.
    if unsafe { sys::ggml_backend_load(c.as_ptr()) }.is_null() {
        return Err(CpuError::LoadFailed(variant.file.clone()));
    }
    crate::fault::set_context(format!(
        "o1: CPU path: {}\no1: {}\n",
        path.summary(),
        path.how_to_change()
    ));
    Ok(CHOSEN.get_or_init(|| path))
}

/// The best supported path that works: from the cache, else by probing.
fn choose<'a>(
    supported: &[&'a Variant],
    cache_file: Option<&Path>,
) -> Result<(&'a Variant, CpuPath), CpuError> {
    let names: Vec<String> = supported.iter().map(|v| v.name.clone()).collect();
    let key = cache_key(supported);
    if let Some(cached) = cache_file.and_then(|f| read_cache(f).remove(&key)) {
        if let Some(v) = supported.iter().find(|v| v.name == cached.name) {
            return Ok((
                v,
                CpuPath {
                    how: How::Cached,
                    supported: names,
                    ..cached
                },
            ));
        }
    }
    let unproven = |why: String| {
        tracing::warn!("CPU path chosen without a probe: {why}");
        let v = supported
            .iter()
            .find(|v| !NEED_PROOF.contains(&v.name.as_str()))
            .ok_or_else(|| CpuError::NoneWorks { tried: vec![] })?;
        Ok((
            *v,
            CpuPath {
                name: v.name.clone(),
                how: How::Unproven(why),
                rejected: vec![],
                supported: names.clone(),
            },
        ))
    };
    let Some(prover) = prover() else {
        return unproven("no o1 binary found to run the probe".to_string());
    };
    let model = probe::TempModel::new();
    if let Err(e) = probe::write_model(&model.0) {
        return unproven(format!(
            "writing the probe model {}: {e}",
            model.0.display()
        ));
    }
    let threads = crate::default_threads();
    let mut rejected = Vec::new();
    let mut found = None;
    for v in supported {
        let started = std::time::Instant::now();
        match probe::run(&prover, &v.file, &model.0, threads) {
            probe::Outcome::Works => {
                tracing::info!("CPU path {} proven in {:?}", v.name, started.elapsed());
                found = Some(*v);
                break;
            }
            probe::Outcome::Fails(why) => {
                tracing::warn!("CPU path {} failed its probe: {why}", v.name);
                rejected.push((v.name.clone(), why));
            }
            probe::Outcome::NotRun(why) => return unproven(why),
        }
    }
    let Some(v) = found else {
        return Err(CpuError::NoneWorks { tried: rejected });
    };
    let path = CpuPath {
        name: v.name.clone(),
        how: How::Probed,
        rejected,
        supported: names,
    };
    if let Some(file) = cache_file {
        let mut cache = read_cache(file);
        cache.insert(key, path.clone());
        if let Err(e) = write_cache(file, &cache) {
            tracing::warn!("keeping the CPU path in {}: {e}", file.display());
        }
    }
    Ok((v, path))
}

type Cache = std::collections::BTreeMap<String, CpuPath>;

fn read_cache(file: &Path) -> Cache {
    std::fs::read(file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn write_cache(file: &Path, cache: &Cache) -> std::io::Result<()> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    crate::files::replace_privately(file, &serde_json::to_vec_pretty(cache)?)
}

/// What a proven path depends on: the CPU (model and flags as the kernel
/// lists them, and what CPUID tells the libraries: their scores, which
/// differ under an emulator), the kernel (it grants AMX), the libraries
/// (each one's size and time).
fn cache_key(supported: &[&Variant]) -> String {
    use std::hash::{Hash, Hasher};
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let first = |key: &str| {
        cpuinfo
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_once(':'))
            .map_or("", |(_, v)| v.trim())
            .to_string()
    };
    let model = [first("model name"), first("CPU part"), first("cpu model")].concat();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    first("flags").hash(&mut h);
    first("Features").hash(&mut h);
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .hash(&mut h);
    for v in supported {
        v.file.hash(&mut h);
        v.score.hash(&mut h);
        if let Ok(m) = std::fs::metadata(&v.file) {
            m.len().hash(&mut h);
            m.modified().ok().hash(&mut h);
        }
    }
    format!("{model} {:016x}", h.finish())
}

/// A binary that runs probes (its `main` calls [`probe::child_main`]):
/// `$O1_EXE`, this binary if it is `o1`, else an `o1` beside it or one
/// folder up (a test or example of the build).
fn prover() -> Option<PathBuf> {
    if let Some(exe) = std::env::var_os("O1_EXE") {
        return Some(exe.into());
    }
    let exe = std::env::current_exe().ok()?;
    if exe.file_stem().is_some_and(|s| s == "o1") {
        return Some(exe);
    }
    let dir = exe.parent()?;
    [dir.join("o1"), dir.parent()?.join("o1")]
        .into_iter()
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(how: How) -> CpuPath {
        CpuPath {
            name: "zen4".into(),
            how,
            rejected: vec![(
                "sapphirerapids".into(),
                "illegal instruction (SIGILL)".into(),
            )],
            supported: vec!["sapphirerapids".into(), "zen4".into(), "haswell".into()],
        }
    }

    #[test]
    fn library_names_are_the_paths_names() {
        let name = |f: &str| variant_name(Path::new(f));
        assert_eq!(name("/x/libggml-cpu-icelake.so"), Some("icelake".into()));
        assert_eq!(name("libggml-cpu-armv8.2_1.so"), Some("armv8.2_1".into()));
        assert_eq!(name("/x/libggml-base.so"), None);
        assert_eq!(name("/x/libggml-cuda.so"), None);
    }

    #[test]
    fn the_summary_says_how_the_path_was_chosen_and_what_was_skipped() {
        assert_eq!(
            path(How::Probed).summary(),
            "zen4 (proven on this CPU); sapphirerapids skipped: illegal instruction (SIGILL)"
        );
        assert!(path(How::Forced("O1_CPU_PATH".into()))
            .summary()
            .starts_with("zen4 (forced by O1_CPU_PATH)"));
        let change = path(How::Cached).how_to_change();
        assert!(
            change.starts_with("to force a CPU path: O1_CPU_PATH=sapphirerapids"),
            "{change}"
        );
        assert!(
            change.ends_with("best first: sapphirerapids, zen4, haswell"),
            "{change}"
        );
    }

    #[test]
    fn proven_paths_are_kept_per_key_and_a_damaged_cache_is_ignored() {
        let dir = std::env::temp_dir().join(format!("o1-cpu-cache-{}", std::process::id()));
        let file = dir.join("cpu-paths.json");
        let mut cache = Cache::new();
        cache.insert("cpu a".into(), path(How::Probed));
        write_cache(&file, &cache).unwrap();
        assert_eq!(read_cache(&file), cache);
        std::fs::write(&file, b"{ not json").unwrap();
        assert!(read_cache(&file).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_probe_model_holds_a_layer_of_every_weight_type() {
        let file = std::env::temp_dir().join(format!("o1-probe-test-{}.gguf", std::process::id()));
        probe::write_model(&file).unwrap();
        let bytes = std::fs::read(&file).unwrap();
        std::fs::remove_file(&file).unwrap();
        let gguf = crate::format::GgufFile::parse(&bytes).unwrap();
        let types: std::collections::BTreeSet<String> = (0..15)
            .map(|i| {
                gguf.tensor(&format!("blk.{i}.ffn_down.weight"))
                    .unwrap()
                    .ty
                    .to_string()
            })
            .collect();
        assert_eq!(types.len(), 15, "{types:?}");
        for t in [
            "q4_0", "q8_0", "q4_K", "q6_K", "iq4_xs", "f16", "bf16", "f32",
        ] {
            assert!(types.contains(t), "{t} missing: {types:?}");
        }
    }
}
