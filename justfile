# o1 tasks. `just --list` shows them.

# Keep llama.cpp's build between runs: it takes minutes to compile.
export CARGO_TARGET_DIR := env_var_or_default("CARGO_TARGET_DIR", home_directory() / ".cache/o1/target")

# Where scripts/make-o1-checkpoint puts the real O1-shaped checkpoints (and their conversions).
fixture_dir := env_var_or_default("O1_FIXTURE_DIR", home_directory() / ".cache/o1/fixtures")

default:
    @just --list

# Install the build's system dependencies (cmake, libclang, Python venv and pip, just).
setup:
    scripts/setup

# Build the o1 binary (release).
build:
    cargo build --release

# Install o1 for this user (~/.local/lib/o1, linked from ~/.local/bin, or ~/.cargo/bin when only that is on PATH).
install *prefix:
    scripts/install {{prefix}}

# An archive of o1 for any x86-64 Linux machine (SSE4.2 to AVX-512 and AMX): the binary, llama.cpp's
# libraries (one per CPU family, the best that works chosen at run time) and their runtimes, in ~/.cache/o1/dist.
dist:
    scripts/dist x86_64-unknown-linux-gnu

# The same for aarch64 Linux (armv8.0 to armv9.2), cross-compiled with Debian's gcc-aarch64-linux-gnu.
dist-arm64:
    scripts/dist aarch64-unknown-linux-gnu

# Run the dist build under emulated CPUs (qemu-user): the path each takes and its greedy text, which
# must match (default: an old, a middle and a new model; an aarch64 build under qemu-aarch64).
check-cpus dist=(home_directory() / ".cache/o1/dist/o1-0.1.0-linux-x86_64") *cpus="": (synthetic "/tmp/o1-check-cpus/ckpt")
    @test -f /tmp/o1-check-cpus/tiny-q8_0.gguf || cargo run --release -q -- convert --quiet /tmp/o1-check-cpus/ckpt -t q8_0 -o /tmp/o1-check-cpus/tiny-q8_0.gguf
    scripts/check-cpus {{dist}} /tmp/o1-check-cpus/tiny-q8_0.gguf {{cpus}}

# Every test, with the real 0.5B model (against transformers' golden output in tests/data and llama.cpp's own path);
# o1's chat client also against llama-server when `just llama-tools` has built it.
test: (fixture "0.5b")
    server="${O1_LLAMA_TOOLS:-$HOME/.cache/o1/llama.cpp}/build/bin/llama-server"; \
    O1_LLAMA_SERVER="${O1_LLAMA_SERVER:-$([ -x "$server" ] && echo "$server")}" \
    O1_FIXTURE_0_5B={{fixture_dir}}/o1-0.5b cargo test --release --workspace -- --include-ignored --nocapture

# Tests that need no download (synthetic models only).
test-fast:
    cargo test --release --workspace

# Formatting and clippy, warnings as errors.
lint:
    cargo fmt --all --check
    cargo clippy --release --workspace --all-targets -- -D warnings

# What CI runs.
ci: lint test

# Build a real O1-shaped checkpoint (0.5b or 1.5b) from public weights into the fixture cache.
fixture size:
    @test -f {{fixture_dir}}/o1-{{size}}/config.json || scripts/make-o1-checkpoint {{fixture_dir}}/o1-{{size}} --size {{size}}

# Regenerate the transformers reference of the golden tests (tests/data/golden-0.5b.json); installs PyTorch once.
golden: (fixture "0.5b")
    scripts/make-golden {{fixture_dir}}/o1-0.5b

# Write a synthetic checkpoint with random weights (preset: tiny, 0.5b, 1.5b).
synthetic dir preset="tiny" *args="":
    cargo run --release -q -p o1-convert -F synthetic --example make-synthetic -- {{dir}} --preset {{preset}} {{args}}

# Convert with o1.
convert *args:
    cargo run --release -q -- convert {{args}}

# A CUDA 13 toolkit from NVIDIA's PyPI packages (pinned, SHA-256 checked) in ~/.cache/o1/cuda-13.5.
cuda-toolkit:
    scripts/cuda-toolkit

# o1 with CUDA (one binary, GPU or not) and its libraries in ~/.cache/o1/o1-cuda; about 34 min per architecture on 2 cores.
build-cuda archs="80;86;89;90":
    scripts/build-cuda "{{archs}}"

# Benchmarks: print the figures.
bench: bench-convert bench-runtime bench-tui bench-memory bench-serve bench-contention bench-attach bench-quality bench-calibration

# Quality per byte on the 1.5B: every type, uncalibrated and calibrated, against its bf16
# conversion (mean and p99 KL divergence, same top token, greedy agreement per phase), with
# its size and decode speed. Files stay in ~/.cache/o1/quality; TYPES="q4_k_m q3_k_m" limits.
bench-quality: build (fixture "1.5b")
    scripts/bench-quality {{fixture_dir}}/o1-1.5b

# o1's own calibration against a matrix from llama.cpp's llama-imatrix, q4_k_m and q3_k_m, on
# the 1.5B moved off its Q4_K grid (`--off-grid`: as a bf16 fine-tune's weights spread), KLD on
# held-out text in the chat format and as plain text. Files stay in ~/.cache/o1/quality.
bench-calibration: build
    @test -f {{fixture_dir}}/o1-1.5b-offgrid/config.json || scripts/make-o1-checkpoint {{fixture_dir}}/o1-1.5b-offgrid --size 1.5b --off-grid
    scripts/bench-calibration {{fixture_dir}}/o1-1.5b-offgrid

# o1 eval beside llama-perplexity --kl-divergence: the same files (the 0.5B, bf16 and q4_k_m)
# and text; they must agree within llama-perplexity's error bars.
bench-kld-agreement: build (fixture "0.5b")
    @mkdir -p ~/.cache/o1/quality/o1-0.5b
    @test -f ~/.cache/o1/quality/o1-0.5b/bf16.gguf || $CARGO_TARGET_DIR/release/o1 convert --quiet --no-verify -t bf16 {{fixture_dir}}/o1-0.5b -o ~/.cache/o1/quality/o1-0.5b/bf16.gguf
    @test -f ~/.cache/o1/quality/o1-0.5b/q4_k_m.gguf || $CARGO_TARGET_DIR/release/o1 convert --quiet --no-verify --no-calibrate -t q4_k_m {{fixture_dir}}/o1-0.5b -o ~/.cache/o1/quality/o1-0.5b/q4_k_m.gguf
    scripts/bench-kld-agreement ~/.cache/o1/quality/o1-0.5b/q4_k_m.gguf ~/.cache/o1/quality/o1-0.5b/bf16.gguf

# The chat UI: frame time with a 30,000-token transcript, typing latency while the 0.5B model streams.
bench-tui: (fixture "0.5b")
    @test -f {{fixture_dir}}/o1-0.5b-q4_k_m.gguf || cargo run --release -q -- convert --quiet {{fixture_dir}}/o1-0.5b -o {{fixture_dir}}/o1-0.5b-q4_k_m.gguf
    cargo run --release -q --example tui-bench -- {{fixture_dir}}/o1-0.5b-q4_k_m.gguf

# Build llama.cpp's own tools (llama-bench, llama-quantize, ...) once into ~/.cache/o1/llama.cpp.
llama-tools:
    scripts/build-llama-tools

# o1 bench beside llama-bench on the 1.5B q4_k_m (same file, same threads), and the 5-turn chat measurement.
bench-runtime: build (fixture "1.5b")
    @test -f {{fixture_dir}}/o1-1.5b-q4_k_m.gguf || $CARGO_TARGET_DIR/release/o1 convert --quiet {{fixture_dir}}/o1-1.5b -o {{fixture_dir}}/o1-1.5b-q4_k_m.gguf
    scripts/bench-runtime {{fixture_dir}}/o1-1.5b-q4_k_m.gguf "$(scripts/build-llama-tools)/build/bin/llama-bench"

# o1 and llama-bench on the 0.5B q4_k_m while another program keeps the CPU busy: alone, beside a
# neighbour of 1 and of `threads` threads, and after it left; then o1's speed second by second as it
# comes and goes (o1 uses fewer threads while others keep cores busy: --share-cpu).
bench-contention threads=num_cpus(): build (fixture "0.5b")
    @test -f {{fixture_dir}}/o1-0.5b-q4_k_m.gguf || $CARGO_TARGET_DIR/release/o1 convert --quiet {{fixture_dir}}/o1-0.5b -o {{fixture_dir}}/o1-0.5b-q4_k_m.gguf
    scripts/bench-contention $CARGO_TARGET_DIR/release/o1 "$(scripts/build-llama-tools)/build/bin/llama-bench" {{fixture_dir}}/o1-0.5b-q4_k_m.gguf {{threads}}

# One model in memory: `o1 run` beside a running o1 serve on the 1.5B q4_k_m, attached to it and with
# --local (a copy of its own): peak resident memory of each process, their sum and proportional share.
bench-attach ctx="8192": build (fixture "1.5b")
    @test -f {{fixture_dir}}/o1-1.5b-q4_k_m.gguf || $CARGO_TARGET_DIR/release/o1 convert --quiet {{fixture_dir}}/o1-1.5b -o {{fixture_dir}}/o1-1.5b-q4_k_m.gguf
    scripts/bench-attach $CARGO_TARGET_DIR/release/o1 {{fixture_dir}}/o1-1.5b-q4_k_m.gguf {{ctx}}

# o1 serve beside llama.cpp's llama-server on the 1.5B q4_k_m (same file, threads, context):
# streamed decode tokens/s, the 5th turn's time to first token, requests per minute with 4 clients.
bench-serve threads="2" ctx="8192": build (fixture "1.5b")
    @test -f {{fixture_dir}}/o1-1.5b-q4_k_m.gguf || $CARGO_TARGET_DIR/release/o1 convert --quiet {{fixture_dir}}/o1-1.5b -o {{fixture_dir}}/o1-1.5b-q4_k_m.gguf
    scripts/bench-serve $CARGO_TARGET_DIR/release/o1 "$(scripts/build-llama-tools)/build/bin/llama-server" {{fixture_dir}}/o1-1.5b-q4_k_m.gguf {{threads}} {{ctx}}

# o1's lookup decoding beside llama.cpp's own n-gram drafting (llama-lookup) on the same
# 10 prompts, 1.5B q4_k_m, same threads: each one's speed-up over its own plain decoding.
bench-lookup threads="2" draft="3": build (fixture "1.5b")
    @test -f {{fixture_dir}}/o1-1.5b-q4_k_m.gguf || $CARGO_TARGET_DIR/release/o1 convert --quiet {{fixture_dir}}/o1-1.5b -o {{fixture_dir}}/o1-1.5b-q4_k_m.gguf
    scripts/bench-lookup-reference $CARGO_TARGET_DIR/release/o1 "$(scripts/build-llama-tools)/build/bin/llama-lookup" {{fixture_dir}}/o1-1.5b-q4_k_m.gguf {{threads}} {{draft}}

# The 1.5B q4_k_m chat turn as a low-memory laptop feels it, o1 beside llama.cpp's llama-completion
# (same file, context and threads): peak RSS, and the time under a series of memory caps (cgroup v1,
# page cache dropped before each run; needs root). `just bench-memory 8192 1400 1300 1200`
bench-memory ctx="8192" *caps="": build (fixture "1.5b")
    @test -f {{fixture_dir}}/o1-1.5b-q4_k_m.gguf || $CARGO_TARGET_DIR/release/o1 convert --quiet {{fixture_dir}}/o1-1.5b -o {{fixture_dir}}/o1-1.5b-q4_k_m.gguf
    scripts/bench-memory $CARGO_TARGET_DIR/release/o1 "$(scripts/build-llama-tools)/build/bin/llama-completion" {{fixture_dir}}/o1-1.5b-q4_k_m.gguf {{ctx}} {{caps}}

# Conversion of the 0.5B and 1.5B fixtures to q4_k_m: o1's single pass, o1's two pass, and llama.cpp's
# own convert_hf_to_gguf.py + llama-quantize, side by side: time, CPU, peak RSS, ratios, and a
# tensor-by-tensor comparison. The first run builds llama.cpp's tools and downloads PyTorch (~5 GB).
bench-convert: build (fixture "0.5b") (fixture "1.5b")
    cargo build --release -q -p o1-convert --example compare-gguf
    src="$(scripts/build-llama-tools)"; \
    LLAMA_CPP_DIR="$src" LLAMA_PYTHON="$(scripts/setup-llama-convert "$src")" \
    COMPARE_GGUF="$CARGO_TARGET_DIR/release/examples/compare-gguf" \
    scripts/bench-convert {{fixture_dir}}/o1-0.5b {{fixture_dir}}/o1-1.5b

# Mutation testing of every parser, longer than CI runs it (cases per parser).
fuzz cases="200000":
    O1_FUZZ_CASES={{cases}} cargo test --release --workspace mutants_ -- --nocapture
