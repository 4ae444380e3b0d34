"""The training loop every model shares: recipe losses, periodic validation with the four metrics,
atomic safetensors checkpoints that resume exactly, curves and contact sheets, data parallelism.

Exact resume: the data an optimiser step sees depends only on (seed, step) -- the epoch's order is a
seeded permutation and every dataset item depends only on (seed, epoch, index) -- and the
checkpoint holds network, optimiser and RNG state, so a run killed and resumed ends with the same
weights as one that never stopped.

Several processes (`torchrun --nproc_per_node N`) split each batch between them and average their
gradients with DistributedDataParallel (gloo on CPU, nccl on GPU); rank 0 writes the files.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from models import metrics
from training import checkpoint, plots
from training.recipes import Recipe


@dataclass
class TrainConfig:
    model: str
    out: str
    steps: int = 300
    batch: int = 4
    lr: float = 0.0  # 0: the recipe's (the paper's) learning rate
    seed: int = 0
    val_every: int = 100
    save_every: int = 50
    val_items: int = 8


@dataclass
class StepReport:
    step: int
    total: int
    loss: float
    parts: dict[str, float]
    steps_per_s: float


class _LossModule(nn.Module):
    """The network with its recipe's loss as forward, so DistributedDataParallel sees every call."""

    def __init__(self, net: nn.Module, recipe: Recipe):
        super().__init__()
        self.net, self.recipe = net, recipe

    def forward(self, batch: dict, progress: float):
        return self.recipe.loss(self.net, batch, progress)


def collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


class Trainer:
    def __init__(self, cfg: TrainConfig, net: nn.Module, recipe: Recipe, train_set, val_set,
                 on_step: Callable[[StepReport], None] | None = None,
                 on_validate: Callable[[int, dict], None] | None = None):
        self.cfg, self.net, self.recipe = cfg, net, recipe
        self.train_set, self.val_set = train_set, val_set
        self.on_step, self.on_validate = on_step, on_validate
        #: called after each validation with (step, metrics); True ends the run there (early stopping)
        self.should_stop: Callable[[int, dict], bool] | None = None
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        self.world = dist.get_world_size() if dist.is_initialized() else 1
        if cfg.batch % self.world:
            raise ValueError(f"batch {cfg.batch} does not split over {self.world} processes")
        self.opt = recipe.optimizer(net, cfg.lr or None)
        self.step_fn = _LossModule(net, recipe)
        if self.world > 1:
            self.step_fn = nn.parallel.DistributedDataParallel(self.step_fn)
        self.history: dict[str, list] = {"loss": [], "metrics": []}
        self.seconds = 0.0  # wall time spent training this run, summed over resumed processes

    # -- files ---------------------------------------------------------------------------------------

    def path(self, name: str) -> str:
        return os.path.join(self.cfg.out, name)

    @property
    def checkpoint_path(self) -> str:
        return self.path("checkpoint.safetensors")

    def save(self, step: int) -> None:
        if self.rank == 0:
            checkpoint.save(self.checkpoint_path, self.net, self.opt, {"step": step, "history": self.history,
                                                                     "seconds": self.seconds, "config": asdict(self.cfg)})

    def resume(self) -> int:
        """Load the checkpoint if there is one; the step to continue from."""
        if not os.path.exists(self.checkpoint_path):
            return 0
        state = checkpoint.load(self.checkpoint_path, self.net, self.opt)
        self.history = state["history"]
        self.seconds = state["seconds"]
        return state["step"]

    # -- the loop ----------------------------------------------------------------------------------------

    def batch_indices(self, step: int) -> list[int]:
        """This process's share of the items of optimiser step `step` (same for any world size)."""
        per_epoch = max(1, len(self.train_set) // self.cfg.batch)
        epoch, k = divmod(step, per_epoch)
        gen = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.train_set), generator=gen)
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(epoch)
        idx = order[k * self.cfg.batch:(k + 1) * self.cfg.batch].tolist()
        return idx[self.rank::self.world]

    def run(self, resume: bool = False) -> dict:
        os.makedirs(self.cfg.out, exist_ok=True)
        start = self.resume() if resume else 0
        t0, done = time.perf_counter(), 0
        for step in range(start, self.cfg.steps):
            t = time.perf_counter()
            self.net.train()
            batch = collate([self.train_set[i] for i in self.batch_indices(step)])
            loss, parts = self.step_fn(batch, step / self.cfg.steps)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            done += 1
            self.history["loss"].append([step + 1, loss.item()])
            if self.on_step:
                self.on_step(StepReport(step + 1, self.cfg.steps, self.history["loss"][-1][1], parts,
                                        done / (time.perf_counter() - t0)))
            last = step + 1 == self.cfg.steps
            stop = False
            if (step + 1) % self.cfg.val_every == 0 or last:
                m = self.validate(step + 1)
                stop = bool(m) and self.should_stop is not None and self.should_stop(step + 1, m)
            self.seconds += time.perf_counter() - t
            if (step + 1) % self.cfg.save_every == 0 or last or stop:
                self.save(step + 1)
            if stop:
                break
        digests = [self.digest()]
        if self.world > 1:  # batch-norm statistics: every process keeps rank 0's
            for buf in self.net.buffers():
                dist.broadcast(buf, 0)
            digests = [None] * self.world
            dist.all_gather_object(digests, self.digest())
        return {"steps": self.cfg.steps, "seconds": round(self.seconds, 1), "digests": digests, "loss": self.history["loss"][-1][1] if self.history["loss"] else None,
                "metrics": self.history["metrics"][-1] if self.history["metrics"] else None}

    def digest(self) -> str:
        """SHA-256 of the network's weights: the same in every process of a data-parallel run."""
        h = hashlib.sha256()
        for k, v in sorted(self.net.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    @torch.no_grad()
    def validate(self, step: int) -> dict:
        """Mean SAD / MSE / Grad / Conn over the validation items (DIM conventions), a contact sheet
        and the curves PNG. Rank 0 only."""
        if self.rank != 0 or self.val_set is None:
            return {}
        self.net.eval()
        scores, rows = [], []
        for i in range(min(self.cfg.val_items, len(self.val_set))):
            item = collate([self.val_set[i]])
            pred = self.recipe.predict(self.net, item)[0, 0].clamp(0, 1).numpy()
            true, tri = item["pha"][0, 0].numpy(), item["tri"][0, 0].numpy()
            scores.append(metrics.evaluate(pred, true, np.rint(tri * 255).astype(np.uint8)))
            rows.append((item["src"][0].permute(1, 2, 0).numpy(), pred, true))
        mean = {k: float(np.mean([s[k] for s in scores])) for k in scores[0]}
        self.history["metrics"].append({"step": step, **mean})
        os.makedirs(self.path("sheets"), exist_ok=True)
        plots.contact_sheet(self.path(f"sheets/step_{step:06d}.png"), rows[:4])
        series = {"loss": self.history["loss"]}
        for k in mean:
            series[k] = [(m["step"], m[k]) for m in self.history["metrics"]]
        plots.curves(self.path("curves.png"), series)
        with open(self.path("metrics.jsonl"), "a") as f:
            f.write(json.dumps({"step": step, **mean}) + "\n")
        if self.on_validate:
            self.on_validate(step, mean)
        return mean
