"""`mattebox plugin nuke` (being written)."""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise SystemExit("mattebox plugin nuke: not available yet")
