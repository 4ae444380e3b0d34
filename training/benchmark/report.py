"""results.json and results.md of a benchmark run: our figures, the seeds' published ones beside
them, the variance across backgrounds, and the claims."""
from __future__ import annotations

import json
import os
from dataclasses import asdict

from training.benchmark.claims import NOT_EVALUATED, PARAMS_RATIO, SAD_RATIO
from training.benchmark.published import PUBLISHED, published
from training.benchmark.results import METRICS

NOTE = ("Theirs are the seed papers' published figures: on Composition-1k (1000 composites of 50 Adobe "
        "foregrounds; seed 000: 220 Adobe composites at that paper's own scale; seed 004 itself reports "
        "alphamatting.com ranks only), with their own training. Ours are on held-out photographs of "
        "the alphamatting.com training set composited over held-out background photos, with our "
        "CPU-trained weights. Compare rankings, not numbers. All metrics over the trimap's unknown "
        "region, DIM conventions: SAD, Grad and Conn / 1000, MSE the mean over the region.")


def write(out: str, result: dict) -> tuple[str, str]:
    """Write results.json and results.md into folder `out` (created). result: see suite.run.
    Returns the two paths."""
    os.makedirs(out, exist_ok=True)
    paths = os.path.join(out, "results.json"), os.path.join(out, "results.md")
    doc = {**result, "published": [asdict(p) for p in PUBLISHED]}
    for path, text in zip(paths, (json.dumps(doc, indent=2), markdown(result))):
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)
    return paths


def markdown(result: dict) -> str:
    cfg, models = result["config"], result["models"]
    lines = ["# Mattebox evaluation", "",
             f"Validation foregrounds {', '.join(cfg['names'])} ({cfg['trimap_set']} trimaps), "
             f"{cfg['per_fg']} backgrounds each from {', '.join(cfg['backgrounds'])} (seed {cfg['seed']})"
             f"{', long side at most ' + str(cfg['max_side']) + ' px' if cfg['max_side'] else ', full size'}; "
             f"trimap models get the dataset trimap, plate models a perturbed clean plate.", ""]
    if result["interrupted"]:
        lines += ["**Interrupted**: these figures cover only the mattes finished before the stop.", ""]
    lines += [f"- {note}" for note in result["skipped"]] + ([""] if result["skipped"] else [])
    lines += ["## Mean errors", "", NOTE, "",
              "| model | n | SAD | MSE | Grad | Conn | s / frame | params | published SAD | MSE | Grad | Conn "
              "| published on (source) |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for name, s in models.items():
        p = published(name)
        theirs = (f"{p.sad:g} | {p.mse:g} | {p.grad:g} | {p.conn:g} | {p.dataset} ({p.source})" if p
                  else "- | - | - | - | -")
        lines.append(f"| {name} | {s['n']} | {s['sad']:.3f} | {s['mse']:.5f} | {s['grad']:.3f} | {s['conn']:.3f} "
                     f"| {s['seconds']:.2f} | {s['params']:,} | {theirs} |")
    lines += ["", "## Variation across backgrounds (seed 000 Table 2 style)", "",
              "Per foreground, the population variance of each metric over its backgrounds, averaged over "
              "the foregrounds; then each foreground's SAD mean / variance.", "",
              "| model | SAD var | MSE var | Grad var | Conn var | published SAD var |",
              "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, s in models.items():
        p = published(name)
        theirs = f"{p.sad_var:g}" if p and p.sad_var is not None else "-"
        lines.append(f"| {name} | " + " | ".join(f"{s[k + '_var']:.4g}" for k in METRICS) + f" | {theirs} |")
    fgs = list(dict.fromkeys(fg for s in models.values() for fg in s["per_foreground"]))
    lines += ["", "| model | " + " | ".join(f"{fg} SAD mean / var" for fg in fgs) + " |",
              "| --- |" + " ---: |" * len(fgs)]
    for name, s in models.items():
        cells = [f"{st['sad_mean']:.3f} / {st['sad_var']:.4g}" if (st := s["per_foreground"].get(fg)) else "-"
                 for fg in fgs]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "## The seeds' claims", "",
              f"\"A beats B\": lower mean SAD and lower mean MSE. Lightweight close to MSIA: SAD ratio at most "
              f"{SAD_RATIO} and parameter ratio at most {PARAMS_RATIO} (reasons in training/benchmark/claims.py).",
              "", "| claim | result | numbers |", "| --- | --- | --- |"]
    for c in result["claims"]:
        mark = {"pass": "PASS", "fail": "FAIL", NOT_EVALUATED: "not evaluated"}[c["status"]]
        lines.append(f"| {c['claim']} | {mark} | {c['detail']} |")
    return "\n".join(lines) + "\n"
