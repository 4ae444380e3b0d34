"""KNN matting (Chen, Li and Tang, CVPR 2012) through pymatting."""
from __future__ import annotations

import numpy as np
from models.base import IMAGE, TRIMAP, MattingModel, Sample
from models.classical.closed_form import solve


class KNN(MattingModel):
    name = "knn"
    description = "KNN matting (Chen et al. 2012): trimap-based, nonlocal; good on hair and fine structure."
    inputs = (IMAGE, TRIMAP)

    def run(self, batch: list[Sample]) -> list[np.ndarray]:
        from pymatting import estimate_alpha_knn  # heavy (numba): imported on first use, not on listing

        return [solve(s.image, s.trimap, estimate_alpha_knn) for s in batch]
