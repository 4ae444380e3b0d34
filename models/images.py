"""Reading and writing frames with OpenImageIO (EXR, DPX, TIFF, PNG, JPEG and the rest it knows).

Colour rules: float files (EXR, HDR, float TIFF) are scene-linear, integer files display-referred
sRGB, unless the caller says otherwise. Alpha is written linear as it is, never colour-converted.
Writes are atomic: a temp file in the same folder, then a rename, so a crash never leaves a half
frame that a re-run would trust.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import OpenImageIO as oiio

from models.colour import SCENE_LINEAR, SRGB

#: output formats for alpha, by extension: (OpenImageIO pixel type, numpy dtype)
ALPHA_FORMATS = {
    ".exr": (oiio.HALF, np.float16),
    ".png": (oiio.UINT8, np.uint8),
    ".tif": (oiio.UINT16, np.uint16),
    ".tiff": (oiio.UINT16, np.uint16),
    ".jpg": (oiio.UINT8, np.uint8),
    ".jpeg": (oiio.UINT8, np.uint8),
}


@dataclass(frozen=True)
class Window:
    """Where a frame's pixels sit: data window origin and the full (display) window."""

    x: int = 0
    y: int = 0
    full_x: int = 0
    full_y: int = 0
    full_width: int = 0
    full_height: int = 0


@dataclass(frozen=True)
class Image:
    """pixels: (H, W, C) in the file's own dtype (uint8, uint16, float16 or float32), top row first.
    colour_space: OpenColorIO name of the pixels' space. window: data/display window of the file."""

    pixels: np.ndarray
    colour_space: str
    window: Window


_NUMPY = {oiio.UINT8: np.uint8, oiio.UINT16: np.uint16, oiio.HALF: np.float16, oiio.FLOAT: np.float32}


def read(path: str | os.PathLike, channels: int | None = None) -> Image:
    """Read one image. `channels` keeps the first N channels (3 for RGB, 1 for a trimap).

    Integer files keep their dtype; float files come back float16 or float32; other pixel types
    (uint32, double, ...) are read as float32. Raises FileNotFoundError / ValueError with the file name.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    inp = oiio.ImageInput.open(path)
    if inp is None:
        raise ValueError(f"{path}: cannot read it as an image ({oiio.geterror()})")
    try:
        spec = inp.spec()
        fmt = spec.format.basetype
        want = fmt if fmt in _NUMPY else oiio.FLOAT
        px = inp.read_image(0, 0, 0, spec.nchannels, want)
        if px is None:
            raise ValueError(f"{path}: failed to read pixels ({inp.geterror()})")
    finally:
        inp.close()
    px = np.asarray(px).reshape(spec.height, spec.width, spec.nchannels)
    if channels is not None:
        if spec.nchannels < channels:
            if spec.nchannels != 1:
                raise ValueError(f"{path}: has {spec.nchannels} channels, need {channels}")
            px = np.repeat(px, channels, axis=2)
        px = px[..., :channels]
    floating = np.dtype(_NUMPY[want]).kind == "f"
    window = Window(spec.x, spec.y, spec.full_x, spec.full_y, spec.full_width, spec.full_height)
    return Image(np.ascontiguousarray(px), SCENE_LINEAR if floating else SRGB, window)


def _write_atomic(path: str, px: np.ndarray, pixel_type, window: Window | None, channel_names) -> None:
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    h, w, c = px.shape
    spec = oiio.ImageSpec(w, h, c, pixel_type)
    spec.channelnames = channel_names
    if window is not None:
        spec.x, spec.y = window.x, window.y
        spec.full_x, spec.full_y = window.full_x, window.full_y
        spec.full_width, spec.full_height = window.full_width or w, window.full_height or h
    if path.lower().endswith(".exr"):
        spec.attribute("compression", "zip")
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=os.path.splitext(name)[1], dir=folder)
    os.close(fd)
    try:
        out = oiio.ImageOutput.create(tmp)
        if out is None or not out.open(tmp, spec):
            raise OSError(f"{path}: cannot write ({oiio.geterror()})")
        ok = out.write_image(px)
        err = out.geterror()
        out.close()
        if not ok:
            raise OSError(f"{path}: write failed ({err})")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_alpha(path: str | os.PathLike, alpha: np.ndarray, window: Window | None = None) -> None:
    """Write a (H, W) alpha in [0, 1] as one channel "A": half-float EXR, 8-bit PNG/JPEG, 16-bit TIFF."""
    path = os.fspath(path)
    ext = Path(path).suffix.lower()
    if ext not in ALPHA_FORMATS:
        raise ValueError(f"{path}: alpha output must be one of {', '.join(ALPHA_FORMATS)}")
    pixel_type, dtype = ALPHA_FORMATS[ext]
    a = np.clip(alpha.astype(np.float32, copy=False), 0.0, 1.0)
    if np.dtype(dtype).kind == "u":
        a = np.rint(a * np.iinfo(dtype).max)
    _write_atomic(path, a.astype(dtype)[..., None], pixel_type, window, ["A"])


def write_rgb(path: str | os.PathLike, rgb: np.ndarray, window: Window | None = None) -> None:
    """Write (H, W, 3) pixels: float data as half-float EXR (values as given, e.g. scene-linear),
    uint8 / uint16 data as they are (PNG, TIFF, JPEG)."""
    path = os.fspath(path)
    types = {np.dtype(np.uint8): oiio.UINT8, np.dtype(np.uint16): oiio.UINT16}
    pixel_type = types.get(rgb.dtype, oiio.HALF)
    _write_atomic(path, np.ascontiguousarray(rgb), pixel_type, window, ["R", "G", "B"])
