"""`mattebox eval`: the four matting metrics of predicted mattes against ground truth, per frame and
mean, on the trimap's unknown region (DIM conventions; see models/metrics.py). For a sequence (two or
more frames) also dtSSD, the temporal stability of RobustVideoMatting's evaluation (whole frames): one
figure per frame from the second on (the pair of it and the frame before), and their mean.

`mattebox eval --suite` instead runs every model on validation composites of held-out photographs
and writes a report (training/benchmark)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from models import images, metrics, pixels, sequence

KEYS = ("sad", "mse", "grad", "conn")


SHARED = os.path.join("..", "shared", "data")
#: background photos of the held-out evaluation composites, never used in training
EVAL_BACKGROUNDS = (os.path.join(SHARED, "backgrounds", "kodak"), os.path.join(SHARED, "backgrounds", "bsds500", "val"))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pred", help="predicted alpha file or pattern")
    p.add_argument("--gt", help="ground-truth alpha file or pattern")
    p.add_argument("--trimap", help="trimap file or pattern (0/128/255)")
    p.add_argument("--frames", default="", help="frame range A-B (default: the frames of --pred on disk)")
    p.add_argument("--json", action="store_true", help="print one JSON object: per-frame and mean figures")
    s = p.add_argument_group("benchmark suite (--suite)")
    s.add_argument("--suite", action="store_true",
                   help="run every model on validation composites and write results.json, results.md "
                        "and contact.png to --out (instead of --pred/--gt/--trimap)")
    s.add_argument("--data", default=os.path.join(SHARED, "alphamatting"), metavar="DIR",
                   help="foregrounds in the alphamatting layout: input/, gt/, trimap1/, trimap2/ "
                        "(default %(default)s)")
    s.add_argument("--val-names", default="", help="comma-separated foreground names to composite "
                                                      "(default: the 4 that `mattebox train` holds out)")
    s.add_argument("--backgrounds", action="append", metavar="DIR",
                   help="background photos, searched recursively; repeatable (default: "
                        f"{' and '.join(EVAL_BACKGROUNDS)}, not used in training)")
    s.add_argument("--per-fg", type=int, default=5, help="backgrounds per foreground (default 5)")
    s.add_argument("--seed", type=int, default=0, help="seed of the background choice, crops and plates")
    s.add_argument("--trimap-set", default="trimap1", choices=("trimap1", "trimap2"),
                   help="the dataset trimaps given to trimap models and scored on (default trimap1)")
    s.add_argument("--models", default="", help="comma-separated entries, NAME or NAME@sK (default: every "
                                                "network with weights, closed_form, knn, difference; "
                                                "bgm_excite at s = 1, 2, 3)")
    s.add_argument("--max-side", type=int, default=0, metavar="N",
                   help="shrink composites to at most N px on the long side (default: full size)")
    s.add_argument("--out", default="eval_output", metavar="DIR", help="report folder (default %(default)s)")


def read_matte(path: str) -> np.ndarray:
    """(H, W) float32 in [0, 1] from the first channel of an image file."""
    return np.clip(pixels.to_unit_float(images.read(path, 1).pixels[..., 0]), 0.0, 1.0)


def evaluate_frames(pred: str, gt: str, trimap: str, first: int, last: int) -> dict[int, dict[str, float]]:
    """Frame -> the four metrics (KEYS), and "dtssd" of (f - 1, f) for every frame but the first."""
    out, prev = {}, None
    for f in range(first, last + 1):
        tri = np.rint(read_matte(sequence.frame_path(trimap, f)) * 255).astype(np.uint8)
        p, t = read_matte(sequence.frame_path(pred, f)), read_matte(sequence.frame_path(gt, f))
        out[f] = metrics.evaluate(p, t, tri)
        if prev is not None:
            out[f]["dtssd"] = metrics.dtssd(p, prev[0], t, prev[1])
        prev = p, t
    return out


def mean(per_frame: dict[int, dict[str, float]]) -> dict[str, float]:
    """The mean of each metric; "dtssd" (over the frame pairs) only for a sequence."""
    out = {k: float(np.mean([m[k] for m in per_frame.values()])) for k in KEYS}
    pairs = [m["dtssd"] for m in per_frame.values() if "dtssd" in m]
    if pairs:
        out["dtssd"] = float(np.mean(pairs))
    return out


def run(args: argparse.Namespace) -> int:
    if args.suite:
        return run_suite(args)
    missing = [f"--{k}" for k in ("pred", "gt", "trimap") if not getattr(args, k)]
    if missing:
        print(f"mattebox eval: {', '.join(missing)} required (or --suite for the benchmark suite)")
        return 2
    if args.frames:
        first, last = sequence.parse_range(args.frames)
    elif sequence.has_frame_token(args.pred):
        found = sequence.frames_on_disk(args.pred)
        if not found:
            print(f"mattebox eval: no files match {args.pred}")
            return 1
        first, last = found[0], found[-1]
    else:
        first = last = 1
    try:
        per_frame = evaluate_frames(args.pred, args.gt, args.trimap, first, last)
    except (OSError, ValueError) as err:
        print(f"mattebox eval: {err}")
        return 1
    avg = mean(per_frame)
    if args.json:
        print(json.dumps({"frames": {str(f): m for f, m in per_frame.items()}, "mean": avg}))
        return 0
    temporal = "dtssd" in avg
    print(f"{'frame':>8} {'SAD/1e3':>9} {'MSE':>9} {'Grad/1e3':>9} {'Conn/1e3':>9}" + (f" {'dtSSD':>9}" if temporal else ""))
    for f, m in list(per_frame.items()) + [("mean", avg)]:
        row = f"{f:>8} {m['sad']:>9.3f} {m['mse']:>9.5f} {m['grad']:>9.3f} {m['conn']:>9.3f}"
        if temporal:
            row += f" {m['dtssd']:>9.3f}" if "dtssd" in m else f" {'-':>9}"
        print(row)
    return 0


def run_suite(args: argparse.Namespace) -> int:
    from models.registry import UnknownModel
    from training.benchmark.composites import ValidationSet, held_out_names
    from training.benchmark.suite import SuiteConfig
    from training.benchmark.suite import run as run_benchmark

    backgrounds = args.backgrounds or EVAL_BACKGROUNDS
    try:
        data = Path(args.data)
        names = held_out_names(data, [n for n in args.val_names.split(",") if n] or None)
        val = ValidationSet(data, names, tuple(Path(b) for b in backgrounds), per_fg=args.per_fg,
                            seed=args.seed, trimap_set=args.trimap_set, max_side=args.max_side)
        result = run_benchmark(SuiteConfig(val, Path(args.out), tuple(m for m in args.models.split(",") if m)))
    except (OSError, ValueError, UnknownModel) as err:
        print(f"mattebox eval: {err}", file=sys.stderr)
        return 1
    return 130 if result["interrupted"] else 0
