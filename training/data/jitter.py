"""Random colour jitter in HSV terms, shared by the foreground augmentation and the plate drift."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Jitter:
    """Ranges of a random colour change, each drawn uniformly.

    hue: hue rotation in [-hue, hue] turns (0.05 = 18 degrees)
    saturation: saturation factor in [1 - saturation, 1 + saturation]
    value: brightness factor in [1 - value, 1 + value]
    contrast: factor in [1 - contrast, 1 + contrast] on the distance from the image's mean grey
    """

    hue: float = 0.0
    saturation: float = 0.0
    value: float = 0.0
    contrast: float = 0.0


def jitter_colour(rgb: np.ndarray, rng: np.random.Generator, cfg: Jitter) -> np.ndarray:
    """(H, W, 3) float32 RGB in [0, 1] -> jittered copy, (H, W, 3) float32 in [0, 1]."""
    hue, sat, val, con = rng.uniform(-1, 1, 4) * (cfg.hue, cfg.saturation, cfg.value, cfg.contrast)
    hsv = cv2.cvtColor(np.ascontiguousarray(rgb, np.float32), cv2.COLOR_RGB2HSV)  # H in degrees
    hsv[..., 0] = (hsv[..., 0] + 360 * hue) % 360
    hsv[..., 1] = np.clip(hsv[..., 1] * (1 + sat), 0, 1)
    hsv[..., 2] *= 1 + val
    out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if con:
        mean = out.mean()
        out = (out - mean) * (1 + con) + mean
    return np.clip(out, 0, 1)
