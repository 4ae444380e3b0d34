"""OCBlock: octave convolution with depthwise convolutions, the paper's basic block (Fig. 2b).

The block takes one feature map, splits it into a high-frequency part (full resolution) and a
low-frequency part (half resolution, fraction `octave` of the channels), filters each part with a 3x3
depthwise convolution, and merges the parts back into one feature map:

    x_h = x                          x_l = avgpool2(x)                 (first octave layer: HH, HL)
    h = ReLU(BN(conv1x1(x_h)))       l = ReLU(BN(conv1x1(x_l)))
    h = ReLU(BN(dw3x3(h)))           l = ReLU(BN(dw3x3(l)))            (depthwise: no cross paths)
    y = BN(conv1x1(h) + up_nearest2(conv1x1(l)))                      (last octave layer: HH, LH)
    out = ReLU(y + x) when the shapes agree, else ReLU(y)

Stride 2 is done by average pooling the input first (OctConv's rule). Frequencies mix in the pointwise
convolutions; the depthwise 3x3 on the low part sees twice the context for a quarter of the cost.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from models.lightweight.layers import ConvBNReLU, pool2


class OCBlock(nn.Module):
    """x: (B, cin, H, W) -> (B, cout, H/stride, W/stride); H/stride and W/stride must be even."""

    def __init__(self, cin: int, cout: int, stride: int = 1, octave: float = 0.5):
        super().__init__()
        low = int(round(cout * octave))
        high = cout - low
        self.stride = stride
        self.residual = stride == 1 and cin == cout
        self.high = nn.Sequential(ConvBNReLU(cin, high, 1), ConvBNReLU(high, high, 3, groups=high))
        self.low = nn.Sequential(ConvBNReLU(cin, low, 1), ConvBNReLU(low, low, 3, groups=low))
        self.merge_high = nn.Conv2d(high, cout, 1, bias=False)
        self.merge_low = nn.Conv2d(low, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 2:
            x = pool2(x)
        hi = self.high(x)
        lo = self.low(pool2(x))
        y = self.bn(self.merge_high(hi) + F.interpolate(self.merge_low(lo), scale_factor=2.0, mode="nearest"))
        if self.residual:
            y = y + x
        return F.relu(y)


def stage(cin: int, cout: int, depth: int, stride: int, octave: float) -> nn.Sequential:
    """`depth` OCBlocks; the first changes cin -> cout and applies `stride`, the rest are residual."""
    blocks = [OCBlock(cin, cout, stride, octave)]
    blocks += [OCBlock(cout, cout, 1, octave) for _ in range(depth - 1)]
    return nn.Sequential(*blocks)
