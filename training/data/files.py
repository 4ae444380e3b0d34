"""Reading training images from disk, with the server's colour rule.

Float files (EXR, HDR, float TIFF) are scene-linear and integer files display-referred sRGB, unless
the caller names the space; either way the result is display-referred sRGB, the space every model is
trained in. Mattes are never colour-converted.
"""
from __future__ import annotations

import os

import numpy as np

from models import colour, images, pixels


def read_srgb(path: str | os.PathLike, colour_space: str = "") -> np.ndarray:
    """(H, W, 3) float32 sRGB in [0, 1] from any image file OpenImageIO reads.

    colour_space: the file's space (OpenColorIO name); "" = the server's rule (float files
    scene-linear, integer files sRGB).
    """
    img = images.read(path, 3)
    space = colour.check_space(colour_space) if colour_space else img.colour_space
    return colour.convert(pixels.to_unit_float(img.pixels), space, colour.SRGB)


def read_matte(path: str | os.PathLike, channel: str = "") -> np.ndarray:
    """(H, W) float32 alpha in [0, 1] from an image file, by the matte-channel rule of images.read:
    `channel` when named ("A", "R", "Y", "mask.a", ...), else the file's alpha (an RGBA roto EXR),
    else its only channel, else the luminance of R, G, B (grey stored as RGB works)."""
    return np.clip(pixels.to_unit_float(images.read(path, 1, channel).pixels[..., 0]), 0.0, 1.0)
