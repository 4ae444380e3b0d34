"""`mattebox export`: a model's network as one TorchScript or ONNX file (one input tensor, one output
tensor: what Nuke's CatFileCreator takes), checked against the eager network (training/export.py)."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="deep model (dcnn, bgm, bgm_excite, msia, lightweight, "
                                                   "or a fine-tuned one)")
    p.add_argument("--format", required=True, choices=("torchscript", "onnx"))
    p.add_argument("--out", required=True, help="file to write (e.g. matte.pt, matte.onnx)")
    p.add_argument("--weights", default="", help="safetensors file to export instead of the model's "
                                                 "trained weights (models/weights/<model>.safetensors)")
    p.add_argument("--json", action="store_true", help="print one JSON object describing the file")


def run(args: argparse.Namespace) -> int:
    from models.registry import UnknownModel
    from training.export import ATOL, ExportError, export

    try:
        done = export(args.model, args.format, args.out, args.weights)
    except (UnknownModel, ExportError) as err:
        print(f"mattebox export: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(dataclasses.asdict(done)))
        return 0
    sizes = ", ".join(f"{b}x{c}x{h}x{w}" for b, c, h, w in done.sizes)
    print(f"wrote {done.path} ({done.format}, {done.exporter}) of model {done.model}\n"
          f"input  x: (B, {done.channels}, H, W) float32 in [0, 1]: {done.layout}; any B, H, W\n"
          f"output alpha: (B, 1, H, W) float32 in [0, 1]\n"
          f"parity with the eager network on {sizes}: max abs diff {done.max_abs_diff:.2e} (limit {ATOL:g})")
    return 0
