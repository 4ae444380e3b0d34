"""The layer every part of MSIA-matte is built from: convolution, batch norm, ReLU.

x: (B, cin, H, W) -> (B, cout, H / stride, W / stride), non-negative (after the ReLU).
The convolution has no bias: the batch norm that follows supplies it.
"""
from __future__ import annotations

from torch import nn


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, dilation: int = 1,
                 groups: int = 1):
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, dilation * (kernel // 2), dilation, groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )
