"""A bgm / bgm_excite network as after training, for tests that need its output to depend on its inputs."""
from __future__ import annotations

import torch
from torch import nn


def trained_like(net: nn.Module) -> nn.Module:
    """`net` (BGMNet or BGMExciteNet) with the alpha head's last convolution random: untrained, the
    residual head outputs exactly S, so nothing before it would change the output or get a gradient."""
    with torch.no_grad():
        nn.init.normal_(net.gen.pha_head.out[1].weight, std=1.0)
    return net
