"""Colour conversion through OpenImageIO's OpenColorIO configuration.

EXR plates are scene-linear; networks and classical solvers expect display-referred pixels in [0, 1]
(sRGB unless a job names another display space). Alpha is never colour-converted.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import OpenImageIO as oiio

SCENE_LINEAR = "scene_linear"
SRGB = "sRGB"


@lru_cache(maxsize=1)
def _config() -> oiio.ColorConfig:
    return oiio.ColorConfig()


def check_space(name: str) -> str:
    """Return `name` if OpenColorIO can convert from it to sRGB, else raise ValueError."""
    if not _known(name):
        known = ", ".join([SCENE_LINEAR, SRGB, "linear"] + _config().getColorSpaceNames())
        raise ValueError(f"unknown colour space {name!r}; known: {known}")
    return name


@lru_cache(maxsize=64)
def _known(name: str) -> bool:
    probe = oiio.ImageBufAlgo.colorconvert(oiio.ImageBuf(np.zeros((1, 1, 3), np.float32)), name, SRGB)
    return not probe.geterror()


def convert(rgb: np.ndarray, src: str, dst: str) -> np.ndarray:
    """(H, W, 3) float32 in `src` -> (H, W, 3) float32 in `dst`.

    When `dst` is a display space the result is clipped to [0, 1] (the range models are trained on);
    scene-linear highlights above 1 therefore become 1.
    """
    if src == dst:
        return np.clip(rgb, 0.0, 1.0) if dst != SCENE_LINEAR else rgb
    out = oiio.ImageBufAlgo.colorconvert(oiio.ImageBuf(np.ascontiguousarray(rgb, np.float32)), src, dst)
    if out.has_error:
        raise ValueError(f"cannot convert colour from {src!r} to {dst!r}: {out.geterror()}")
    px = out.get_pixels(oiio.FLOAT)
    return px if dst == SCENE_LINEAR else np.clip(px, 0.0, 1.0, out=px)
