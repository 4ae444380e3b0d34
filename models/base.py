"""The contract every matting model fulfils, so the server never special-cases one.

A model declares its inputs, the device it runs on, its weights file and its preprocessing
(`prepare`), and runs on a batch (`run`). Instances are cheap; `load` does the heavy part and is
called lazily by the registry on first use.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

import numpy as np

from models import colour, pixels, store

IMAGE, TRIMAP, BACKGROUND = "image", "trimap", "background"


@dataclass(frozen=True)
class Sample:
    """One frame's inputs.

    As received (before `prepare`): arrays of any supported dtype (uint8, uint16, float16, float32).
    After the default `prepare`:
      image:      (H, W, 3) float32 in [0, 1], in `display_space`
      trimap:     (H, W) float32 in {0, 0.5, 1} (background / unknown / foreground), or None
      background: (H, W, 3) float32 in [0, 1], in `display_space`, or None
    colour_space: space of the image as it is now (OpenColorIO name)
    background_space: space of the background as it is now
    display_space: space the model wants them in ("sRGB" unless the job says otherwise)
    steps: recursive-inference passes for models that have them (0 = model default)
    """

    image: np.ndarray
    trimap: np.ndarray | None = None
    background: np.ndarray | None = None
    colour_space: str = "sRGB"
    background_space: str = "sRGB"
    display_space: str = "sRGB"
    steps: int = 0


class MattingModel(ABC):
    """A matting model as the server sees it.

    Class attributes are the declaration the server lists (ListModels) and validates against.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    inputs: ClassVar[tuple[str, ...]] = (IMAGE,)
    #: "cpu": always runs on the CPU (classical solvers); "accelerator": the server's best device.
    runs_on: ClassVar[str] = "cpu"
    #: file name on the weights search path (models/store.py), or None for models without learned weights
    weights: ClassVar[str | None] = None

    def weights_path(self) -> Path | None:
        """Where the trained weights are (the first folder of the search path holding the file), else where
        they would be installed; None for classical models."""
        if self.weights is None:
            return None
        return store.find(self.weights) or store.folders()[0] / self.weights

    def weights_ready(self) -> bool:
        path = self.weights_path()
        return path is None or path.is_file()

    def params(self) -> int:
        """Number of learned parameters (0 for classical models)."""
        return 0

    def gflops_512(self) -> float:
        """GFLOPs for one 512x512 frame (0 where not meaningful)."""
        return 0.0

    def load(self, device: str) -> None:
        """Load weights onto `device` ("cpu", "cuda:0", ...). Called once, before the first `run`."""

    def prepare(self, sample: Sample) -> Sample:
        """Convert raw input arrays into what `run` expects (see `Sample`)."""
        image = colour.convert(pixels.to_unit_float(sample.image), sample.colour_space, sample.display_space)
        background = sample.background
        if background is not None:
            background = colour.convert(pixels.to_unit_float(background), sample.background_space,
                                        sample.display_space)
        trimap = None if sample.trimap is None else pixels.trimap_levels(sample.trimap)
        return replace(sample, image=image, trimap=trimap, background=background,
                       colour_space=sample.display_space, background_space=sample.display_space)

    @abstractmethod
    def run(self, batch: list[Sample]) -> list[np.ndarray]:
        """Matte prepared samples. Returns one (H, W) alpha per sample, float in [0, 1]."""

    def run_foreground(self, batch: list[Sample]) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """As `run`, with each alpha the model's own foreground prediction: (H, W, 3) float32 in [0, 1]
        in the display space, or None when it has none (models/foreground.py solves for one then).
        Default: (alpha, None) from `run`."""
        return [(alpha, None) for alpha in self.run(batch)]
