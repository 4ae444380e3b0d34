"""`mattebox bench foreground`: does the unmixed foreground composite over a new background without
the old background's fringe?

On the validation composites of held-out photographs (training.benchmark.composites, shrunk to
--max-side), each model runs in this process (registry, prepare, run_foreground) with what it takes:
the plate models (bgm, difference) the registered re-shoot of the background (bench align's true
plate), the trimap model (closed_form) the dataset trimap, the image-only model (lightweight) the
image. Over a NEW background photo B_new (seeded per composite) the composite alpha F + (1 - alpha)
B_new with the model's own alpha is compared with the true one, alpha_gt F_gt + (1 - alpha_gt) B_new:
the mean absolute error over the dataset trimap's unknown region (and over the whole image), divided by
that of the uncorrected source (F = I). Goal (issue 12): ratio <= 0.7.

The composites obey the compositing equation in their sRGB values (that is how they are built), so
unmixing and compositing are done on those values here; on scene-linear EXRs the same equation is
applied to the linear values.

Beside the goal figure: "true F", the ratio the true foreground gets with the model's alpha (the floor
that alpha errors leave), and "gt alpha", the ratio of unmix's F when the composite uses the true
alpha (the foreground's quality alone). For bgm, its foreground head alone and as the plate solve's
prior are measured too (models/foreground.py chose the ML prior from these).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from models import foreground
from models.base import BACKGROUND, TRIMAP, MattingModel, Sample
from models.registry import Registry
from plugin.cli.bench_align import plates, rng_for, validation
from training.benchmark.composites import Composite
from training.data.crop import cover
from training.data.files import read_srgb

#: the models measured by default: two plate models, a trimap model, an image-only model
DEFAULT = ("bgm", "difference", "closed_form", "lightweight")
GOAL = 0.7
#: "alpha right": unknown pixels where the model's alpha is within this of the truth
RIGHT = 0.05


def group(model: MattingModel) -> str:
    """"plate", "trimap" or "image": what the model takes besides the image."""
    return "plate" if BACKGROUND in model.inputs else "trimap" if TRIMAP in model.inputs else "image"


def new_background(c: Composite, paths: list[Path], rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) float32 sRGB: a background photo other than the composite's, cropped to cover it."""
    others = [p for p in paths if str(p) != c.background]
    photo = read_srgb(others[int(rng.integers(len(others)))])
    return np.ascontiguousarray(cover(photo, c.alpha.shape, rng), dtype=np.float32)


def errors(fgr: np.ndarray, alpha: np.ndarray, truth: np.ndarray, bnew: np.ndarray,
           regions: tuple[np.ndarray, ...]) -> tuple[float, ...]:
    """Mean |alpha fgr + (1 - alpha) bnew - truth| over each (H, W) bool region (0 where empty)."""
    a = alpha[..., None]
    d = np.abs(a * fgr + (1 - a) * bnew - truth).mean(axis=2)
    return tuple(float(d[r].mean()) if r.any() else 0.0 for r in regions)


def measure(model: MattingModel, c: Composite, plate: np.ndarray, bnew: np.ndarray) -> dict[str, tuple]:
    """Each variant's ratios against the uncorrected source (unknown region, whole image, unknown
    pixels where the model's alpha is right), and "ms": (the milliseconds unmix took,)."""
    kind = group(model)
    sample = Sample(image=c.image, trimap=c.trimap if kind == "trimap" else None,
                    background=plate if kind == "plate" else None)
    alpha, head = model.run_foreground([model.prepare(sample)])[0]
    plate = plate if kind == "plate" else None
    truth = c.alpha[..., None] * c.fgr + (1 - c.alpha[..., None]) * bnew
    unknown = c.trimap == 128
    regions = (unknown, np.ones_like(unknown), unknown & (np.abs(alpha - c.alpha) <= RIGHT))

    def ratio(fgr: np.ndarray, a: np.ndarray) -> tuple[float, ...]:
        est, src = errors(fgr, a, truth, bnew, regions), errors(c.image, a, truth, bnew, regions)
        return tuple(e / s if s else 1.0 for e, s in zip(est, src))

    start = time.perf_counter()
    fgr = foreground.unmix(c.image, alpha, plate)
    ms = (time.perf_counter() - start) * 1000
    out = {"unmix": ratio(fgr, alpha), "true_f": ratio(c.fgr, alpha),
           "gt_alpha": ratio(foreground.unmix(c.image, c.alpha, plate), c.alpha), "ms": (ms,)}
    if head is not None:
        out["head"] = ratio(head, alpha)
        out["unmix_head_prior"] = ratio(foreground.unmix(c.image, alpha, plate, prior=head), alpha)
    return out


def run(args: argparse.Namespace) -> int:
    names = [n for n in args.models.split(",") if n] or list(DEFAULT)
    registry = Registry()
    try:
        models = {n: registry.get(n) for n in names}
        val = validation(args)
        paths = val.background_paths()
    except (OSError, ValueError, KeyError) as err:
        print(f"mattebox bench foreground: {err}", file=sys.stderr)
        return 1
    rows: dict[str, dict[str, list]] = {n: {} for n in names}
    for c in val:
        rng = rng_for(c, args.seed)
        plate = plates(c, rng)[0]
        bnew = new_background(c, paths, rng)
        for name, model in models.items():
            for key, value in measure(model, c, plate, bnew).items():
                rows[name].setdefault(key, []).append(value)
        if not args.json:
            print(f"  {c.foreground} over {Path(c.background).name}: "
                  + ", ".join(f"{n} {rows[n]['unmix'][-1][0]:.3f}" for n in names), flush=True)
    summary = {n: {"group": group(models[n]), **{k: [statistics.mean(col) for col in zip(*vals)]
                                                 for k, vals in r.items()}} for n, r in rows.items()}
    result = {"composites": len(val), "max_side": args.max_side, "goal": GOAL,
              "region": ("ratios [unknown region of the dataset trimap, whole image, unknown pixels where the "
                         f"model's alpha is within {RIGHT} of the truth]"), "models": summary}
    if args.json:
        print(json.dumps(result))
    else:
        report(result)
    return 0


def report(r: dict) -> None:
    print(f"\n{r['composites']} composites at <= {r['max_side']} px. Error of the composite over a new "
          f"background / error with the uncorrected source,\nover the unknown region [over the whole "
          f"image; over the unknown pixels where the model's alpha is within {RIGHT} of the truth]")
    print(f"{'model':<12} {'group':<7} {'unmix':>24} {'true F':>24} {'gt alpha':>8} {'ms':>5}  goal <= {GOAL}")
    for name, s in r["models"].items():
        cells = " ".join(f"{s[k][0]:>6.3f} [{s[k][1]:.3f}; {s[k][2]:.3f}]" for k in ("unmix", "true_f"))
        print(f"{name:<12} {s['group']:<7} {cells} {s['gt_alpha'][0]:>8.3f} {s['ms'][0]:>5.0f}")
        for k, label in (("head", "its head alone"), ("unmix_head_prior", "unmix, head as prior")):
            if k in s:
                print(f"{'':<12} {label}: {s[k][0]:.3f} [{s[k][1]:.3f}; {s[k][2]:.3f}]")
