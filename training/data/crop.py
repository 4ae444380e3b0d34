"""Square crops of training images: where to put them and how to cut them.

Images smaller than the crop are reflect-padded (colour and alpha alike, so the padding never draws
an edge that is not in the data); backgrounds are instead resized to cover the crop.
"""
from __future__ import annotations

import cv2
import numpy as np


def unknown_centre(pha: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
    """(y, x) of a random pixel of the unknown region of an (H, W) alpha: fractional alpha, else the
    border between 0 and 1 (a hard-edged matte), else anywhere."""
    unknown = (pha > 0) & (pha < 1)
    if not unknown.any():
        solid = (pha >= 1).astype(np.uint8)
        unknown = cv2.dilate(solid, np.ones((3, 3), np.uint8)) != cv2.erode(solid, np.ones((3, 3), np.uint8))
    if not unknown.any():
        return int(rng.integers(pha.shape[0])), int(rng.integers(pha.shape[1]))
    flat = np.flatnonzero(unknown)
    y, x = np.divmod(int(flat[rng.integers(flat.size)]), pha.shape[1])
    return int(y), int(x)


def any_centre(shape: tuple[int, ...], rng: np.random.Generator) -> tuple[int, int]:
    """(y, x) of a uniformly random pixel of an image of `shape` (H, W, ...)."""
    return int(rng.integers(shape[0])), int(rng.integers(shape[1]))


def crop(arrays: list[np.ndarray], centre: tuple[int, int], size: int) -> list[np.ndarray]:
    """size x size crops, at the same place, of same-sized (H, W) / (H, W, C) arrays.

    The window is centred on `centre` and then shifted to lie inside the image, so the centre pixel is
    always in it; a dimension smaller than `size` is reflect-padded first.
    """
    h, w = arrays[0].shape[:2]
    pad_y, pad_x = max(size - h, 0), max(size - w, 0)
    if pad_y or pad_x:
        top, left = pad_y // 2, pad_x // 2
        arrays = [cv2.copyMakeBorder(a, top, pad_y - top, left, pad_x - left, cv2.BORDER_REFLECT_101)
                  for a in arrays]
        centre = (centre[0] + top, centre[1] + left)
        h, w = h + pad_y, w + pad_x
    y0 = min(max(centre[0] - size // 2, 0), h - size)
    x0 = min(max(centre[1] - size // 2, 0), w - size)
    return [a[y0:y0 + size, x0:x0 + size] for a in arrays]


def cover(img: np.ndarray, size: int | tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A random crop of an (H, W, 3) image, resized first (keeping its aspect) to cover the crop when
    it is smaller. size: the crop's side (square), or its (height, width)."""
    ch, cw = (size, size) if isinstance(size, int) else size
    h, w = img.shape[:2]
    if h < ch or w < cw:
        f = max(ch / h, cw / w)
        h, w = max(ch, round(h * f)), max(cw, round(w * f))
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
    y0, x0 = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
    return img[y0:y0 + ch, x0:x0 + cw]


def resize(img: np.ndarray, size: int) -> np.ndarray:
    """Resize to size x size: area averaging when shrinking, bilinear when enlarging."""
    shrink = img.shape[0] > size or img.shape[1] > size
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
