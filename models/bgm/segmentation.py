"""The soft segmentation S that BGM takes as a cue, derived in-graph from the clean plate.

    src: (B, 3, H, W) image RGB in [0, 1]
    bgr: (B, 3, H, W) clean plate RGB in [0, 1]
    seg: (B, 1, H, W) soft foreground mask in [0, 1]; H, W >= 2

The original BGM thresholds, erodes, dilates and blurs a person segmenter's mask. A studio has no
segmenter for arbitrary subjects, so S here is the project's plate-difference key
(models/classical/difference.py) written in torch, so that it runs inside the exported network and
the network's only input stays image + plate:

    d = ||src - bgr|| (Euclidean over RGB); S = smoothstep(LOW, HIGH, d);
    3x3 opening (erode then dilate: removes specks of sensor noise), 3x3 closing (fills pinholes);
    3x3 box blur (reflect-101 border, as OpenCV's default).

Erosion and dilation are min / max pooling whose padding never wins (OpenCV's morphology border),
so on the same inputs S equals `difference_key` up to float rounding. It has no learned parameters.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from models.classical.difference import HIGH, LOW


def _dilate(pha: Tensor) -> Tensor:
    return F.max_pool2d(pha, 3, 1, 1)


def _erode(pha: Tensor) -> Tensor:
    return -F.max_pool2d(-pha, 3, 1, 1)


def soft_segmentation(src: Tensor, bgr: Tensor, low: float = LOW, high: float = HIGH) -> Tensor:
    """Soft plate-difference segmentation; shapes and ranges in the module docstring."""
    dist = torch.linalg.vector_norm(src - bgr, dim=1, keepdim=True)
    t = ((dist - low) / (high - low)).clamp(0.0, 1.0)
    seg = t * t * (3.0 - 2.0 * t)
    seg = _dilate(_erode(seg))
    seg = _erode(_dilate(seg))
    seg = F.avg_pool2d(F.pad(seg, [1, 1, 1, 1], mode="reflect"), 3, 1)
    return seg.clamp(0.0, 1.0)
