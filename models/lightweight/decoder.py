"""Decoder level shared by both stages: fuse an encoder feature with the upsampled deeper decoder."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from models.lightweight.layers import up_to
from models.lightweight.octconv import block, low_channels


class Decoder(nn.Module):
    """One block on concat(skip, bilinear_up(deep)).

    deep: (B, cdeep, H/2, W/2) output of the previous (deeper) decoder
    skip: (B, cskip, H, W) encoder feature of this level
    returns (B, cout, H, W)

    With `stream` both inputs are packed octave maps (octconv.pack) and the concat is taken per part,
    [skip high, deep high, skip low, deep low], so that it is a packed map again.
    """

    def __init__(self, cdeep: int, cskip: int, cout: int, octave: float, stream: bool = False):
        super().__init__()
        self.stream = stream
        self.low_skip, self.low_deep = low_channels(cskip, octave), low_channels(cdeep, octave)
        self.block = block(cdeep + cskip, cout, octave, stream, self.low_skip + self.low_deep)

    def forward(self, deep: Tensor, skip: Tensor) -> Tensor:
        deep = up_to(deep, skip)
        if self.stream:
            hs, hd = skip.shape[1] - self.low_skip, deep.shape[1] - self.low_deep
            return self.block(torch.cat([skip[:, :hs], deep[:, :hd], skip[:, hs:], deep[:, hd:]], dim=1))
        return self.block(torch.cat([skip, deep], dim=1))
