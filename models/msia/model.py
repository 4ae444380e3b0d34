"""MSIA-matte (Qiao, Liu et al., "Multi-scale Information Assembly for Image Matting"): the
network's composition root and the registry model `msia`. Trimap-free: the input is the image alone.

Pipeline (paper figure 2): a ResNeXt backbone and an ASPP give the advanced semantics F_aspp; a
superficial-traces branch turns the backbone's first-stage features into initial traces F_ini (IniST)
and secondary traces F_sed (SedST); the adaptive information assembly weighs F_aspp against F_sed
(equations 2-4); the decoder fuses the result, upsamples it, joins F_ini (equation 5) and regresses
alpha through two convolutions, a sigmoid and an upsampling.

    x:   (B, 3, H, W) RGB in [0, 1], any H and W
    pha: (B, 1, H, W) alpha in [0, 1]

Shapes inside (input padded to a multiple of 16):
    low (B, 4 planes, H/4) -> ini (B, ini, H/4), sed (B, sed, H/8)
    high (B, 32 planes, H/16) -> aspp (B, aspp, H/16) -> ia (B, aspp + sed, H/8) -> pha_sm (B, 1, H/4)

Configurations (models.msia.config.PRESETS): the paper used an ImageNet-pretrained ResNeXt-101 without
saying its width; "resnext101_32x8d" (86.7 M parameters in the backbone, the usual PyTorch pretrained
ResNeXt-101) is that network with the paper's branch widths (106.3 M in all, 285 GFLOPs at 512x512);
"resnext50_32x4d" is the same on ResNeXt-50 (23.0 M in the backbone, 42.6 M in all, 138 GFLOPs).
The default "cpu" preset is a narrow, shallow ResNeXt (blocks 1, 2, 2, 1; 8 groups x 8 channels;
planes 16; stem 16) with a 16-channel IniST and 48-channel SedST, ASPP and fusion (1.26 M parameters,
4.6 GFLOPs at 512x512), which trains on a CPU.

Choices the paper leaves open, decided here:
- Backbone taps: "block1" is the first bottleneck stage (stride 4), so the ablation baseline's "x4
  upsampled ASPP features" make the ASPP run at output stride 16; the last stage trades its stride for
  dilation 2 (every block of it). F_sed is at stride 8, so F_aspp is bilinearly resized x2 before the
  assembly (equation 4 leaves this implicit).
- ASPP: DeepLab v3's (1x1, three 3x3 with dilations 6, 12, 18, image pooling, 1x1 projection), 256
  channels in the full presets, no dropout; no batch norm on the image-pooling branch.
- Superficial traces: every convolution is 3x3 with batch norm and ReLU; SedST's stride-2 convolution
  is 3x3 with the SedST width.
- Assembly weights: per-image scalars from a linear layer on the global means of F_aspp and F_sed, made
  positive by a sigmoid, then normalised by equations 2-3 with eps (1e-6) inside the denominator.
- Decoder: the two convolutions on F_IA have 256 channels (full presets), the first alpha-head
  convolution 64 (the width of F_ini); every upsampling is bilinear (align_corners False): F_aspp x2,
  the fused F_IA x2, and the sigmoid's output x4 (after the sigmoid, as the paper orders it, so alpha
  stays in [0, 1]).
- Initialisation: the paper draws the non-backbone weights from "a random Gaussian distribution"
  without a deviation; every convolution here (backbone too: no pretrained weights are shipped) is
  He-normal (fan out, ReLU gain), biases zero, batch norms at scale 1 and shift 0. So both assembly
  weights start at 1/2.
- Normalisation: batch norm after every convolution except the image-pooling, assembly and output ones.
- Input: normalised with the ImageNet mean and deviation (for pretrained backbone weights); padded on
  the bottom and right by edge replication to a multiple of the total stride (16) and cropped back.
- Supervision: the paper supervises only the final alpha (L1 + lambda SSIM, lambda 0.1 for the first
  epoch, then 0.025), so `forward_train` returns just {"pha"}.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.base import IMAGE
from models.msia.aspp import ASPP
from models.msia.assembly import InformationAssembly
from models.msia.config import PRESETS, MSIAConfig
from models.msia.decoder import Decoder
from models.msia.resnext import ResNeXt
from models.msia.traces import SuperficialTraces
from models.network import NetworkModel

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class MSIANet(nn.Module):
    """The MSIA-matte network: x (B, 3, H, W) RGB in [0, 1] -> pha (B, 1, H, W) alpha in [0, 1]."""

    def __init__(self, cfg: MSIAConfig):
        super().__init__()
        self.backbone = ResNeXt(cfg.backbone)
        self.aspp = ASPP(cfg.backbone.high_channels, cfg.aspp, cfg.rates)
        self.traces = SuperficialTraces(cfg.backbone.low_channels, cfg.ini, cfg.sed)
        self.assembly = InformationAssembly(cfg.aspp, cfg.sed)
        self.decoder = Decoder(cfg.aspp + cfg.sed, cfg.ini, cfg.fuse, cfg.head)
        self.stride = max(cfg.backbone.output_stride, 8)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[2], x.shape[3]
        src = (x - self.mean) / self.std
        src = F.pad(src, [0, -w % self.stride, 0, -h % self.stride], mode="replicate")
        low, high = self.backbone(src)
        ini, sed = self.traces(low)
        pha_sm = self.decoder(self.assembly(self.aspp(high), sed), ini)
        pha = F.interpolate(pha_sm, size=src.shape[-2:], mode="bilinear", align_corners=False)
        return pha[:, :, :h, :w]

    def forward_train(self, x: Tensor) -> dict[str, Tensor]:
        """The supervised outputs: {"pha": (B, 1, H, W) in [0, 1]} (the paper supervises only alpha)."""
        return {"pha": self.forward(x)}


class MSIA(NetworkModel):
    name = "msia"
    description = ("MSIA-matte (Qiao, Liu et al.): trimap-free; ResNeXt + ASPP semantics assembled "
                   "with multi-level superficial traces of low-level features.")
    inputs = (IMAGE,)

    def __init__(self, config: MSIAConfig = PRESETS["cpu"]):
        super().__init__()
        self.config = config

    def build(self) -> nn.Module:
        return MSIANet(self.config)
