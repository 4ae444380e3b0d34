"""Segmentation network (SN): classifies pixels into background, foreground and unknown.

A U-Net-like network of OCBlocks. Encoder: a stride-2 3x3 stem, then En1-1..En1-4 with 3, 4, 6, 4
OCBlocks (strides 4, 8, 16, 32; ResNet-50's layout). En1-1 is not used further (too close to the
input). The CFM adds channel-weighted En1-4 into En1-2. Three decoders (one OCBlock each) run bottom-up:
De1-4 on En1-4, De1-3 on En1-3 + De1-4, De1-2 on CFM(En1-2, En1-4) + De1-3. A 3x3 convolution on each
decoder gives 3-class logits (multi-level supervision); De1-2's are the prediction T.
"""
from __future__ import annotations

from typing import List

from torch import Tensor, nn

from models.lightweight.cfm import CFM
from models.lightweight.config import LightweightConfig
from models.lightweight.decoder import Decoder
from models.lightweight.layers import ConvBNReLU
from models.lightweight.octconv import block, stage


class SegmentationNet(nn.Module):
    """src: (B, 3, H, W) RGB in 0..1, H and W multiples of 64.

    Returns three logit maps, deepest first: (B, 3, H/32, W/32) from De1-4, (B, 3, H/16, W/16) from
    De1-3, (B, 3, H/8, W/8) from De1-2 (= T). Channels: 0 background, 1 foreground, 2 unknown.
    """

    def __init__(self, cfg: LightweightConfig):
        super().__init__()
        w, d, dec, o, st = cfg.sn_widths, cfg.sn_depths, cfg.sn_decoder, cfg.octave, cfg.octave_stream
        self.stem = ConvBNReLU(3, cfg.sn_stem, 3, stride=2)
        self.en1 = stage(cfg.sn_stem, w[0], d[0], 2, o, st)
        self.en2 = stage(w[0], w[1], d[1], 2, o, st)
        self.en3 = stage(w[1], w[2], d[2], 2, o, st)
        self.en4 = stage(w[2], w[3], d[3], 2, o, st)
        self.cfm = CFM(w[1], w[3], cfg.cfm_reduction)
        self.de4 = block(w[3], dec[0], o, st)
        self.de3 = Decoder(dec[0], w[2], dec[1], o, st)
        self.de2 = Decoder(dec[1], w[1], dec[2], o, st)
        self.head4 = nn.Conv2d(dec[0], 3, 3, padding=1)
        self.head3 = nn.Conv2d(dec[1], 3, 3, padding=1)
        self.head2 = nn.Conv2d(dec[2], 3, 3, padding=1)

    def forward(self, src: Tensor) -> List[Tensor]:
        e2 = self.en2(self.en1(self.stem(src)))
        e3 = self.en3(e2)
        e4 = self.en4(e3)
        d4 = self.de4(e4)
        d3 = self.de3(d4, e3)
        d2 = self.de2(d3, self.cfm(e2, e4))
        return [self.head4(d4), self.head3(d3), self.head2(d2)]
