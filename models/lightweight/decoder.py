"""Decoder level shared by both stages: fuse an encoder feature with the upsampled deeper decoder."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from models.lightweight.layers import up_to
from models.lightweight.octconv import OCBlock


class Decoder(nn.Module):
    """One OCBlock on concat(skip, bilinear_up(deep)).

    deep: (B, cdeep, H/2, W/2) output of the previous (deeper) decoder
    skip: (B, cskip, H, W) encoder feature of this level
    returns (B, cout, H, W)
    """

    def __init__(self, cdeep: int, cskip: int, cout: int, octave: float):
        super().__init__()
        self.block = OCBlock(cdeep + cskip, cout, 1, octave)

    def forward(self, deep: Tensor, skip: Tensor) -> Tensor:
        return self.block(torch.cat([skip, up_to(deep, skip)], dim=1))
