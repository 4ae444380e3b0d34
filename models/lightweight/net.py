"""Composition root: SN, then MRN, then alpha = P(foreground) + P(unknown) * refined alpha (eq. 5)."""
from __future__ import annotations

import math
from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.lightweight.config import LightweightConfig
from models.lightweight.layers import resize
from models.lightweight.refine import RefineNet
from models.lightweight.segmentation import SegmentationNet


class LightweightNet(nn.Module):
    """x: (B, 3, H, W) RGB in 0..1, any H and W -> pha: (B, 1, H, W) alpha in 0..1.

    The input is replicate-padded on the right and bottom to a multiple of `stride` (64: SN's stride 32
    times the OCBlock's half-resolution octave) and the outputs are cropped back.
    """

    def __init__(self, cfg: LightweightConfig = LightweightConfig()):
        super().__init__()
        self.stride = math.lcm(64, 8 * cfg.interval, 8 * cfg.window)
        self.sn = SegmentationNet(cfg)
        self.mrn = RefineNet(cfg)

    def forward(self, x: Tensor) -> Tensor:
        return self.matte(x, False)[0]

    def forward_train(self, x: Tensor) -> dict[str, Tensor | list[Tensor]]:
        """Everything the losses need. x: (B, 3, H, W) RGB in 0..1. Returns
        pha:        (B, 1, H, W) final alpha in 0..1
        pha_refine: (B, 1, H, W) MRN's refined alpha in 0..1 (before masking by the unknown map)
        tri_logits: list of three (B, 3, H, W) SN logits (background, foreground, unknown), bilinearly
                    upsampled from De1-4, De1-3, De1-2 (the last is the prediction T)
        """
        pha, ref, tri_logits = self.matte(x, True)
        return {"pha": pha, "pha_refine": ref, "tri_logits": tri_logits}

    def matte(self, x: Tensor, aux: bool) -> Tuple[Tensor, Tensor, List[Tensor]]:
        """x: (B, 3, H, W) -> pha (B, 1, H, W) in 0..1, pha_refine (B, 1, H, W) in 0..1, and with `aux`
        the three SN logit maps at (B, 3, H, W) (else an empty list)."""
        h, w = x.shape[2], x.shape[3]
        src = F.pad(x, [0, (-w) % self.stride, 0, (-h) % self.stride], mode="replicate")
        size = [src.shape[2], src.shape[3]]
        logits = self.sn(src)
        tri = torch.softmax(resize(logits[-1], size), dim=1)
        ref = self.mrn(src, tri)
        pha = tri[:, 1:2] + tri[:, 2:3] * ref
        tri_logits: List[Tensor] = []
        if aux:
            tri_logits = [resize(t, size)[:, :, :h, :w] for t in logits]
        return pha[:, :, :h, :w], ref[:, :, :h, :w], tri_logits
