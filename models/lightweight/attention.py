"""Efficient non-local attention (ENA): long-range attention on sampled subsets, then short-range
attention in small windows, with image features as keys and values (seed 003, Fig. 3).

Queries come from an encoder/decoder feature masked by the unknown map U (eq. 3); keys and values come
from the image features of the OCBlock image branch. With n = h * w positions:

- long range: the positions that share (row mod s, col mod s), s = `interval` = sqrt(k), form one
  subset (k subsets of n / k positions spaced s apart); attention runs inside each subset (eq. 4);
- short range: the long-range output A_G, regrouped into windows of `window` x `window` neighbouring
  positions (n / k windows of k positions), attends to the keys/values of its own window (A_L);
- fusion: feat + BN(conv1x1(A_L)) (the refined feature, same shape as feat).

Similarity is the embedded-Gaussian non-local one: softmax(q k^T / sqrt(c)) over keys, with 1x1
convolution embeddings of c = `channels` for query, key and value.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def group(x: Tensor, side: int, dilated: bool) -> Tensor:
    """x: (B, C, h, w), h and w multiples of side -> (G, N, C) attention groups.

    dilated: G = B * side^2 subsets of N = h * w / side^2 positions sharing (row mod side, col mod side)
    else:    G = B * h * w / side^2 windows of N = side^2 neighbouring positions
    """
    b, c, h, w = x.shape
    t = x.reshape(b, c, h // side, side, w // side, side)  # (B, C, row // s, row % s, col // s, col % s)
    if dilated:
        t = t.permute(0, 3, 5, 2, 4, 1)
    else:
        t = t.permute(0, 2, 4, 3, 5, 1)
    return t.reshape(-1, t.shape[3] * t.shape[4], c)


def ungroup(t: Tensor, like: Tensor, side: int, dilated: bool) -> Tensor:
    """Inverse of `group`: t (G, N, C) -> (B, C, h, w) with like's batch and spatial size."""
    b, h, w = like.shape[0], like.shape[2], like.shape[3]
    c = t.shape[2]
    if dilated:
        t = t.reshape(b, side, side, h // side, w // side, c).permute(0, 5, 3, 1, 4, 2)
    else:
        t = t.reshape(b, h // side, w // side, side, side, c).permute(0, 5, 1, 3, 2, 4)
    return t.reshape(b, c, h, w)


class ENA(nn.Module):
    """feat: (B, cfeat, h, w) encoder/decoder feature; img: (B, cimg, h, w) image feature;
    unk: (B, 1, h, w) unknown-region probability in 0..1; h, w multiples of interval and window.
    Returns the refined feature (B, cfeat, h, w).
    """

    def __init__(self, cfeat: int, cimg: int, channels: int, interval: int, window: int):
        super().__init__()
        self.interval = interval
        self.window = window
        self.query = nn.Conv2d(cfeat, channels, 1)
        self.key = nn.Conv2d(cimg, channels, 1)
        self.value = nn.Conv2d(cimg, channels, 1)
        self.out = nn.Sequential(nn.Conv2d(channels, cfeat, 1, bias=False), nn.BatchNorm2d(cfeat))

    def attend(self, q: Tensor, k: Tensor, v: Tensor, side: int, dilated: bool) -> Tensor:
        """Non-local attention inside each group of q, k, v: (B, c, h, w) each -> (B, c, h, w).

        The groups stay 3-D (G, N, c): scaled_dot_product_attention then takes its matmul path, which
        torch.utils.flop_counter counts; the fused 4-D CPU kernel would be counted as zero FLOPs.
        """
        a = F.scaled_dot_product_attention(group(q, side, dilated), group(k, side, dilated),
                                           group(v, side, dilated))
        return ungroup(a, q, side, dilated)

    def forward(self, feat: Tensor, img: Tensor, unk: Tensor) -> Tensor:
        k = self.key(img)
        v = self.value(img)
        a_g = self.attend(self.query(feat * unk), k, v, self.interval, True)
        a_l = self.attend(a_g, k, v, self.window, False)
        return feat + self.out(a_l)
