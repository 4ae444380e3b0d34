"""`mattebox bench finetune`: does fine-tuning on 3 roto'd frames of a shot beat its base model on the
frames nobody roto'd?

The shot, one per held-out foreground (--foregrounds, default the first two alphamatting photos that
`mattebox train` holds out): the foreground of the validation composite (training.benchmark.composites,
display sRGB, shrunk to --max-side) sways over its locked-off background for FRAMES frames (a seeded
smooth move: up to 3 % of the frame side and 2 degrees; borders replicated, so a subject the frame cuts
off stays cut off), each frame with fresh sensor grain; the clean
plate is the composite's re-shoot (training.data.plate). It is written as 16-bit PNG sequences numbered
from 1001 (src.####.png, matte.####.png, plate.png) into a temporary folder, and read back by
`mattebox finetune`'s own code, as a studio's shot would be.

Roto'd frames: 1001 and 1012 are trained on, 1006 is held back (early stopping and the never-worse
rule). The 9 others are scored, base model against fine-tuned: SAD / 1000 over a band around the
ground truth's edges (the band the fine-tune's held-back score uses, models.metrics' conventions) and
over the whole frame (a trimap-free model can err in the background too). When the fine-tune installs
nothing (no step beat the base), the served model is the base and its ratio is 1.

The fine-tuned weights go into the temporary folder (first on $MATTEBOX_WEIGHTS for this process), never
into the user's weights folders. The goal (issue 17): fine-tuned SAD at most 0.7x the base's.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import zlib
from pathlib import Path

import cv2
import numpy as np

from models import metrics
from models.base import BACKGROUND, TRIMAP, Sample
from models.registry import Registry
from plugin.cli.evaluate import EVAL_BACKGROUNDS, SHARED
from training.benchmark.composites import Composite, ValidationSet, held_out_names
from training.synthetic import trimap_from_alpha

MODELS = ("lightweight", "bgm")
FRAMES = 12
FIRST = 1001
TRAIN, HELD = (FIRST, FIRST + FRAMES - 1), (FIRST + 5,)
GOAL = 0.7


def sway(c: Composite, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """The shot's frames: (image (H, W, 3) float32 sRGB in [0, 1], true alpha (H, W) float32 in [0, 1]),
    the foreground moved by a smooth seeded similarity over the still background, grain on top."""
    h, w = c.alpha.shape
    side = max(h, w)
    amp, phase = rng.uniform(0.01, 0.03, 2) * side, rng.uniform(0, 2 * np.pi, 3)
    turn = rng.uniform(0.5, 2.0)
    sigma = np.float32(rng.uniform(0.004, 0.012))
    frames = []
    for i in range(FRAMES):
        t = 2 * np.pi * i / FRAMES
        move = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), turn * np.sin(t + phase[2]), 1.0)
        move[:, 2] += (amp[0] * np.sin(t + phase[0]), amp[1] * np.sin(t + phase[1]))
        # replicated borders: a subject the frame cuts off stays cut off by it as it moves
        pha = cv2.warpAffine(c.alpha, move, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        fgr = cv2.warpAffine(c.fgr, move, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        src = pha[..., None] * fgr + (1 - pha[..., None]) * c.bgr
        src = src + sigma * rng.standard_normal(src.shape, dtype=np.float32)
        frames.append((np.clip(src, 0, 1).astype(np.float32), np.clip(pha, 0, 1).astype(np.float32)))
    return frames


def write_png16(path: Path, pixels: np.ndarray) -> None:
    """(H, W, 3) RGB or (H, W) grey float in [0, 1] -> a 16-bit PNG (OpenCV writes BGR order)."""
    data = np.rint(np.clip(pixels, 0, 1) * 65535).astype(np.uint16)
    if data.ndim == 3:
        data = np.ascontiguousarray(data[..., ::-1])
    if not cv2.imwrite(str(path), data):
        raise OSError(f"could not write {path}")


def band(pha: np.ndarray) -> np.ndarray:
    """The scoring trimap (uint8 0 / 128 / 255): a band around the true alpha's edges, as the
    fine-tune's held-back frames use (training.finetune.HeldBack)."""
    return trimap_from_alpha(pha, band=max(3, pha.shape[0] // 60))


def score(model, frames: list[tuple[np.ndarray, np.ndarray]], plate: np.ndarray) -> dict:
    """Mean SAD / 1000 in the band and over the whole frame of `model` on the scored frames."""
    inside, whole = [], []
    for i, (src, true) in enumerate(frames):
        if FIRST + i in TRAIN + HELD:
            continue
        tri = band(true)
        sample = Sample(image=src, background=plate if BACKGROUND in model.inputs else None,
                        trimap=tri if TRIMAP in model.inputs else None, colour_space="sRGB")
        pha = model.run([model.prepare(sample)])[0]
        inside.append(metrics.evaluate(pha, true, tri)["sad"])
        whole.append(float(np.abs(pha.astype(np.float64) - true).sum() / 1000))
    return {"sad": statistics.mean(inside), "sad_frame": statistics.mean(whole)}


def one(name: str, c: Composite, frames, folder: Path, args: argparse.Namespace) -> dict:
    """Fine-tune `name` on the shot in `folder` and score base and result."""
    from training.finetune import FinetuneConfig, finetune

    base = score(Registry().get(name), frames, c.plate)
    tuned_name = f"bench-{name}-{c.foreground}".lower().replace("_", "-")
    cfg = FinetuneConfig(base=name, name=tuned_name, input=str(folder / "src.####.png"),
                         mattes=str(folder / "matte.####.png"), train_frames=list(TRAIN), held_frames=list(HELD),
                         background=str(folder / "plate.png"), colour_space="sRGB", seed=args.seed,
                         out=str(folder / "runs" / tuned_name), device=args.device or "auto",
                         **({"steps": args.steps} if args.steps else {}))
    start = time.perf_counter()
    summary = finetune(cfg)
    seconds = time.perf_counter() - start
    tuned = score(Registry().get(tuned_name), frames, c.plate) if summary["installed"] else dict(base)
    return {"model": name, "foreground": c.foreground, "background": Path(c.background).name,
            "installed": bool(summary["installed"]), "message": summary["message"], "steps": cfg.steps,
            "seconds": seconds, "base": base, "tuned": tuned, "ratio": tuned["sad"] / base["sad"],
            "ratio_frame": tuned["sad_frame"] / base["sad_frame"]}


def run(args: argparse.Namespace) -> int:
    names = [n for n in args.models.split(",") if n] or list(MODELS)
    try:
        registry = Registry()
        for n in names:
            registry.model(n)  # an unknown name is said before any work
        data = Path(SHARED) / "alphamatting"
        wanted = tuple(n for n in args.foregrounds.split(",") if n) or held_out_names(data)[:2]
        val = ValidationSet(data, wanted, tuple(map(Path, EVAL_BACKGROUNDS)), per_fg=1, seed=args.seed,
                            max_side=args.max_side)
        val.pairs()
    except (OSError, ValueError, KeyError) as err:
        print(f"mattebox bench finetune: {err}", file=sys.stderr)
        return 1
    rows = []
    with tempfile.TemporaryDirectory(prefix="mattebox-bench-finetune-") as tmp:
        weights = Path(tmp) / "weights"
        weights.mkdir()
        before = os.environ.get("MATTEBOX_WEIGHTS")
        os.environ["MATTEBOX_WEIGHTS"] = os.pathsep.join([str(weights)] + ([before] if before else []))
        try:
            for c in val:
                folder = Path(tmp) / c.foreground
                folder.mkdir()
                rng = np.random.default_rng([args.seed, zlib.crc32(c.foreground.encode())])
                frames = sway(c, rng)
                for i, (src, pha) in enumerate(frames):
                    write_png16(folder / f"src.{FIRST + i:04d}.png", src)
                    write_png16(folder / f"matte.{FIRST + i:04d}.png", pha)
                write_png16(folder / "plate.png", c.plate)
                for name in names:
                    rows.append(one(name, c, frames, folder, args))
                    if not args.json:
                        line(rows[-1])
        except (OSError, ValueError) as err:
            print(f"mattebox bench finetune: {err}", file=sys.stderr)
            return 1
        finally:
            if before is None:
                os.environ.pop("MATTEBOX_WEIGHTS", None)
            else:
                os.environ["MATTEBOX_WEIGHTS"] = before
    result = {"frames": FRAMES, "trained": list(TRAIN), "held": list(HELD), "max_side": args.max_side,
              "goal_ratio": GOAL, "shots": rows,
              "models": {n: statistics.mean(r["ratio"] for r in rows if r["model"] == n) for n in names}}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"\nmean fine-tuned / base SAD over the {FRAMES - 3} frames nobody roto'd (goal <= {GOAL}x):")
        for n, ratio in result["models"].items():
            print(f"  {n:<12} {ratio:.3f}x")
    return 0


def line(r: dict) -> None:
    b, t = r["base"], r["tuned"]
    print(f"  {r['model']} on {r['foreground']} over {r['background']}: SAD {b['sad']:.3f} -> {t['sad']:.3f} "
          f"({r['ratio']:.3f}x), whole frame {b['sad_frame']:.3f} -> {t['sad_frame']:.3f}; {r['steps']} steps "
          f"in {r['seconds']:.0f} s; {r['message']}", flush=True)
