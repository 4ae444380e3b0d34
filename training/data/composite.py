"""Composite training data by the Deep Image Matting rule: every foreground over many backgrounds."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch.utils.data import Dataset

from training.data.augment import DIM_AUGMENT, Augment, background_crop, foreground_crop
from training.data.plate import perturb_plate
from training.data.sample import as_item, item_rng
from training.data.sources import Backgrounds, Foregrounds
from training.data.trimap import random_trimap


class CompositeDataset(Dataset):
    """Item i composites foreground i % n_fg over background order[(i // n_fg) % n_bg], where order is
    a permutation of the backgrounds drawn from (seed, epoch): with the default length n_fg * n_bg an
    epoch shows every pair once, and a shorter epoch still meets new backgrounds each epoch.

    Each item (see sample.py; all (C, size, size) float32 in [0, 1]): the foreground augmented and
    cropped around its unknown region (augment.py), a background crop, src = pha*fgr + (1-pha)*bgr
    computed last (so it holds to float rounding), a random-dilation trimap (trimap.py) and a plate
    perturbed from bgr (plate.py).

    Deterministic: an item depends only on (seed, epoch, i). Call set_epoch(e) before each epoch, like
    DistributedSampler, so a resumed run sees exactly the same data. DataLoader workers copy the dataset
    when an iterator starts, so call it before iterating (persistent workers would keep the old epoch).
    """

    def __init__(self, fgs: Foregrounds, bgs: Backgrounds, size: int | None = None, length: int | None = None,
                 seed: int = 0, augment: Augment = DIM_AUGMENT):
        """size: output size, overriding augment.crop (default: augment.crop, 320 for DIM_AUGMENT).
        length: items per epoch (default n_fg * n_bg)."""
        if len(fgs) == 0 or len(bgs) == 0:
            raise ValueError("need at least one foreground and one background")
        if size is not None:
            augment = replace(augment, crop=size)
        self.fgs, self.bgs, self.seed, self.augment = fgs, bgs, seed, augment
        self.length = len(fgs) * len(bgs) if length is None else length
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self._order = np.random.default_rng([self.seed, epoch]).permutation(len(self.bgs))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not 0 <= i < self.length:
            raise IndexError(f"item {i} of {self.length}")
        n_fg = len(self.fgs)
        rng = item_rng(self.seed, self.epoch, i)
        fgr, pha = foreground_crop(*self.fgs.get(i % n_fg), rng, self.augment)
        bgr = background_crop(self.bgs.get(int(self._order[(i // n_fg) % len(self.bgs)])), rng, self.augment)
        a = pha[..., None]
        src = np.clip(a * fgr + (1 - a) * bgr, 0, 1)  # the clip only removes rounding above 1
        tri = random_trimap(pha, rng)
        plate = perturb_plate(bgr, rng, self.augment.plate)
        return as_item(src, bgr, plate, tri, pha, fgr)

