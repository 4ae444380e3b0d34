"""Small building blocks shared by both stages: convolution + BN + ReLU, and resizing."""
from __future__ import annotations

from typing import List

import torch.nn.functional as F
from torch import Tensor, nn


class ConvBNReLU(nn.Sequential):
    """k x k convolution (no bias), batch norm, ReLU. x: (B, cin, H, W) -> (B, cout, H/stride, W/stride)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


def resize(x: Tensor, size: List[int]) -> Tensor:
    """Bilinear resize of x: (B, C, h, w) to (B, C, size[0], size[1]) (align_corners=False)."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def up_to(x: Tensor, ref: Tensor) -> Tensor:
    """x: (B, C, h, w) bilinearly resized to ref's spatial size (B, C, H, W)."""
    return resize(x, [ref.shape[2], ref.shape[3]])


def pool2(x: Tensor) -> Tensor:
    """2x2 average pooling: (B, C, H, W) -> (B, C, H/2, W/2); H and W are even inside the network."""
    return F.avg_pool2d(x, 2)
