"""Augmentation of composite training data: the configuration and the foreground/background crops.

Order for a foreground (seed 003's, which extends Deep Image Matting's): resize the whole image to
resize_to x resize_to with probability resize_p (the network sees whole subjects, not only snippets),
horizontal flip, random affine, a crop of crop * scale pixels centred on a random unknown pixel
(0 < alpha < 1) resized to crop x crop (DIM's multi-scale crops), then colour jitter of the foreground
only. Alpha is snapped to exactly 0 / 1 within 1/1024 after the resampling, so interpolation noise
never turns a solid region into a fractional one. Backgrounds get a random crop (resized to cover it
when smaller) and a flip. Everything happens before compositing, so I = pha*fgr + (1-pha)*bgr holds
exactly for the item.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from training.data.crop import cover, crop, resize, unknown_centre
from training.data.geometry import Affine, random_affine, warp
from training.data.jitter import Jitter, jitter_colour
from training.data.plate import PlatePerturb

SNAP = 1.0 / 1024.0


@dataclass(frozen=True)
class Augment:
    """crop: output size (pixels, square).
    scales: crop windows of crop * scale pixels (one drawn uniformly) are resized to crop.
    resize_p, resize_to: probability of first resizing the whole foreground to resize_to x resize_to.
    flip: probability of a horizontal flip, foreground and background independently.
    affine: random affine of the foreground, or None.
    hsv_jitter: colour jitter of the foreground, or None.
    plate: how the clean plate departs from the true background.
    """

    crop: int = 320
    scales: tuple[float, ...] = (1.0,)
    resize_p: float = 0.0
    resize_to: int = 640
    flip: float = 0.5
    affine: Affine | None = None
    hsv_jitter: Jitter | None = None
    plate: PlatePerturb = PlatePerturb()


#: Deep Image Matting: 320 / 480 / 640 crops resized to 320, random flips (seeds 000, 002, 004).
DIM_AUGMENT = Augment(crop=320, scales=(1.0, 1.5, 2.0))

#: Seed 003: 640x640 resize with p = 0.25, random affine, 512 crops, HSV jitter of the foreground.
SEED003_AUGMENT = Augment(
    crop=512, resize_p=0.25, resize_to=640,
    affine=Affine(degrees=30.0, scale=(0.8, 1.25), shear=10.0),
    hsv_jitter=Jitter(hue=0.05, saturation=0.3, value=0.2),
)


def foreground_crop(fgr: np.ndarray, pha: np.ndarray, rng: np.random.Generator,
                    aug: Augment) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) foreground and (H, W) alpha, float32 in [0, 1] -> augmented (crop, crop, 3) and
    (crop, crop) crops, float32 in [0, 1], centred on the unknown region."""
    if rng.random() < aug.resize_p:
        fgr, pha = resize(fgr, aug.resize_to), resize(pha, aug.resize_to)
    if rng.random() < aug.flip:
        fgr, pha = fgr[:, ::-1], pha[:, ::-1]
    if aug.affine is not None:
        m = random_affine(rng, *pha.shape, aug.affine)
        fgr, pha = warp(fgr, m, cv2.BORDER_REFLECT_101), warp(pha, m, cv2.BORDER_CONSTANT)
    size = round(aug.crop * aug.scales[rng.integers(len(aug.scales))])
    fgr, pha = crop([np.ascontiguousarray(fgr), np.ascontiguousarray(pha)], unknown_centre(pha, rng), size)
    fgr, pha = np.clip(resize(fgr, aug.crop), 0, 1), resize(pha, aug.crop)
    pha = np.where(pha < SNAP, 0, np.where(pha > 1 - SNAP, 1, pha)).astype(np.float32)
    if aug.hsv_jitter is not None:
        fgr = jitter_colour(fgr, rng, aug.hsv_jitter)
    return fgr, pha


def background_crop(bgr: np.ndarray, rng: np.random.Generator, aug: Augment) -> np.ndarray:
    """(H, W, 3) float32 background in [0, 1] -> a (crop, crop, 3) random crop, maybe flipped."""
    out = cover(bgr, aug.crop, rng)
    return out[:, ::-1] if rng.random() < aug.flip else out
