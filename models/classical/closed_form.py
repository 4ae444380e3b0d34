"""Closed-form matting (Levin, Lischinski and Weiss, PAMI 2008), our solver in torch.

The system is pymatting's (estimate_alpha_cf: 3x3 windows, eps 1e-7, the known pixels held at their
trimap values, L_UU alpha_U = -L_UK t_K), built only for the unknown pixels (laplacian.py) and solved
by flexible CG with the colour-line multigrid preconditioner (multigrid.py), on any torch device.
The Laplacian and the multigrid hierarchy are set up in float64, CG runs in float32 (`dtype`).
pymatting itself stays available as the model `closed_form_pymatting` (reference.py).
"""
from __future__ import annotations

import numpy as np
import torch

from models.base import IMAGE, TRIMAP, MattingModel, Sample
from models.classical.laplacian import unknown_system
from models.classical.multigrid import hierarchy, precondition
from models.classical.pcg import Stop, pcg
from models.classical.solution import Solution, check_trimap, solver_threads

#: CG's stop: relative residual 1e-4 (`mattebox bench classical`: SAD within 0.3 % of pymatting's,
#: which solves to 1e-7, and mean |alpha - pymatting's| over the unknown pixels below 2e-3)
STOP = Stop(tol=1e-4, max_iter=500)


class ClosedForm(MattingModel):
    name = "closed_form"
    description = "Closed-form matting (Levin et al. 2008): trimap-based, sharp on smooth colour regions."
    inputs = (IMAGE, TRIMAP)

    def __init__(self):
        self.device = "cpu"

    def load(self, device: str) -> None:
        self.device = device

    def run(self, batch: list[Sample]) -> list[np.ndarray]:
        return [closed_form(s.image, s.trimap, self.device).alpha for s in batch]


def closed_form(image: np.ndarray, trimap: np.ndarray, device: str | torch.device = "cpu",
                init: np.ndarray | None = None, stop: Stop = STOP, dtype: torch.dtype = torch.float32
                ) -> Solution:
    """Closed-form alpha of one frame.

    image: (H, W, 3) float in [0, 1]; trimap: (H, W) float in {0, 0.5, 1}.
    init: (H, W) float alpha to start CG from, e.g. the previous frame's (a warm start: fewer
    iterations, the same answer); default: start from 0.
    Raises ValueError for a trimap with unknown pixels but no foreground or no background, and for a
    frame narrower than a window (3 pixels) with unknown pixels.
    """
    if not check_trimap(trimap):
        return Solution(trimap.astype(np.float32), 0, 0.0)
    if min(trimap.shape) < 3:
        raise ValueError(f"closed-form matting needs a frame of at least 3x3 pixels, got {trimap.shape[1]}x"
                         f"{trimap.shape[0]}")
    (y0, y1), (x0, x1) = _box(trimap == 0.5, margin=2)
    img = torch.as_tensor(np.ascontiguousarray(image[y0:y1, x0:x1]), device=device).to(torch.float64)
    tri = torch.as_tensor(np.ascontiguousarray(trimap[y0:y1, x0:x1]), device=device).to(torch.float64)
    with torch.inference_mode(), solver_threads(device):
        a, diag, rhs, ys, xs = unknown_system(img, tri)
        levels = hierarchy(a, diag, ys, xs, img[ys, xs], dtype)
        start = None
        if init is not None:
            start = torch.as_tensor(np.ascontiguousarray(init[y0:y1, x0:x1]), device=device)[ys, xs]
            start = start.to(dtype).clamp(0, 1)
        fine = levels[0].a
        x, iterations, residual = pcg(lambda v: fine @ v, rhs.to(dtype), lambda r: precondition(levels, r), start, stop)
        alpha = trimap.astype(np.float32)
        alpha[y0 + ys.cpu().numpy(), x0 + xs.cpu().numpy()] = x.clamp(0, 1).cpu().numpy()
    return Solution(alpha, iterations, residual)


def _box(mask: np.ndarray, margin: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Row and column ranges [start, stop) of the mask's bounding box grown by margin, within the image."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    h, w = mask.shape
    return ((max(0, rows[0] - margin), min(h, rows[-1] + margin + 1)),
            (max(0, cols[0] - margin), min(w, cols[-1] + margin + 1)))
