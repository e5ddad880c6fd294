"""A minimal safetensors writer for float32 arrays stored as bf16, f16 or f32.

bf16 is rounded to nearest, ties to even (as PyTorch's `.to(torch.bfloat16)`),
with every NaN written as the canonical quiet NaN.
"""
import json
import struct

import numpy as np

DTYPES = {"bf16": "BF16", "f16": "F16", "f32": "F32"}


def _bf16_bits(values):
    bits = values.view(np.uint32)
    # Adding 0x7FFF plus the lowest kept bit before truncating rounds half to even.
    half_to_even = bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
    out = (half_to_even >> np.uint32(16)).astype(np.uint16)
    out[np.isnan(values)] = 0x7FC0
    return out


def encode(values, dtype):
    """The bytes of a float32 array in `dtype` (a key of DTYPES)."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    if dtype == "bf16":
        return _bf16_bits(values).tobytes()
    if dtype == "f16":
        return values.astype(np.float16).tobytes()
    return values.tobytes()


def write(path, tensors, dtype):
    """Writes [(name, float32 array)] in the given order; returns the data size in bytes."""
    header, payloads, offset = {}, [], 0
    for name, values in tensors:
        data = encode(values, dtype)
        header[name] = {
            "dtype": DTYPES[dtype],
            "shape": list(values.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        payloads.append(data)
        offset += len(data)
    header["__metadata__"] = {"format": "pt"}
    encoded = json.dumps(header, separators=(",", ":")).encode()
    # The data section starts 8-byte aligned; the format allows trailing spaces in the header.
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for data in payloads:
            f.write(data)
    return offset
