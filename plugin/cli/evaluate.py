"""`mattebox eval`: the four matting metrics of predicted mattes against ground truth, per frame and
mean, on the trimap's unknown region (DIM conventions; see models/metrics.py)."""
from __future__ import annotations

import argparse
import json

import numpy as np

from models import images, metrics, pixels, sequence

KEYS = ("sad", "mse", "grad", "conn")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pred", required=True, help="predicted alpha file or pattern")
    p.add_argument("--gt", required=True, help="ground-truth alpha file or pattern")
    p.add_argument("--trimap", required=True, help="trimap file or pattern (0/128/255)")
    p.add_argument("--frames", default="", help="frame range A-B (default: the frames of --pred on disk)")
    p.add_argument("--json", action="store_true", help="print one JSON object: per-frame and mean figures")


def read_matte(path: str) -> np.ndarray:
    """(H, W) float32 in [0, 1] from the first channel of an image file."""
    return np.clip(pixels.to_unit_float(images.read(path, 1).pixels[..., 0]), 0.0, 1.0)


def evaluate_frames(pred: str, gt: str, trimap: str, first: int, last: int) -> dict[int, dict[str, float]]:
    out = {}
    for f in range(first, last + 1):
        tri = np.rint(read_matte(sequence.frame_path(trimap, f)) * 255).astype(np.uint8)
        out[f] = metrics.evaluate(read_matte(sequence.frame_path(pred, f)), read_matte(sequence.frame_path(gt, f)), tri)
    return out


def mean(per_frame: dict[int, dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([m[k] for m in per_frame.values()])) for k in KEYS}


def run(args: argparse.Namespace) -> int:
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
    print(f"{'frame':>8} {'SAD/1e3':>9} {'MSE':>9} {'Grad/1e3':>9} {'Conn/1e3':>9}")
    for f, m in list(per_frame.items()) + [("mean", avg)]:
        print(f"{f:>8} {m['sad']:>9.3f} {m['mse']:>9.5f} {m['grad']:>9.3f} {m['conn']:>9.3f}")
    return 0
