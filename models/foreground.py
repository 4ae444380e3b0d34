"""The unmixed foreground: the straight colour F of the compositing equation I = alpha F + (1 - alpha) B.

At a soft edge the source I still holds the old background B, so a compositor who premultiplies the
source by alpha fringes. `unmix` estimates F instead.

Policy, chosen by measurement (`mattebox bench foreground --per-fg 3`: 12 held-out composites at
400 px). Figures: the error of alpha F + (1 - alpha) B_new against the true composite over the trimap's
unknown region, divided by that of the uncorrected source (F = I); "gt alpha" composites with the true
alpha, which isolates the foreground from the matte's own errors.

- No plate: pymatting's `estimate_foreground_ml` (multilevel, smooth F and B) on the image and alpha,
  with a smoothness weight of GRADIENT_WEIGHT = 0.1 instead of pymatting's 1: 0.30 with the gt alpha
  (1: 0.51, 0.3: 0.36, 0.03: 0.28), 0.76 with closed_form's alpha (1: 0.79).
- A plate: the equation is solved per pixel, F_s = (I - (1 - alpha) B) / alpha, and blended with the ML
  estimate F_ml by the weight w = alpha^2 / (alpha^2 + LAMBDA (1 - alpha)^2). An error e in the plate
  (grain, exposure drift) becomes e (1 - alpha) / alpha in F_s, so this is the minimum-variance blend
  of the two estimates when F_ml's error is sqrt(LAMBDA) times the plate's: F_s where alpha is high,
  F_ml where alpha is small, exactly I where alpha = 1. 0.24 with the gt alpha (F_ml alone 0.30 to
  0.51; a Tikhonov blend, weight alpha^2 / (alpha^2 + LAMBDA), 0.25; a linear ramp from F_ml at alpha
  0.3 to F_s at 0.6, 0.24). LAMBDA from 0.03 / 0.1 / 0.3 / 1: 0.35 / 0.29 / 0.24 / 0.22 with the gt
  alpha, 0.93 / 0.93 / 0.94 / 0.95 with the difference key's own alpha, 0.95 with bgm's throughout.
- A network's own foreground (BGM's head, shipped weights): on its own it is worse than the
  uncorrected source (1.16 with bgm's alpha, 4.2 with the gt alpha); as the plate solve's prior in
  F_ml's place it is worse too (0.97 against 0.96 with bgm's alpha, 0.44 against 0.24 with the gt
  alpha). So `unmix` returns the plate solve with the ML prior, and the server does not run the head;
  `prior=` puts another estimate (the head) in F_ml's place, which `mattebox bench foreground`
  re-measures for bgm whenever its weights change.

With the models' own alphas the ratios stay at 0.94 to 1.0 for bgm, the difference key and lightweight
and 0.76 for closed_form, and the true F itself gets 0.91 to 0.95 and 0.64: the mattes' errors, not
the colour, dominate those composites.
"""
from __future__ import annotations

import numpy as np
from pymatting import estimate_foreground_ml

#: the plate error's variance over the ML estimate's, in the blend weight (see the module docstring)
LAMBDA = 0.3
#: estimate_foreground_ml's smoothness weight (pymatting's default 1.0; see the module docstring)
GRADIENT_WEIGHT = 0.1


def unmix(image: np.ndarray, alpha: np.ndarray, plate: np.ndarray | None = None,
          prior: np.ndarray | None = None) -> np.ndarray:
    """The straight (un-premultiplied) foreground F of I = alpha F + (1 - alpha) B.

    image: (H, W, 3) float32, the source in ITS OWN colour space as unit float (scene-linear EXR
    values as they are; integer files / max); alpha: (H, W) float32 in [0, 1] (the model's);
    plate: the clean plate in the same space, already aligned, or None; prior: (H, W, 3) a foreground
    estimate in the same space to use instead of the ML estimate (a network's head: measured worse,
    see the module docstring), or None.
    Returns (H, W, 3) float32 in that space, in [0, max(1, image.max())].
    Raises ValueError when the shapes disagree.
    """
    image = np.asarray(image, dtype=np.float32)
    alpha = np.clip(np.asarray(alpha, dtype=np.float32), 0, 1)
    if image.ndim != 3 or image.shape[2] != 3 or alpha.shape != image.shape[:2]:
        raise ValueError(f"image must be (H, W, 3) and alpha (H, W) of its size, got {image.shape} and {alpha.shape}")
    for name, extra in (("plate", plate), ("prior", prior)):
        if extra is not None and np.shape(extra) != image.shape:
            raise ValueError(f"{name} must be {image.shape} like the image, got {np.shape(extra)}")
    top = max(1.0, float(image.max()))
    if prior is None:
        prior = estimate_foreground_ml(image, alpha, gradient_weight=GRADIENT_WEIGHT).astype(np.float32)
    else:
        prior = np.asarray(prior, np.float32)
    if plate is None:
        return np.clip(prior, 0, top)
    return np.clip(plate_solve(image, alpha, np.asarray(plate, np.float32), prior), 0, top)


def plate_solve(image: np.ndarray, alpha: np.ndarray, plate: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """F_s = (I - (1 - alpha) B) / alpha blended with `prior` by w = alpha^2 / (alpha^2 + LAMBDA
    (1 - alpha)^2): exactly I where alpha = 1, the prior where alpha = 0. image, plate, prior:
    (H, W, 3) float32; alpha: (H, W) float32 in [0, 1]. Returns (H, W, 3) float32, not clipped."""
    a = alpha[..., None]
    solved = np.divide(image - (1 - a) * plate, a, out=prior.copy(), where=a > 0)
    w = a * a / (a * a + np.float32(LAMBDA) * (1 - a) ** 2)
    return w * solved + (1 - w) * prior
