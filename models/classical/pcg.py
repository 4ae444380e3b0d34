"""Preconditioned conjugate gradients, flexible form, in torch: the solver of both classical models.

The flexible (Polak-Ribiere) update lets the preconditioner itself be a few Krylov iterations
(multigrid.py's K-cycle); with a fixed linear preconditioner (Jacobi) it equals plain PCG.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

Operator = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Stop:
    """When to stop: |b - A x| <= tol |b| (relative residual), or after max_iter iterations."""

    tol: float = 1e-4
    max_iter: int = 2000


def pcg(apply_a: Operator, b: torch.Tensor, precondition: Operator, x0: torch.Tensor | None = None,
        stop: Stop = Stop()) -> tuple[torch.Tensor, int, float]:
    """Solve A x = b for symmetric positive definite A.

    b, x0: (n,) tensors; x0 defaults to zeros.
    Returns (x, iterations, relative residual |b - A x| / |b|). With stop.tol 0 it takes exactly
    stop.max_iter steps without measuring the residual (nan), so nothing waits on the device (the
    K-cycle's inner steps). b == 0 gives x = 0.
    """
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    measure = stop.tol > 0
    norm_b = float(torch.linalg.vector_norm(b)) if measure else 1.0
    if norm_b == 0.0:
        return torch.zeros_like(b), 0, 0.0
    r = b - apply_a(x) if x0 is not None else b.clone()
    rel = float(torch.linalg.vector_norm(r)) / norm_b if measure else float("nan")
    z = precondition(r)
    p = z.clone()
    rz = torch.sum(r * z)
    it = 0
    while (rel > stop.tol or not measure) and it < stop.max_iter:
        ap = apply_a(p)
        pap = torch.sum(p * ap)
        step = torch.where(pap > 0, rz / pap, 0.0)  # tensors: no device round trip inside an iteration
        x += step * p
        r_new = r - step * ap
        z_new = precondition(r_new)
        beta = torch.where(rz != 0, torch.sum(z_new * (r_new - r)) / rz, 0.0)
        rz = torch.sum(r_new * z_new)
        r, z = r_new, z_new
        p = z + beta * p
        it += 1
        if measure:
            rel = float(torch.linalg.vector_norm(r)) / norm_b
    return x, it, rel
