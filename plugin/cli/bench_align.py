"""`mattebox bench align`: does aligning a hand-held clean plate give back the true plate's matte?

On the validation composites of held-out photographs (training.benchmark.composites, display sRGB,
shrunk to --max-side), each plate model runs in this process (registry, prepare, run) with three plates:
  true:       the background behind the subject with the plate perturbation's colour drift, exposure
              and grain (training.data.plate, misregistration off): a locked-off re-shoot
  hand-held:  the same re-shoot seen by a camera moved by a seeded random homography (rotation up to
              0.8 degree about the centre, shift up to 4 px per 400 px, a little perspective); its
              grain, of the same strength, is drawn after the move (a sensor's grain is not resampled)
  aligned:    the hand-held plate warped back by models.align
SAD is models.metrics' (SAD / 1000 over the dataset trimap's unknown region), averaged over composites.
The goal (issue 12): aligned SAD within 1.1x of the true plate's. Alignment is timed per frame, and
its corner error against the known move is reported.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np

from models import align, metrics
from models.base import Sample
from models.registry import Registry
from plugin.cli.evaluate import EVAL_BACKGROUNDS, SHARED
from training.benchmark.composites import Composite, ValidationSet, held_out_names
from training.data.plate import PlatePerturb, perturb_plate

MODELS = ("difference", "bgm")
GOAL = 1.1


def validation(args: argparse.Namespace) -> ValidationSet:
    """The held-out composites of `mattebox eval --suite`, at --per-fg, --seed and --max-side."""
    data = Path(SHARED) / "alphamatting"
    return ValidationSet(data, held_out_names(data), tuple(map(Path, EVAL_BACKGROUNDS)), per_fg=args.per_fg,
                         seed=args.seed, max_side=args.max_side)


def rng_for(c: Composite, seed: int) -> np.random.Generator:
    """A generator seeded by the composite (its foreground and background) and the bench seed."""
    return np.random.default_rng([seed, zlib.crc32(c.foreground.encode()), zlib.crc32(c.background.encode())])


def plates(c: Composite, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The true plate, the hand-held plate ((H, W, 3) float32 sRGB in [0, 1]) and the camera move
    ((3, 3): hand-held plate pixels -> the take's pixels)."""
    cfg = PlatePerturb()
    drift = perturb_plate(c.bgr, rng, PlatePerturb(affine_p=0.0, noise_p=0.0))
    h, w = drift.shape[:2]
    move = hand_move(rng, h, w)
    moved = cv2.warpPerspective(drift, move, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_REFLECT_101)  # beyond the take's frame: reflected
    sigma = rng.uniform(0, cfg.noise) if rng.random() < cfg.noise_p else 0.0
    grain = [np.clip(p + np.float32(sigma) * rng.standard_normal(p.shape, dtype=np.float32), 0, 1)
             for p in (drift, moved)]
    return grain[0], grain[1], move


def hand_move(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(3, 3) homography of a hand-held camera: hand-held plate pixels -> the take's pixels."""
    side = max(height, width)
    angle = np.radians(rng.uniform(-0.8, 0.8))
    dx, dy = rng.uniform(-4, 4, 2) * side / 400
    c, s = np.cos(angle), np.sin(angle)
    cx, cy = (width - 1) / 2, (height - 1) / 2
    tilt = rng.uniform(-2e-5, 2e-5, 2) * 400 / side
    hom = np.array([[c, -s, cx + dx - c * cx + s * cy], [s, c, cy + dy - s * cx - c * cy], [*tilt, 1.0]])
    return hom / hom[2, 2]


def corner_error(found: np.ndarray, true: np.ndarray, height: int, width: int) -> float:
    """Largest distance (px) between the frame corners mapped by two (3, 3) homographies."""
    corners = np.array([[0, 0, 1], [width - 1, 0, 1], [width - 1, height - 1, 1], [0, height - 1, 1]], float)
    a, b = corners @ found.T, corners @ true.T
    return float(np.max(np.linalg.norm(a[:, :2] / a[:, 2:] - b[:, :2] / b[:, 2:], axis=1)))


def run(args: argparse.Namespace) -> int:
    names = [n for n in args.models.split(",") if n] or list(MODELS)
    registry = Registry()
    try:
        models = {n: registry.get(n) for n in names}
        val = validation(args)
        val.pairs()
    except (OSError, ValueError, KeyError) as err:
        print(f"mattebox bench align: {err}", file=sys.stderr)
        return 1
    sad = {n: {"true": [], "hand_held": [], "aligned": []} for n in names}
    timing, errors, shifts, failed = [], [], [], []
    for c in val:
        plate, hand, move = plates(c, rng_for(c, args.seed))
        h, w = c.alpha.shape
        start = time.perf_counter()
        found = align.estimate(c.image, hand)
        aligned = align.warp(hand, found)
        timing.append((time.perf_counter() - start) * 1000)
        shifts.append(align.corner_shift(move, h, w))
        if found.ok:
            errors.append(corner_error(found.homography, move, h, w))
        else:
            failed.append(f"{c.foreground} over {Path(c.background).name}: {found.message}")
        for name, model in models.items():
            for kind, p in (("true", plate), ("hand_held", hand), ("aligned", aligned)):
                alpha = model.run([model.prepare(Sample(image=c.image, background=p))])[0]
                sad[name][kind].append(metrics.evaluate(alpha, c.alpha, c.trimap)["sad"])
        if not args.json:
            print(f"  {c.foreground} over {Path(c.background).name}: move {shifts[-1]:.1f} px, "
                  f"{found.message}", flush=True)
    summary = {n: {k: statistics.mean(v) for k, v in s.items()} for n, s in sad.items()}
    for s in summary.values():
        s["aligned_over_true"] = s["aligned"] / s["true"]
        s["hand_held_over_true"] = s["hand_held"] / s["true"]
    result = {"composites": len(timing), "max_side": args.max_side, "goal_aligned_over_true": GOAL,
              "align": {"ms_mean": statistics.mean(timing), "ms_max": max(timing),
                        "move_px_mean": statistics.mean(shifts),
                        "corner_error_px_mean": statistics.mean(errors) if errors else None,
                        "corner_error_px_max": max(errors) if errors else None, "failed": failed},
              "models": summary}
    if args.json:
        print(json.dumps(result))
    else:
        report(result)
    return 0


def report(r: dict) -> None:
    a = r["align"]
    print(f"\n{r['composites']} composites at <= {r['max_side']} px; hand-held move {a['move_px_mean']:.1f} px "
          f"(largest corner displacement, mean)")
    if a["corner_error_px_mean"] is not None:
        print(f"alignment: {a['ms_mean']:.0f} ms per frame (max {a['ms_max']:.0f}), corner error "
              f"{a['corner_error_px_mean']:.3f} px mean, {a['corner_error_px_max']:.3f} px max, "
              f"{len(a['failed'])} failed")
    for line in a["failed"]:
        print(f"  failed: {line}")
    print(f"\n{'model':<12} {'SAD true':>9} {'hand-held':>10} {'aligned':>9} {'aligned/true':>13}  goal <= {GOAL}x")
    for name, s in r["models"].items():
        print(f"{name:<12} {s['true']:>9.3f} {s['hand_held']:>10.3f} {s['aligned']:>9.3f} "
              f"{s['aligned_over_true']:>12.3f}x")
