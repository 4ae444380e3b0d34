"""Coarse-to-fine for the closed-form system: an aggregation multigrid whose coarse space is the
colour-line model, used as the preconditioner of flexible CG.

Why not simply downscale the image: the matting Laplacian with eps = 1e-7 is nearly singular for
every alpha that is locally an affine function of the colour (alpha = a^T I + b in a window), and
those functions follow the image's texture and noise, so they are not smooth. Jacobi-preconditioned
CG needs ~700 iterations on a 1080p frame, and a solution on a 2x downscaled image (or a bilinear
multigrid) is no good start for them (~240 iterations remain). So the coarse levels carry the
colour-line model itself: each 4x4 tile of unknown pixels becomes one coarse node with 4 unknowns,
the coefficients of alpha = b + a . (I - mean) over the tile (smoothed-aggregation multigrid's
"near-null-space candidates" 1, R, G, B; Vanek, Mandel and Brezina 1996). Coarser levels merge 2x2
nodes, keeping the 4 candidates. Coarse operators are Galerkin products P^T A P, so a coarse solution
is the best one the coarse space holds; the coarsest level (<= COARSEST unknowns) is factored densely.

Each level smooths with damped (block-)Jacobi, and the coarse problem is solved by K = 2 flexible CG
steps preconditioned by the next level (Notay's K-cycle): aggregation multigrid with a plain V-cycle
loses most of its strength. On the 1080p frames of `mattebox bench classical` CG then needs ~10-20
iterations to a relative residual of 1e-4.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from models.classical.pcg import Stop, pcg
from models.classical.sparse import add_to_diagonal, csr, diagonal_blocks, for_products

#: pixels per side of a first-level aggregate, and coarse nodes per side of the later ones
TILE, MERGE = 4, 3
#: coarse unknowns at most on the densely factored coarsest level
COARSEST = 1024
#: damping of the Jacobi smoother; flexible-CG steps on each coarse level (the K of the K-cycle)
OMEGA, K = 0.7, 2
#: unknowns per coarse node: the candidates 1, R, G, B
CANDIDATES = 4


@dataclass
class Level:
    """One level: its operator, its smoother and the way down to the next level.

    a: (n b, n b) sparse CSR, n nodes of b unknowns (b = 1 on the pixels, else CANDIDATES).
    smooth: (n, b, b), OMEGA times the inverse diagonal blocks of a.
    p, pt: the prolongation (n b, n_c CANDIDATES) sparse CSR and its transpose; None on the coarsest
    level, which has `factor` instead: the Cholesky factor of its dense matrix.
    """

    a: torch.Tensor
    smooth: torch.Tensor | None = None
    p: torch.Tensor | None = None
    pt: torch.Tensor | None = None
    factor: torch.Tensor | None = None


def hierarchy(a: torch.Tensor, diag: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, colours: torch.Tensor,
              dtype: torch.dtype = torch.float32) -> list[Level]:
    """The levels for the fine operator `a` ((m, m) float64 sparse CSR, diagonal `diag` (m,)) on pixels
    (ys, xs) of colours (m, 3) float64. Built in float64; the levels' tensors are returned in `dtype`."""
    cands = torch.cat([torch.ones_like(colours[:, :1]), colours - colours.mean(0)], 1)[:, None, :]  # (m, 1, 4)
    coords, step, b = torch.stack([ys, xs], 1), TILE, 1
    blocks = diag[:, None, None]
    levels = []
    while a.shape[0] > COARSEST:
        agg, coarse_coords, q, new_cands, keep = _aggregate(coords // step, cands)
        if len(coarse_coords) == len(coords):  # scattered nodes, one per cell: merge larger cells
            step *= 2
            continue
        p = _prolongation(agg, q, len(coarse_coords))
        pt = p.t().to_sparse_csr()
        smooth = OMEGA * torch.linalg.inv(blocks)
        levels.append(Level(for_products(a, dtype), smooth.to(dtype), for_products(p, dtype), for_products(pt, dtype)))
        # Galerkin product; coarse unknowns the prolongation leaves out get a 1 on the diagonal, so the
        # coarse matrix stays positive definite (their values stay 0 and prolong to nothing)
        a = add_to_diagonal(pt @ (a @ p), (~keep).reshape(-1).to(a.dtype))
        coords, cands, step, b = coarse_coords, new_cands, MERGE, CANDIDATES
        blocks = diagonal_blocks(a, b)
    levels.append(Level(for_products(a, dtype), factor=torch.linalg.cholesky(a.to_dense()).to(dtype)))
    return levels


def precondition(levels: list[Level], r: torch.Tensor, depth: int = 0) -> torch.Tensor:
    """One K-cycle from level `depth`: an approximation of A^-1 r, r (N,) -> (N,)."""
    lv = levels[depth]
    if lv.factor is not None:
        return torch.cholesky_solve(r[:, None], lv.factor)[:, 0]
    x = _smooth(lv, r)
    rc = lv.pt @ (r - lv.a @ x)
    below = levels[depth + 1]
    if below.factor is not None:
        e = precondition(levels, rc, depth + 1)
    else:
        e, _, _ = pcg(lambda v: below.a @ v, rc, lambda v: precondition(levels, v, depth + 1), stop=Stop(0.0, K))
    x = x + lv.p @ e
    return x + _smooth(lv, r - lv.a @ x)


def _smooth(lv: Level, r: torch.Tensor) -> torch.Tensor:
    """One damped (block-)Jacobi step from zero: OMEGA D^-1 r."""
    b = lv.smooth.shape[1]
    if b == 1:
        return lv.smooth.reshape(-1) * r
    return torch.bmm(lv.smooth, r.reshape(-1, b, 1)).reshape(-1)


def _aggregate(cells: torch.Tensor, cands: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Nodes grouped by grid cell, the candidates orthonormalised per group.

    cells: (n, 2) int64 each node's cell; cands: (n, b, 4) float64, the candidates' values at the node.
    Returns agg (n,) each node's group, the cells (n_c, 2) of the groups (the next level's
    coordinates), the prolongation blocks q (n, b, 4) (per group the candidates' orthonormal basis;
    directions a group cannot tell apart, e.g. colour in a flat tile, are zero columns), the next
    level's candidates (n_c, 4, 4) and which of the 4 columns each group keeps (n_c, 4) bool.
    """
    width = int(cells[:, 1].max()) + 1
    keys, agg = torch.unique(cells[:, 0] * width + cells[:, 1], return_inverse=True)
    n_c = len(keys)
    gram = cands.new_zeros(n_c, 4, 4).index_add_(0, agg, torch.einsum("nbi,nbj->nij", cands, cands))
    w, v = torch.linalg.eigh(gram)
    keep = w > 1e-9 * w[:, -1:].clamp_min(1e-300)
    scale = torch.where(keep, w.clamp_min(1e-300), 1.0)
    basis = v * torch.where(keep, scale.rsqrt(), 0.0)[:, None, :]  # candidates -> orthonormal columns
    q = torch.einsum("nbi,nij->nbj", cands, basis[agg])
    coarse = (v * torch.where(keep, scale.sqrt(), 0.0)[:, None, :]).transpose(1, 2)  # cands = q @ coarse
    return agg, torch.stack([keys // width, keys % width], 1), q, coarse, keep


def _prolongation(agg: torch.Tensor, q: torch.Tensor, n_c: int) -> torch.Tensor:
    """P (n b, n_c 4) sparse CSR: unknown k of node i gets sum_j q[i, k, j] e[agg[i], j]."""
    n, b, c = q.shape
    cols = (agg[:, None, None] * c + torch.arange(c, device=agg.device)).expand(n, b, c)
    crow = torch.arange(0, n * b * c + 1, c, device=agg.device)
    return csr(crow, cols.reshape(-1), q.reshape(-1), (n * b, n_c * c))
