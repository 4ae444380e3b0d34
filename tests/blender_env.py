"""Real Blender for the tests: each Blender release the extension claims, as the `bpy` module from PyPI in
its own environment at the repository root (bpy needs numpy<2, the server numpy>=2, as in a real Blender
install):

    .venv-blender-4.2   bpy==4.2.23  (4.2 LTS: scene.node_tree + Composite node)
    .venv-blender-4.5   bpy==4.5.15  (4.5 LTS: the same compositor API)
    .venv-blender-5.0   bpy==5.0.1   (5.0: scene.compositing_node_group + Group Output)

All three are wheels for CPython 3.11 only.

`bpy_python` (session fixture, parametrized over RELEASES: ids blender-4.2, blender-4.5, blender-5.0)
builds its release's environment when it is missing or holds another bpy, and returns its python. The
build is idempotent (a venv made with --clear, then one pip install; an interrupted build is redone)
and cached between runs (nothing is rebuilt while bpy and numpy are the pinned ones); parallel test
runs take a file lock per environment, so one builds while the others wait. Without a Python 3.11 on
the machine the release's tests are skipped, saying so; any other failure to build fails them.
`pytest -k "blender-4.2"` runs one release.

`run_in_blender(python, script, tmp, settings, *args)` runs tests/blender/<script> there with Blender's
user folders, HOME and the Mattebox settings file all under `tmp`, and returns the JSON object the
script prints on its last stdout line.

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
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = Path(__file__).resolve().parent / "blender"
#: release -> the bpy on PyPI that is that Blender (the newest patch release of each)
RELEASES = {"4.2": "4.2.23", "4.5": "4.5.15", "5.0": "5.0.1"}
NUMPY = "numpy<2"  # bpy is built against numpy 1.x; its own requirement ("numpy") would let 2.x in
#: the `mattebox` client command of the environment running the tests
MATTEBOX = str(Path(sys.executable).with_name("mattebox"))


def venv(release: str) -> Path:
    return ROOT / f".venv-blender-{release}"


def python_of(release: str) -> Path:
    return venv(release) / "bin" / "python"


def _installed(release: str) -> bool:
    """The release's environment is there with the pinned bpy and a numpy below 2."""
    python = python_of(release)
    probe = "import importlib.metadata as m; print(m.version('bpy'), m.version('numpy'))"
    if not python.exists():
        return False
    r = subprocess.run([python, "-c", probe], capture_output=True, text=True)
    got = r.stdout.split()
    return r.returncode == 0 and len(got) == 2 and got[0] == RELEASES[release] and int(got[1].split(".")[0]) < 2


def python311() -> str | None:
    """A CPython 3.11 to make the environments with (this one, else python3.11 on PATH that runs)."""
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    found = shutil.which("python3.11")
    if found:  # a pyenv shim exists even when its version is not installed: ask it
        r = subprocess.run([found, "-c", "import sys; print(sys.version_info[:2] == (3, 11))"],
                           capture_output=True, text=True)
        if r.stdout.strip() == "True":
            return found
    return None


def build(release: str) -> float:
    """Make the release's environment unless it is there; seconds spent (0: it was there). Waits for a
    build another test run has started. Raises RuntimeError when a step fails; pytest.skip without
    Python 3.11."""
    target, pin = venv(release), RELEASES[release]
    lock_file = Path(tempfile.gettempdir()) / f"mattebox-venv-blender-{release}.lock"
    with open(lock_file, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed(release):
            return 0.0
        base = python311()
        if base is None:
            pytest.skip(f"Blender {release} tests need Python 3.11 (bpy {pin} is built only for CPython 3.11) "
                        f"and there is no python3.11 on this machine: install it (e.g. pyenv install 3.11)")
        t0 = time.monotonic()
        for cmd in ([base, "-m", "venv", "--clear", str(target)],
                    [str(target / "bin" / "python"), "-m", "pip", "install", "-q", f"bpy=={pin}", NUMPY]):
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"could not set up {target} for the Blender {release} tests: "
                                   f"{' '.join(map(str, cmd))}\n{r.stderr[-2000:]}")
        if not _installed(release):
            raise RuntimeError(f"{target} was built but does not hold bpy {pin} with numpy<2")
        return time.monotonic() - t0


@pytest.fixture(scope="session", params=list(RELEASES), ids=[f"blender-{r}" for r in RELEASES])
def bpy_python(request) -> Path:
    """.venv-blender-<release>/bin/python with that release's bpy and numpy<2, created when missing."""
    release = request.param
    try:
        seconds = build(release)
    except RuntimeError as err:
        pytest.fail(str(err))
    if seconds:
        print(f"\nbuilt {venv(release).name} (bpy {RELEASES[release]}) in {seconds:.0f} s")
    return python_of(release)


def release_of(python: Path) -> str:
    """The release whose environment `python` is in ("4.2", ...)."""
    return python.parents[1].name.removeprefix(".venv-blender-")


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
