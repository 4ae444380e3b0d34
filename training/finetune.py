"""Fine-tuning a model on a studio's own shot: a few frames with ground-truth mattes (roto or key
renders), crops with plate perturbation, early stopping on held-back frames, and the result written
into the weights folder the server watches, so every client can matte with it at once.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from models import store
from models.catalogue import MODELS
from models.registry import Registry
from training import device
from training.data.shot import ShotData, ShotDataset
from training.recipes import recipe
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


def finetune(cfg: FinetuneConfig, on_step=None, on_validate=None) -> dict:
    """Fine-tune and install. Returns a summary with the held-back SAD before and after."""
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
    train = ShotDataset(shot, cfg.train_frames, size=cfg.crop, length=max(cfg.batch * 8, 32), seed=cfg.seed)
    held = HeldBack(shot, cfg.held_frames or cfg.train_frames[-1:])
    out = os.path.abspath(cfg.out or os.path.join("runs", cfg.name))
    best = {"sad": float("inf"), "state": None, "step": 0}

    def validated(step: int, m: dict) -> bool:
        if m["sad"] < best["sad"]:
            best.update(sad=m["sad"], step=step, state={k: v.clone() for k, v in net.state_dict().items()})
        if on_validate:
            on_validate(step, m)
        waited = (step - best["step"]) // cfg.check_every
        return waited >= cfg.patience  # stop early

    tcfg = TrainConfig(model=cfg.base, out=out, steps=cfg.steps, batch=cfg.batch, lr=cfg.lr, seed=cfg.seed,
                       val_every=cfg.check_every, save_every=cfg.check_every, val_items=len(held),
                       device=cfg.device)
    trainer = Trainer(tcfg, net, recipe(cfg.base), train, held, on_step, None)
    before = trainer.validate(0)
    trainer.should_stop = validated
    trainer.run()
    if best["state"] is not None:  # the best held-back score, not merely the last step
        net.load_state_dict(best["state"])
    card = {"base": cfg.base, "description": f"{cfg.base} fine-tuned on {os.path.basename(cfg.input)} "
                                              f"(frames {','.join(map(str, cfg.train_frames))})",
            "shot": cfg.input, "train_frames": cfg.train_frames, "held_frames": cfg.held_frames,
            "steps": best["step"], "held_sad_before": before["sad"], "held_sad_after": best["sad"]}
    card |= {"hardware": device.name(trainer.device), "device": str(trainer.device), "precision": trainer.precision}
    store.install(cfg.name, net.state_dict(), card)  # weights, then the card that lists the model
    return card
