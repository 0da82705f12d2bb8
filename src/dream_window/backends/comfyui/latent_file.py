"""ComfyUI ``.latent`` files (SaveLatent / LoadLatent), read and written without torch.

A ``.latent`` file is a safetensors file holding ``latent_tensor`` ``[B, C, H, W]`` and an empty
``latent_format_version_0`` marker (without the marker LoadLatent rescales by 1/0.18215, a legacy
format). safetensors is simple enough to speak directly: an 8-byte little-endian header length, a
JSON header of ``{name: {dtype, shape, data_offsets}}``, then the raw little-endian data. That keeps
the core install free of safetensors/torch.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

_DTYPES: dict[str, np.dtype[Any] | None] = {
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": None,
    "F64": np.dtype("<f8"),
}
_LEGACY_SCALE = 1.0 / 0.18215


class LatentFileError(ValueError):
    """Bytes that are not a ComfyUI latent file."""


def dumps(latent: np.ndarray) -> bytes:
    arr = np.ascontiguousarray(latent, dtype="<f4")
    if arr.ndim != 4:
        raise ValueError(f"latents must be shaped [B, C, H, W], got {list(arr.shape)}")
    header = {
        "latent_tensor": {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [0, arr.nbytes]},
        "latent_format_version_0": {"dtype": "F32", "shape": [0], "data_offsets": [arr.nbytes, arr.nbytes]},
    }
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # the format pads the header to 8 bytes
    return struct.pack("<Q", len(blob)) + blob + arr.tobytes()


def loads(data: bytes) -> np.ndarray:
    if len(data) < 8:
        raise LatentFileError("latent file too short")
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        raise LatentFileError(f"latent header length {n} exceeds the file ({len(data)} bytes)")
    try:
        header = json.loads(data[8 : 8 + n])
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LatentFileError("latent header is not JSON") from exc
    entry = header.get("latent_tensor") if isinstance(header, dict) else None
    if not isinstance(entry, dict):
        raise LatentFileError("no latent_tensor in the file")
    dtype = _DTYPES.get(str(entry.get("dtype")))
    if dtype is None:
        if entry.get("dtype") == "BF16":
            start, end = entry["data_offsets"]
            raw = np.frombuffer(data[8 + n + start : 8 + n + end], dtype="<u2").astype(np.uint32) << 16
            arr = raw.view(np.float32).reshape(entry["shape"])
        else:
            raise LatentFileError(f"unsupported latent dtype {entry.get('dtype')!r}")
    else:
        start, end = entry["data_offsets"]
        arr = np.frombuffer(data[8 + n + start : 8 + n + end], dtype=dtype).reshape(entry["shape"])
    arr = arr.astype(np.float32)
    if "latent_format_version_0" not in header:
        arr = arr * np.float32(_LEGACY_SCALE)
    return arr
