"""`mattebox bench cli`: how long the `mattebox` command takes for the calls host plugins make.

Nuke and Blender run the command in a subprocess on every Refresh, Matte and Fine-tune, so its
start-up is what an artist waits for. Each call is run as a host runs it (the `mattebox` executable of
this environment, a new process, against a running server; the argument lists of plugin/host and
plugin/nuke), and timed from spawn to exit: the median of --repeat runs after one warm-up run. One
more run with PYTHONPROFILEIMPORTTIME=1 (what `python -X importtime` does) lists the heavy packages
the process imported and the time its imports took (in that run, so beside the medians it is only a
rough share). Never a timed test: figures only.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import sysconfig
import tempfile
import time
import zlib

#: packages a host-called command must not import (torch, OpenImageIO, cv2), and numpy, reported too
HEAVY = ("torch", "OpenImageIO", "cv2", "numpy")
#: the start-up goal of issue 12 for `models --server` (seconds, on the development machine)
GOAL_S = 0.5


def command() -> list[str]:
    """The `mattebox` executable of this environment, as a host's settings name it."""
    found = shutil.which("mattebox", path=sysconfig.get_path("scripts"))
    return [found] if found else [sys.executable, "-m", "plugin.cli.main"]


def write_png(path: str, width: int = 64, height: int = 48) -> None:
    """A small 8-bit RGB PNG (a gradient), written with the standard library only."""
    rows = b"".join(b"\0" + b"".join(bytes((x * 255 // width, y * 255 // height, 128)) for x in range(width))
                    for y in range(height))  # filter byte 0, then the row's RGB

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def calls(address: str, folder: str) -> list[tuple[str, list[str], int]]:
    """(label, arguments, expected exit code) of the calls hosts make, against `address`."""
    src = os.path.join(folder, "src.0001.png")
    write_png(src)
    out = os.path.join(folder, "alpha", "a.0001.exr")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    return [
        ("models --server --json", ["models", "--server", address, "--json"], 0),
        ("matte --server (path mode, null model, 1 frame)",
         ["matte", "--model", "null", "--input", src, "--output", out, "--frames", "1-1", "--transport", "path",
          "--server", address, "--progress", "json"], 0),
        # a remote fine-tune is the other server-side job a host starts; without --server the command refuses
        # it before any call, which times its start-up and imports (a refused request would time the server)
        ("finetune --remote (start-up only)",
         ["finetune", "--remote", "--model", "bgm", "--name", "bench_cli", "--input", src, "--mattes", src,
          "--train-frames", "1", "--server", "", "--progress", "json"], 2),
        ("farm template matte", ["farm", "template", "matte", "--out", os.path.join(folder, "matte.json"),
                                 "--model", "null"], 0),
    ]


def imported(stderr: str) -> tuple[list[str], float]:
    """The HEAVY packages in a `-X importtime` report, and the seconds all imports took."""
    names, total_us = set(), 0
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|", 2)
        if not cumulative.strip().isdigit():
            continue  # the header line
        if not name.startswith("  "):  # a top-level import: its cumulative time holds its children's
            total_us += int(cumulative)
        names.add(name.strip().split(".")[0])
    return [h for h in HEAVY if h in names], total_us / 1e6


def measure(label: str, args: list[str], expected: int, repeat: int) -> dict:
    """Wall time (spawn to exit) of `mattebox ARGS`: median, min and max of `repeat` runs after a warm-up."""
    argv = command() + args
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPROFILEIMPORTTIME"}
    times, code, err = [], 0, ""
    for i in range(repeat + 1):
        t = time.perf_counter()
        r = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
        if i:
            times.append(time.perf_counter() - t)
        code, err = r.returncode, r.stderr
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120, env={**env, "PYTHONPROFILEIMPORTTIME": "1"})
    heavy, import_s = imported(r.stderr)
    row = {"call": label, "command": "mattebox " + " ".join(args), "median_s": round(statistics.median(times), 3),
           "min_s": round(min(times), 3), "max_s": round(max(times), 3), "imports_s": round(import_s, 3),
           "heavy_imports": heavy, "exit_code": code, "ok": code == expected}
    if code != expected:
        lines = [ln for ln in err.strip().splitlines() if ln.strip()]
        row["error"] = lines[-1] if lines else f"exit code {code}"
    return row


def run(args: argparse.Namespace) -> int:
    repeat = args.repeat or 5
    with contextlib.ExitStack() as stack:
        address = args.server
        if not address:
            from plugin.cli.connect import spawn_server

            address = stack.enter_context(spawn_server())
        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="mattebox-bench-cli-"))
        rows = [measure(label, a, expected, repeat) for label, a, expected in calls(address, folder)]
    if args.json:
        print(json.dumps({"server": args.server or "private", "repeat": repeat, "goal_s": GOAL_S, "calls": rows}))
    else:
        print(f"`mattebox` as host plugins call it, spawn to exit, median of {repeat} (min-max); "
              f"server {args.server or 'private, on loopback'}; goal for `models --server` < {GOAL_S} s")
        width = max(len(r["call"]) for r in rows)
        print(f"  {'call':<{width}} {'median s':>8} {'min-max s':>13} {'imports s':>9}  heavy packages imported")
        for r in rows:
            spread = f"{r['min_s']:.3f}-{r['max_s']:.3f}"
            heavy = ", ".join(r["heavy_imports"]) or "none"
            print(f"  {r['call']:<{width}} {r['median_s']:>8.3f} {spread:>13} {r['imports_s']:>9.3f}  {heavy}"
                  + ("" if r["ok"] else f"   FAILED: {r.get('error', '')}"))
    return 0 if all(r["ok"] for r in rows) else 1
