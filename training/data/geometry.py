"""Random affine transforms, shared by the foreground augmentation and the plate misregistration."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Affine:
    """Ranges of a random affine transform about the image centre, each drawn uniformly.

    degrees: rotation in [-degrees, degrees]
    scale: zoom factor in [scale[0], scale[1]]
    shear: horizontal shear angle in [-shear, shear] degrees
    translate: shift in [-translate, translate] times the image width (x) and height (y)
    """

    degrees: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)
    shear: float = 0.0
    translate: float = 0.0


def random_affine(rng: np.random.Generator, height: int, width: int, cfg: Affine) -> np.ndarray:
    """A 2x3 float64 matrix (cv2.warpAffine convention) drawn from `cfg` for a height x width image."""
    angle = np.radians(rng.uniform(-cfg.degrees, cfg.degrees))
    zoom = rng.uniform(*cfg.scale)
    shear = np.tan(np.radians(rng.uniform(-cfg.shear, cfg.shear)))
    shift = rng.uniform(-cfg.translate, cfg.translate, 2) * (width, height)
    c, s = np.cos(angle), np.sin(angle)
    linear = zoom * np.array([[c, -s], [s, c]]) @ np.array([[1.0, shear], [0.0, 1.0]])
    centre = np.array([(width - 1) / 2, (height - 1) / 2])
    return np.hstack([linear, (centre + shift - linear @ centre)[:, None]])


def warp(img: np.ndarray, matrix: np.ndarray, border: int) -> np.ndarray:
    """Warp (H, W) or (H, W, C) float32 by a 2x3 matrix, bilinear, same size; `border` a cv2.BORDER_*
    (constant borders are 0)."""
    h, w = img.shape[:2]
    return cv2.warpAffine(img, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=border, borderValue=0)
