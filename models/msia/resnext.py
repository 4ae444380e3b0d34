"""ResNeXt (Xie et al., CVPR 2017): the backbone that extracts MSIA-matte's advanced semantics.

A 7x7 stride-2 stem and a 3x3 stride-2 max pool, then four stages of bottleneck blocks with a grouped
("aggregated") 3x3 convolution. Stages 2-4 halve the resolution, until the output stride is reached;
later stages keep the resolution and dilate their 3x3 convolutions instead (all blocks of such a
stage use the stage's dilation).

    src:  (B, 3, H, W) RGB normalised with the ImageNet mean and deviation; H, W multiples of
          `output_stride`
    low:  (B, 4 * planes, H/4, W/4), >= 0: the first stage ("block1"), input of the superficial traces
    high: (B, 32 * planes, H/os, W/os), >= 0: the last stage, input of the ASPP
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from models.msia.conv import ConvBNReLU

EXPANSION = 4  # a bottleneck's output channels over its `planes`


@dataclass(frozen=True)
class ResNeXtConfig:
    """Depth and width of a ResNeXt ("ResNeXt-50 32x4d": blocks (3, 4, 6, 3), cardinality 32, base width 4).

    blocks:        bottleneck blocks in each of the four stages
    cardinality:   groups of every 3x3 convolution (the "32" of 32x4d)
    base_width:    channels per group in the first stage (the "4d"); doubles with every stage
    planes:        a first-stage block's output over 4 (64 in the published networks); doubles with
                   every stage, so it is the channel multiplier of the whole backbone
    stem:          channels of the 7x7 stem convolution (64 in the published networks)
    output_stride: 8, 16 or 32: resolution of `high` relative to the input
    """

    blocks: tuple[int, int, int, int] = (3, 4, 6, 3)
    cardinality: int = 32
    base_width: int = 4
    planes: int = 64
    stem: int = 64
    output_stride: int = 16

    def __post_init__(self):
        if self.output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, not {self.output_stride}")

    @property
    def low_channels(self) -> int:
        return EXPANSION * self.planes

    @property
    def high_channels(self) -> int:
        return EXPANSION * self.planes * 8


#: the published ImageNet networks (without the classifier)
PRESETS = {
    "resnext50_32x4d": ResNeXtConfig((3, 4, 6, 3), 32, 4),
    "resnext101_32x8d": ResNeXtConfig((3, 4, 23, 3), 32, 8),
}


class Bottleneck(nn.Module):
    """1x1 reduce, grouped 3x3 (stride, dilation), 1x1 expand, plus the shortcut, then ReLU.

    x: (B, cin, H, W) -> (B, 4 * planes, H / stride, W / stride), >= 0
    """

    def __init__(self, cin: int, planes: int, width: int, cardinality: int, stride: int, dilation: int):
        super().__init__()
        cout = EXPANSION * planes
        self.reduce = ConvBNReLU(cin, width, 1)
        self.group = ConvBNReLU(width, width, 3, stride, dilation, cardinality)
        self.expand = nn.Sequential(nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.expand(self.group(self.reduce(x))) + self.shortcut(x))


class ResNeXt(nn.Module):
    def __init__(self, cfg: ResNeXtConfig):
        super().__init__()
        self.stem = nn.Sequential(ConvBNReLU(3, cfg.stem, 7, 2), nn.MaxPool2d(3, 2, 1))
        stages: list[nn.Module] = []
        cin, reached, dilation = cfg.stem, 4, 1
        for i, depth in enumerate(cfg.blocks):
            stride = 1 if i == 0 else 2
            if reached * stride > cfg.output_stride:
                dilation, stride = dilation * stride, 1
            reached *= stride
            planes = cfg.planes << i
            width = (planes * cfg.base_width // 64) * cfg.cardinality
            blocks = []
            for b in range(depth):
                blocks.append(Bottleneck(cin, planes, width, cfg.cardinality, stride if b == 0 else 1, dilation))
                cin = EXPANSION * planes
            stages.append(nn.Sequential(*blocks))
        self.first = stages[0]
        self.rest = nn.Sequential(*stages[1:])

    def forward(self, src: Tensor) -> tuple[Tensor, Tensor]:
        low = self.first(self.stem(src))
        return low, self.rest(low)
