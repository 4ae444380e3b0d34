"""The null model: no computation, alpha = 0 everywhere.

For measuring transports (`mattebox bench transport`) and checking a connection end to end; it skips
the colour conversion every real model does, so what is timed is the moving of pixels.
"""
from __future__ import annotations

import numpy as np

from models.base import MattingModel, Sample


class Null(MattingModel):
    name = "null"
    description = "No-op model (alpha = 0) for transport benchmarks and connection checks."

    def prepare(self, sample: Sample) -> Sample:
        return sample

    def run(self, batch: list[Sample]) -> list[np.ndarray]:
        return [np.zeros(s.image.shape[:2], np.float16) for s in batch]
