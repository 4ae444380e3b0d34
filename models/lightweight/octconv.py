"""OCBlock: octave convolution with depthwise convolutions, the paper's basic block (Fig. 2b).

The block takes one feature map, splits it into a high-frequency part (full resolution) and a
low-frequency part (half resolution, fraction `octave` of the channels), filters each part with a 3x3
depthwise convolution, and merges the parts back into one feature map:

    x_h = x                          x_l = avgpool2(x)                 (first octave layer: HH, HL)
    h = ReLU(BN(conv1x1(x_h)))       l = ReLU(BN(conv1x1(x_l)))
    h = ReLU(BN(dw3x3(h)))           l = ReLU(BN(dw3x3(l)))            (depthwise: no cross paths)
    y = BN(conv1x1(h) + up_nearest2(conv1x1(l)))                      (last octave layer: HH, LH)
    out = ReLU(y + x) when the shapes agree, else ReLU(y)

Stride 2 is done by average pooling the input first (OctConv's rule). Frequencies mix in the pointwise
convolutions; the depthwise 3x3 on the low part sees twice the context for a quarter of the cost.

The octave-stream reading (LightweightConfig.octave_stream, see models/lightweight/__init__.py):
OctaveBlock takes and returns the pair (h, l) -- h (B, ch, H, W), l (B, cl, H/2, W/2) -- so the
low-frequency tensor runs from block to block as in octave convolution proper; both 1x1 layers are
full octave convolutions (OctaveConv: HH, LH, LL and HL paths), the 3x3 depthwise layers stay per
part. An OctaveChain runs a sequence of them behind the one-map interface the rest of the network
uses: a map between chains is *packed*, the high part's channels followed by the low part's nearest
upsampled (`pack`), and `unpack` takes it apart again (the low part by 2x2 average pooling, which
gives back the packed low part exactly and low-passes whatever a non-octave layer added to it). Such a
block has the parameters of an OCBlock of the same widths.
"""
from __future__ import annotations

from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.lightweight.layers import ConvBNReLU, pool2


class OCBlock(nn.Module):
    """x: (B, cin, H, W) -> (B, cout, H/stride, W/stride); H/stride and W/stride must be even."""

    def __init__(self, cin: int, cout: int, stride: int = 1, octave: float = 0.5):
        super().__init__()
        low = low_channels(cout, octave)
        high = cout - low
        self.stride = stride
        self.residual = stride == 1 and cin == cout
        self.high = nn.Sequential(ConvBNReLU(cin, high, 1), ConvBNReLU(high, high, 3, groups=high))
        self.low = nn.Sequential(ConvBNReLU(cin, low, 1), ConvBNReLU(low, low, 3, groups=low))
        self.merge_high = nn.Conv2d(high, cout, 1, bias=False)
        self.merge_low = nn.Conv2d(low, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 2:
            x = pool2(x)
        hi = self.high(x)
        lo = self.low(pool2(x))
        y = self.bn(self.merge_high(hi) + F.interpolate(self.merge_low(lo), scale_factor=2.0, mode="nearest"))
        if self.residual:
            y = y + x
        return F.relu(y)


def low_channels(channels: int, octave: float) -> int:
    """Channels of the low-frequency part of a `channels`-wide feature (OctConv's alpha = octave)."""
    return int(round(channels * octave))


def up2(x: Tensor) -> Tensor:
    """Nearest-neighbour 2x upsampling: (B, C, h, w) -> (B, C, 2h, 2w)."""
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


def pack(h: Tensor, l: Tensor) -> Tensor:
    """(h (B, ch, H, W), l (B, cl, H/2, W/2)) -> one map (B, ch + cl, H, W): h, then l upsampled."""
    return torch.cat([h, up2(l)], dim=1)


def unpack(x: Tensor, low: int) -> Tuple[Tensor, Tensor]:
    """Inverse of `pack`: x (B, C, H, W) -> (x's first C - low channels, its last `low` channels 2x2
    average pooled to (B, low, H/2, W/2))."""
    c = x.shape[1]
    return x[:, : c - low], pool2(x[:, c - low:])


class OctaveConv(nn.Module):
    """1x1 octave convolution with batch norm on each output part (Chen et al., ICCV 2019):

        h' = BN(conv_HH(h) + up2(conv_LH(l)))      l' = BN(conv_LL(l) + conv_HL(avgpool2(h)))

    h: (B, cin_h, H, W), l: (B, cin_l, H/2, W/2) -> h' (B, cout_h, H, W), l' (B, cout_l, H/2, W/2).
    A 1x1 convolution commutes with nearest upsampling, so LH runs at the low resolution; LL and HL
    are one convolution of concat(l, avgpool2(h)). Parameters: (cin_h + cin_l) * (cout_h + cout_l).
    """

    def __init__(self, cin_h: int, cin_l: int, cout_h: int, cout_l: int):
        super().__init__()
        self.hh = nn.Conv2d(cin_h, cout_h, 1, bias=False)
        self.lh = nn.Conv2d(cin_l, cout_h, 1, bias=False)
        self.low = nn.Conv2d(cin_l + cin_h, cout_l, 1, bias=False)
        self.bn_h = nn.BatchNorm2d(cout_h)
        self.bn_l = nn.BatchNorm2d(cout_l)

    def forward(self, h: Tensor, l: Tensor) -> Tuple[Tensor, Tensor]:
        return (self.bn_h(self.hh(h) + up2(self.lh(l))),
                self.bn_l(self.low(torch.cat([l, pool2(h)], dim=1))))


class OctaveBlock(nn.Module):
    """The OCBlock of the octave-stream reading: (h, l) -> (h', l'), the low part kept apart.

    h: (B, cin_h, H, W), l: (B, cin_l, H/2, W/2) -> h' (B, cout - low, H/s, W/s), l' (B, low, H/2s, W/2s)
    with low = round(cout * octave), s = stride (2: both parts average pooled first):

        h, l = ReLU(OctaveConv(h, l))          (4 paths)
        h, l = ReLU(BN(dw3x3(h))), ReLU(BN(dw3x3(l)))
        h', l' = OctaveConv(h, l)              (4 paths)
        h', l' = ReLU(h' + h_in), ReLU(l' + l_in) when the shapes agree, else ReLU of each
    """

    def __init__(self, cin_h: int, cin_l: int, cout: int, stride: int = 1, octave: float = 0.5):
        super().__init__()
        low = low_channels(cout, octave)
        high = cout - low
        self.stride = stride
        self.residual = stride == 1 and (cin_h, cin_l) == (high, low)
        self.inner = OctaveConv(cin_h, cin_l, high, low)
        self.dw_h = ConvBNReLU(high, high, 3, groups=high)
        self.dw_l = ConvBNReLU(low, low, 3, groups=low)
        self.outer = OctaveConv(high, low, high, low)

    def forward(self, h: Tensor, l: Tensor) -> Tuple[Tensor, Tensor]:
        if self.stride == 2:
            h, l = pool2(h), pool2(l)
        a, b = self.inner(h, l)
        a, b = self.dw_h(F.relu(a)), self.dw_l(F.relu(b))
        y_h, y_l = self.outer(a, b)
        if self.residual:
            y_h, y_l = y_h + h, y_l + l
        return F.relu(y_h), F.relu(y_l)


class OctaveChain(nn.Module):
    """OctaveBlocks one after the other behind a one-map interface: x (B, cin, H, W) -> the packed
    output (B, cout, H/S, W/S), S the product of the strides; the (high, low) pair runs between the
    blocks. The input is unpacked with `low_in` low channels (a packed map, or any learned feature:
    the layer before learns which channels are the low part); `low_in` = 0 marks an image (RGB, a
    trimap), which the first block sees whole at both resolutions (h = x, l = avgpool2(x): OctConv's
    first layer, whose input has no low part, plus an LH path)."""

    def __init__(self, cin: int, outs: List[Tuple[int, int]], octave: float, low_in: int):
        super().__init__()
        self.low_in = low_in
        cin_h, cin_l = (cin - low_in, low_in) if low_in else (cin, cin)
        blocks = []
        for cout, stride in outs:
            blocks.append(OctaveBlock(cin_h, cin_l, cout, stride, octave))
            cin_l = low_channels(cout, octave)
            cin_h = cout - cin_l
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor) -> Tensor:
        if self.low_in:
            h, l = unpack(x, self.low_in)
        else:
            h, l = x, pool2(x)
        for block in self.blocks:
            h, l = block(h, l)
        return pack(h, l)


def chain(cin: int, outs: List[Tuple[int, int]], octave: float, stream: bool, image: bool = False) -> nn.Module:
    """Blocks of widths and strides `outs` [(cout, stride), ...] on a cin-channel map: OCBlocks one
    after the other, or with `stream` an OctaveChain (image: the input is an image, not a feature)."""
    if stream:
        return OctaveChain(cin, outs, octave, 0 if image else low_channels(cin, octave))
    blocks, c = [], cin
    for cout, stride in outs:
        blocks.append(OCBlock(c, cout, stride, octave))
        c = cout
    return nn.Sequential(*blocks)


def stage(cin: int, cout: int, depth: int, stride: int, octave: float, stream: bool = False,
          image: bool = False) -> nn.Module:
    """`depth` blocks; the first changes cin -> cout and applies `stride`, the rest are residual."""
    return chain(cin, [(cout, stride)] + [(cout, 1)] * (depth - 1), octave, stream, image)


def block(cin: int, cout: int, octave: float, stream: bool, low_in: int = -1) -> nn.Module:
    """One stride-1 block: an OCBlock, or with `stream` a one-block OctaveChain whose input has
    `low_in` low channels (default round(cin * octave); a concat of packed maps has the sum of theirs)."""
    if stream:
        return OctaveChain(cin, [(cout, 1)], octave, low_channels(cin, octave) if low_in < 0 else low_in)
    return OCBlock(cin, cout, 1, octave)
