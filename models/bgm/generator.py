"""BGM's generator G: image, plate and soft segmentation -> alpha and foreground.

    src: (B, 3, H, W) image RGB in [0, 1]
    bgr: (B, 3, H, W) clean plate RGB in [0, 1]
    seg: (B, 1, H, W) soft segmentation in [0, 1]
    H, W multiples of `STRIDE` and >= `MIN_SIZE` (the composition roots pad to that)
    hid: (B, 4 ngf, H/4, W/4) trunk feature; skip: (B, 2 ngf, H/2, W/2) image feature
    pha: (B, 1, H, W) alpha in [0, 1]; fgr: (B, 3, H, W) foreground RGB in [0, 1]

Inputs are scaled to [-1, 1] and encoded one encoder each; the Context Switching block mixes the
three features; the residual trunk is `first` (one block: where seed 000 excites the features) and
`rest` (blocks - 1); two heads decode alpha and foreground. `encode` and `decode` are separate
methods so a composition can act between them (the excited model calls `first(hid, exc)`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

from torch import Tensor, nn

from models.bgm.context_switch import ContextSwitch
from models.bgm.encoder import Encoder
from models.bgm.heads import AlphaHead, ForegroundHead
from models.bgm.resblock import ResBlock, res_blocks

#: total stride: the trunk works at 1/4 resolution
STRIDE = 4
#: smallest padded input: the 1/4-resolution trunk needs 2 pixels for its reflection padding
MIN_SIZE = 8


@dataclass(frozen=True)
class BGMConfig:
    """Width and depth of BGM.

    ngf: base width (encoders 4 ngf deep at 1/4 resolution)
    blocks: residual blocks in the trunk after Context Switching (>= 1)
    head_blocks: residual blocks at the start of each head
    residual: the alpha head predicts a correction of S, starting at S (ours, heads.py); False: it
        predicts alpha itself, as published

    The default is a narrow configuration that trains on a CPU; `FULL` is the published network.
    """

    ngf: int = 16
    blocks: int = 4
    head_blocks: int = 1
    residual: bool = True


#: the original BGM: ngf = 64, 7 trunk blocks, 3 per head; 17.47 M parameters here (the published
#: 17.9 M includes the unused motion-cue encoder and its Context Switching branch, 0.43 M)
FULL = BGMConfig(ngf=64, blocks=7, head_blocks=3, residual=False)


class Generator(nn.Module):
    def __init__(self, cfg: BGMConfig):
        super().__init__()
        if cfg.blocks < 1:
            raise ValueError(f"BGM needs at least one trunk block, got {cfg.blocks}")
        ngf = cfg.ngf
        self.src_enc = Encoder(3, ngf)
        self.bgr_enc = Encoder(3, ngf)
        self.seg_enc = Encoder(1, ngf)
        self.switch = ContextSwitch(ngf)
        self.first = ResBlock(4 * ngf)
        self.rest = res_blocks(4 * ngf, cfg.blocks - 1)
        self.pha_head = AlphaHead(ngf, cfg.head_blocks, cfg.residual)
        self.fgr_head = ForegroundHead(ngf, cfg.head_blocks)

    def encode(self, src: Tensor, bgr: Tensor, seg: Tensor) -> Tuple[Tensor, Tensor]:
        """(src, bgr, seg) in [0, 1] -> (hid after Context Switching, skip)."""
        hid_src, skip = self.src_enc(src * 2.0 - 1.0)
        hid_bgr, _ = self.bgr_enc(bgr * 2.0 - 1.0)
        hid_seg, _ = self.seg_enc(seg * 2.0 - 1.0)
        return self.switch(hid_src, hid_bgr, hid_seg), skip

    def decode(self, hid: Tensor, skip: Tensor, seg: Tensor) -> Tuple[Tensor, Tensor]:
        """Trunk output, skip and S -> (pha, fgr)."""
        return self.pha_head(hid, seg), self.fgr_head(hid, skip)

    def forward(self, src: Tensor, bgr: Tensor, seg: Tensor) -> Tuple[Tensor, Tensor]:
        """G(I, B', S) -> (pha, fgr), without excitation."""
        hid, skip = self.encode(src, bgr, seg)
        return self.decode(self.rest(self.first(hid)), skip, seg)
