"""MSIA-matte's configuration: backbone depth and width, branch widths, ASPP rates; named presets.

The paper fixes IniST at 64 channels and SedST at 256 and uses an ImageNet-pretrained ResNeXt-101;
everything else is open (see models.msia.model). "cpu" is the default: small enough to train and run
on a laptop CPU; the other presets are the published backbones with the paper's widths.
"""
from __future__ import annotations

from dataclasses import dataclass

from models.msia.resnext import PRESETS as RESNEXT
from models.msia.resnext import ResNeXtConfig


@dataclass(frozen=True)
class MSIAConfig:
    """backbone: the ResNeXt; ini: IniST channels (paper: 64); sed: SedST channels (paper: 256);
    aspp: ASPP channels; rates: ASPP dilations (for output stride 16); fuse: channels of the two
    convolutions on F_IA; head: channels of the first convolution of the alpha head."""

    backbone: ResNeXtConfig = ResNeXtConfig()
    ini: int = 64
    sed: int = 256
    aspp: int = 256
    rates: tuple[int, int, int] = (6, 12, 18)
    fuse: int = 256
    head: int = 64


PRESETS = {
    "cpu": MSIAConfig(ResNeXtConfig((1, 2, 2, 1), cardinality=8, base_width=8, planes=16, stem=16),
                      ini=16, sed=48, aspp=48, fuse=48, head=16),
    "resnext50_32x4d": MSIAConfig(RESNEXT["resnext50_32x4d"]),
    "resnext101_32x8d": MSIAConfig(RESNEXT["resnext101_32x8d"]),  # the paper's backbone
}
