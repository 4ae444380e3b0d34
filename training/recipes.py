"""How each model trains: its inputs from a batch, its losses and their weights, its optimiser, as
each seed paper writes them. A batch is the dict of (B, C, H, W) tensors training.data makes
(src, bgr, plate, tri, pha, fgr; sRGB / alpha in [0, 1]).

`progress` is the fraction of the run done, in [0, 1]: the schedules (excitation curriculum, MSIA's
loss weights) are defined on it so they scale with the run's length.

A fine-tuned model trains with the recipe of the catalogue model it is built on (`base_of`).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

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


class Diverged(ValueError):
    """The weights being trained no longer give finite numbers (too high a learning rate)."""


#: the cosine schedule's last learning rate, as a fraction of the first
LR_FLOOR = 0.05


class Recipe:
    """Base: the network's single-input alpha, L1 loss, Adam, the cosine schedule."""

    lr = 1e-4
    betas = (0.9, 0.999)

    def lr_factor(self, progress: float) -> float:
        """The learning rate at `progress` (the fraction of the run's planned steps done, in [0, 1)) as
        a fraction of `lr`: a cosine from 1 down to LR_FLOOR at the last step. Ours: the papers train
        for days, most at a fixed rate; over a run of minutes the decay is what settles the weights
        (at a fixed rate our validation SAD swung +-10 % between checks). A function of the step alone,
        so a resumed run follows it exactly."""
        return LR_FLOOR + (1 - LR_FLOOR) * 0.5 * (1 + math.cos(math.pi * progress))

    def inputs(self, batch: Batch) -> Tensor:
        return batch["src"]

    def training_set(self, items: Dataset, seed: int) -> Dataset:
        """What the optimiser steps draw from, given training items (composites of training.data, crops
        of a shot): the items themselves."""
        return items

    def predict(self, net: nn.Module, batch: Batch) -> Tensor:
        """(B, 1, H, W) alpha for validation. Raises Diverged when it is not finite."""
        pha = net(self.inputs(batch))
        if not bool(torch.isfinite(pha).all()):
            raise Diverged("the network's alpha is no longer a finite number: the training diverged "
                           "(try a lower learning rate)")
        return pha

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
    (The paper trains with SGD 0.01 poly on 3 GPUs; on a CPU we keep Adam, with the paper's poly decay.)"""

    lr = 1e-3

    def __init__(self, epochs: float = 20):
        self.first_epoch = 1.0 / epochs  # the paper's 20 epochs: its first epoch is 1/20 of the run

    def lr_factor(self, progress: float) -> float:
        """The paper's "poly" schedule, (1 - progress) ** 0.9."""
        return (1.0 - progress) ** 0.9

    def loss(self, net, batch, progress):
        pha = net.forward_train(batch["src"])["pha"]
        lam = 0.1 if progress < self.first_epoch else 0.025
        l1, ssim = losses.l1(pha, batch["pha"]), 1 - losses.ssim(pha, batch["pha"])
        return l1 + lam * ssim, {"l1": l1.item(), "ssim": ssim.item(), "lambda": lam}


class DCNN(Recipe):
    """Seed 004: Euclidean loss between the network's 15x15 output and the ground truth, on 27x27
    patches (training.data.patches: RGB + closed-form + KNN alpha, class-balanced). The network pads
    6 px inside, so its central 15x15 outputs are exactly the unpadded ones the paper trains.
    Validation runs on whole composites, with the classical alphas solved per image (models/classical).
    Adam at the paper's rate, 1e-5 (the paper: SGD, momentum 0.9): from the network's start at the mean
    of its inputs, 1e-4 drifted away from it (suite SAD 8.31 after 20,000 steps, the start 7.77), 1e-5
    refines it (7.73, with MSE 0.0222 against closed form's 0.0283 and KNN's 0.0243)."""

    lr = 1e-5

    def training_set(self, items: Dataset, seed: int) -> Dataset:
        """Class-balanced patches (training.data.patches) of up to N_IMAGES (64) of the items (composites,
        or the crops of a fine-tune's shot), their classical alphas solved once per item."""
        from training.data.patches import N_IMAGES, DCNNPatches

        return DCNNPatches(items, n_images=min(len(items), N_IMAGES), seed=seed)

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


def base_of(model: str) -> str:
    """The catalogue model `model` is built on: itself for a catalogue model, else the `base` named by
    its weights card (a fine-tune's, models/store.py's search path), followed through fine-tunes of
    fine-tunes. Raises ValueError for a name that is neither, or cards that name each other."""
    from models import store
    from models.catalogue import MODELS

    chain = [model]
    while chain[-1] not in MODELS:
        weights = store.find(f"{chain[-1]}{store.WEIGHTS_SUFFIX}")
        try:
            card = json.loads(weights.with_suffix(store.CARD_SUFFIX).read_text()) if weights else None
        except (OSError, ValueError):
            card = None
        base = card.get("base") if isinstance(card, dict) else None
        if not isinstance(base, str) or not base:
            raise ValueError(f"unknown model {chain[-1]!r}: not a catalogue model, and no fine-tune card on the "
                             f"weights path names its base")
        if base in chain:
            raise ValueError(f"the weights cards of {' -> '.join(chain + [base])} name each other as base")
        chain.append(base)
    return chain[-1]


def recipe(model: str) -> Recipe:
    """The training recipe of `model`, a catalogue model or a fine-tune of one (see `base_of`)."""
    base = base_of(model)
    if base not in RECIPES:
        built = f" (built on {base})" if base != model else ""
        raise ValueError(f"no training recipe for {model!r}{built}; trainable models: {', '.join(sorted(RECIPES))}")
    return RECIPES[base]()
