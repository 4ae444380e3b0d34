"""Nearest neighbours in KNN matting's feature space: (r, g, b, weight * x, weight * y) per pixel.

As pymatting's knn_laplacian builds them: x = linspace(0, 1, W) along a row, y = linspace(0, 1, H)
down a column, so the spatial weight is relative to the frame (2.0 for the first neighbour set, 0.1
for the second, which is nearly colour alone). A pixel is its own nearest neighbour.

The search is exact, and on each device the fastest exact one measured here: on a CUDA device a
chunked brute force in torch (distances as one matrix product per chunk, then top-k); on a CPU
scipy's k-d tree (cKDTree, which pymatting's dependencies bring), since a brute force over a 1080p
frame is out of reach of a CPU and faiss's CPU indices were slower (IVF: 17-80 s for a 1080p frame at
recall 0.89-0.99). pymatting's own numba k-d tree queries the colour-dominated set up to 3x faster,
but its OpenMP threads keep spinning after it returns and slow every later torch operation in the
process by ~500x on a 2-core machine (a 162k-element sum: 0.03 ms -> 16 ms), so it is not used.
"""
from __future__ import annotations

import numpy as np
import torch

#: distances held at once by the brute-force search (queries per chunk = this / points): 1 GiB float32
CHUNK = 1 << 28


def features(image: torch.Tensor, weight: float) -> torch.Tensor:
    """image (H, W, 3) float in [0, 1] -> (H W, 5) float32 features, row-major pixels (the positions
    scaled in float64, then rounded to float32, as pymatting does)."""
    h, w, _ = image.shape
    out = torch.empty(h, w, 5, dtype=torch.float32, device=image.device)
    out[..., :3] = image
    out[..., 3] = (weight * torch.linspace(0, 1, w, dtype=torch.float64, device=image.device)).float()
    out[..., 4] = (weight * torch.linspace(0, 1, h, dtype=torch.float64, device=image.device)).float()[:, None]
    return out.reshape(-1, 5)


def nearest(points: torch.Tensor, queries: torch.Tensor, k: int) -> torch.Tensor:
    """The k nearest points (Euclidean) of each query, nearest first.

    points: (n, d) float32; queries: (q, d) float32, on one device; k <= n.
    Returns (q, k) int64 indices into points, on that device.
    """
    if points.device.type == "cpu":
        from scipy.spatial import cKDTree  # a dependency of pymatting; imported where used

        # unbalanced, 32 points a leaf: builds 2.5x faster than the default and queries 10-25 % faster on
        # these features (measured)
        tree = cKDTree(points.numpy(), leafsize=32, balanced_tree=False, compact_nodes=False)
        _, idx = tree.query(queries.numpy(), k=k, workers=-1)  # its own threads, which end with the query
        return torch.from_numpy(np.asarray(idx, dtype=np.int64).reshape(len(queries), k))
    return brute_force(points, queries, k)


def brute_force(points: torch.Tensor, queries: torch.Tensor, k: int) -> torch.Tensor:
    """`nearest` by all distances, a chunk of queries at a time (the CUDA search; any device)."""
    out = torch.empty(len(queries), k, dtype=torch.long, device=points.device)
    sq = (points * points).sum(1)
    step = max(1, CHUNK // len(points))
    for start in range(0, len(queries), step):
        q = queries[start:start + step]
        dist = sq[None] - 2 * (q @ points.t())  # |p|^2 - 2 q.p: the same order as |q - p|^2 per row
        out[start:start + step] = torch.topk(dist, k, dim=1, largest=False).indices
    return out
