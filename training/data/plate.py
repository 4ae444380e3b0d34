"""Plate mismatch: the clean plate a re-shot gives is never the true background behind the subject.

Following Background Matting and BackgroundMattingV2 (docs/MODELS.md, "Plate mismatch augmentation"),
the plate is the true background bgr with, in this order: a small misregistration (p = 0.3, +-1 degree,
1 % translation), colour jitter (p = 0.8), an exposure gamma ~ N(1, 0.12) (always) and Gaussian noise
(p = 0.4, standard deviation uniform in [0, noise]). The networks thus learn to tolerate exposure drift,
grain and a hand-held camera instead of reading every plate difference as foreground.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from training.data.geometry import Affine, random_affine, warp
from training.data.jitter import Jitter, jitter_colour


@dataclass(frozen=True)
class PlatePerturb:
    """How the plate departs from the true background (probabilities in [0, 1]).

    affine_p, affine: probability and ranges of the misregistration (reflected at the border)
    jitter_p, jitter: probability and ranges of the colour drift
    gamma_std: standard deviation of the exposure gamma around 1 (applied always; 0 turns it off)
    noise_p, noise: probability of grain, and the largest standard deviation of it
    """

    affine_p: float = 0.3
    affine: Affine = Affine(degrees=1.0, translate=0.01)
    jitter_p: float = 0.8
    jitter: Jitter = Jitter(hue=0.02, saturation=0.15, value=0.15, contrast=0.15)
    gamma_std: float = 0.12
    noise_p: float = 0.4
    noise: float = 0.03


def perturb_plate(bgr: np.ndarray, rng: np.random.Generator, cfg: PlatePerturb) -> np.ndarray:
    """(H, W, 3) float32 true background in [0, 1] -> (H, W, 3) float32 plate in [0, 1]."""
    h, w = bgr.shape[:2]
    plate = bgr
    if rng.random() < cfg.affine_p:
        plate = warp(plate, random_affine(rng, h, w, cfg.affine), cv2.BORDER_REFLECT_101)
    if rng.random() < cfg.jitter_p:
        plate = jitter_colour(plate, rng, cfg.jitter)
    gamma = max(rng.normal(1.0, cfg.gamma_std), 0.25)
    plate = np.power(plate, np.float32(gamma), dtype=np.float32)
    if rng.random() < cfg.noise_p:
        sigma = rng.uniform(0, cfg.noise)
        plate = plate + np.float32(sigma) * rng.standard_normal(plate.shape, dtype=np.float32)
    return np.clip(plate, 0, 1).astype(np.float32, copy=False)
