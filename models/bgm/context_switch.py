"""BGM's Context Switching block: decides, per location, how much to trust each cue.

    src: (B, 4 ngf, h, w) image feature, >= 0
    bgr: (B, 4 ngf, h, w) plate feature, >= 0
    seg: (B, 4 ngf, h, w) soft-segmentation feature, >= 0
    out: (B, 4 ngf, h, w), >= 0 (after ReLU), input of the residual trunk

For each cue X in (plate, segmentation): 1x1 conv of concat(src, X) (8 ngf) -> ngf, BN, ReLU; then
1x1 conv of concat(src, plate cue, segmentation cue) (6 ngf) -> 4 ngf, BN, ReLU. The original's
motion cue is left out (its released model never used it, see docs/MODELS.md).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from models.bgm.encoder import conv_bn_relu


class ContextSwitch(nn.Module):
    def __init__(self, ngf: int):
        super().__init__()
        self.bgr = conv_bn_relu(8 * ngf, ngf, 1)
        self.seg = conv_bn_relu(8 * ngf, ngf, 1)
        self.mix = conv_bn_relu(6 * ngf, 4 * ngf, 1)

    def forward(self, src: Tensor, bgr: Tensor, seg: Tensor) -> Tensor:
        cue_bgr = self.bgr(torch.cat([src, bgr], 1))
        cue_seg = self.seg(torch.cat([src, seg], 1))
        return self.mix(torch.cat([src, cue_bgr, cue_seg], 1))
