"""`mattebox eval --suite`: every model on the validation composites, one command from data to report.

Writes into the output folder: results.json (configuration, per-composite scores, per-model summary,
claims, published figures), results.md (the tables) and contact.png (the contact sheet).
"""
from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from models.registry import Registry
from training.benchmark import claims, report, runner
from training.benchmark.composites import ValidationSet
from training.benchmark.results import summarise
from training.benchmark.sheet import ContactSheet


@dataclass(frozen=True)
class SuiteConfig:
    """What to run: the validation set, the model entries (empty = the default set) and where to write."""

    validation: ValidationSet
    out: Path
    models: tuple[str, ...] = ()
    sheet_rows: int = 4


def run(cfg: SuiteConfig, registry: Registry | None = None, stream=None) -> dict:
    """Run the suite, write the three files, return the result dict (see report.write). Raises
    ValueError / UnknownModel on bad configuration before any model runs."""
    registry = registry or Registry()
    stream = stream or sys.stderr
    skipped: list[str] = []

    def note(text: str) -> None:
        skipped.append(text)
        print(text, file=stream, flush=True)

    entries = runner.select(registry, cfg.models, note)
    if not entries:
        raise ValueError("no model to evaluate: every one asked for lacks trained weights")
    val = cfg.validation
    pairs = val.pairs()  # checks the backgrounds before the slow part
    sheet = ContactSheet(cfg.sheet_rows)
    print(f"mattebox eval: {len(entries)} models x {len(pairs)} composites "
          f"({', '.join(e.label for e in entries)})", file=stream, flush=True)
    records, interrupted = runner.run(registry, entries, iter(val), len(pairs), sheet.keep, stream)
    summary = summarise(records)
    for label, s in summary.items():
        s["params"] = registry.info(runner.Entry.parse(label).model).params
    v = asdict(val)
    config = {**{k: v[k] for k in ("per_fg", "seed", "trimap_set", "max_side")}, "data": str(val.data),
              "names": list(val.names), "backgrounds": [str(b) for b in val.backgrounds],
              "models": [e.label for e in entries]}
    result = {"config": config, "interrupted": interrupted, "skipped": skipped,
              "composites": [{"foreground": fg, "background": str(bg)} for fg, bg in pairs],
              "models": summary, "claims": claims.check(summary),
              "records": [asdict(r) for r in records]}
    os.makedirs(cfg.out, exist_ok=True)
    json_path, md_path = report.write(str(cfg.out), result)
    sheet_path = os.path.join(cfg.out, "contact.png")
    wrote = sheet.write(sheet_path)
    print(f"mattebox eval: {json_path}, {md_path}{', ' + sheet_path if wrote else ''}", file=stream, flush=True)
    return result
