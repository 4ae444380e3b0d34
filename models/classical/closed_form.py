"""Closed-form matting (Levin, Lischinski and Weiss, PAMI 2008) through pymatting."""
from __future__ import annotations

import numpy as np

from models.base import IMAGE, TRIMAP, MattingModel, Sample


class ClosedForm(MattingModel):
    name = "closed_form"
    description = "Closed-form matting (Levin et al. 2008): trimap-based, sharp on smooth colour regions."
    inputs = (IMAGE, TRIMAP)

    def run(self, batch: list[Sample]) -> list[np.ndarray]:
        return [solve(s.image, s.trimap, _estimate) for s in batch]


def _estimate(image: np.ndarray, trimap: np.ndarray) -> np.ndarray:
    # The incomplete-Cholesky preconditioner starts with a small diagonal shift: unshifted it fails on
    # most real trimaps (and says so on stdout) before pymatting retries with the shift anyway.
    from pymatting import estimate_alpha_cf, ichol  # heavy (numba): imported on first use, not on listing

    return estimate_alpha_cf(image, trimap, preconditioner=lambda A: ichol(A, shifts=SHIFTS))


#: diagonal shifts pymatting's ichol tries in turn; they change the preconditioner, not the solution
SHIFTS = [1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0]


def solve(image: np.ndarray, trimap: np.ndarray, estimate) -> np.ndarray:
    """Run a pymatting estimator `estimate(image, trimap)` (float64 in, alpha out) with our checks.

    image: (H, W, 3) float32 in [0, 1]; trimap: (H, W) float32 in {0, 0.5, 1}.
    Returns (H, W) float32 alpha in [0, 1]. A trimap with no unknown pixels is its own answer.
    """
    if not (trimap == 0.5).any():
        return trimap.astype(np.float32)
    if not (trimap == 1).any() or not (trimap == 0).any():
        raise ValueError("the trimap needs foreground (255) and background (0) pixels besides the unknown region")
    alpha = estimate(image.astype(np.float64), trimap.astype(np.float64))
    return np.clip(alpha, 0.0, 1.0).astype(np.float32)
