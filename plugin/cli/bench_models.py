"""`mattebox bench models`: milliseconds per frame of every model, in this process (no transport):
preparation (colour conversion, classical inputs) plus inference, on a generated frame.

Networks without trained weights are timed with untrained ones (speed does not depend on the
weights) and marked so; the server itself never runs them.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from models import devices
from models.base import BACKGROUND, TRIMAP, Sample
from models.network import NetworkModel
from models.registry import Registry
from training.synthetic import make_shot, trimap_from_alpha


def frame(width: int, height: int) -> Sample:
    """A generated sRGB uint8 frame with its trimap and clean plate."""
    shot = make_shot(width, height, 1, seed=1)
    to8 = lambda a: np.rint(a * 255).astype(np.uint8)  # noqa: E731
    return Sample(image=to8(shot.image[0]), trimap=trimap_from_alpha(shot.alpha[0], band=max(4, height // 60)),
                  background=to8(shot.plate))


def load(registry: Registry, name: str) -> tuple[object, bool]:
    """The model ready to run, and whether it has trained weights."""
    model = registry.model(name)
    if model.weights_ready():
        return registry.get(name), True
    assert isinstance(model, NetworkModel)
    model.use(model.build(), registry.device(name))
    return model, False


def only_inputs(s: Sample, model) -> Sample:
    return Sample(s.image, s.trimap if TRIMAP in model.inputs else None,
                  s.background if BACKGROUND in model.inputs else None)


def frame_ms(model, sample: Sample, repeat: int) -> float:
    """Median milliseconds of `repeat` runs (default 3); a model slower than 5 s a frame runs once."""
    times = []
    while len(times) < (repeat or 3):
        t = time.perf_counter()
        model.run([model.prepare(sample)])
        times.append(time.perf_counter() - t)
        if not repeat and times[0] > 5.0:
            break
    return statistics.median(times) * 1000


def run(args: argparse.Namespace) -> int:
    registry = Registry()
    names = [n for n in (args.models.split(",") if args.models else registry.names()) if n != "null"]
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",")]
    samples = {size: frame(*size) for size in sizes}
    warm_up = frame(64, 64)
    rows = []
    for name in names:
        model, trained = load(registry, name)
        row = {"name": name, "device": registry.device(name), "params": model.params(),
               "gflops_512": round(model.gflops_512(), 3), "trained": trained}
        model.run([model.prepare(only_inputs(warm_up, model))])  # first-use costs: JIT, allocation
        for (w, h), s in samples.items():
            row[f"ms_{w}x{h}"] = round(frame_ms(model, only_inputs(s, model), args.repeat), 1)
            if not args.json:
                print(f"  {name} {w}x{h}: {row[f'ms_{w}x{h}']:.1f} ms", flush=True)
        rows.append(row)
    if args.json:
        print(json.dumps({"device": devices.accelerator(), "models": rows}))
        return 0
    cols = [f"ms_{w}x{h}" for w, h in sizes]
    print(f"\n{'model':<13} {'device':<7} {'params':>10} {'GFLOPs@512':>10} " + " ".join(f"{c:>14}" for c in cols))
    for r in rows:
        mark = "" if r["trained"] else "  (untrained weights: timing only)"
        print(f"{r['name']:<13} {r['device']:<7} {r['params']:>10,} {r['gflops_512']:>10.3f} "
              + " ".join(f"{r[c]:>14.1f}" for c in cols) + mark)
    return 0
