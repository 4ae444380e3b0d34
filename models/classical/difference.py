"""Clean-plate difference key: the baseline for background-plate matting."""
from __future__ import annotations

import cv2
import numpy as np

from models.base import BACKGROUND, IMAGE, MattingModel, Sample

#: colour distance (Euclidean, display-referred RGB in [0, 1]) below which a pixel is background
LOW = 0.04
#: colour distance above which a pixel is foreground
HIGH = 0.20


class Difference(MattingModel):
    name = "difference"
    description = "Clean-plate difference key: soft threshold on |image - plate|, light clean-up; needs a plate."
    inputs = (IMAGE, BACKGROUND)

    def run(self, batch: list[Sample]) -> list[np.ndarray]:
        return [difference_key(s.image, s.background) for s in batch]


def difference_key(image: np.ndarray, plate: np.ndarray, low: float = LOW, high: float = HIGH) -> np.ndarray:
    """image, plate: (H, W, 3) float32 in [0, 1]. Returns (H, W) float32 alpha in [0, 1].

    alpha = smoothstep(low, high, ||image - plate||), then a 3x3 opening (removes specks of sensor
    noise in the background) and closing (fills pinholes in the subject), then a 3x3 box blur to
    soften the stair steps morphology leaves on edges.
    """
    dist = np.sqrt(((image - plate) ** 2).sum(axis=2))
    t = np.clip((dist - low) / (high - low), 0.0, 1.0)
    alpha = t * t * (3.0 - 2.0 * t)
    kernel = np.ones((3, 3), np.uint8)
    alpha = cv2.morphologyEx(alpha, cv2.MORPH_OPEN, kernel)
    alpha = cv2.morphologyEx(alpha, cv2.MORPH_CLOSE, kernel)
    return np.clip(cv2.blur(alpha, (3, 3)), 0.0, 1.0).astype(np.float32)
