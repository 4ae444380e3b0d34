"""Cross-level fusion module (CFM): En1-4's semantics, channel-weighted, added into En1-2."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from models.lightweight.layers import ConvBNReLU, up_to


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation channel weights: x (B, C, h, w) -> x * w, w: (B, C, 1, 1) in 0..1."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.fc = nn.Sequential(
            nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1), nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x * self.fc(torch.mean(x, dim=(2, 3), keepdim=True))


class CFM(nn.Module):
    """low + bilinear_up(ReLU(BN(conv1x1(ChannelAttention(high))))).

    low:  (B, clow, H, W) En1-2 feature (stride 8)
    high: (B, chigh, H/4, W/4) En1-4 feature (stride 32)
    returns (B, clow, H, W)
    """

    def __init__(self, clow: int, chigh: int, reduction: int):
        super().__init__()
        self.attention = ChannelAttention(chigh, reduction)
        self.project = ConvBNReLU(chigh, clow, 1)

    def forward(self, low: Tensor, high: Tensor) -> Tensor:
        return low + up_to(self.project(self.attention(high)), low)
