"""pymatting's own closed-form and KNN matting: the reference our solvers are measured against, and a
fallback a user can pick (models `closed_form_pymatting`, `knn_pymatting`). CPU only, float64."""
from __future__ import annotations

import numpy as np

from models.base import IMAGE, TRIMAP, MattingModel, Sample
from models.classical.solution import check_trimap

#: diagonal shifts pymatting's ichol tries in turn; they change the preconditioner, not the solution
SHIFTS = [1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0]


def closed_form_pymatting(image: np.ndarray, trimap: np.ndarray) -> np.ndarray:
    """pymatting's estimate_alpha_cf (3x3 windows, eps 1e-7, CG to 1e-7 with an incomplete-Cholesky
    preconditioner). image: (H, W, 3) float in [0, 1]; trimap: (H, W) in {0, 0.5, 1}.
    Returns (H, W) float32 alpha in [0, 1]; the checks and errors of `check_trimap`."""
    # The incomplete-Cholesky preconditioner starts with a small diagonal shift: unshifted it fails on
    # most real trimaps (and says so on stdout) before pymatting retries with the shift anyway.
    from pymatting import estimate_alpha_cf, ichol  # heavy (numba): imported on first use, not on listing

    return _solve(image, trimap, lambda i, t: estimate_alpha_cf(i, t, preconditioner=lambda a: ichol(a, shifts=SHIFTS)))


def knn_pymatting(image: np.ndarray, trimap: np.ndarray) -> np.ndarray:
    """pymatting's estimate_alpha_knn (neighbours 20 and 10, lambda 100, Jacobi CG to 1e-7); as above."""
    from pymatting import estimate_alpha_knn  # heavy (numba): imported on first use, not on listing

    return _solve(image, trimap, estimate_alpha_knn)


def _solve(image: np.ndarray, trimap: np.ndarray, estimate) -> np.ndarray:
    if not check_trimap(trimap):
        return trimap.astype(np.float32)
    alpha = estimate(image.astype(np.float64), trimap.astype(np.float64))
    return np.clip(alpha, 0.0, 1.0).astype(np.float32)


class ClosedFormPymatting(MattingModel):
    name = "closed_form_pymatting"
    description = "Closed-form matting through pymatting (the reference of closed_form; slower, CPU only)."
    inputs = (IMAGE, TRIMAP)

    def run(self, batch: list[Sample]) -> list[np.ndarray]:
        return [closed_form_pymatting(s.image, s.trimap) for s in batch]


class KNNPymatting(MattingModel):
    name = "knn_pymatting"
    description = "KNN matting through pymatting (the reference of knn; much slower, CPU only)."
    inputs = (IMAGE, TRIMAP)

    def run(self, batch: list[Sample]) -> list[np.ndarray]:
        return [knn_pymatting(s.image, s.trimap) for s in batch]
