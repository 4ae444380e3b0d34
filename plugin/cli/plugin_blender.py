"""`mattebox plugin blender`: build the Blender extension zip, and install it into a Blender.

The zip holds plugin/blender/*, a copy of plugin/host/ as the extension's subpackage host/ (the
extension imports `from .host import client, config`) and a copy of models/sequence.py, the project's
one frame-pattern module, as the extension's sequence.py (`from . import sequence`): standard-library
Python that runs on Blender's own interpreter, nothing else.

    mattebox plugin blender --zip mattebox.zip          build the zip
    mattebox plugin blender --install [--blender EXE]   build dist/mattebox-blender-VERSION.zip and run
        `EXE --command extension install-file -r user_default -e ZIP`; without a Blender, say where
        the zip is and how to install it by hand
"""
from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXTENSION = ROOT / "plugin" / "blender"
HOST = ROOT / "plugin" / "host"
SEQUENCE = ROOT / "models" / "sequence.py"

#: where Blender usually lives when it is not on PATH (newest version first after sorting)
_USUAL_PLACES = ("/Applications/Blender.app/Contents/MacOS/Blender", "/snap/bin/blender",
                 "C:/Program Files/Blender Foundation/Blender */blender.exe")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--zip", metavar="PATH", help="build the extension zip at PATH")
    p.add_argument("--install", action="store_true",
                   help="build dist/mattebox-blender-VERSION.zip and install it into Blender (user_default repository)")
    p.add_argument("--blender", metavar="EXE", default="",
                   help="the Blender executable for --install (default: `blender` on PATH, then the usual places)")


def version() -> str:
    return tomllib.loads((EXTENSION / "blender_manifest.toml").read_text())["version"]


def build(path: str | os.PathLike) -> Path:
    """Write the extension zip; returns its path."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    files = [(f, f.relative_to(EXTENSION).as_posix()) for f in sorted(EXTENSION.rglob("*"))
             if f.is_file() and "__pycache__" not in f.parts]
    files += [(f, f"host/{f.name}") for f in sorted(HOST.glob("*.py"))]
    files += [(SEQUENCE, "sequence.py")]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for file, name in files:
            z.write(file, name)
    return path


def find_blender(given: str = "") -> str | None:
    """The Blender executable: `given` (which must exist), else `blender` on PATH, else a usual place."""
    if given:
        found = shutil.which(given)
        if not found:
            raise SystemExit(f"mattebox plugin blender: {given} is not an executable; give the path of Blender's "
                             f"`blender` program to --blender")
        return found
    for candidate in ("blender", *_USUAL_PLACES):
        matches = sorted(glob.glob(candidate), reverse=True) if "*" in candidate else [candidate]
        for match in matches:
            found = shutil.which(match)
            if found:
                return found
    return None


def install(zip_path: Path, blender: str | None) -> int:
    if blender is None:
        print(f"No Blender found (not on PATH, nor in the usual places). The extension is at\n  {zip_path}\n"
              f"Install it in Blender: Edit > Preferences > Get Extensions > (v menu) Install from Disk..., or run\n"
              f"  blender --command extension install-file -r user_default -e {zip_path}\n"
              f"or run `mattebox plugin blender --install --blender /path/to/blender`.")
        return 0
    cmd = [blender, "--command", "extension", "install-file", "-r", "user_default", "-e", str(zip_path)]
    result = subprocess.run(cmd)
    if result.returncode != 0:
        print(f"mattebox plugin blender: `{' '.join(cmd)}` failed with code {result.returncode}; install "
              f"{zip_path} from Blender's Preferences > Get Extensions > Install from Disk instead", file=sys.stderr)
        return 1
    print(f"Installed the Mattebox extension into {blender} (enabled; find the Mattebox tab in the Compositor's "
          f"and the Movie Clip editor's sidebar)")
    return 0


def run(args: argparse.Namespace) -> int:
    if not args.zip and not args.install:
        raise SystemExit("mattebox plugin blender: give --zip PATH to build the extension, or --install")
    if args.zip:
        print(f"Built {build(args.zip)}")
    if args.install:
        return install(build(ROOT / "dist" / f"mattebox-blender-{version()}.zip"), find_blender(args.blender))
    return 0
