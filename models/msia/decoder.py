"""The information assembly decoder after the assembly (paper equation 5 and the alpha head).

F_cat = Cat(Up(Conv(Conv(F_IA))), F_ini): two 3x3 convolutions of `fuse` channels on F_IA, bilinear
x2 upsampling to F_ini's grid, concatenation with F_ini. The alpha head is two 3x3 convolutions
(`head` channels with batch norm and ReLU, then one channel with a bias) and a sigmoid; the caller
upsamples the result to full resolution.

    ia:     (B, cia, H/8, W/8), >= 0   F_IA
    ini:    (B, cini, H/4, W/4), >= 0  F_ini
    pha_sm: (B, 1, H/4, W/4) in (0, 1)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.msia.conv import ConvBNReLU


class Decoder(nn.Module):
    def __init__(self, cia: int, cini: int, fuse: int, head: int):
        super().__init__()
        self.fuse = nn.Sequential(ConvBNReLU(cia, fuse), ConvBNReLU(fuse, fuse))
        self.head = nn.Sequential(ConvBNReLU(fuse + cini, head), nn.Conv2d(head, 1, 3, padding=1))

    def forward(self, ia: Tensor, ini: Tensor) -> Tensor:
        hid = F.interpolate(self.fuse(ia), size=ini.shape[-2:], mode="bilinear", align_corners=False)
        return torch.sigmoid(self.head(torch.cat([hid, ini], dim=1)))
