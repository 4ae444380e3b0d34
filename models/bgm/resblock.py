"""BGM's residual block: x + (reflect pad 1, 3x3 conv, BN, ReLU, reflect pad 1, 3x3 conv, BN)(x).

    hid: (B, C, h, w) -> (B, C, h, w), any range; h, w >= 2 (reflection padding)
"""
from __future__ import annotations

from torch import Tensor, nn


class ResBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=False), nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=False), nn.BatchNorm2d(channels),
        )

    def forward(self, hid: Tensor) -> Tensor:
        return hid + self.body(hid)


def res_blocks(channels: int, count: int) -> nn.Sequential:
    """`count` residual blocks in a row (an empty, identity Sequential for 0)."""
    return nn.Sequential(*[ResBlock(channels) for _ in range(count)])
