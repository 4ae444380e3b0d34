"""`mattebox plugin nuke --install | --uninstall | --print`: the Nuke plugin in ~/.nuke, or NUKE_PATH.

--install adds a block between marker comments to <nuke dir>/init.py that adds plugin/nuke/startup to
Nuke's plug-in path (Nuke then runs its init.py and menu.py; menu.py makes the menu, toolbar icon and panel).
Running it again replaces the block; --uninstall removes exactly that block (and the file, when the
block was all it held). --print prints the NUKE_PATH setting for a studio deployment instead.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parents[1] / "nuke" / "startup"
BEGIN = "# >>> mattebox >>> (added by `mattebox plugin nuke --install`; `--uninstall` removes it)\n"
END = "# <<< mattebox <<<\n"


def add_arguments(p: argparse.ArgumentParser) -> None:
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--install", action="store_true", help="add the plugin to <nuke dir>/init.py")
    what.add_argument("--uninstall", action="store_true", help="remove what --install added")
    what.add_argument("--print", action="store_true", help="print the NUKE_PATH line for a studio deployment")
    p.add_argument("--nuke-dir", default=str(Path.home() / ".nuke"), help="Nuke's user folder (default ~/.nuke)")


def block() -> str:
    return (f"{BEGIN}import nuke\nnuke.pluginAddPath({str(PLUGIN_DIR)!r}, addToSysPath=False)\n{END}")


def without_block(text: str) -> str:
    """`text` with the Mattebox block (and the line break --install put before it) taken out."""
    start = text.find(BEGIN)
    if start < 0:
        return text
    end = text.find(END, start)
    if end < 0:
        raise ValueError(f"the Mattebox block in init.py has no end marker {END.strip()!r}: remove it by hand")
    end += len(END)
    if text[start - 1:start] == "\n":
        start -= 1
    return text[:start] + text[end:]


def install(init: Path) -> None:
    text = without_block(init.read_text()) if init.exists() else ""
    init.parent.mkdir(parents=True, exist_ok=True)
    init.write_text(text + ("\n" if text else "") + block())


def uninstall(init: Path) -> bool:
    """Remove the block; True when there was one."""
    if not init.exists():
        return False
    text = init.read_text()
    rest = without_block(text)
    if rest == text:
        return False
    if rest:
        init.write_text(rest)
    else:
        init.unlink()
    return True


def nuke_path_line() -> str:
    if os.name == "nt":
        return f'set "NUKE_PATH={PLUGIN_DIR};%NUKE_PATH%"'
    return f'export NUKE_PATH="{PLUGIN_DIR}${{NUKE_PATH:+:$NUKE_PATH}}"'


def run(args: argparse.Namespace) -> int:
    init = Path(args.nuke_dir).expanduser() / "init.py"
    try:
        if args.print:
            print(nuke_path_line())
        elif args.install:
            install(init)
            print(f"Nuke plugin added to {init} (restart Nuke: Mattebox > Matte)", file=sys.stderr)
        elif uninstall(init):
            print(f"Nuke plugin removed from {init}", file=sys.stderr)
        else:
            print(f"{init} has no Mattebox block: nothing to remove", file=sys.stderr)
    except (OSError, ValueError) as err:
        print(f"mattebox plugin nuke: {err}", file=sys.stderr)
        return 1
    return 0
