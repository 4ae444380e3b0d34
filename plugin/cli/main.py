"""`mattebox`: the one command line for serving, matting, evaluating, benchmarking and the demo.

Host plugins run this command on every Refresh and Matte, so it starts fast: only the chosen
subcommand's module is imported (each module imports what its own command needs, and the client
paths -- `models --server`, `matte --server`, `finetune --remote` -- never import torch or
OpenImageIO; tests/test_cli_start.py holds them to it). The top-level help lists every command from
COMMANDS without importing any of them.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

# Idle OpenMP threads sleep instead of spinning. pymatting's numba kernels (the foreground estimate of
# training composites, the pymatting reference models) leave spinning threads that slowed the torch
# convolutions of the same process 2x here, and up to ~500x for small ops on a busy 2-core machine.
# Set before torch or numba load (they read it once); a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

#: subcommand -> module under plugin.cli that defines `add_arguments(parser)` and `run(args) -> int`
COMMANDS = {
    "serve": ("serve", "run the matting server"),
    "models": ("list_models", "list the models (local registry, or a server's with --server)"),
    "matte": ("matte", "matte an image or a sequence through a server"),
    "train": ("train", "train a model (one process, or several under torchrun)"),
    "finetune": ("finetune", "fine-tune a model on a few frames of a shot and serve it at once"),
    "eval": ("evaluate", "SAD / MSE / Gradient / Connectivity of mattes against ground truth"),
    "demo": ("demo", "generate a synthetic shot, matte it through a server, write a contact sheet"),
    "bench": ("bench", "benchmarks that print figures"),
    "export": ("export", "export a model's network to TorchScript or ONNX"),
    "farm": ("farm", "write Open Job Description farm job templates"),
    "plugin": ("plugin", "build and install the Blender and Nuke plugins"),
}

#: options of the top-level parser that take a value (so the value is not taken for the command)
_VALUED = ("--log-level",)


def chosen(argv: list[str]) -> str | None:
    """The subcommand named in argv (the first word that is not an option or an option's value)."""
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif len(word) > 2 and any(v.startswith(word) for v in _VALUED):  # argparse takes abbreviations
            skip = True
        elif word == "--":
            continue
        elif not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line parser. Every command is listed; only `command`'s module is imported and
    asked for its arguments (None: none is, which is enough for `mattebox --help`)."""
    p = argparse.ArgumentParser(prog="mattebox", description="Mattebox: matting server, models and tools.")
    p.add_argument("--log-level", default="WARNING", help="DEBUG, INFO, WARNING (default) or ERROR")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, text) in COMMANDS.items():
        sp = sub.add_parser(name, help=text, description=text)
        if name == command:
            importlib.import_module(f"plugin.cli.{module}").add_arguments(sp)
        sp.set_defaults(module=module)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser(chosen(argv)).parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    try:
        return importlib.import_module(f"plugin.cli.{args.module}").run(args)
    except KeyboardInterrupt:
        print("mattebox: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
