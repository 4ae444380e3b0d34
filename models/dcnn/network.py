"""The DCNN matting network (Cho, Tai and Kweon, ECCV 2016, seed 004): six convolutions, no stride.

    x:   (B, 5, H, W) float in [0, 1]: src RGB (display-referred, NOT yet normalised), then the
         closed-form alpha and the KNN alpha of the same frame; any H and W
    pha: (B, 1, H, W) float in [0, 1]

Inside `forward`:
    src (B, 3, H, W) in [0, 1] -> src / |src| (paper eq. 2: I / sqrt(r^2 + g^2 + b^2)), in [0, 1]
    hid (B, 5, H + 12, W + 12): [normalised src, alphas] zero-padded by 6 pixels (paper section 4.1)
    F1  9x9 conv 5 -> 64, no bias (paper: "we set the bias term equal to zero"), ReLU  -> (B, 64, H + 4, W + 4)
    F2..F5  four 1x1 conv 64 -> 64 with bias, ReLU ("nonlinear remapping")        -> (B, 64, H + 4, W + 4)
    F6  5x5 conv 64 -> 1, no bias (eq. 4: alpha = W6 * F5), linear                -> (B, 1, H, W)
    pha = clamp(F6, 0, 1) in value; the gradient passes as if unclamped (the paper's output is linear)

Every convolution is unpadded ("valid"): the receptive field is 9 + 5 - 1 = 13 pixels, so a 27x27
training patch gives a 15x15 output, and the 6-pixel zero border at test time ((27 - 15) / 2) gives
an alpha of the input's own size. The network has stride 1, so no padding to a stride is needed.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: input channels: RGB, closed-form alpha, KNN alpha
CHANNELS = 5


@dataclass(frozen=True)
class DCNNConfig:
    """width: feature channels of every hidden layer (paper: 64)
    remaps: number of 1x1 conv + ReLU layers (paper: 4, chosen over 1 and 8 in its Table 1)
    analysis_kernel: kernel of the first ("structure analysis") convolution, odd (paper: 9)
    reconstruction_kernel: kernel of the last ("reconstruction") convolution, odd (paper: 5)
    eps: smallest RGB magnitude divided by, so black pixels normalise to 0 instead of NaN (ours)
    passthrough: start as the mean of the two input alphas (ours, see `pass_through`); False: the
        paper's Caffe "xavier" filler everywhere
    """

    width: int = 64
    remaps: int = 4
    analysis_kernel: int = 9
    reconstruction_kernel: int = 5
    eps: float = 1e-3
    passthrough: bool = True


class DCNNNet(nn.Module):
    """x (B, 5, H, W) in [0, 1] -> pha (B, 1, H, W) in [0, 1]; see the module docstring."""

    def __init__(self, cfg: DCNNConfig = DCNNConfig()):
        super().__init__()
        if cfg.analysis_kernel % 2 == 0 or cfg.reconstruction_kernel % 2 == 0:
            raise ValueError("DCNN kernels must be odd so the output keeps the input's size")
        self.eps = cfg.eps
        self.pad = (cfg.analysis_kernel - 1) // 2 + (cfg.reconstruction_kernel - 1) // 2
        self.analysis = nn.Conv2d(CHANNELS, cfg.width, cfg.analysis_kernel, bias=False)
        layers: list[nn.Module] = []
        for _ in range(cfg.remaps):
            layers += [nn.Conv2d(cfg.width, cfg.width, 1), nn.ReLU()]
        self.remap = nn.Sequential(*layers)
        self.reconstruction = nn.Conv2d(cfg.width, 1, cfg.reconstruction_kernel, bias=False)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                xavier_caffe(m)
        if cfg.passthrough:
            pass_through(self)

    def forward(self, x: Tensor) -> Tensor:
        src, alphas = x[:, :3], x[:, 3:]
        mag = src.square().sum(1, keepdim=True).clamp_min(self.eps * self.eps).sqrt()
        hid = F.pad(torch.cat([src / mag, alphas], 1), [self.pad, self.pad, self.pad, self.pad])
        hid = self.remap(self.analysis(hid).relu())
        pha = self.reconstruction(hid)
        # Clamped value, identity gradient: a plain clamp stops all learning once an initial step
        # pushes every output below 0; this way training gets the paper's linear-output gradient.
        return pha + (pha.clamp(0.0, 1.0) - pha).detach()


def pass_through(net: DCNNNet) -> None:
    """Make the xavier-filled `net` output the mean of its two input alphas, exactly.

    Hidden channel 0 carries the closed-form alpha and channel 1 the KNN alpha, through the centre
    tap of the analysis kernel, identity rows of every 1x1 remap, and ReLUs that pass them (alphas are
    >= 0); the reconstruction reads 0.5 of each and 0 of the 62 others. Those others keep their random
    weights, and the gradient reaches them as soon as the reconstruction's zeros move: a
    zero-initialised residual branch.

    Why (ours, not the paper's): the paper trains 1e6 iterations of batch 128 from xavier weights.
    From xavier, our CPU budget (tens of thousands of steps) ended worse than either input (suite SAD
    9.77 against closed-form 8.14 and KNN 8.32), because most of the training went into relearning
    the inputs. Starting at their mean, every step refines a matte that is already as good as they are.
    """
    a, r = net.analysis.kernel_size[0] // 2, net.reconstruction.kernel_size[0] // 2
    with torch.no_grad():
        net.analysis.weight[:2].zero_()
        net.analysis.weight[0, 3, a, a] = 1.0
        net.analysis.weight[1, 4, a, a] = 1.0
        for conv in net.remap:
            if isinstance(conv, nn.Conv2d):
                conv.weight[:2].zero_()
                conv.bias[:2].zero_()
                conv.weight[0, 0] = 1.0
                conv.weight[1, 1] = 1.0
        net.reconstruction.weight.zero_()
        net.reconstruction.weight[0, :2, r, r] = 0.5


def xavier_caffe(conv: nn.Conv2d) -> None:
    """Caffe's "xavier" filler, which the paper names: uniform in +-sqrt(3 / fan_in), biases 0."""
    fan_in = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
    bound = (3.0 / fan_in) ** 0.5
    nn.init.uniform_(conv.weight, -bound, bound)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
