"""The part every deep model shares: a torch network behind the MattingModel contract.

A network is an export-friendly `torch.nn.Module` with ONE input tensor and ONE output tensor
(the convention Nuke's CatFileCreator accepts):

    x:     (B, C, H, W) float in [0, 1]: RGB, then the model's extra inputs as channels
           (trimap in {0, 0.5, 1}, or a clean plate's RGB), any H and W (the network pads to its
           stride and crops back)
    alpha: (B, 1, H, W) float in [0, 1]

A NetworkModel builds it (`build`), says how a prepared Sample becomes those channels (`pack`),
loads trained weights from models/weights/<name>.safetensors, and never runs without them: the
registry refuses such a model with a message saying how to train it.

`run` stacks samples of one size (and one `steps`) into one forward; samples of other sizes get their
own. The server builds each frame's input tensor in its CPU stage (`packed`: for dcnn that is where
the classical alphas are solved), so its device worker only moves tensors and runs the network.
"""
from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, fields
from functools import cached_property

import numpy as np
import torch
from torch import nn

from models.base import BACKGROUND, TRIMAP, MattingModel, Sample


@dataclass(frozen=True)
class Packed(Sample):
    """A prepared Sample with its network input already built (NetworkModel.packed):
    x: (C, H, W) float tensor in [0, 1], the channels of `pack`, on the CPU (pinned for a CUDA device)."""

    x: torch.Tensor | None = None


class NetworkModel(MattingModel):
    runs_on = "accelerator"

    def __init__(self):
        self.net: nn.Module | None = None
        self.device = "cpu"

    @property
    def weights(self) -> str:  # type: ignore[override]
        return f"{self.name}.safetensors"

    @abstractmethod
    def build(self) -> nn.Module:
        """A fresh network with the model's configuration (random weights)."""

    def pack(self, sample: Sample) -> np.ndarray:
        """A prepared Sample -> (H, W, C) float32 in [0, 1]: RGB, then trimap or plate as declared."""
        planes = [sample.image]
        if TRIMAP in self.inputs:
            planes.append(sample.trimap[..., None])
        if BACKGROUND in self.inputs:
            planes.append(sample.background)
        return np.concatenate(planes, axis=2).astype(np.float32, copy=False)

    def channels(self) -> int:
        """Channels of the network's input tensor (see `pack`)."""
        return 3 + (1 if TRIMAP in self.inputs else 0) + (3 if BACKGROUND in self.inputs else 0)

    @cached_property
    def _stats(self) -> tuple[int, float]:
        from torch.utils.flop_counter import FlopCounterMode

        # On the meta device: shapes only, no memory and no arithmetic, so listing models stays fast.
        with torch.device("meta"):
            net = self.build().eval()
            x = torch.zeros(1, self.channels(), 512, 512)
        params = sum(p.numel() for p in net.parameters())
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            net(x)
        return params, counter.get_total_flops() / 1e9

    def params(self) -> int:
        return self._stats[0]

    def gflops_512(self) -> float:
        return self._stats[1]

    def load(self, device: str) -> None:
        from safetensors.torch import load_file

        net = self.build()
        net.load_state_dict(load_file(str(self.weights_path())))
        self.use(net, device)

    def use(self, net: nn.Module, device: str) -> None:
        """Run with `net` on `device` (float16 on CUDA). `load` calls it with the trained network;
        benchmarks call it with an untrained one, since speed does not depend on the weights."""
        self.device = device
        self.net = net.eval().to(device)
        if device.startswith("cuda"):
            self.net.half()

    def dtype(self) -> torch.dtype:
        """What the loaded network computes in: float16 on CUDA (see `use`), else float32."""
        return torch.float16 if self.device.startswith("cuda") else torch.float32

    def packed(self, sample: Sample, device: str = "cpu") -> Packed:
        """The sample with its input tensor built for a network on `device` (CPU work, no weights needed):
        x (C, H, W) float16 in pinned memory for "cuda...", else float32."""
        hwc = torch.from_numpy(self.pack(sample))
        cuda = device.startswith("cuda")
        x = torch.empty((hwc.shape[2], hwc.shape[0], hwc.shape[1]), dtype=torch.float16 if cuda else torch.float32,
                        pin_memory=cuda and torch.cuda.is_available())
        x.copy_(hwc.permute(2, 0, 1))
        return Packed(**{f.name: getattr(sample, f.name) for f in fields(Sample)}, x=x)

    def _tensor(self, sample: Sample) -> torch.Tensor:
        """The sample's input (C, H, W) on the CPU: built by `packed` already, or packed now."""
        if isinstance(sample, Packed) and sample.x is not None:
            return sample.x
        return torch.from_numpy(self.pack(sample)).permute(2, 0, 1).contiguous()

    def run(self, batch: list[Sample]) -> list[np.ndarray]:
        """One (H, W) float32 alpha in [0, 1] per sample. Samples of the same size and `steps` go through
        the network as one (B, C, H, W) forward, the others in forwards of their own."""
        groups: dict[tuple, list[int]] = {}
        xs = [self._tensor(s) for s in batch]
        for i, (s, x) in enumerate(zip(batch, xs)):
            groups.setdefault((tuple(x.shape), s.steps), []).append(i)
        out: list[np.ndarray | None] = [None] * len(batch)
        with torch.inference_mode():
            for members in groups.values():
                parts = [xs[i].to(self.device, non_blocking=True) for i in members]
                x = (parts[0][None] if len(parts) == 1 else torch.stack(parts)).to(self.dtype())
                pha = self.infer(x, batch[members[0]])[:, 0].float().clamp_(0, 1).cpu().numpy()
                for i, a in zip(members, pha):
                    out[i] = a
        return out

    def infer(self, x: torch.Tensor, sample: Sample) -> torch.Tensor:
        """One forward of the loaded network: x (B, C, H, W) -> alpha (B, 1, H, W); `sample` is the
        first of the batch (all share its size and `steps`). Models with per-request settings (e.g.
        recursion steps) override it to read them from `sample`."""
        return self.net(x)

    def torchscript(self, net: nn.Module | None = None) -> torch.jit.ScriptModule:
        """The network (loaded one by default) as TorchScript: one input tensor, one output tensor."""
        return torch.jit.script((net or self.net).eval())
