"""Pixel value conventions shared by every model, the server and the command line."""
from __future__ import annotations

import numpy as np

#: dtypes frames may arrive in, by name as the protocol spells them
DTYPES = {"uint8": np.uint8, "uint16": np.uint16, "float16": np.float16, "float32": np.float32}


def to_unit_float(a: np.ndarray) -> np.ndarray:
    """Any supported dtype -> float32. Integers are scaled to [0, 1]; floats are kept as they are."""
    if a.dtype == np.uint8:
        return a.astype(np.float32) / np.float32(255)
    if a.dtype == np.uint16:
        return a.astype(np.float32) / np.float32(65535)
    if a.dtype in (np.float16, np.float32, np.float64):
        return a.astype(np.float32, copy=False)
    raise ValueError(f"unsupported pixel dtype {a.dtype}; use one of {', '.join(DTYPES)}")


def trimap_levels(trimap: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, C) trimap of any dtype -> (H, W) float32 in {0, 0.5, 1}.

    Values are snapped to the nearest of background / unknown / foreground (0 / 128 / 255 in 8 bit,
    0 / 0.5 / 1 in float), so a trimap saved lossily still reads correctly.
    """
    t = to_unit_float(trimap[..., 0] if trimap.ndim == 3 else trimap)
    out = np.full(t.shape, 0.5, np.float32)
    out[t < 0.25] = 0.0
    out[t > 0.75] = 1.0
    return out


def all_finite(a: np.ndarray) -> bool:
    """True when no element is NaN or +-Inf (one pass; integer arrays are always finite)."""
    if a.dtype.kind != "f":
        return True
    # A sum is finite exactly when every term is: float16 terms cannot overflow a float32 sum,
    # float32 terms cannot overflow a float64 sum.
    acc = np.float32 if a.dtype == np.float16 else np.float64
    return bool(np.isfinite(a.sum(dtype=acc)))
