"""The exported networks: BGM, and BGM with excitation and recursive inference (seed 000).

Both take ONE tensor and return ONE (the project's network contract, models/network.py):

    x:   (B, 6, H, W) in [0, 1]: image RGB, then clean plate RGB; any H, W >= 1
    pha: (B, 1, H, W) alpha in [0, 1]

Inside, x is padded (replicate) to a multiple of the stride (4) and at least 8 pixels, the soft
segmentation S is derived from image and plate (segmentation.py), and outputs are cropped back.
For training, `forward_train` returns {"pha": (B, 1, H, W) in [0, 1], "fgr": (B, 3, H, W) in [0, 1]};
the unmixed-foreground output uses it (BGM) or `forward_steps_fgr` (BGM with excitation).
"""
from __future__ import annotations

from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.bgm.generator import MIN_SIZE, STRIDE, BGMConfig, Generator
from models.bgm.segmentation import soft_segmentation
from models.excitation import excite

#: recursive passes by default (the paper's best, Table 1)
STEPS = 2


def pad(x: Tensor, stride: int = STRIDE, least: int = MIN_SIZE) -> Tensor:
    """(B, C, H, W) -> (B, C, H', W'), replicate-padded at the bottom and right so that H', W' are
    multiples of `stride` and >= `least`."""
    h, w = x.shape[-2], x.shape[-1]
    ph = max((h + stride - 1) // stride * stride, least) - h
    pw = max((w + stride - 1) // stride * stride, least) - w
    return F.pad(x, [0, pw, 0, ph], mode="replicate")


def split(x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Padded (B, 6, H, W) input -> src (B, 3, H, W), bgr (B, 3, H, W), seg (B, 1, H, W), all in [0, 1]."""
    src, bgr = x[:, :3], x[:, 3:6]
    return src, bgr, soft_segmentation(src, bgr)


class BGMNet(nn.Module):
    """Background Matting: forward(x) -> pha; forward_train(x) -> {"pha", "fgr"}."""

    def __init__(self, cfg: BGMConfig = BGMConfig()):
        super().__init__()
        self.gen = Generator(cfg)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_train(x)["pha"]

    @torch.jit.export
    def forward_train(self, x: Tensor) -> Dict[str, Tensor]:
        h, w = x.shape[-2], x.shape[-1]
        pha, fgr = self.gen(*split(pad(x)))
        return {"pha": pha[:, :, :h, :w], "fgr": fgr[:, :, :h, :w]}


class BGMExciteNet(nn.Module):
    """BGM with an excitation layer after the first trunk block (seed 000).

    forward(x) -> pha: `steps` recursive passes (default STEPS); forward_steps(x, steps) -> pha for
    any steps >= 1; forward_steps_fgr(x, steps) -> {"pha", "fgr"}, the foreground of the last pass
    too; forward_train(x, exc) -> {"pha", "fgr"} for one pass with an explicit
    excitation map exc: (B, 1, H, W) in [0, 1] (GT, a blend, pseudo-GT: the training curriculum).

    Recursive inference (paper eq. 7): pass 1 is excited by the soft segmentation S (our pseudo-GT),
    pass k + 1 by pass k's alpha (at the padded size, before cropping). The encoders and Context
    Switching do not depend on E, so they run once; each pass repeats the trunk and the alpha head
    (the foreground head is not needed to matte and is skipped, except by forward_steps_fgr).
    """

    def __init__(self, cfg: BGMConfig = BGMConfig(), steps: int = STEPS):
        super().__init__()
        if steps < 1:
            raise ValueError(f"recursive inference needs at least one pass, got steps={steps}")
        self.gen = Generator(cfg)
        excite(self.gen, "first")
        self.steps = steps

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_steps(x, self.steps)

    @torch.jit.export
    def forward_steps(self, x: Tensor, steps: int) -> Tensor:
        h, w = x.shape[-2], x.shape[-1]
        hid, _, seg = self.trunk(x, steps)
        return self.gen.pha_head(hid, seg)[:, :, :h, :w]

    @torch.jit.export
    def forward_steps_fgr(self, x: Tensor, steps: int) -> Dict[str, Tensor]:
        """forward_steps with the foreground head run on the last pass: {"pha", "fgr"} as forward_train."""
        h, w = x.shape[-2], x.shape[-1]
        hid, skip, seg = self.trunk(x, steps)
        pha, fgr = self.gen.decode(hid, skip, seg)
        return {"pha": pha[:, :, :h, :w], "fgr": fgr[:, :, :h, :w]}

    def trunk(self, x: Tensor, steps: int) -> Tuple[Tensor, Tensor, Tensor]:
        """The trunk output of the last of `steps` passes, the skip feature and S (padded size)."""
        if steps < 1:
            raise ValueError("recursive inference needs at least one pass")
        src, bgr, seg = split(pad(x))
        hid, skip = self.gen.encode(src, bgr, seg)
        pha = seg
        for _ in range(steps - 1):
            pha = self.gen.pha_head(self.gen.rest(self.gen.first(hid, pha)), seg)
        return self.gen.rest(self.gen.first(hid, pha)), skip, seg

    @torch.jit.export
    def forward_train(self, x: Tensor, exc: Tensor) -> Dict[str, Tensor]:
        h, w = x.shape[-2], x.shape[-1]
        src, bgr, seg = split(pad(x))
        hid, skip = self.gen.encode(src, bgr, seg)
        pha, fgr = self.gen.decode(self.gen.rest(self.gen.first(hid, pad(exc))), skip, seg)
        return {"pha": pha[:, :, :h, :w], "fgr": fgr[:, :, :h, :w]}
