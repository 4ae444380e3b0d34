"""What the classical solvers share: the trimap's checks and the form of their answer."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Solution:
    """alpha: (H, W) float32 in [0, 1], the trimap's 0 and 1 where it is known.
    iterations: conjugate-gradient iterations at full resolution (0 when nothing was unknown).
    residual: the relative residual |b - A x| / |b| reached (0.0 when nothing was unknown)."""

    alpha: np.ndarray
    iterations: int
    residual: float


def check_trimap(trimap: np.ndarray) -> bool:
    """Whether the (H, W) trimap in {0, 0.5, 1} has unknown pixels to solve for. Raises ValueError
    when it has unknown pixels but no foreground or no background: nothing to propagate from."""
    if not (trimap == 0.5).any():
        return False
    if not (trimap == 1).any() or not (trimap == 0).any():
        raise ValueError("the trimap needs foreground (255) and background (0) pixels besides the unknown region")
    return True
