"""BGM's two decoders: alpha and foreground, each from the trunk's 1/4-resolution feature.

    hid:  (B, 4 ngf, h, w) trunk output
    skip: (B, 2 ngf, 2h, 2w) the image encoder's 1/2-resolution feature (foreground head only)
    seg:  (B, 1, 4h, 4w) the soft segmentation S in [0, 1] (alpha head only, residual mode)
    pha:  (B, 1, 4h, 4w) alpha in [0, 1]
    fgr:  (B, 3, 4h, 4w) foreground RGB in [0, 1]

Alpha: residual blocks, 2 x (bilinear x2, 3x3 conv, BN, ReLU) 4 ngf -> 2 ngf -> ngf, reflection pad 3
+ 7x7 conv -> 1, tanh. Foreground: residual blocks, (bilinear x2, 3x3 conv) 4 ngf -> 2 ngf, concat the
skip, (bilinear x2, 3x3 conv) 4 ngf -> ngf, reflection pad 3 + 7x7 conv -> 3, tanh. The tanh outputs
in [-1, 1] are mapped to [0, 1] as (t + 1) / 2, except the alpha head's in residual mode (ours,
BGMConfig.residual): there the tanh output is a correction of S, pha = clamp(S + t, 0, 1), and the
7x7 output convolution starts at zero, so the untrained network returns S. The clamp passes the
gradient as if unclamped, so a pixel pushed past 0 or 1 can still be pulled back.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.bgm.encoder import conv_bn_relu
from models.bgm.resblock import res_blocks


class Up(nn.Module):
    """Bilinear x2 upsampling (align_corners=False), then 3x3 conv, BN, ReLU: (B, C_in, h, w) ->
    (B, C_out, 2h, 2w), >= 0."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = conv_bn_relu(c_in, c_out, 3)

    def forward(self, hid: Tensor) -> Tensor:
        return self.conv(F.interpolate(hid, scale_factor=2.0, mode="bilinear", align_corners=False))


def to_unit(c_in: int, c_out: int) -> nn.Sequential:
    """Reflection pad 3 + 7x7 conv (with bias) + tanh: (B, c_in, H, W) -> (B, c_out, H, W) in [-1, 1]."""
    return nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(c_in, c_out, 7), nn.Tanh())


class AlphaHead(nn.Module):
    """forward(hid, seg) -> pha; `seg` is read only when `residual` (see the module docstring)."""

    def __init__(self, ngf: int, blocks: int, residual: bool):
        super().__init__()
        self.blocks = res_blocks(4 * ngf, blocks)
        self.up = nn.Sequential(Up(4 * ngf, 2 * ngf), Up(2 * ngf, ngf))
        self.out = to_unit(ngf, 1)
        self.residual = residual
        if residual:
            nn.init.zeros_(self.out[1].weight)
            nn.init.zeros_(self.out[1].bias)

    def forward(self, hid: Tensor, seg: Tensor) -> Tensor:
        t = self.out(self.up(self.blocks(hid)))
        if not self.residual:
            return (t + 1.0) * 0.5
        pha = seg + t
        return pha + (pha.clamp(0.0, 1.0) - pha).detach()


class ForegroundHead(nn.Module):
    def __init__(self, ngf: int, blocks: int):
        super().__init__()
        self.blocks = res_blocks(4 * ngf, blocks)
        self.up1 = Up(4 * ngf, 2 * ngf)
        self.up2 = Up(4 * ngf, ngf)
        self.out = to_unit(ngf, 3)

    def forward(self, hid: Tensor, skip: Tensor) -> Tensor:
        hid = torch.cat([self.up1(self.blocks(hid)), skip], 1)
        return (self.out(self.up2(hid)) + 1.0) * 0.5
