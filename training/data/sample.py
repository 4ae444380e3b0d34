"""The training item every dataset in this package yields, and the random stream behind it.

An item is a dict of float32 torch tensors, display-referred sRGB in [0, 1], keyed by KEYS:
  src:   (3, H, W) the image the network sees; for composites I = pha * fgr + (1 - pha) * bgr
  bgr:   (3, H, W) the true background behind the subject
  plate: (3, H, W) the clean plate as a re-shot would give it (bgr with exposure drift, noise and
         misregistration, see plate.py)
  tri:   (1, H, W) trimap in {0, 0.5, 1} (background / unknown / foreground)
  pha:   (1, H, W) ground-truth alpha
  fgr:   (3, H, W) ground-truth (or estimated) foreground colour
A DataLoader stacks items into (B, C, H, W) batches under the same keys.
"""
from __future__ import annotations

import numpy as np
import torch

KEYS = ("src", "bgr", "plate", "tri", "pha", "fgr")


def item_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The random stream of one item: it depends on (seed, epoch, index) only, so a resumed run (or
    any worker process) draws exactly the same item again."""
    return np.random.default_rng([seed, epoch, index])


def as_item(src: np.ndarray, bgr: np.ndarray, plate: np.ndarray, tri: np.ndarray, pha: np.ndarray,
            fgr: np.ndarray) -> dict[str, torch.Tensor]:
    """numpy (H, W, 3) colour and (H, W) single-channel arrays -> the item dict of (C, H, W) tensors."""
    arrays = {"src": src, "bgr": bgr, "plate": plate, "tri": tri, "pha": pha, "fgr": fgr}
    out = {}
    for key in KEYS:
        a = arrays[key]
        chw = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
        out[key] = torch.from_numpy(np.ascontiguousarray(chw, dtype=np.float32))
    return out
