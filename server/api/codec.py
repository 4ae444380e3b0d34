"""numpy <-> protocol frames, shared by the client and the server.

Pixels travel row-major, top row first, channels interleaved: a (H, W, C) C-contiguous array.
"""
from __future__ import annotations

import numpy as np

from server.api import INPUT_CODES, INPUT_NAMES, pb  # noqa: F401 (INPUT_*: re-exported)

DTYPES = {
    pb.UINT8: np.dtype(np.uint8),
    pb.UINT16: np.dtype(np.uint16),
    pb.FLOAT16: np.dtype(np.float16),
    pb.FLOAT32: np.dtype(np.float32),
}
CODES = {v: k for k, v in DTYPES.items()}


def describe(a: np.ndarray, colour_space: str = "") -> pb.FrameDesc:
    """FrameDesc of a (H, W) or (H, W, C) array of a protocol dtype."""
    if a.dtype not in CODES:
        raise ValueError(f"unsupported dtype {a.dtype}; use uint8, uint16, float16 or float32")
    h, w = a.shape[:2]
    c = a.shape[2] if a.ndim == 3 else 1
    return pb.FrameDesc(width=w, height=h, channels=c, dtype=CODES[a.dtype], colour_space=colour_space)


def nbytes(desc: pb.FrameDesc) -> int:
    """Byte count a frame with this descriptor must have (0 for an unsupported dtype)."""
    dt = DTYPES.get(desc.dtype)
    return 0 if dt is None else desc.width * desc.height * desc.channels * dt.itemsize


def encode(a: np.ndarray, colour_space: str = "") -> pb.Frame:
    return pb.Frame(desc=describe(a, colour_space), data=np.ascontiguousarray(a).tobytes())


def view(desc: pb.FrameDesc, buffer) -> np.ndarray:
    """(H, W, C) array over `buffer` (no copy) for a descriptor already checked by the caller."""
    return np.frombuffer(buffer, DTYPES[desc.dtype], nbytes(desc) // DTYPES[desc.dtype].itemsize).reshape(
        desc.height, desc.width, desc.channels)
