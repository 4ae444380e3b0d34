"""How each model trains: its inputs from a batch, its losses and their weights, its optimiser, as
each seed paper writes them. A batch is the dict of (B, C, H, W) tensors training.data makes
(src, bgr, plate, tri, pha, fgr; sRGB / alpha in [0, 1]).

`progress` is the fraction of the run done, in [0, 1]: the schedules (excitation curriculum, MSIA's
loss weights) are defined on it so they scale with the run's length.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from training import losses

Batch = dict[str, Tensor]


@dataclass(frozen=True)
class Curriculum:
    """Seed 000 eqs. 5-6: excitation map = GT until N1, a linear blend GT -> pseudo-GT until N2,
    pseudo-GT after. The paper's N1 = 2, N2 = 8 epochs are taken relative to a `reference`-epoch run
    (our assumption: the paper does not give its total), so a run of any length keeps the three
    stages in proportion."""

    n1: float = 2
    n2: float = 8
    reference: float = 10

    def beta(self, progress: float) -> float:
        """Weight of the GT in the excitation map (1 = GT only, 0 = pseudo-GT only)."""
        epoch = progress * self.reference
        if epoch <= self.n1:
            return 1.0
        if epoch <= self.n2:
            return 1.0 - (epoch - self.n1) / (self.n2 - self.n1)
        return 0.0


class Recipe:
    """Base: the network's single-input alpha, L1 loss, Adam."""

    lr = 1e-4
    betas = (0.9, 0.999)

    def inputs(self, batch: Batch) -> Tensor:
        return batch["src"]

    def predict(self, net: nn.Module, batch: Batch) -> Tensor:
        """(B, 1, H, W) alpha for validation."""
        return net(self.inputs(batch))

    def loss(self, net: nn.Module, batch: Batch, progress: float) -> tuple[Tensor, dict[str, float]]:
        pha = net(self.inputs(batch))
        loss = losses.l1(pha, batch["pha"])
        return loss, {"l1": loss.item()}

    def optimizer(self, net: nn.Module, lr: float | None) -> torch.optim.Optimizer:
        return torch.optim.Adam(net.parameters(), lr=lr or self.lr, betas=self.betas)


class BGM(Recipe):
    """Seed 000 eq. 8: L1(alpha) + L1(grad alpha) + 2 L1(F where alpha > 0) + L1(composite); Adam 1e-4."""

    def inputs(self, batch: Batch) -> Tensor:
        return torch.cat([batch["src"], batch["plate"]], 1)

    def terms(self, out: dict[str, Tensor], batch: Batch) -> tuple[Tensor, dict[str, float]]:
        pha, fgr, true = out["pha"], out["fgr"], batch["pha"]
        parts = {"alpha": losses.l1(pha, true), "grad": losses.gradient_l1(pha, true),
                 "fgr": 2 * losses.l1(fgr, batch["fgr"], (true > 0).float()),
                 "comp": losses.composite_l1(pha, fgr, batch["bgr"], batch["src"])}
        return sum(parts.values()), {k: v.item() for k, v in parts.items()}

    def loss(self, net, batch, progress):
        return self.terms(net.forward_train(self.inputs(batch)), batch)


class BGMExcite(BGM):
    """BGM's loss with the excitation map of the curriculum. Pseudo-GT: the network's own
    plate-difference soft segmentation, the map recursive inference starts from."""

    curriculum = Curriculum()

    def loss(self, net, batch, progress):
        from models.bgm.segmentation import soft_segmentation

        beta = self.curriculum.beta(progress)
        exc = batch["pha"]
        if beta < 1:
            pseudo = soft_segmentation(batch["src"], batch["plate"])
            exc = beta * batch["pha"] + (1 - beta) * pseudo
        total, parts = self.terms(net.forward_train(self.inputs(batch), exc), batch)
        return total, {**parts, "beta": beta}


class Lightweight(Recipe):
    """Seed 003: multi-level cross-entropy on the 3-class trimap (weight 1) + L1 weighted 1 in the
    unknown region and 0.1 elsewhere (weight 5) + gradient loss (weight 0.5); Adam 4e-4, betas (0.5, 0.999)."""

    lr = 4e-4
    betas = (0.5, 0.999)

    def loss(self, net, batch, progress):
        out = net.forward_train(batch["src"])
        true, tri = batch["pha"], batch["tri"]
        labels = losses.trimap_classes(tri)
        ce = sum(nn.functional.cross_entropy(logits, labels) for logits in out["tri_logits"])
        weight = losses.unknown_weight(tri)
        parts = {"ce": ce, "l1": 5 * losses.l1(out["pha"], true, weight),
                 "grad": 0.5 * losses.gradient_l1(out["pha"], true, weight)}
        return sum(parts.values()), {k: v.item() for k, v in parts.items()}


class MSIA(Recipe):
    """Seed 002 eq. 8: L1 + lambda * (1 - SSIM), lambda = 0.1 in the first epoch and 0.025 after.
    (The paper trains with SGD 0.01 poly on 3 GPUs; on a CPU we keep Adam, documented.)"""

    lr = 1e-3

    def __init__(self, epochs: float = 20):
        self.first_epoch = 1.0 / epochs  # the paper's 20 epochs: its first epoch is 1/20 of the run

    def loss(self, net, batch, progress):
        pha = net.forward_train(batch["src"])["pha"]
        lam = 0.1 if progress < self.first_epoch else 0.025
        l1, ssim = losses.l1(pha, batch["pha"]), 1 - losses.ssim(pha, batch["pha"])
        return l1 + lam * ssim, {"l1": l1.item(), "ssim": ssim.item(), "lambda": lam}


class DCNN(Recipe):
    """Seed 004: Euclidean loss between the network's 15x15 output and the ground truth, on 27x27
    patches (training.data.patches: RGB + closed-form + KNN alpha, class-balanced). The network pads
    6 px inside, so its central 15x15 outputs are exactly the unpadded ones the paper trains.
    Validation runs on whole composites, with the classical alphas solved per image (pymatting)."""

    lr = 1e-4

    def inputs(self, batch: Batch) -> Tensor:
        from models.base import Sample
        from models.dcnn.model import DCNN as Model

        model = Model()
        planes = []
        for src, tri in zip(batch["src"], batch["tri"]):
            sample = Sample(image=src.permute(1, 2, 0).cpu().numpy(), trimap=tri[0].cpu().numpy())
            try:
                packed = model.pack(sample)
            except ValueError:  # a crop without both known classes: the solvers have nothing to go on,
                t = sample.trimap[..., None]  # so their inputs are the trimap itself (0.5 unknown)
                packed = np.concatenate([sample.image, t, t], axis=2)
            planes.append(torch.from_numpy(np.ascontiguousarray(packed, np.float32)).permute(2, 0, 1))
        return torch.stack(planes).to(batch["src"].device)  # solved on the CPU, back to the batch's device

    def loss(self, net, batch, progress):
        from training.data.patches import MARGIN, OUT

        pha = net(batch["x"])[..., MARGIN:MARGIN + OUT, MARGIN:MARGIN + OUT]
        loss = losses.l2(pha, batch["pha"])
        return loss, {"l2": loss.item()}


RECIPES: dict[str, type[Recipe]] = {"bgm": BGM, "bgm_excite": BGMExcite, "lightweight": Lightweight,
                                    "lightweight_octave": Lightweight, "msia": MSIA, "dcnn": DCNN}


def recipe(model: str) -> Recipe:
    if model not in RECIPES:
        raise ValueError(f"no training recipe for {model!r}; trainable models: {', '.join(sorted(RECIPES))}")
    return RECIPES[model]()
