"""Colour conversion through OpenImageIO's OpenColorIO configuration, plus Cineon log.

EXR plates are scene-linear; networks and classical solvers expect display-referred pixels in [0, 1]
(sRGB unless a job names another display space). Alpha is never colour-converted.

SCENE_LINEAR ("scene_linear") is what Mattebox takes an untagged float file to be: linear light with
Rec.709 primaries, the default working space of Nuke and Blender. OpenImageIO 3.x's built-in
configuration (the OpenColorIO CG config, ocio://default) maps its `scene_linear` role to ACEScg, so
this module resolves the name to LINEAR_REC709 itself; ACES plates say ACEScg (or are tagged so).
Cineon (Kodak printing-density log, what log DPX scans hold) is not in that configuration; this module
decodes it itself to linear Rec.709 with Nuke's Cineon curve.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import OpenImageIO as oiio

SCENE_LINEAR = "scene_linear"
SRGB = "sRGB"
LINEAR_REC709 = "lin_rec709_scene"
CINEON = "Cineon"

#: linear spaces a file can name by its primaries (EXR `chromaticities`), tried in this order
LINEAR_SPACES = ("ACEScg", "ACES2065-1", LINEAR_REC709, "lin_p3d65_scene", "lin_rec2020_scene")

#: Cineon curve (Nuke's Log2Lin defaults): code values of black and white in 10 bit, density per code
#: value over the film's negative gamma
_CINEON_BLACK, _CINEON_WHITE, _CINEON_STEP = 95.0, 685.0, 0.002 / 0.6
_CINEON_OFFSET = 10.0 ** ((_CINEON_BLACK - _CINEON_WHITE) * _CINEON_STEP)


#: names this module resolves itself before asking OpenColorIO
_ALIASES = {SCENE_LINEAR: LINEAR_REC709}


@lru_cache(maxsize=1)
def _config() -> oiio.ColorConfig:
    return oiio.ColorConfig()


def check_space(name: str) -> str:
    """Return `name` if it can be converted to sRGB (OpenColorIO, or Cineon), else raise ValueError."""
    if not _known(name):
        known = ", ".join([SCENE_LINEAR, SRGB, "linear", CINEON] + _config().getColorSpaceNames())
        raise ValueError(f"unknown colour space {name!r}; known: {known}")
    return name


@lru_cache(maxsize=64)
def _known(name: str) -> bool:
    if name == CINEON:
        return True
    probe = oiio.ImageBufAlgo.colorconvert(oiio.ImageBuf(np.zeros((1, 1, 3), np.float32)), name, SRGB)
    return not probe.geterror()


@lru_cache(maxsize=64)
def declared(name: str) -> str:
    """The space to use for a file whose header names colour space `name`.

    SRGB for any name the configuration finds equivalent to sRGB (OpenImageIO's PNG and JPEG readers
    report `srgb_rec709_scene` for every file, so plain PNGs stay "sRGB"); the configuration's own name
    for any other space it knows (`lin_ap1_scene` -> "ACEScg"); CINEON as it is; "" for "" or a name
    the configuration does not know (the caller then applies its default).
    """
    if name == CINEON or name in _ALIASES:
        return name
    if not name or not _known(name):
        return ""
    return SRGB if _config().equivalent(name, SRGB) else _config().resolve(name)


def from_chromaticities(chroma) -> str:
    """The linear space of LINEAR_SPACES whose primaries and white point are `chroma` (an EXR
    `chromaticities` attribute: 8 floats, red/green/blue/white x, y), or "" for None or no match."""
    if chroma is None or len(chroma) != 8:
        return ""
    for name in LINEAR_SPACES:
        if np.allclose(chroma, _config().get_chromaticities(name), atol=1e-3):
            return _config().resolve(name)
    return ""


def convert(rgb: np.ndarray, src: str, dst: str) -> np.ndarray:
    """(H, W, 3) float32 in `src` -> (H, W, 3) float32 in `dst`.

    When `dst` is not a linear space (display spaces, the only ones models use) the result is clipped
    to [0, 1], the range models are trained on; scene-linear highlights above 1 therefore become 1.
    CINEON pixels are code values / 1023 in [0, 1].
    """
    if _ALIASES.get(src, src) == _ALIASES.get(dst, dst):
        return rgb if _linear(dst) else np.clip(rgb, 0.0, 1.0)
    if src == CINEON:
        return convert(_cineon_to_linear(rgb), LINEAR_REC709, dst)
    if dst == CINEON:
        return np.clip(_linear_to_cineon(_ocio(rgb, src, LINEAR_REC709)), 0.0, 1.0)
    px = _ocio(rgb, src, dst)
    return px if _linear(dst) else np.clip(px, 0.0, 1.0, out=px)


@lru_cache(maxsize=64)
def _linear(name: str) -> bool:
    """Whether `name` is a scene-linear space (values above 1 are light, not to be clipped)."""
    resolved = _config().resolve(_ALIASES.get(name, name))
    return resolved in {_config().resolve(n) for n in LINEAR_SPACES + ("linear",)}


def _ocio(rgb: np.ndarray, src: str, dst: str) -> np.ndarray:
    """(H, W, 3) float32 `src` -> `dst` through OpenColorIO, unclipped."""
    out = oiio.ImageBufAlgo.colorconvert(oiio.ImageBuf(np.ascontiguousarray(rgb, np.float32)),
                                         _ALIASES.get(src, src), _ALIASES.get(dst, dst))
    if out.has_error:
        raise ValueError(f"cannot convert colour from {src!r} to {dst!r}: {out.geterror()}")
    return out.get_pixels(oiio.FLOAT)


def _cineon_to_linear(code: np.ndarray) -> np.ndarray:
    """Cineon code values / 1023 (any shape, float) -> float32 linear light (0 at code 95, 1 at 685)."""
    density = (np.asarray(code, np.float32) * 1023.0 - _CINEON_WHITE) * _CINEON_STEP
    return ((10.0 ** density - _CINEON_OFFSET) / (1.0 - _CINEON_OFFSET)).astype(np.float32)


def _linear_to_cineon(linear: np.ndarray) -> np.ndarray:
    """float linear light (any shape) -> float32 Cineon code values / 1023, the inverse of the above."""
    lifted = np.maximum(linear * (1.0 - _CINEON_OFFSET) + _CINEON_OFFSET, 1e-10)
    return ((_CINEON_WHITE + np.log10(lifted) / _CINEON_STEP) / 1023.0).astype(np.float32)
