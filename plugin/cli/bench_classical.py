"""`mattebox bench classical`: our closed-form and KNN solvers (models/classical) against pymatting's
own functions, on the same frames in one run.

Frames: held-out photographs of the development data (alphamatting layout, with ground-truth alpha),
scaled to 1080 lines (bicubic; trimaps nearest):
  thin  the ground truth's soft pixels and hard edges grown by 5 px (training.synthetic.trimap_from_alpha)
  wide  the dataset's coarse trimap (trimap2)
For each frame and solver: seconds (after a warm-up on a small frame, which pays imports and
pymatting's numba compilation), SAD against ground truth (models.metrics, / 1000), the speed-up over
pymatting, our SAD over pymatting's, mean |alpha - pymatting's| over the unknown pixels, and our CG
iterations. Ours runs on --device (default: the accelerator, cuda when there is one), pymatting on
the CPU in a process of its own: its numba threads keep spinning after a call and would slow ours
(torch) down by orders of magnitude on a 2-core machine. Then a sequence: the thin frame at 540
lines as a locked-off shot (SEQUENCE frames, the same picture under fresh sensor grain), each frame
solved from zero and from the previous frame's alpha, iterations per frame. Goals (issue 16): SAD
<= 1.02x pymatting's; at 1080p on a CPU closed form >= 3x and KNN >= 5x faster; on a GPU 1080p
closed form < 0.5 s. Progress on stderr; the table (or with --json one JSON object) on stdout.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from models import devices, metrics
from plugin.cli.evaluate import SHARED
from training.synthetic import trimap_from_alpha

FRAMES = (("GT24", "thin"), ("GT26", "wide"))
LINES = 1080
SEQUENCE, SEQUENCE_LINES, GRAIN = 4, 540, 0.01
SOLVERS = ("closed_form", "knn")
GOALS = {"sad_ratio": 1.02, "cpu_speedup": {"closed_form": 3.0, "knn": 5.0}, "gpu_closed_form_s": 0.5}


def frame(name: str, band: str, lines: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A held-out photo at `lines` rows: image (H, W, 3) float32 sRGB, trimap (H, W) in {0, 0.5, 1},
    ground truth (H, W) float32."""
    from training.data.files import read_matte, read_srgb

    root = Path(SHARED) / "alphamatting"
    img, gt = read_srgb(root / "input" / f"{name}.png"), read_matte(root / "gt" / f"{name}.png")
    size = (round(gt.shape[1] * lines / gt.shape[0]), lines)
    img = np.clip(cv2.resize(img, size, interpolation=cv2.INTER_CUBIC), 0, 1)
    gt = np.clip(cv2.resize(gt, size, interpolation=cv2.INTER_LINEAR), 0, 1)
    if band == "thin":
        tri = trimap_from_alpha(gt, band=max(2, lines // 200))
    else:
        tri = cv2.resize(np.rint(read_matte(root / "trimap2" / f"{name}.png") * 255).astype(np.uint8), size,
                         interpolation=cv2.INTER_NEAREST)
    return img, np.where(tri == 128, 0.5, tri / 255.0).astype(np.float32), gt


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def reference(name: str, img: np.ndarray, tri: np.ndarray) -> tuple[np.ndarray, float]:
    """pymatting's solver `name` on a frame, and its seconds (run in the reference process)."""
    from models.classical.reference import closed_form_pymatting, knn_pymatting

    return timed({"closed_form": closed_form_pymatting, "knn": knn_pymatting}[name], img, tri)


def run(args: argparse.Namespace) -> int:
    from models.classical.closed_form import closed_form
    from models.classical.knn import knn

    device = args.device or devices.accelerator()
    names = [n for n in args.models.split(",") if n] if args.models else list(SOLVERS)
    unknown = sorted(set(names) - set(SOLVERS))
    if unknown:
        print(f"mattebox bench classical: no classical solver {', '.join(unknown)}; pick of {', '.join(SOLVERS)}",
              file=sys.stderr)
        return 2
    ours = {"closed_form": closed_form, "knn": knn}
    wait = os.environ.get("OMP_WAIT_POLICY")
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # the reference process's OpenMP threads sleep when idle
    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pymatting:
            doc = _measure(names, ours, lambda *a: pymatting.submit(reference, *a).result(), device)
    finally:
        if wait is None:
            os.environ.pop("OMP_WAIT_POLICY")
        else:
            os.environ["OMP_WAIT_POLICY"] = wait
    if args.json:
        print(json.dumps(doc))
    else:
        _print(doc, names)
    return 0


def _measure(names, ours, theirs, device) -> dict:
    import torch

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    say = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731

    small = frame(*FRAMES[0], lines=120)
    for name in names:  # warm-up: imports, numba's compilation, first CUDA kernels
        ours[name](*small[:2], device=device)
        theirs(name, *small[:2])
    rows = []
    for photo, band in FRAMES:
        img, tri, gt = frame(photo, band, LINES)
        u = tri == 0.5
        row = {"photo": photo, "band": band, "size": f"{img.shape[1]}x{img.shape[0]}", "unknown": float(u.mean())}
        for name in names:
            sol, s_ours = timed(lambda: (ours[name](img, tri, device=device), sync())[0])
            ref, s_ref = theirs(name, img, tri)
            sad, sad_ref = metrics.evaluate(sol.alpha, gt, tri)["sad"], metrics.evaluate(ref, gt, tri)["sad"]
            row[name] = {"s": round(s_ours, 3), "pymatting_s": round(s_ref, 3), "speedup": round(s_ref / s_ours, 2),
                         "sad": round(sad, 3), "pymatting_sad": round(sad_ref, 3),
                         "sad_ratio": round(sad / sad_ref, 4) if sad_ref else 1.0,
                         "mean_diff": round(float(np.abs(sol.alpha - ref)[u].mean()), 5),
                         "iterations": sol.iterations}
            say(f"  {photo} {band} {name}: ours {s_ours:.2f} s, pymatting {s_ref:.2f} s, "
                f"SAD {sad:.2f} vs {sad_ref:.2f}")
        rows.append(row)
    sequence = _sequence(names, ours, device, say)
    return {"device": device, "lines": LINES, "frames": rows, "sequence": sequence,
            "goals": _goals(rows, names, device)}


def _sequence(names, ours, device, say) -> dict:
    """Iterations per frame of a locked-off shot, each frame from zero and from the previous alpha."""
    img, tri, _ = frame(*FRAMES[0], lines=SEQUENCE_LINES)
    rng = np.random.default_rng(0)
    shots = [np.clip(img + GRAIN * rng.standard_normal(img.shape), 0, 1).astype(np.float32) for _ in range(SEQUENCE)]
    out = {"size": f"{img.shape[1]}x{img.shape[0]}", "frames": SEQUENCE}
    for name in names:
        cold, warm, s_cold, s_warm, prev = [], [], 0.0, 0.0, None
        for shot in shots:
            sol, s = timed(ours[name], shot, tri, device=device)
            cold.append(sol.iterations)
            s_cold += s
            sol, s = timed(ours[name], shot, tri, device=device, init=prev)
            warm.append(sol.iterations)
            s_warm += s
            prev = sol.alpha
        out[name] = {"cold_iterations": cold, "warm_iterations": warm, "cold_s": round(s_cold / SEQUENCE, 3),
                     "warm_s": round(s_warm / SEQUENCE, 3)}
        say(f"  sequence {name}: iterations from zero {cold}, from the previous frame {warm}")
    return out


def _goals(rows, names, device) -> dict:
    goals = {"sad": all(r[n]["sad_ratio"] <= GOALS["sad_ratio"] for r in rows for n in names)}
    if device == "cpu":
        for n in names:
            goals[f"{n}_speedup"] = all(r[n]["speedup"] >= GOALS["cpu_speedup"][n] for r in rows)
    elif "closed_form" in names:
        goals["closed_form_s"] = all(r["closed_form"]["s"] < GOALS["gpu_closed_form_s"] for r in rows)
    return goals


def _print(doc, names) -> None:
    print(f"\nclassical solvers on {doc['device']} against pymatting (CPU), "
          f"held-out photos at {doc['lines']} lines")
    print(f"{'frame':<16} {'size':>10} {'unknown':>8} {'solver':<12} {'ours s':>8} {'pymat s':>8} {'speedup':>8} "
          f"{'SAD':>8} {'pymat SAD':>10} {'ratio':>7} {'|diff|':>8} {'iters':>6}")
    for r in doc["frames"]:
        for n in names:
            m = r[n]
            print(f"{r['photo'] + ' ' + r['band']:<16} {r['size']:>10} {r['unknown']:>7.1%} {n:<12} {m['s']:>8.2f} "
                  f"{m['pymatting_s']:>8.2f} {m['speedup']:>7.1f}x {m['sad']:>8.2f} {m['pymatting_sad']:>10.2f} "
                  f"{m['sad_ratio']:>7.3f} {m['mean_diff']:>8.4f} {m['iterations']:>6}")
    seq = doc["sequence"]
    print(f"\nsequence: {seq['frames']} frames at {seq['size']}, iterations per frame "
          "(from zero / from the previous alpha)")
    for n in names:
        m = seq[n]
        print(f"  {n:<12} {m['cold_iterations']} / {m['warm_iterations']}   "
              f"{m['cold_s']:.2f} s / {m['warm_s']:.2f} s a frame")
    print("\ngoals: " + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in doc["goals"].items()))
