"""`mattebox bench transport|models|align|foreground|cli|load|gpu|classical|finetune`: benchmarks that
print figures (never timed tests)."""
from __future__ import annotations

import argparse
import importlib


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", choices=("transport", "models", "align", "foreground", "cli", "load", "gpu", "classical",
                                      "finetune"),
                   help="transport: 4K frame through the real server by every transport; "
                        "models: ms per frame of every model at 512x512 and 1920x1080; "
                        "align: SAD of plate models with a true, a hand-held and an aligned plate; "
                        "foreground: error of the unmixed foreground composited over a new background; "
                        "cli: wall time of the mattebox command a host plugin runs; "
                        "load: many clients at once by every transport, results checked, overload refusals, RSS; "
                        "gpu: the device check (fp16/bf16 against fp32, end to end and tensor frames/s, training); "
                        "classical: our closed-form and KNN solvers against pymatting's (seconds, SAD, iterations); "
                        "finetune: SAD of fine-tuned against base models on the frames nobody roto'd of a shot")
    p.add_argument("--size", default="", help="transport: frame size WxH (default 3840x2160); load: 256x256")
    p.add_argument("--sizes", default="512x512,1920x1080", help="models: comma-separated WxH sizes")
    p.add_argument("--models", default="",
                   help="models, align, foreground, finetune: comma-separated names (default: models all but "
                        "null; align difference,bgm; foreground bgm,difference,closed_form,lightweight; "
                        "load null,difference; finetune lightweight,bgm)")
    p.add_argument("--repeat", type=int, default=0,
                   help="timed runs after a warm-up (default: transport 7; models 3, or 1 for a model slower than 5 s)")
    p.add_argument("--server", default="",
                   help="transport, cli, load: measure this running server instead of starting one")
    p.add_argument("--clients", type=int, default=8, help="load: clients at once, each its own channel (default 8)")
    p.add_argument("--frames", type=int, default=20, help="load: frames each client sends (default 20)")
    p.add_argument("--overload", type=int, default=32,
                   help="load: clients at once in the overload on the null model (default 32; 0: none)")
    p.add_argument("--transports", default="", help="load: comma-separated of unary,stream,shm (default all)")
    p.add_argument("--foregrounds", default="",
                   help="finetune: comma-separated held-out foregrounds, one shot each (default: the first two)")
    p.add_argument("--steps", type=int, default=0, help="finetune: fine-tune steps (default: mattebox finetune's)")
    p.add_argument("--max-side", type=int, default=400, metavar="N",
                   help="align, foreground, finetune: shrink the validation composites to at most N px (default 400)")
    p.add_argument("--per-fg", type=int, default=2, metavar="K",
                   help="align, foreground: backgrounds per held-out foreground (default 2)")
    p.add_argument("--seed", type=int, default=0, help="align, foreground, finetune: seed of composites, plates and moves")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--device", default="",
                   help="gpu: the device to check (default cuda); classical: our solvers' (default the accelerator); "
                        "finetune: where fine-tunes train (default auto)")
    p.add_argument("--quick", action="store_true",
                   help="gpu: the same measurements tiny (at most 128 px, 2 frames, 2 steps)")


def run(args: argparse.Namespace) -> int:
    return importlib.import_module(f"plugin.cli.bench_{args.what}").run(args)
