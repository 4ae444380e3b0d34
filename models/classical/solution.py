"""What the classical solvers share: the trimap's checks, the form of their answer, their threads."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

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


@contextmanager
def solver_threads(device) -> Iterator[None]:
    """Run a CPU solve on one intra-op thread, in the calling thread only (torch's setting is per
    thread under OpenMP), restored afterwards. A solve is thousands of mid-sized tensor operations:
    a second thread gains ~1.3x on an idle 2-core machine and loses 30-60x when the other core is
    busy (every parallel operation then waits for a descheduled thread), measured here on a 1080p
    closed-form solve: 1.6 s on one thread, 54-106 s on two beside two busy processes. Frames in
    parallel (the server's CPU pool) use the cores better."""
    import torch

    if torch.device(device).type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
