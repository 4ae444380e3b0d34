"""Real Blender for the tests: bpy 5.0.1 as a Python module in its own environment (.venv-blender at the
repository root; bpy needs numpy<2, the server numpy>=2, as in a real Blender install).

`bpy_python` (session fixture) creates the environment once, idempotently, and returns its python.
`run_in_blender(python, script, tmp, *args)` runs tests/blender/<script> there with Blender's user
folders, HOME and the Mattebox settings file all under `tmp`, and returns the JSON object the script
prints on its last stdout line.

Test modules import the fixtures they use: `from blender_env import bpy_python, run_in_blender`.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-blender"
PYTHON = VENV / "bin" / "python"
SCRIPTS = Path(__file__).resolve().parent / "blender"
BPY = "5.0.1"
#: the `mattebox` client command of the environment running the tests
MATTEBOX = str(Path(sys.executable).with_name("mattebox"))


def _has_bpy() -> bool:
    probe = "import importlib.metadata as m; print(m.version('bpy'))"
    return PYTHON.exists() and subprocess.run([PYTHON, "-c", probe], capture_output=True,
                                              text=True).stdout.strip() == BPY


def _python311() -> str:
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    found = shutil.which("python3.11")
    if not found:
        pytest.fail("the Blender tests need Python 3.11 (bpy 5.0 is built for it): install python3.11")
    return found


@pytest.fixture(scope="session")
def bpy_python() -> Path:
    """.venv-blender/bin/python with bpy==5.0.1 and numpy<2, created when missing."""
    with open(Path(tempfile.gettempdir()) / "mattebox-venv-blender.lock", "w") as lock:  # parallel runs: one builds
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _has_bpy():
            for cmd in ([_python311(), "-m", "venv", "--clear", str(VENV)],
                        [str(VENV / "bin" / "pip"), "install", "-q", f"bpy=={BPY}", "numpy<2"]):
                r = subprocess.run(cmd, capture_output=True, text=True)
                if r.returncode != 0:
                    pytest.fail(f"could not set up {VENV} for the Blender tests: {' '.join(cmd)}\n{r.stderr[-2000:]}")
    return PYTHON


def blender_env(tmp: Path, settings: dict) -> dict:
    """Environment for a bpy process: user folders, HOME and the Mattebox settings file under `tmp`."""
    (tmp / "home").mkdir(parents=True, exist_ok=True)
    config = tmp / "mattebox-client.json"
    config.write_text(json.dumps(settings))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BLENDER_", "PYTHON"))}
    env.update(HOME=str(tmp / "home"), BLENDER_USER_RESOURCES=str(tmp / "blender-user"), MATTEBOX_CONFIG=str(config))
    return env


def run_in_blender(python: Path, script: str, tmp: Path, settings: dict, *args: str, timeout: float = 240) -> dict:
    """Run tests/blender/<script> under bpy; its last stdout line is a JSON object, returned."""
    r = subprocess.run([str(python), str(SCRIPTS / script), *args], capture_output=True, text=True,
                       env=blender_env(tmp, settings), cwd=tmp, timeout=timeout)
    lines = r.stdout.strip().splitlines()
    if r.returncode != 0 or not lines:
        pytest.fail(f"{script} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}")
    return json.loads(lines[-1])
