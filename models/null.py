"""The null model: no computation, alpha = 0 everywhere.

For measuring transports (`mattebox bench transport`) and checking a connection end to end: it skips
the colour conversion every real model does and hands back one read-only zero alpha per frame size,
so what is timed is the moving of pixels.
"""
from __future__ import annotations

import numpy as np

from models.base import MattingModel, Sample


class Null(MattingModel):
    name = "null"
    description = "No-op model (alpha = 0) for transport benchmarks and connection checks."

    def __init__(self):
        self._zeros = np.zeros((0, 0), np.float16)

    def prepare(self, sample: Sample) -> Sample:
        return sample

    def run(self, batch: list[Sample]) -> list[np.ndarray]:
        return [self._alpha(s.image.shape[:2]) for s in batch]

    def _alpha(self, shape: tuple[int, int]) -> np.ndarray:
        if self._zeros.shape != shape:
            zeros = np.zeros(shape, np.float16)
            zeros.flags.writeable = False
            self._zeros = zeros
        return self._zeros
