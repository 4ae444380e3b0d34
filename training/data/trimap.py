"""Random trimaps from a ground-truth alpha, the Deep Image Matting way.

The solid foreground (alpha == 1) and the clear background (alpha == 0) are each eroded by their own
random radius; everything else is unknown. So every fractional alpha pixel is unknown, the known
regions always agree with the ground truth, and the unknown band reaches `radius` pixels beyond the
soft edge (and also covers hard 0/1 edges), the way a user's hand-drawn trimap varies.
"""
from __future__ import annotations

import cv2
import numpy as np


def random_trimap(pha: np.ndarray, rng: np.random.Generator, min_band: int = 1,
                  max_band: int = 25) -> np.ndarray:
    """(H, W) alpha in [0, 1] -> (H, W) float32 trimap in {0, 0.5, 1}.

    min_band, max_band: range (pixels, inclusive) of the two erosion radii, drawn uniformly and
    independently for the foreground and the background side. The image border does not erode.
    """
    if not 0 <= min_band <= max_band:
        raise ValueError(f"need 0 <= min_band <= max_band, got {min_band}, {max_band}")
    r_fg, r_bg = rng.integers(min_band, max_band + 1, 2)
    tri = np.full(pha.shape, 0.5, np.float32)
    tri[_inner(pha >= 1, r_fg)] = 1.0
    tri[_inner(pha <= 0, r_bg)] = 0.0
    return tri


def _inner(mask: np.ndarray, radius: int) -> np.ndarray:
    """Pixels of `mask` farther than `radius` from any pixel outside it (Euclidean distance, OpenCV's
    5x5-mask approximation)."""
    dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_5)
    return dist > radius
