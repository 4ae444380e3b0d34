"""The closed-form matting Laplacian (Levin, Lischinski and Weiss, PAMI 2008), row by row for the
unknown pixels only.

    L_ij = sum over the 3x3 windows w_k holding both i and j of
           delta_ij - (1 + (I_i - mu_k)^T (Sigma_k + eps / 9 Id)^-1 (I_j - mu_k)) / 9

with mu_k, Sigma_k the mean and covariance of the window's colours. As pymatting builds it (its
defaults: 3x3 windows, eps = 1e-7), only windows wholly inside the image count. The window statistics
come from box filters and the 3x3 inverses are taken once per window in closed form, the formulation
of He, Sun and Tang ("Fast matting using large kernel matting Laplacian matrices", CVPR 2010); from
them each unknown pixel's 25 coefficients L_{i, i+o}, o in [-2, 2]^2, are summed over its 9 windows.
The whole image's Laplacian is never built, nor any window away from the unknown pixels: the
system on the unknown pixels is a sparse matrix of their rows alone (torch sparse CSR, whose product
runs on any device).

Everything here is float64: in flat windows the inverse reaches 9 / eps ~ 1e8, and float32 would lose
the coefficients (which are O(1)) to cancellation. The solver then runs in float32 on them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from models.classical.sparse import csr


#: regularisation of the window covariances (pymatting's default)
EPS = 1e-7
#: the offsets (dy, dx) of a row's entries, row-major over [-2, 2]^2
OFFSETS = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)]
CENTRE = OFFSETS.index((0, 0))
_NEAR = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]


def window_stats(colours: torch.Tensor, eps: float = EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and regularised inverse covariance of 3x3 windows.

    colours: (3, 9, n) float64 in [0, 1], each window's 9 pixels, channel first.
    Returns mean (3, n) and inverse (6, n): the entries 00, 01, 02, 11, 12, 22 of the symmetric
    (Sigma + eps / 9 Id)^-1, in closed form.
    """
    mean = colours.mean(1)
    r, g, b = colours - mean[:, None]
    reg = eps / 9
    a00, a01, a02 = (r * r).mean(0) + reg, (r * g).mean(0), (r * b).mean(0)
    a11, a12, a22 = (g * g).mean(0) + reg, (g * b).mean(0), (b * b).mean(0) + reg
    c00, c01, c02 = a11 * a22 - a12 * a12, a02 * a12 - a01 * a22, a01 * a12 - a02 * a11
    c11, c12, c22 = a00 * a22 - a02 * a02, a01 * a02 - a00 * a12, a00 * a11 - a01 * a01
    det = a00 * c00 + a01 * c01 + a02 * c02
    return mean, torch.stack([c00, c01, c02, c11, c12, c22]) / det


def unknown_system(image: torch.Tensor, trimap: torch.Tensor, eps: float = EPS, chunk: int | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The closed-form system on the unknown pixels, known pixels held at their trimap values:
    L_UU alpha_U = -L_UK t_K (pymatting's estimate_alpha_cf solves the same one).

    image: (H, W, 3) float64 in [0, 1]; trimap: (H, W) float64 in {0, 0.5, 1}, with unknown pixels.
    Returns (A: (m, m) float64 sparse CSR, at most 25 entries a row; its diagonal (m,); rhs (m,)
    float64; ys, xs (m,) the unknown pixels in row-major order, the unknowns' order). Rows go `chunk`
    at a time: on a CPU 2^13, small temporaries that stay in cache (a fresh large tensor costs more in
    page faults than its arithmetic); on a GPU 2^18, few kernel launches.
    """
    h, w = trimap.shape
    dev = image.device
    chunk = chunk or (1 << 13 if dev.type == "cpu" else 1 << 18)
    ys, xs = torch.nonzero(trimap == 0.5, as_tuple=True)
    m = len(ys)
    step = lambda dy, dx: dy * (w + 4) + dx  # noqa: E731  flat step of an offset on the grid padded by 2
    near = torch.tensor([step(*d) for d in _NEAR], device=dev)[:, None]
    offsets = torch.tensor([step(*o) for o in OFFSETS], device=dev)[:, None]
    colour = F.pad(image.permute(2, 0, 1), (2, 2, 2, 2)).reshape(3, -1)  # (3, P): (y, x) at y + 2, x + 2
    known = F.pad(torch.where(trimap == 0.5, 0.0, trimap.to(image.dtype)), (2, 2, 2, 2)).reshape(1, -1)
    node = torch.full((colour.shape[1],), m, dtype=torch.long, device=dev)
    flat = (ys + 2) * (w + 4) + xs + 2
    node[flat] = torch.arange(m, device=dev)
    stats, number = _windows(colour, flat, near, h, w, eps, chunk)
    same = torch.tensor([9.0 * (o == (0, 0)) - 1.0 for o in OFFSETS], device=dev, dtype=image.dtype)[:, None]
    rhs, diag, counts, cols, values = [], [], [], [], []
    for part in flat.split(chunk):
        inside, m0, m1, m2, i00, i01, i02, i11, i12, i22 = _gather(stats, number[part + near])  # (9, c)
        inside = inside / 9
        centre = colour[:, part]
        u0, u1, u2 = centre[0] - m0, centre[1] - m1, centre[2] - m2
        g0 = i00 * u0 + i01 * u1 + i02 * u2
        g1 = i01 * u0 + i11 * u1 + i12 * u2
        g2 = i02 * u0 + i12 * u1 + i22 * u2
        terms = torch.stack([inside, inside * (g0 * u0 + g1 * u1 + g2 * u2), inside * g0, inside * g1, inside * g2])
        summed = _shared(_shared(terms.reshape(5, 3, 3, -1), 2), 1).reshape(5, 25, -1)
        around = part + offsets  # (25, c): the row's pixels
        diff = _gather(colour, around) - centre[:, None]
        coef = summed[0] * same - summed[1] - summed[2] * diff[0] - summed[3] * diff[1] - summed[4] * diff[2]
        rhs.append(-(coef * _gather(known, around)[0]).sum(0))  # pixels outside the image have coefficient 0
        diag.append(coef[CENTRE])
        nbr = node[around].t()
        use = nbr < m  # unknown neighbours: the row's entries, in increasing column order
        counts.append(use.sum(1))
        cols.append(nbr[use])
        values.append(coef.t()[use])
    crow = F.pad(torch.cat(counts).cumsum(0), (1, 0))
    return csr(crow, torch.cat(cols), torch.cat(values), (m, m)), torch.cat(diag), torch.cat(rhs), ys, xs


def _windows(colour: torch.Tensor, flat: torch.Tensor, near: torch.Tensor, h: int, w: int, eps: float,
             chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The windows wholly inside the image around the pixels at `flat` (on the padded grid):
    stats (10, n + 1) (1, mean, inverse; the last column, 0, for no window) and number (P,) each grid
    position's window column (n where no window is centred there)."""
    around = torch.zeros(colour.shape[1], dtype=torch.bool, device=colour.device)
    around[(flat + near).reshape(-1)] = True
    centres = around.nonzero()[:, 0]
    cy, cx = centres // (w + 4) - 2, centres % (w + 4) - 2
    centres = centres[(cy >= 1) & (cy <= h - 2) & (cx >= 1) & (cx <= w - 2)]
    stats = colour.new_zeros(10, len(centres) + 1)
    for start in range(0, len(centres), chunk):
        part = centres[start:start + chunk]
        mean, inverse = window_stats(_gather(colour, part + near), eps)
        stats[0, start:start + len(part)] = 1.0
        stats[1:4, start:start + len(part)] = mean
        stats[4:, start:start + len(part)] = inverse
    number = torch.full((colour.shape[1],), len(centres), dtype=torch.long, device=colour.device)
    number[centres] = torch.arange(len(centres), device=colour.device)
    return stats, number


def _gather(planes: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """planes (C, P) at idx (...) -> (C, ...)."""
    flat_idx = idx.reshape(-1)
    return torch.stack([plane.index_select(0, flat_idx) for plane in planes]).reshape(len(planes), *idx.shape)


def _shared(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sums over the windows that pixel i and pixel i + o share, along one axis: windows at -1, 0, 1
    (size 3 on `dim`) -> offsets o = -2..2 (size 5), the windows k with |o - k| <= 1."""
    a, b, c = t.unbind(dim)
    shape = list(t.shape)
    shape[dim] = 5
    out = t.new_empty(shape)
    s0, s1, s2, s3, s4 = out.unbind(dim)
    s0.copy_(a)
    torch.add(a, b, out=s1)
    torch.add(s1, c, out=s2)
    torch.add(b, c, out=s3)
    s4.copy_(c)
    return out
