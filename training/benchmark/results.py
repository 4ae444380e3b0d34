"""Summaries of the per-composite scores: per model means, and per model and foreground the mean and
the variance across backgrounds (seed 000, Table 2: the composites of one foreground form a category;
the variance is taken within each category and then averaged over the categories)."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import numpy as np

from training.benchmark.runner import Record

METRICS = ("sad", "mse", "grad", "conn")


def summarise(records: Iterable[Record]) -> dict[str, dict]:
    """model label -> {
        "n": composites scored,
        "sad", "mse", "grad", "conn", "seconds": means over the composites,
        "per_foreground": {fg: {"n", "<metric>_mean", "<metric>_var" for each metric}},
        "<metric>_var": mean over foregrounds of the per-foreground variance across backgrounds}.
    Variances are population variances (numpy's default, ddof = 0) of the paper-scale metrics; a
    foreground with a single background has variance 0."""
    by_model: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        by_model[r.model].append(r)
    out = {}
    for model, rows in by_model.items():
        per_fg: dict[str, list[Record]] = defaultdict(list)
        for r in rows:
            per_fg[r.foreground].append(r)
        fg_stats = {fg: _foreground(rs) for fg, rs in per_fg.items()}
        out[model] = {"n": len(rows), **{k: _mean(rows, k) for k in (*METRICS, "seconds")},
                      **{f"{k}_var": float(np.mean([s[f"{k}_var"] for s in fg_stats.values()])) for k in METRICS},
                      "per_foreground": fg_stats}
    return out


def _foreground(rows: list[Record]) -> dict[str, float]:
    stats: dict[str, float] = {"n": len(rows)}
    for k in METRICS:
        values = np.array([getattr(r, k) for r in rows], np.float64)
        stats[f"{k}_mean"], stats[f"{k}_var"] = float(values.mean()), float(values.var())
    return stats


def _mean(rows: list[Record], key: str) -> float:
    return float(np.mean([getattr(r, key) for r in rows]))
