"""Pixel value conventions shared by every model, the server and the command line."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np


def to_unit_float(a: np.ndarray) -> np.ndarray:
    """Any supported dtype -> float32. Integers are scaled to [0, 1]; floats are kept as they are."""
    if a.dtype == np.uint8:
        return a.astype(np.float32) / np.float32(255)
    if a.dtype == np.uint16:
        return a.astype(np.float32) / np.float32(65535)
    if a.dtype in (np.float16, np.float32, np.float64):
        return a.astype(np.float32, copy=False)
    raise ValueError(f"unsupported pixel dtype {a.dtype}; use uint8, uint16, float16 or float32")


def trimap_levels(trimap: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, C) trimap of any dtype -> (H, W) float32 in {0, 0.5, 1}.

    Values are snapped to the nearest of background / unknown / foreground (0 / 128 / 255 in 8 bit,
    0 / 0.5 / 1 in float), so a trimap saved lossily or an antialiased roto still reads; off_levels
    counts the pixels that needed it, trimap_note says so (path mode and `mattebox matte` do).
    """
    t = to_unit_float(trimap[..., 0] if trimap.ndim == 3 else trimap)
    out = np.full(t.shape, 0.5, np.float32)
    out[t < LOW] = 0.0
    out[t > HIGH] = 1.0
    return out


#: thresholds of trimap_levels, in [0, 1]: below LOW background, above HIGH foreground, else unknown
LOW, HIGH = 0.25, 0.75
#: how far a float trimap value may be from a level and still be that level: one 8-bit step (and a
#: half-float rounding of it)
_FLOAT_STEP = 1.0 / 255 + 1e-3
#: per integer dtype, the values that are exactly a level: 0, the unknown level (127 or 128 in 8 bit:
#: tools write 0.5 either way), the maximum
_EXACT = {np.dtype(np.uint8): np.isin(np.arange(256), (0, 127, 128, 255)),
          np.dtype(np.uint16): np.isin(np.arange(65536), (0, 32767, 32768, 65535))}


def off_levels(trimap: np.ndarray) -> int:
    """How many pixels of a (H, W) trimap are not exactly background, unknown or foreground: not 0,
    127/128, 255 in 8 bit (0, 32767/32768, 65535 in 16 bit), not 0, 0.5, 1 in float (within one 8-bit
    step: an 8-bit trimap saved as EXR holds 128/255). trimap_levels snaps them to the nearest level; an
    antialiased roto has them along its edges."""
    if trimap.dtype in _EXACT:
        return int(trimap.size - np.count_nonzero(_EXACT[trimap.dtype][trimap]))
    t = trimap.astype(np.float32, copy=False)
    off = np.minimum(np.minimum(np.abs(t), np.abs(t - 0.5)), np.abs(t - 1.0))
    return int(np.count_nonzero(off > _FLOAT_STEP))


def trimap_note(trimap: np.ndarray, name: str) -> str:
    """"" for a trimap of exact levels; else what snapping does to it, for the user: "the trimap NAME
    has N pixels (P %) between background, unknown and foreground: snapped to the nearest level ..."."""
    n = off_levels(trimap)
    if not n:
        return ""
    if trimap.dtype.kind == "u":
        top = np.iinfo(trimap.dtype).max
        ranges = f"0-{int(LOW * top)} background, {int(LOW * top) + 1}-{int(HIGH * top)} unknown, " \
                 f"{int(HIGH * top) + 1}-{top} foreground"
        levels = f"0 / {(top + 1) // 2} / {top}"
    else:
        ranges, levels = f"below {LOW} background, above {HIGH} foreground, else unknown", "0 / 0.5 / 1"
    return (f"{name} has {n} pixel(s) ({100 * n / trimap.size:.2g} %) that are not {levels} "
            f"(background / unknown / foreground): snapped to the nearest level ({ranges})")


#: per float dtype: (same-size unsigned view, bit pattern of +Inf = the smallest non-finite magnitude)
_INF_BITS = {np.dtype(np.float16): (np.uint16, 0x7C00), np.dtype(np.float32): (np.uint32, 0x7F800000)}


def all_finite(a: np.ndarray) -> bool:
    """True when no element is NaN or +-Inf (integer arrays always are).

    Fast path for images, whose values are non-negative: read as unsigned integers, every finite
    non-negative float is below the bit pattern of +Inf, so one max() over the bits decides. Arrays
    with negative values (sign bit set) take the full isfinite check.
    """
    if a.dtype.kind != "f":
        return True
    if a.dtype in _INF_BITS and a.flags.c_contiguous and a.size:
        bits, inf = _INF_BITS[a.dtype]
        if _max(a.view(bits).reshape(-1)) < inf:
            return True
    return bool(np.isfinite(a).all())


#: arrays at least this long are reduced in parallel slices (numpy releases the GIL while reducing)
PARALLEL_SIZE = 1 << 22


WORKERS = min(4, os.cpu_count() or 1)


@lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="pixels")


def _max(flat: np.ndarray) -> int:
    """max() of a 1-D integer array; a 4K frame's worth is split over the CPU cores."""
    if flat.size < PARALLEL_SIZE or WORKERS == 1:
        return int(flat.max())
    return int(max(_pool().map(np.max, np.array_split(flat, WORKERS))))
