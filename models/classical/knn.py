"""KNN matting (Chen, Li and Tang, CVPR 2012), our solver in torch, after pymatting's estimate_alpha_knn.

pymatting's graph: every pixel links to its 20 nearest neighbours in (r, g, b, 2x, 2y) and its 10
nearest in (r, g, b, 0.1x, 0.1y) (neighbours.py), weight 1 each, W = S + S^T; alpha solves
(I - D^-1 W + lambda C) alpha = lambda C t with D the degrees and lambda = 100 on the known pixels C.
Multiplied by D this is the symmetric (D - W + lambda D C) alpha = lambda D C t.

What we change, both measured against pymatting in `mattebox bench classical`:
- Known pixels are held at their trimap values (lambda -> infinity), so only the unknown pixels are
  unknowns: (D - W)_UU alpha_U = W_UK t_K. pymatting's lambda = 100 lets known pixels next to the
  unknown region drift by up to 1 %; holding them changes alpha by < 0.01.
- Only pixels within REACH of the unknown region search for neighbours (pymatting: every pixel). A
  pixel farther away reaches into the unknown region only through its second, colour-only neighbour
  set, and dropping those links moves alpha by ~0.01 on average and lowers SAD against ground truth
  on the held-out photos. This is what keeps the search to a fraction of the frame.
The solve is Jacobi-preconditioned CG in float32 on the unknown pixels: the KNN system is far better
conditioned than the closed-form one (70-110 iterations on a 1080p frame), and a multigrid does not
pay here (its coarse levels of this nonlocal graph are denser than the fine one: 15 iterations, each
costlier, 3x slower in all). Most of the time goes into the neighbour search (neighbours.py).
pymatting itself stays available as the model `knn_pymatting` (reference.py).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from models.base import IMAGE, TRIMAP, MattingModel, Sample
from models.classical.neighbours import features, nearest
from models.classical.pcg import Stop, pcg
from models.classical.solution import Solution, check_trimap, solver_threads
from models.classical.sparse import csr, for_products

#: (neighbours, spatial weight) of the two neighbour sets (pymatting's defaults)
SETS = ((20, 2.0), (10, 0.1))
#: pixels within this share of the frame's longer side of the unknown region search for neighbours
REACH = 0.0125
#: CG's stop (relative residual): at 1e-4 the mean |alpha - pymatting's| is what it is at 1e-5 (0.0043
#: on the bench's wide frame), in 20-25 % fewer iterations
STOP = Stop(tol=1e-4, max_iter=1000)


class KNN(MattingModel):
    name = "knn"
    description = "KNN matting (Chen et al. 2012): trimap-based, nonlocal; good on hair and fine structure."
    inputs = (IMAGE, TRIMAP)

    def __init__(self):
        self.device = "cpu"

    def load(self, device: str) -> None:
        self.device = device

    def run(self, batch: list[Sample]) -> list[np.ndarray]:
        return [knn(s.image, s.trimap, self.device).alpha for s in batch]


def knn(image: np.ndarray, trimap: np.ndarray, device: str | torch.device = "cpu", init: np.ndarray | None = None,
        stop: Stop = STOP, reach: int | None = None, dtype: torch.dtype = torch.float32) -> Solution:
    """KNN alpha of one frame.

    image: (H, W, 3) float in [0, 1]; trimap: (H, W) float in {0, 0.5, 1}.
    init: (H, W) float alpha to start CG from (a warm start, e.g. the previous frame's).
    reach: pixels around the unknown region that search for neighbours (default REACH of the longer
    side, at least 2); max(H, W) makes every pixel search, as pymatting does.
    Raises ValueError for a trimap with unknown pixels but no foreground or no background.
    """
    if not check_trimap(trimap):
        return Solution(trimap.astype(np.float32), 0, 0.0)
    h, w = trimap.shape
    reach = max(2, round(REACH * max(h, w))) if reach is None else reach
    with torch.inference_mode(), solver_threads(device):
        img = torch.as_tensor(np.ascontiguousarray(image), device=device)
        tri = torch.as_tensor(np.ascontiguousarray(trimap), device=device).to(torch.float32)
        unknown = (tri == 0.5).reshape(-1)
        grow = unknown.reshape(1, 1, h, w).float()  # a square of side 2 reach + 1, as two 1-D passes
        grow = F.max_pool2d(F.max_pool2d(grow, (1, 2 * reach + 1), 1, (0, reach)), (2 * reach + 1, 1), 1, (reach, 0))
        near = grow.reshape(-1) > 0
        sources = near.nonzero()[:, 0]  # the pixels that search, row-major; unknown ones among them
        targets = torch.cat([nearest(f, f[sources], min(k, h * w)) for k, weight in SETS
                             for f in [features(img, weight)]], 1)  # (s, 30) pixel indices
        a_mv, diag, rhs, us = _system(targets, sources, unknown, tri.reshape(-1), dtype)
        start = None
        if init is not None:
            start = torch.as_tensor(np.ascontiguousarray(init), device=device).reshape(-1)[us].to(dtype).clamp(0, 1)
        x, iterations, residual = pcg(a_mv, rhs, lambda r: r / diag, start, stop)
        alpha = trimap.astype(np.float32).reshape(-1)
        alpha[us.cpu().numpy()] = x.clamp(0, 1).cpu().numpy()
    return Solution(alpha.reshape(h, w), iterations, residual)


def _system(targets: torch.Tensor, sources: torch.Tensor, unknown: torch.Tensor, tri: torch.Tensor,
            dtype: torch.dtype):
    """(D - W)_UU alpha_U = W_UK t_K from the neighbour lists of the searching pixels.

    targets: (s, K) the neighbours of pixel sources[i]; unknown, tri: (N,) per pixel.
    Returns (x -> (D - W)_UU x, its diagonal (m,), the right-hand side (m,), the unknown pixels (m,)).
    """
    n_k = targets.shape[1]
    us = unknown.nonzero()[:, 0]
    m = len(us)
    node = torch.full_like(unknown, m, dtype=torch.long)
    node[us] = torch.arange(m, device=us.device)
    known = torch.where(unknown, 0.0, tri)
    # degrees: K out-links, plus every link from a searching pixel into an unknown one
    degree = torch.full((m + 1,), float(n_k), device=us.device).index_add_(
        0, node[targets.reshape(-1)], torch.ones(targets.numel(), device=us.device))[:m]
    # links from searching known pixels into unknown ones: W_UK t_K, the in-link half
    src_known = ~unknown[sources]
    into = node[targets[src_known]]
    rhs = torch.zeros(m + 1, device=us.device).index_add_(
        0, into.reshape(-1), known[sources[src_known]].repeat_interleave(n_k))[:m]
    # links out of unknown pixels: S_UU (m, m) with the known targets' values to the right-hand side
    out = targets[node[sources] < m]  # rows in the unknown pixels' order (sources are row-major)
    rhs += known[out].sum(1)
    cols = node[out]  # (m, K), m where the target is known
    inside = cols < m
    s_uu = for_products(csr(F.pad(inside.sum(1).cumsum(0), (1, 0)), cols[inside],
                            torch.ones(int(inside.sum()), device=us.device), (m, m)), dtype)
    s_t = for_products(s_uu.t().to_sparse_csr(), dtype)
    self_links = (cols == torch.arange(m, device=us.device)[:, None]).sum(1)
    diag = (degree - 2 * self_links).to(dtype)
    d = degree.to(dtype)
    return (lambda x: d * x - s_uu @ x - s_t @ x), diag, rhs.to(dtype), us
