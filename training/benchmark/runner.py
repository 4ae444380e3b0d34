"""Running models on the validation composites, in this process, the way the server runs them:
the registry's model, `prepare` on a Sample of the inputs the model declares, then `run`.

A model entry is a registry name, or NAME@sK for a recursive model (bgm_excite) at K passes
(Sample.steps). Trimap models get the composite's dataset trimap, plate models its perturbed plate.
Every model is scored on the dataset trimap's unknown region (models.metrics, DIM conventions).
"""
from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from models import metrics
from models.base import BACKGROUND, TRIMAP, MattingModel, Sample
from models.registry import Registry
from training.benchmark.composites import Composite

#: what the suite runs by default, besides every network that has weights
CLASSICAL = ("closed_form", "knn", "difference")
#: recursion passes a recursive model is run at by default (seed 000 Table 1)
STEPS = (1, 2, 3)
#: registry models never benchmarked: `null` answers alpha = 0 for transport tests
EXCLUDED = ("null",)

_ENTRY = re.compile(r"^(?P<name>[\w.-]+?)(?:@s(?P<steps>\d+))?$")


@dataclass(frozen=True)
class Entry:
    """One column of the results: a registry model, at `steps` recursive passes (0 = its default)."""

    model: str
    steps: int = 0

    @property
    def label(self) -> str:
        return f"{self.model}@s{self.steps}" if self.steps else self.model

    @staticmethod
    def parse(text: str) -> "Entry":
        m = _ENTRY.match(text.strip())
        if not m:
            raise ValueError(f"model entry {text!r}: write NAME or NAME@sK (e.g. bgm_excite@s2)")
        return Entry(m["name"], int(m["steps"] or 0))


def recursive(model: MattingModel) -> bool:
    """Whether the model reads Sample.steps (recursive inference)."""
    return hasattr(model, "steps_for")


def select(registry: Registry, wanted: Iterable[str] = (), say: Callable[[str], None] = print) -> list[Entry]:
    """The entries to run: `wanted` (registry names or NAME@sK), or by default every network with
    weights plus CLASSICAL. Recursive models given without @sK run at each of STEPS. Models without
    trained weights are left out with a note through `say`. Raises UnknownModel for a name the
    registry does not know, ValueError for @sK on a model without recursion."""
    wanted = list(wanted)
    if wanted:
        entries = [Entry.parse(w) for w in wanted]
    else:
        names = [n for n in registry.names() if n not in EXCLUDED]
        entries = [Entry(n) for n in names if registry.model(n).weights is not None or n in CLASSICAL]
    out = []
    for e in entries:
        model = registry.model(e.model)
        if e.steps and not recursive(model):
            raise ValueError(f"{e.model} has no recursive passes; drop @s{e.steps}")
        if not model.weights_ready():
            say(f"mattebox eval: skipping {e.label}: no trained weights ({model.weights_path()}); "
                f"train them with `mattebox train --model {e.model} --install`")
            continue
        out += [Entry(e.model, s) for s in STEPS] if recursive(model) and not e.steps else [e]
    return list(dict.fromkeys(out))


def sample_for(model: MattingModel, c: Composite, steps: int = 0) -> Sample:
    """The Sample the model is given: the composite (sRGB float), plus the dataset trimap when the
    model takes a trimap and the perturbed plate when it takes a background."""
    return Sample(image=c.image, trimap=c.trimap if TRIMAP in model.inputs else None,
                  background=c.plate if BACKGROUND in model.inputs else None, steps=steps)


def matte(model: MattingModel, c: Composite, steps: int = 0) -> tuple[np.ndarray, float]:
    """(alpha (H, W) float32 in [0, 1], seconds) of one model on one composite, preparation included."""
    t = time.perf_counter()
    alpha = model.run([model.prepare(sample_for(model, c, steps))])[0]
    return np.asarray(alpha, np.float32), time.perf_counter() - t


@dataclass
class Record:
    """The scores of one entry on one composite."""

    model: str
    foreground: str
    background: str
    sad: float
    mse: float
    grad: float
    conn: float
    seconds: float


class Progress:
    """One line per composite x model on stderr, with a running ETA from the mean time per line."""

    def __init__(self, total: int, stream=None):
        self.total, self.done, self.start = total, 0, time.perf_counter()
        self.stream = stream or sys.stderr

    def step(self, r: Record) -> None:
        self.done += 1
        elapsed = time.perf_counter() - self.start
        eta = elapsed / self.done * (self.total - self.done)
        print(f"[{self.done}/{self.total}] {r.foreground} over {r.background.rsplit('/', 1)[-1]}: "
              f"{r.model} SAD {r.sad:.3f} in {r.seconds:.1f} s, ETA {_clock(eta)}", file=self.stream, flush=True)


def run(registry: Registry, entries: list[Entry], composites: Iterable[Composite], n_composites: int,
        keep: Callable[[Composite, dict[str, np.ndarray]], None] | None = None,
        stream=None) -> tuple[list[Record], bool]:
    """Score every entry on every composite. keep(c, {label: alpha}) sees each composite's mattes
    (for the contact sheet). Returns (records, interrupted): Ctrl-C stops after what is finished, and
    the records so far are returned with interrupted = True."""
    stream = stream or sys.stderr
    progress = Progress(n_composites * len(entries), stream)
    records: list[Record] = []
    try:
        for c in composites:
            mattes = {}
            for e in entries:
                alpha, seconds = matte(registry.get(e.model), c, e.steps)
                m = metrics.evaluate(alpha, c.alpha, c.trimap)
                records.append(Record(e.label, c.foreground, c.background, seconds=seconds, **m))
                mattes[e.label] = alpha
                progress.step(records[-1])
            if keep is not None:
                keep(c, mattes)
    except KeyboardInterrupt:
        print(f"mattebox eval: interrupted after {len(records)} of {progress.total} mattes; "
              "writing what is finished", file=stream, flush=True)
        return records, True
    return records, False


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}h{m % 60:02d}m{s:02d}s" if m >= 60 else f"{m}m{s:02d}s"
