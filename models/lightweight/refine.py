"""Matting refine network (MRN): regresses alpha in the unknown region.

Input: the image and SN's 3-class probabilities (6 channels). Encoder En2-1..En2-4, two OCBlocks each
(strides 2, 4, 8, 16); four decoders De2-4..De2-1, one OCBlock each, bottom-up with skips. An image
branch of OCBlocks (strides 2, 4, 8) gives the keys/values of two ENA modules placed symmetrically at
stride 8: one on En2-3 (before it feeds En2-4 and the skip), one on De2-3. Their queries are masked by
the unknown probability U at stride 8. A 3x3 convolution on concat(upsampled De2-1, image) gives the
refined alpha at full resolution.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.lightweight.attention import ENA
from models.lightweight.config import LightweightConfig
from models.lightweight.decoder import Decoder
from models.lightweight.layers import up_to
from models.lightweight.octconv import block, chain, stage


class RefineNet(nn.Module):
    """src: (B, 3, H, W) RGB in 0..1; tri: (B, 3, H, W) probabilities (background, foreground, unknown);
    H and W multiples of 64. Returns pha_refine: (B, 1, H, W) refined alpha in 0..1 (meaningful where
    tri's unknown probability is high).
    """

    def __init__(self, cfg: LightweightConfig):
        super().__init__()
        w, dec, o, n, st = cfg.mrn_widths, cfg.mrn_decoder, cfg.octave, cfg.mrn_depth, cfg.octave_stream
        self.en1 = stage(6, w[0], n, 2, o, st, image=True)
        self.en2 = stage(w[0], w[1], n, 2, o, st)
        self.en3 = stage(w[1], w[2], n, 2, o, st)
        self.en4 = stage(w[2], w[3], n, 2, o, st)
        i = cfg.image_widths
        self.image = chain(3, [(i[0], 2), (i[1], 2), (i[2], 2)], o, st, image=True)
        self.ena_en = ENA(w[2], i[2], cfg.attention, cfg.interval, cfg.window)
        self.ena_de = ENA(dec[1], i[2], cfg.attention, cfg.interval, cfg.window)
        self.de4 = block(w[3], dec[0], o, st)
        self.de3 = Decoder(dec[0], w[2], dec[1], o, st)
        self.de2 = Decoder(dec[1], w[1], dec[2], o, st)
        self.de1 = Decoder(dec[2], w[0], dec[3], o, st)
        self.head = nn.Conv2d(dec[3] + 3, 1, 3, padding=1)

    def forward(self, src: Tensor, tri: Tensor) -> Tensor:
        img = self.image(src)
        unk = F.avg_pool2d(tri[:, 2:3], 8)
        e1 = self.en1(torch.cat([src, tri], dim=1))
        e2 = self.en2(e1)
        e3 = self.ena_en(self.en3(e2), img, unk)
        e4 = self.en4(e3)
        d3 = self.ena_de(self.de3(self.de4(e4), e3), img, unk)
        d1 = self.de1(self.de2(d3, e2), e1)
        return torch.sigmoid(self.head(torch.cat([up_to(d1, src), src], dim=1)))
