"""Seed 004's training samples for DCNN matting: 27x27 patches of (RGB, closed-form alpha, KNN
alpha) with the ground truth of their central 15x15 pixels, sampled evenly across 20 clusters of
image structure.

The paper clusters patches "according to the number of pixels with non-zero alpha values, and with
non-zero alpha gradients" (many alphas, few gradients: a sharp boundary; few alphas, many gradients:
long hair) into 20 groups and balances the groups. We cluster those two counts (normalised by the
patch area) with k-means (OpenCV, seeded) and draw a cluster uniformly, then a patch in it.

Source images are composites (any dataset with src/tri/pha items); their classical alphas are solved
once per image on the whole composite, as the paper solves them per training example, by the
project's solvers (models/classical), about 5x faster than pymatting on such composites (measured
0.9-1.9 s against 5.6-11 s for a 320x320 composite with 30-60 % unknown, both alphas, on a busy 2-core
machine), so a training set now solves N_IMAGES = 64 composites by default where it solved 16, in
less time than those 16 took.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from models.base import Sample

IN, OUT = 27, 15
MARGIN = (IN - OUT) // 2
CLUSTERS = 20
#: composites whose classical alphas a training set solves by default
N_IMAGES = 64


def structure(pha: np.ndarray) -> tuple[float, float]:
    """(share of pixels with non-zero alpha, share with non-zero alpha gradient) of a patch."""
    gy, gx = np.gradient(pha)
    return float((pha > 0).mean()), float(((np.abs(gx) + np.abs(gy)) > 1e-3).mean())


class DCNNPatches(Dataset):
    """item: {"x": (5, 27, 27) float32 [0, 1] RGB + closed-form + KNN alpha, "pha": (1, 15, 15)
    ground truth of the centre}. Deterministic for a seed; `length` items per epoch."""

    def __init__(self, images: Dataset, n_images: int = N_IMAGES, per_image: int = 400, length: int = 4096,
                 seed: int = 0, clusters: int = CLUSTERS):
        from models.dcnn.model import DCNN

        rng = np.random.default_rng(seed)
        model = DCNN()
        self.inputs, self.truth, feats, self.where = [], [], [], []
        for index in range(n_images):
            item = images[index]
            src, tri, pha = item["src"].permute(1, 2, 0).numpy(), item["tri"][0].numpy(), item["pha"][0].numpy()
            try:
                packed = model.pack(Sample(image=src, trimap=tri))
            except ValueError:  # no known foreground or background: the solvers cannot run on it
                continue
            k = len(self.inputs)
            self.inputs.append(packed)
            self.truth.append(pha)
            half = IN // 2  # patch corners (y, x) whose centre (y + half, x + half) is unknown
            ys, xs = np.nonzero(tri[half:tri.shape[0] - half, half:tri.shape[1] - half] == 0.5)
            pick = rng.choice(len(ys), min(per_image, len(ys)), replace=False) if len(ys) else []
            for j in pick:
                y, x = int(ys[j]), int(xs[j])
                self.where.append((k, y, x))
                feats.append(structure(pha[y + MARGIN:y + MARGIN + OUT, x + MARGIN:x + MARGIN + OUT]))
        if not self.where:
            raise ValueError("no unknown pixels far enough from the borders to cut 27x27 patches")
        n = min(clusters, len(self.where))
        cv2.setRNGSeed(seed)
        _, labels, _ = cv2.kmeans(np.float32(feats), n, None,
                                  (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 1e-4), 3,
                                  cv2.KMEANS_PP_CENTERS)
        self.groups = [np.flatnonzero(labels[:, 0] == c) for c in range(n)]
        self.groups = [g for g in self.groups if len(g)]
        self.length, self.seed, self.epoch = length, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, i])
        group = self.groups[rng.integers(len(self.groups))]
        k, y, x = self.where[group[rng.integers(len(group))]]
        x_in = self.inputs[k][y:y + IN, x:x + IN]
        true = self.truth[k][y + MARGIN:y + MARGIN + OUT, x + MARGIN:x + MARGIN + OUT]
        return {"x": torch.from_numpy(np.ascontiguousarray(x_in.transpose(2, 0, 1), np.float32)),
                "pha": torch.from_numpy(np.ascontiguousarray(true, np.float32))[None]}
