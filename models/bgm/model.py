"""Background Matting (Sengupta et al. 2020) and its excited, recursive version (seed 000).

`BGM` ("bgm") and `BGMExcite` ("bgm_excite") take the image and a clean plate of the same shot. Both
networks take x: (B, 6, H, W) image RGB + plate RGB in [0, 1] and return alpha (B, 1, H, W) in [0, 1]
(network.py). The architecture is BGM's (docs/MODELS.md): one encoder per input, Context Switching,
residual trunk, alpha and foreground heads; `BGMExcite` adds one excitation layer
(models/excitation.py) after the first trunk block and runs `steps` recursive passes.

Configuration: `BGMConfig()` (ngf = 16, 4 trunk blocks, 1 block per head: 0.58 M parameters) trains
on a CPU; `generator.FULL` (ngf = 64, 7 trunk blocks, 3 per head) is the published size, 17.47 M
parameters here (the published 17.9 M counts the unused motion-cue encoder we leave out).

Choices the papers leave open, and what we chose:
- Soft segmentation S: the original uses a person segmenter; we derive S in-graph from the plate
  difference (segmentation.py, a torch port of the `difference` model), so the network's only
  input is image + plate and it exports as one TorchScript module.
- No motion cue M (the released BGM never used it) and no plate-perturbation input branch: B' is
  the plate as given (perturbing it is a training augmentation).
- Inputs scaled to [-1, 1] inside; the foreground output is tanh mapped to [0, 1] as (t + 1) / 2.
- Alpha as a correction of S (ours, `BGMConfig.residual`, heads.py): pha = clamp(S + tanh(...)),
  with the last convolution starting at zero, so the untrained network returns the plate key. The
  published head maps its tanh to [0, 1] like the foreground's (`generator.FULL` keeps that). Why:
  the published S is a coarse person mask, ours is a plate key that is already a matte (suite SAD
  15.4); trained from scratch for minutes on a CPU, the published head ended worse than its own
  input (bgm 19.95, bgm_excite 19.1-22.2). Started at S, training only has to learn what to change.
- Convolutions followed by BN have no bias; the 7x7 output convolutions have one. Encoders and
  output layers use reflection padding 3, residual blocks reflection padding 1, the strided and
  upsampling 3x3 convolutions zero padding 1. Upsampling is bilinear x2 with align_corners=False.
- Inputs of any size: replicate padding to a multiple of 4 (and at least 8 pixels), cropped back.
- Excitation map E is resized to the 1/4-resolution feature map by area interpolation; the
  intensity g is one unconstrained scalar, initialised to 0.5 (paper).
- Pseudo-GT: the paper's first excitation comes from a trained IndexNet; the project ships no such
  model for arbitrary subjects, so the first pass is excited by S (the same plate-difference
  segmentation). Training should use the same S as the curriculum's pseudo-GT (stage 3 of eq. 5),
  so what the network sees at test time is what it was trained towards.
- Recursive inference: `steps` = s counts the network passes: pass 1 uses E = S, pass k + 1 uses
  E = alpha of pass k (eq. 7). Default s = 2 (Table 1's best); a Sample's `steps` overrides it
  (0 = default). The encoders and Context Switching do not depend on E and run once per frame;
  the foreground head does not feed the recursion and is skipped by `run`; `run_foreground` runs it
  (on the last pass) for the unmixed foreground output.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from models.base import BACKGROUND, IMAGE, Sample
from models.bgm.generator import BGMConfig
from models.bgm.network import STEPS, BGMExciteNet, BGMNet
from models.network import NetworkModel


class _Foreground(NetworkModel):
    """The foreground head's output beside alpha (both BGM networks have one)."""

    def run_foreground(self, batch: list[Sample]) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """(alpha (H, W) float32 in [0, 1], foreground (H, W, 3) float32 in [0, 1] display space) per sample."""
        dtype = torch.float16 if self.device.startswith("cuda") else torch.float32
        out = []
        with torch.inference_mode():
            for s in batch:
                x = torch.from_numpy(self.pack(s)).permute(2, 0, 1)[None].to(self.device, dtype)
                y = self.infer_fgr(x, s)
                out.append((y["pha"][0, 0].float().clamp_(0, 1).cpu().numpy(),
                            y["fgr"][0].float().clamp_(0, 1).permute(1, 2, 0).contiguous().cpu().numpy()))
        return out

    def infer_fgr(self, x: torch.Tensor, sample: Sample) -> dict[str, torch.Tensor]:
        """One forward with the foreground head: x (1, 6, H, W) -> {"pha": (1, 1, H, W), "fgr": (1, 3, H, W)}."""
        return self.net.forward_train(x)


class BGM(_Foreground):
    name = "bgm"
    description = ("Background Matting (Sengupta et al. 2020): image + clean plate -> alpha; "
                   "soft segmentation derived from the plate difference.")
    inputs = (IMAGE, BACKGROUND)
    config: ClassVar[BGMConfig] = BGMConfig()

    def build(self) -> BGMNet:
        return BGMNet(self.config)


class BGMExcite(_Foreground):
    name = "bgm_excite"
    description = ("Background Matting with recursive excitation (seed 000): image + clean plate -> "
                   "alpha, refined over `steps` passes (default 2).")
    inputs = (IMAGE, BACKGROUND)
    config: ClassVar[BGMConfig] = BGMConfig()
    steps: ClassVar[int] = STEPS

    def build(self) -> BGMExciteNet:
        return BGMExciteNet(self.config, self.steps)

    def steps_for(self, sample: Sample) -> int:
        """The sample's recursive passes (0 = the model's default). Raises ValueError below 0."""
        if sample.steps < 0:
            raise ValueError(f"steps must be >= 0 (0 = default {self.steps}), got {sample.steps}")
        return sample.steps or self.steps

    def infer(self, x: torch.Tensor, sample: Sample) -> torch.Tensor:
        return self.net.forward_steps(x, self.steps_for(sample))

    def infer_fgr(self, x: torch.Tensor, sample: Sample) -> dict[str, torch.Tensor]:
        return self.net.forward_steps_fgr(x, self.steps_for(sample))
