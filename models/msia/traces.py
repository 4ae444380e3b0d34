"""The superficial-traces branch (paper section 3.2): two levels of foreground detail from "block1".

IniST: two 3x3 convolutions of `ini` channels filter the backbone's first-stage features into the
initial traces F_ini (fine textures and details). SedST: a 3x3 stride-2 convolution then three 3x3
convolutions of `sed` channels condense F_ini into the secondary traces F_sed (coarse borders, hands,
leaves). Every convolution is followed by batch norm and ReLU; the stride-2 one has `sed` channels.

    low: (B, cin, H/4, W/4), >= 0
    ini: (B, ini, H/4, W/4), >= 0   F_ini
    sed: (B, sed, H/8, W/8), >= 0   F_sed
"""
from __future__ import annotations

from torch import Tensor, nn

from models.msia.conv import ConvBNReLU


class SuperficialTraces(nn.Module):
    def __init__(self, cin: int, ini: int, sed: int):
        super().__init__()
        self.ini = nn.Sequential(ConvBNReLU(cin, ini), ConvBNReLU(ini, ini))
        self.sed = nn.Sequential(ConvBNReLU(ini, sed, stride=2), *[ConvBNReLU(sed, sed) for _ in range(3)])

    def forward(self, low: Tensor) -> tuple[Tensor, Tensor]:
        ini = self.ini(low)
        return ini, self.sed(ini)
