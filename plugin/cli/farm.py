"""`mattebox farm template matte|finetune --out FILE`: write an Open Job Description job template.

Every job parameter has a flag (`--frame-range FrameRange`, ...) whose value becomes the parameter's
default; a submitter or `openjd run -p NAME=VALUE` can still override it. A path default must lie in
the template's folder (OpenJD joins it to that folder; see training.farm.templates).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from training.farm.templates import FinetuneShot, MattingShot, finetune_template, matting_template, write_template

#: template kind -> (dataclass of its parameters, builder, help)
KINDS = {
    "matte": (MattingShot, matting_template, "matte a shot in frame chunks through a server on each worker"),
    "finetune": (FinetuneShot, finetune_template, "fine-tune a model on a shot's finished frames"),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    farm = p.add_subparsers(dest="farm_command", required=True, metavar="WHAT")
    template = farm.add_parser("template", help="write a job template (.json, .yaml or .yml)")
    kinds = template.add_subparsers(dest="kind", required=True, metavar="KIND")
    for kind, (shot, _, text) in KINDS.items():
        k = kinds.add_parser(kind, help=text, description=text)
        k.add_argument("--out", required=True, help="template file to write: .json, .yaml or .yml")
        for f in fields(shot):
            meta = f.metadata
            default = f.default_factory() if callable(f.default_factory) else f.default
            text = f"{meta['text']} (default: {'none, given at submission' if default is None else repr(default)})"
            k.add_argument("--" + f.name.replace("_", "-"), type=int if meta["type"] == "INT" else str,
                           default=default, metavar=meta["name"], choices=meta["extra"].get("allowedValues"),
                           help=text.replace("%", "%%"))


def run(args: argparse.Namespace) -> int:
    shot, build, _ = KINDS[args.kind]
    try:
        values = shot(**{f.name: getattr(args, f.name) for f in fields(shot)})
        write_template(build(values, Path(args.out).parent), args.out)
    except (ImportError, OSError, ValueError) as err:
        print(f"mattebox farm: {err}", file=sys.stderr)
        return 1
    print(args.out)
    return 0
