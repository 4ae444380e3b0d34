"""The training loop every model shares: recipe losses, periodic validation with the four metrics,
the best validation weights kept, atomic safetensors checkpoints that resume exactly, curves and
contact sheets, data parallelism, the device and its mixed precision.

Exact resume: the data an optimiser step sees depends only on (seed, step) -- the epoch's order is a
seeded permutation and every dataset item depends only on (seed, epoch, index) -- and the
checkpoint holds network, optimiser and RNG state, so a run killed and resumed ends with the same
weights as one that never stopped. DataLoader workers keep it: the batch sampler yields step s's
(epoch, index) pairs, and each worker's copy of the dataset is set to the item's epoch before it
makes it, so how many workers load the data changes nothing but the speed. (On CUDA the data is as
exact; the arithmetic is as deterministic as cuDNN's kernels, which is not bitwise.)

Device (TrainConfig.device, training/device.py): the network and every batch live there. On CUDA:
batches come pinned and are copied without blocking, the steps run under torch.autocast in bf16
where the GPU has it, else fp16 with a GradScaler (TrainConfig.amp = False: float32); weights stay
float32. Checkpoints and weights files are written from CPU copies and load on either device.

Several processes (`torchrun --nproc_per_node N`) split each batch between them and average their
gradients with DistributedDataParallel (gloo on CPU, nccl with one GPU per process on CUDA); rank 0
writes the files.
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
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from models import metrics
from training import checkpoint, device, plots
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
    device: str = "auto"  # auto | cpu | cuda | cuda:N (training/device.py)
    #: data-loading worker processes; None: min(4, cores per process - 1) on CUDA, so the GPU is not
    #: starved, and 0 on the CPU, where workers would take cores from the training's own threads
    workers: int | None = None
    amp: bool = True  # mixed precision on CUDA (bf16 where the GPU has it, else fp16); the CPU trains in fp32
    #: a time budget (0: none): the run ends at the first step boundary past it, validated and saved like
    #: a last step; schedules keep their planned length (`steps`), so size `steps` to fit the budget
    minutes: float = 0.0


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


class _AtEpoch(Dataset):
    """A dataset indexed by (epoch, i): set to the epoch first (datasets with set_epoch), then item i.
    Every DataLoader worker holds its own copy, so each sets its own epoch."""

    def __init__(self, data):
        self.data, self.epoch = data, None

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, i = key
        if epoch != self.epoch and hasattr(self.data, "set_epoch"):
            self.data.set_epoch(epoch)
        self.epoch = epoch
        return self.data[i]


class _Steps(Sampler):
    """Batch sampler: this process's (epoch, index) pairs of each optimiser step from `start` on."""

    def __init__(self, trainer: "Trainer", start: int):
        self.trainer, self.start = trainer, start

    def __len__(self) -> int:
        return self.trainer.cfg.steps - self.start

    def __iter__(self):
        for step in range(self.start, self.trainer.cfg.steps):
            yield [(self.trainer.epoch(step), i) for i in self.trainer.batch_indices(step)]


def collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def default_workers(dev: torch.device) -> int:
    """TrainConfig.workers' default: min(4, cores per process - 1) on CUDA, 0 on the CPU."""
    if dev.type != "cuda":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(0, min(4, cores // int(os.environ.get("LOCAL_WORLD_SIZE", "1")) - 1))


class Trainer:
    def __init__(self, cfg: TrainConfig, net: nn.Module, recipe: Recipe, train_set, val_set,
                 on_step: Callable[[StepReport], None] | None = None,
                 on_validate: Callable[[int, dict], None] | None = None):
        self.cfg, self.recipe = cfg, recipe
        self.train_set, self.val_set = train_set, val_set
        self.on_step, self.on_validate = on_step, on_validate
        #: called after each validation with (step, metrics); True ends the run there (early stopping)
        self.should_stop: Callable[[int, dict], bool] | None = None
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        self.world = dist.get_world_size() if dist.is_initialized() else 1
        if cfg.batch % self.world:
            raise ValueError(f"batch {cfg.batch} does not split over {self.world} processes")
        self.device = device.resolve(cfg.device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.amp = device.amp_dtype(self.device) if cfg.amp else None
        self.precision = device.precision(self.amp)
        self.workers = default_workers(self.device) if cfg.workers is None else cfg.workers
        self.net = net.to(self.device)
        self.opt = recipe.optimizer(self.net, cfg.lr or None)
        self.base_lrs = [g["lr"] for g in self.opt.param_groups]  # the schedule scales these (recipe.lr_factor)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == torch.float16)
        self.step_fn = _LossModule(self.net, recipe)
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.step_fn = nn.parallel.DistributedDataParallel(self.step_fn, device_ids=ids)
        self.history: dict[str, list] = {"loss": [], "metrics": []}
        #: the best validation so far: {"step", "sad", "mse", "grad", "conn"}; its weights in best_path
        self.best: dict | None = None
        self.seconds = 0.0  # wall time spent training this run, summed over resumed processes

    # -- files ---------------------------------------------------------------------------------------

    def path(self, name: str) -> str:
        return os.path.join(self.cfg.out, name)

    @property
    def checkpoint_path(self) -> str:
        return self.path("checkpoint.safetensors")

    @property
    def best_path(self) -> str:
        """The weights of the lowest validation SAD seen (network only, as the registry serves them)."""
        return self.path("best.safetensors")

    def save(self, step: int) -> None:
        if self.rank == 0:
            checkpoint.save(self.checkpoint_path, self.net, self.opt,
                            {"step": step, "history": self.history, "seconds": self.seconds, "best": self.best,
                             "scaler": self.scaler.state_dict(), "config": asdict(self.cfg)})

    def resume(self) -> int:
        """Load the checkpoint if there is one; the step to continue from."""
        if not os.path.exists(self.checkpoint_path):
            return 0
        state = checkpoint.load(self.checkpoint_path, self.net, self.opt)
        self.history = state["history"]
        self.seconds = state["seconds"]
        self.best = state.get("best")
        if state.get("scaler"):  # empty when the run it continues did not scale (CPU, bf16, fp32)
            self.scaler.load_state_dict(state["scaler"])
        return state["step"]

    def restore_best(self) -> dict | None:
        """Put the best validation weights into the network; their record ({"step", "sad", ...}), or
        None when nothing was validated (the network keeps the last step's weights)."""
        if self.best is None:
            return None
        self.net.load_state_dict(load_file(self.best_path))
        return self.best

    # -- the loop ----------------------------------------------------------------------------------------

    def epoch(self, step: int) -> int:
        return step // max(1, len(self.train_set) // self.cfg.batch)

    def batch_indices(self, step: int) -> list[int]:
        """This process's share of the items of optimiser step `step` (same for any world size), items
        of the dataset at epoch `epoch(step)`."""
        per_epoch = max(1, len(self.train_set) // self.cfg.batch)
        epoch, k = divmod(step, per_epoch)
        gen = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.train_set), generator=gen)
        idx = order[k * self.cfg.batch:(k + 1) * self.cfg.batch].tolist()
        return idx[self.rank::self.world]

    def loader(self, start: int) -> DataLoader:
        """Collated batches of steps start .. steps - 1 on the CPU (pinned for CUDA), made by
        `self.workers` processes (0: this one). Its own generator: the global RNG is left alone."""
        return DataLoader(_AtEpoch(self.train_set), batch_sampler=_Steps(self, start), num_workers=self.workers,
                          collate_fn=collate, pin_memory=self.device.type == "cuda", generator=torch.Generator())

    def to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def run(self, resume: bool = False) -> dict:
        os.makedirs(self.cfg.out, exist_ok=True)
        start = self.resume() if resume else 0
        t0, done = time.perf_counter(), 0
        batches = iter(self.loader(start))
        for step in range(start, self.cfg.steps):
            t = time.perf_counter()
            self.net.train()
            batch = self.to_device(next(batches))
            with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
                loss, parts = self.step_fn(batch, step / self.cfg.steps)
            self.opt.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            factor = self.recipe.lr_factor(step / self.cfg.steps)
            for group, lr in zip(self.opt.param_groups, self.base_lrs):
                group["lr"] = lr * factor
            self.scaler.step(self.opt)
            self.scaler.update()
            done += 1
            self.history["loss"].append([step + 1, loss.item()])
            if self.on_step:
                self.on_step(StepReport(step + 1, self.cfg.steps, self.history["loss"][-1][1], parts,
                                        done / (time.perf_counter() - t0)))
            last = step + 1 == self.cfg.steps or self.out_of_time(time.perf_counter() - t)
            stop = False
            if (step + 1) % self.cfg.val_every == 0 or last:
                m = self.validate(step + 1)
                stop = bool(m) and self.should_stop is not None and self.should_stop(step + 1, m)
            self.seconds += time.perf_counter() - t
            if (step + 1) % self.cfg.save_every == 0 or last or stop:
                self.save(step + 1)
            if stop or last:
                break
        del batches  # its worker processes end with it
        digests = [self.digest()]
        if self.world > 1:  # batch-norm statistics: every process keeps rank 0's
            for buf in self.net.buffers():
                dist.broadcast(buf, 0)
            digests = [None] * self.world
            dist.all_gather_object(digests, self.digest())
        done_steps = self.history["loss"][-1][0] if self.history["loss"] else start
        return {"steps": self.cfg.steps, "steps_done": done_steps, "seconds": round(self.seconds, 1), "digests": digests,
                "loss": self.history["loss"][-1][1] if self.history["loss"] else None,
                "metrics": self.history["metrics"][-1] if self.history["metrics"] else None, "best": self.best,
                "device": str(self.device), "precision": self.precision, "workers": self.workers}

    def out_of_time(self, step_seconds: float) -> bool:
        """Whether the time budget (cfg.minutes) is spent, counting the step just run; the same answer
        in every process of a data-parallel run (rank 0's clock decides)."""
        if not self.cfg.minutes:
            return False
        spent = torch.tensor([float(self.seconds + step_seconds >= 60 * self.cfg.minutes)], device=self.device)
        if self.world > 1:
            dist.broadcast(spent, 0)
        return bool(spent.item())

    def digest(self) -> str:
        """SHA-256 of the network's weights: the same in every process of a data-parallel run."""
        h = hashlib.sha256()
        for k, v in sorted(self.net.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    @torch.no_grad()
    def validate(self, step: int) -> dict:
        """Mean SAD / MSE / Grad / Conn over the validation items (DIM conventions), in float32, a
        contact sheet and the curves PNG; the weights kept in best_path when the SAD is the lowest
        yet. Rank 0 only."""
        if self.rank != 0 or self.val_set is None:
            return {}
        self.net.eval()
        scores, rows = [], []
        for i in range(min(self.cfg.val_items, len(self.val_set))):
            item = collate([self.val_set[i]])
            pred = self.recipe.predict(self.net, self.to_device(item))[0, 0].float().clamp(0, 1).cpu().numpy()
            true, tri = item["pha"][0, 0].numpy(), item["tri"][0, 0].numpy()
            scores.append(metrics.evaluate(pred, true, np.rint(tri * 255).astype(np.uint8)))
            rows.append((item["src"][0].permute(1, 2, 0).numpy(), pred, true))
        mean = {k: float(np.mean([s[k] for s in scores])) for k in scores[0]}
        self.history["metrics"].append({"step": step, **mean})
        if self.best is None or mean["sad"] < self.best["sad"]:
            self.best = {"step": step, **mean}
            checkpoint.save_weights(self.best_path, self.net, self.best)
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
