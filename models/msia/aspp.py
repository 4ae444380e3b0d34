"""Atrous Spatial Pyramid Pooling (DeepLab v3, Chen et al.): MSIA-matte's multi-scale semantics F_aspp.

Five parallel branches on the backbone's last stage: a 1x1 convolution, three 3x3 convolutions dilated
by `rates`, and image pooling (global mean, 1x1 convolution, ReLU, spread over the map); their
concatenation is projected by a 1x1 convolution. Every convolution is followed by batch norm and ReLU,
except the image-pooling one (a 1x1 map: batch norm there breaks batch-1 training; it has a bias).

    high: (B, cin, h, w), >= 0
    aspp: (B, cout, h, w), >= 0
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from models.msia.conv import ConvBNReLU


class ASPP(nn.Module):
    def __init__(self, cin: int, cout: int, rates: tuple[int, int, int]):
        super().__init__()
        self.branches = nn.ModuleList([ConvBNReLU(cin, cout, 1)] + [ConvBNReLU(cin, cout, 3, 1, r) for r in rates])
        self.pool = nn.Conv2d(cin, cout, 1)
        self.project = ConvBNReLU(cout * (len(rates) + 2), cout, 1)

    def forward(self, high: Tensor) -> Tensor:
        outs = [branch(high) for branch in self.branches]
        glob = torch.relu(self.pool(high.mean(dim=(2, 3), keepdim=True)))
        outs.append(glob.expand(-1, -1, high.shape[2], high.shape[3]))
        return self.project(torch.cat(outs, dim=1))
