"""Fine-tuning a model on a studio's own shot: a few frames with ground-truth mattes (roto or key
renders), crops with plate perturbation, early stopping on held-back frames, and the result written
into the weights folder the server watches, so every client can matte with it at once.

The rules a studio relies on:
- Never worse than the base: the base's own held-back score is the first "best" (validation at step 0,
  before any training); a step's weights are kept only when they beat it, and when none did nothing is
  installed and the summary says "no step beat the base (SAD x); nothing installed". A run whose
  network diverges (no longer finite) ends there, the steps validated before it still counting.
- Any model: every network's recipe trains on the shot (DCNN on patches of the shot's crops), and the
  base may itself be a fine-tune (the card records the catalogue model it is built on as `base`, and
  the chain as `lineage`).
- Stopping keeps the run: asked to stop (`stop()` true: a dropped call, SIGTERM, Ctrl-C), the run stops
  at the next step boundary with a checkpoint in its run folder and raises Stopped; finetune(...,
  resume=True) with the same settings continues from that step (`on_resumed(step)` says so) and ends
  as the uninterrupted run would have.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from models import store
from models.catalogue import MODELS
from models.registry import Registry
from training import device
from training.data.shot import ShotData, ShotDataset
from training.recipes import Diverged, base_of, recipe
from training.synthetic import trimap_from_alpha
from training.trainer import TrainConfig, Trainer

NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


@dataclass
class FinetuneConfig:
    base: str
    name: str
    input: str
    mattes: str
    train_frames: list[int]
    held_frames: list[int]     # frames with mattes kept out of training, for early stopping
    background: str = ""
    colour_space: str = ""
    matte_channel: str = ""    # channel of the mattes ("" = alpha, else the only channel, else luminance)
    steps: int = 120
    batch: int = 4
    crop: int = 192
    lr: float = 1e-4
    check_every: int = 20      # steps between held-back evaluations
    patience: int = 3          # evaluations without improvement before stopping
    seed: int = 0
    out: str = ""              # run folder (checkpoints, curves); default runs/<name>
    base_weights: str = ""     # default: the base model's trained weights
    device: str = "auto"       # auto | cpu | cuda | cuda:N (training/device.py)


class HeldBack(Dataset):
    """Whole held-back frames as validation items (src, plate, bgr, fgr, pha, tri; (C, H, W) in [0, 1]),
    the trimap a fixed band around the ground truth's edges (what metrics are taken over)."""

    def __init__(self, shot: ShotData, frames: list[int]):
        self.shot, self.frames = shot, frames

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        f = self.shot.frame(self.frames[i])
        src, pha = f["src"], f["pha"]
        plate = f["plate"] if f["plate"] is not None else src
        tri = trimap_from_alpha(pha, band=max(3, pha.shape[0] // 60)).astype(np.float32) / 255
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a, np.float32))  # noqa: E731
        return {"src": t(src).permute(2, 0, 1), "plate": t(plate).permute(2, 0, 1), "bgr": t(plate).permute(2, 0, 1),
                "fgr": t(src).permute(2, 0, 1), "pha": t(pha)[None], "tri": torch.round(t(tri) * 2)[None] / 2}


def check(cfg: FinetuneConfig) -> None:
    if not NAME.fullmatch(cfg.name):
        raise ValueError(f"--name {cfg.name!r}: use lower-case letters, digits, '-' and '_' (max 64)")
    if cfg.name in MODELS:
        raise ValueError(f"--name {cfg.name!r} is a built-in model; pick a new name for the fine-tuned one")
    if set(cfg.train_frames) & set(cfg.held_frames):
        raise ValueError("a frame cannot be both trained on and held back")


class Stopped(Exception):
    """The run was asked to stop and stopped after step `step`; its checkpoint is in `out`."""

    def __init__(self, step: int, out: str):
        super().__init__(f"stopped after step {step}; nothing installed; the run folder {out} keeps its "
                         f"checkpoint: continue it with --resume")
        self.step, self.out = step, out


#: settings that may change between a run and its resumption (where it runs, not what it computes)
RESUMABLE_CHANGES = ("out", "device")


def finetune(cfg: FinetuneConfig, on_step=None, on_validate=None, resume: bool = False,
             stop: Callable[[], bool] | None = None, on_resumed: Callable[[int], None] | None = None) -> dict:
    """Fine-tune, and install the result when a step beat the base on the held-back frames.

    resume: continue the run in cfg.out from its checkpoint (it must have the same settings; without a
    checkpoint the run starts afresh); without it an earlier run there is discarded. stop: polled after
    every step; True stops the run there (Stopped). Returns the summary: "installed" (bool), "message",
    "held_sad_before" (the base's), "held_sad_after" (what is served now: the new model's, or the base's
    when nothing was installed), "best_step_sad" (the best a fine-tuned step scored), "resumed_from"
    (0 for a run that started here), and the card's fields when installed. Raises ValueError / OSError
    on bad input, Stopped when stopped."""
    check(cfg)
    device.resolve(cfg.device)  # a device that cannot be used is refused before any work (ValueError)
    base = Registry().model(cfg.base)
    weights = cfg.base_weights or str(base.weights_path())
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"{cfg.base} has no trained weights to start from ({weights}); "
                                f"train it first (`mattebox train --model {cfg.base} --install`) or give --base-weights")
    torch.manual_seed(cfg.seed)
    net = base.build()
    from safetensors.torch import load_file

    net.load_state_dict(load_file(weights))
    shot = ShotData(cfg.input, cfg.mattes, cfg.train_frames + cfg.held_frames, cfg.background, cfg.colour_space,
                    cfg.matte_channel)
    rec = recipe(cfg.base)
    crops = ShotDataset(shot, cfg.train_frames, size=cfg.crop, length=max(cfg.batch * 8, 32), seed=cfg.seed)
    held = HeldBack(shot, cfg.held_frames or cfg.train_frames[-1:])
    out = os.path.abspath(cfg.out or os.path.join("runs", cfg.name))
    tcfg = TrainConfig(model=cfg.base, out=out, steps=cfg.steps, batch=cfg.batch, lr=cfg.lr, seed=cfg.seed,
                       val_every=cfg.check_every, save_every=cfg.check_every, val_items=len(held),
                       device=cfg.device)
    trainer = Trainer(tcfg, net, rec, rec.training_set(crops, cfg.seed), held, None, on_validate)

    def stepped(report) -> None:
        if on_step:
            on_step(report)
        if stop is not None and stop():
            trainer.save(report.step)
            raise Stopped(report.step, out)

    def early_stop(step: int, m: dict) -> bool:
        return (step - trainer.best["step"]) // cfg.check_every >= cfg.patience

    trainer.on_step, trainer.should_stop = stepped, early_stop
    resumed = _start(trainer, cfg, resume)
    if resumed and on_resumed:
        on_resumed(resumed)
    if not resumed:
        trainer.validate(0)  # the base's held-back score: the best until a step beats it
    diverged = ""
    try:
        trainer.run(resume=bool(resumed))
    except Diverged:  # the run ends there; the best weights validated before still count
        diverged = f" (the training diverged after step {trainer.history['loss'][-1][0]}: try a lower --lr)"
    before = next(m for m in trainer.history["metrics"] if m["step"] == 0)["sad"]
    tried = [m["sad"] for m in trainer.history["metrics"] if m["step"] > 0]
    summary = {"name": cfg.name, "held_sad_before": before, "best_step_sad": min(tried, default=None),
               "resumed_from": resumed}
    if trainer.best["step"] == 0:
        return {**summary, "installed": False, "held_sad_after": before,
                "message": f"no step beat the base (SAD {before:.4g}); nothing installed{diverged}"}
    best = trainer.restore_best()  # the best held-back score, not merely the last step
    root = base_of(cfg.base)
    lineage = [root] if cfg.base == root else _lineage(cfg.base) + [cfg.base]
    card = {"base": root, "lineage": lineage,
            "description": f"{cfg.base} fine-tuned on {os.path.basename(cfg.input)} "
                           f"(frames {','.join(map(str, cfg.train_frames))})",
            "shot": cfg.input, "train_frames": cfg.train_frames, "held_frames": cfg.held_frames,
            "steps": best["step"], "held_sad_before": before, "held_sad_after": best["sad"]}
    card |= {"hardware": device.name(trainer.device), "device": str(trainer.device), "precision": trainer.precision}
    store.install(cfg.name, net.state_dict(), card)  # weights, then the card that lists the model
    return {**summary, **card, "installed": True,
            "message": f"{cfg.name} installed; held-back SAD {before:.4g} -> {best['sad']:.4g} (step {best['step']})"
                       f"{diverged}"}


def _start(trainer: Trainer, cfg: FinetuneConfig, resume: bool) -> int:
    """Prepare the run folder: the step a resumed run continues from, or 0 for a fresh run (whose
    settings are recorded there, and an earlier run's files removed). Raises ValueError when the run to
    resume had other settings."""
    os.makedirs(trainer.cfg.out, exist_ok=True)
    settings = {k: v for k, v in asdict(cfg).items() if k not in RESUMABLE_CHANGES}
    record = trainer.path("finetune.json")
    if resume and os.path.exists(trainer.checkpoint_path):
        if not os.path.exists(record):
            raise ValueError(f"{trainer.cfg.out} holds a checkpoint but no fine-tune run (no finetune.json): "
                             f"give the run folder of a fine-tune, or start afresh without --resume")
        with open(record) as f:
            before = json.load(f)
        changed = sorted(k for k in settings.keys() | before.keys() if settings.get(k) != before.get(k))
        if changed:
            raise ValueError(f"the run in {trainer.cfg.out} was started with other settings ({', '.join(changed)}); "
                             f"resume it with those, or start afresh without --resume")
        return trainer.resume()
    for name in ("checkpoint.safetensors", "best.safetensors", "metrics.jsonl"):
        if os.path.exists(trainer.path(name)):
            os.remove(trainer.path(name))
    with open(record, "w") as f:
        json.dump(settings, f, indent=2)
    return 0


def _lineage(name: str) -> list[str]:
    """The models a fine-tune descends from, catalogue model first (its card's lineage, else its base)."""
    weights = store.find(f"{name}{store.WEIGHTS_SUFFIX}")
    card = json.loads(weights.with_suffix(store.CARD_SUFFIX).read_text())
    return list(card.get("lineage") or [card["base"]])
