"""One BGM input encoder (there is one per input: image, plate, soft segmentation).

    inp:  (B, C_in, H, W) in [-1, 1], H and W multiples of 4, >= 4
    hid:  (B, 4 ngf, H/4, W/4) after ReLU, >= 0
    skip: (B, 2 ngf, H/2, W/2) after ReLU, >= 0 (the image encoder's skip feeds the foreground head)

Reflection pad 3 + 7x7 conv -> ngf, then two 3x3 stride-2 convs -> 2 ngf -> 4 ngf, each with BN and
ReLU. Convolutions followed by BN carry no bias.
"""
from __future__ import annotations

from typing import Tuple

from torch import Tensor, nn


def conv_bn_relu(c_in: int, c_out: int, kernel: int, stride: int = 1) -> nn.Sequential:
    """kernel x kernel conv (zero padding kernel // 2, no bias), BN, ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class Encoder(nn.Module):
    def __init__(self, c_in: int, ngf: int):
        super().__init__()
        self.stem = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(c_in, ngf, 7, bias=False),
                                  nn.BatchNorm2d(ngf), nn.ReLU(inplace=True))
        self.down1 = conv_bn_relu(ngf, 2 * ngf, 3, stride=2)
        self.down2 = conv_bn_relu(2 * ngf, 4 * ngf, 3, stride=2)

    def forward(self, inp: Tensor) -> Tuple[Tensor, Tensor]:
        skip = self.down1(self.stem(inp))
        return self.down2(skip), skip
