//! The machine: its memory, this process's peak, and the compute devices
//! llama.cpp sees, and how a run uses them: what `o1 info`, `o1 run --json`,
//! `o1 bench` and `o1 serve` say about where the model runs. A CUDA build
//! started without a GPU or driver sees only the CPU, and says so.

/// Total physical memory, from /proc/meminfo (8 GiB where unknown).
pub fn total_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(8 << 30, |kb| kb * 1024)
}

/// This process's peak resident memory (`VmHWM`), in bytes; Linux only.
/// Unlike `getrusage`'s maximum, it does not inherit the peak of the
/// process that spawned this one.
pub fn peak_resident() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Whether this build has a GPU backend (CUDA).
pub const GPU_BACKEND_BUILT: bool = cfg!(feature = "cuda");

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gpu {
    /// ggml's name, e.g. `CUDA0`.
    pub name: String,
    /// The device's own, e.g. `NVIDIA H200`.
    pub description: String,
    pub free: u64,
    pub total: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Devices {
    /// The CPU's description.
    pub cpu: String,
    pub gpus: Vec<Gpu>,
}

/// The devices of this machine that this build can use (the first call
/// starts llama.cpp's backend: it chooses the CPU path and loads any GPU
/// backend).
pub fn devices() -> Result<Devices, o1_gguf::llama::BackendError> {
    o1_gguf::llama::backend()?;
    let mut d = Devices::default();
    for dev in llama_cpp_2::list_llama_ggml_backend_devices() {
        match dev.device_type {
            llama_cpp_2::LlamaBackendDeviceType::Gpu => d.gpus.push(Gpu {
                name: dev.name,
                description: dev.description,
                free: dev.memory_free as u64,
                total: dev.memory_total as u64,
            }),
            llama_cpp_2::LlamaBackendDeviceType::Cpu if d.cpu.is_empty() => d.cpu = dev.description,
            _ => {}
        }
    }
    Ok(d)
}

impl Devices {
    /// The GPU with the most free memory (llama.cpp's first choice for `auto`).
    pub fn best_gpu(&self) -> Option<&Gpu> {
        self.gpus.iter().max_by_key(|g| g.free)
    }

    /// Where a model runs with `gpu_layers` of its `all` layers offloaded.
    pub fn running_on(&self, gpu_layers: u32, all: u32) -> String {
        match self.best_gpu() {
            Some(gpu) if gpu_layers > 0 => {
                let share = if gpu_layers >= all {
                    format!("all {all} layers")
                } else {
                    format!("{gpu_layers} of {all} layers, the rest on the CPU")
                };
                format!("GPU {} ({}): {share}", gpu.description, gpu.name)
            }
            Some(_) => "CPU (GPU offload off)".into(),
            None if GPU_BACKEND_BUILT => {
                "CPU (no CUDA device found: no GPU, no driver, or no CUDA runtime)".into()
            }
            None => "CPU".into(),
        }
    }

    /// The devices, in a line.
    pub fn summary(&self) -> String {
        let cpu = if self.cpu.is_empty() {
            "CPU".to_string()
        } else {
            format!("CPU ({})", self.cpu.trim())
        };
        let gpus: Vec<String> = self
            .gpus
            .iter()
            .map(|g| {
                format!(
                    "{} {} ({} of {} MiB free)",
                    g.name,
                    g.description,
                    g.free >> 20,
                    g.total >> 20
                )
            })
            .collect();
        match (gpus.is_empty(), GPU_BACKEND_BUILT) {
            (false, _) => format!("{cpu}; {}", gpus.join("; ")),
            (true, true) => {
                format!("{cpu}; no CUDA device found (no GPU, no driver, or no CUDA runtime)")
            }
            (true, false) => format!("{cpu}; no GPU backend in this build"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_gpu() -> Devices {
        Devices {
            cpu: "AMD EPYC".into(),
            gpus: vec![Gpu {
                name: "CUDA0".into(),
                description: "NVIDIA H200".into(),
                free: 140 << 30,
                total: 141 << 30,
            }],
        }
    }

    #[test]
    fn the_run_says_which_device_holds_the_layers() {
        let gpu = with_gpu();
        assert_eq!(
            gpu.running_on(29, 29),
            "GPU NVIDIA H200 (CUDA0): all 29 layers"
        );
        assert_eq!(
            gpu.running_on(10, 29),
            "GPU NVIDIA H200 (CUDA0): 10 of 29 layers, the rest on the CPU"
        );
        assert_eq!(gpu.running_on(0, 29), "CPU (GPU offload off)");
        let cpu_only = Devices {
            cpu: "AMD EPYC".into(),
            gpus: vec![],
        };
        let on_cpu = cpu_only.running_on(0, 29);
        assert!(on_cpu.starts_with("CPU"), "{on_cpu}");
        assert_eq!(on_cpu.contains("no CUDA device"), GPU_BACKEND_BUILT);
        assert!(gpu
            .summary()
            .contains("CUDA0 NVIDIA H200 (143360 of 144384 MiB free)"));
        assert!(cpu_only.summary().starts_with("CPU (AMD EPYC); no "));
    }
}
