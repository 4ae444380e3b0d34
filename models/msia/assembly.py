"""Adaptive information assembly (paper equations 2-4): F_IA = Cat(W_aspp * F_aspp, W_sed * F_sed).

W_aspp and W_sed are per-image scalars, so an image without middle-level traces can lean on the
semantics and one full of them on the traces. The paper gives only their normalisation; here they are
computed from both inputs: the global means of F_aspp and F_sed, concatenated, go through a 1x1
convolution (a linear layer) to two logits, a sigmoid makes them positive raw weights, and
equations 2-3 normalise them, W_k = W_k / (W_aspp + W_sed + eps) (eps inside the denominator, where
the paper's text says it belongs; the printed equations add it after the division).
F_aspp (stride 16) is first resized bilinearly to F_sed's grid (stride 8), a step equation 4 leaves
implicit.

    aspp: (B, ca, h, w), >= 0       F_aspp, any grid
    sed:  (B, cs, H', W'), >= 0     F_sed
    ia:   (B, ca + cs, H', W'), >= 0   F_IA
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class InformationAssembly(nn.Module):
    def __init__(self, aspp: int, sed: int, eps: float = 1e-6):
        super().__init__()
        self.weigh = nn.Conv2d(aspp + sed, 2, 1)
        self.eps = eps

    def forward(self, aspp: Tensor, sed: Tensor) -> Tensor:
        pooled = torch.cat([aspp.mean(dim=(2, 3), keepdim=True), sed.mean(dim=(2, 3), keepdim=True)], dim=1)
        w = torch.sigmoid(self.weigh(pooled))  # (B, 2, 1, 1): raw W_aspp, W_sed in (0, 1)
        w = w / (w.sum(dim=1, keepdim=True) + self.eps)
        aspp = F.interpolate(aspp, size=sed.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([w[:, :1] * aspp, w[:, 1:] * sed], dim=1)
