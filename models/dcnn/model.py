"""DCNN matting (Cho, Tai and Kweon, "Natural Image Matting Using Deep Convolutional Neural Networks",
ECCV 2016, seed 004) behind the MattingModel contract.

The network refines two classical mattes: it reads the image and the alphas of closed-form matting
(local) and KNN matting (nonlocal), and learns where to trust which. The server model takes
(image, trimap); `pack` runs the project's classical models on them and gives the network

    x: (H, W, 5) float32 in [0, 1]: src RGB, closed-form alpha, KNN alpha

so the exported TorchScript module (`torchscript()`) takes those 5 channels, not a trimap: the
classical solvers (models/classical: sparse systems, a k-d tree search on a CPU) cannot run inside
TorchScript. A host that runs the exported module must compute both alphas itself. The network
normalises the RGB itself (see network.py), so the 5 channels are plain RGB in [0, 1] plus the two
alphas.

Choices the paper leaves open, and what we do:
- Initial alphas: the paper uses the original authors' code with default parameters. We use the
  project's closed-form and KNN solvers (models/classical: pymatting's systems, 3x3 windows, epsilon
  1e-7; KNN on RGB + position features with 20 and 10 neighbours, where Chen et al. use HSV).
- Normalisation I / |I| is computed on display-referred sRGB in [0, 1], inside the network; the
  magnitude is clamped below at 1e-3, so black pixels give 0 instead of NaN.
- The 6-pixel zero padding is applied to all 5 channels after normalisation.
- Biases: the first layer has none (stated), the reconstruction layer has none (eq. 4 writes none),
  the 1x1 layers have biases (Caffe's default; not stated).
- The paper's output is linear and unbounded; we clamp it to [0, 1].
- Known trimap pixels: the paper does not say (the benchmark it reports on scores only the unknown
  region). We paste the trimap's foreground and background into the final alpha (`run`), so a known
  pixel is always exactly 0 or 1.
- Initialisation: Caffe's "xavier" (uniform, fan-in scaled), zero biases, then (ours) two hidden
  channels set to carry the input alphas so that the untrained network outputs their mean
  (network.pass_through; DCNNConfig(passthrough=False) is the paper's start).
- The extension with comprehensive-sampling alphas as a third input is not implemented (the project
  has no comprehensive sampling solver).

Training, as the paper does it (for the trainer, not used here): 27x27 patches of the 5 channels,
Euclidean (L2) loss on the centre 15x15 of the output (the part whose receptive field lies inside
the patch; equal to the paper's unpadded output), SGD lr 1e-5, momentum 0.9, batch 128, 1e6
iterations; patches balanced over 20 clusters of (non-zero alpha count, non-zero alpha gradient
count); augmentation by new backgrounds, rotation, reflection and resizing. The closed-form and KNN
alphas of every training image must be computed once, before patches are cut.

Sizes: 44,160 parameters, about 23.4 GFLOPs at 512x512. The paper's network is already small, so
the default configuration is the paper's one (DCNNConfig()) on CPU and accelerator alike; the time
goes into the classical solvers (`mattebox bench classical` has their figures).
"""
from __future__ import annotations


import numpy as np
from torch import nn

from models.base import IMAGE, TRIMAP, Sample
from models.classical.closed_form import closed_form
from models.classical.knn import knn
from models.dcnn.network import CHANNELS, DCNNConfig, DCNNNet
from models.network import NetworkModel


class DCNN(NetworkModel):
    name = "dcnn"
    description = ("Deep CNN matting (Cho et al. 2016): a small network that merges closed-form and "
                   "KNN mattes; trimap-based, as slow as KNN matting.")
    inputs = (IMAGE, TRIMAP)
    config = DCNNConfig()

    def build(self) -> nn.Module:
        return DCNNNet(self.config)

    def pack(self, sample: Sample) -> np.ndarray:
        """A prepared Sample -> (H, W, 5) float32 in [0, 1]: src RGB, closed-form alpha, KNN alpha,
        both solved on the network's device (models/classical)."""
        alphas = [solve(sample.image, sample.trimap, self.device).alpha for solve in (closed_form, knn)]
        return np.dstack([sample.image, *alphas]).astype(np.float32, copy=False)

    def run(self, batch: list[Sample]) -> list[np.ndarray]:
        """The network's alpha in the unknown region, the trimap's 0 or 1 everywhere else."""
        phas = super().run(batch)
        return [np.where(s.trimap == 0.5, pha, s.trimap).astype(np.float32) for s, pha in zip(batch, phas)]

    def channels(self) -> int:
        return CHANNELS  # RGB + closed-form alpha + KNN alpha (see `pack`), not RGB + trimap
