"""`mattebox plugin blender|nuke`: build and install the host integrations.

Each host has its own module (plugin/cli/plugin_<host>.py) with `add_arguments(parser)` and `run(args)`.
"""
from __future__ import annotations

import argparse
import importlib

HOSTS = {
    "blender": "build the Blender extension zip and install it into a Blender found on this machine",
    "nuke": "add the Nuke plugin to ~/.nuke (or print the NUKE_PATH line), or remove it",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="host", required=True, metavar="HOST")
    for host, text in HOSTS.items():
        sp = sub.add_parser(host, help=text, description=text)
        importlib.import_module(f"plugin.cli.plugin_{host}").add_arguments(sp)


def run(args: argparse.Namespace) -> int:
    return importlib.import_module(f"plugin.cli.plugin_{args.host}").run(args)
