"""The `lightweight` registry model: seed 003's trimap-free two-stage network behind NetworkModel."""
from __future__ import annotations

from torch import nn

from models.base import IMAGE
from models.lightweight.config import LightweightConfig
from models.lightweight.net import LightweightNet
from models.network import NetworkModel


class Lightweight(NetworkModel):
    """Highly Efficient Natural Image Matting (seed 003): image only, about 344 k parameters.

    Inputs: the image alone; `pack` gives x = (H, W, 3) RGB in 0..1 and the network returns alpha
    (B, 1, H, W) in 0..1. See models/lightweight/__init__.py for the architecture and every choice the
    paper leaves open.
    """

    name = "lightweight"
    description = ("Trimap-free lightweight matting (seed 003): octave-conv segmentation + refine network "
                   "with efficient non-local attention, ~344k parameters; image only.")
    inputs = (IMAGE,)

    def __init__(self, config: LightweightConfig = LightweightConfig()):
        super().__init__()
        self.config = config

    def build(self) -> nn.Module:
        return LightweightNet(self.config)


class LightweightOctave(Lightweight):
    """Seed 003's network in the octave-stream reading: the low-frequency part runs between OCBlocks
    (LightweightConfig.octave_stream). Its own name and weights file (lightweight_octave.safetensors),
    so the two readings train, serve and score side by side until the comparison decides which ships."""

    name = "lightweight_octave"
    description = ("Trimap-free lightweight matting (seed 003), octave-stream reading: the low-frequency "
                   "features run between the octave blocks; ~344k parameters; image only.")

    def __init__(self):
        super().__init__(LightweightConfig(octave_stream=True))
