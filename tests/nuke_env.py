"""Each Nuke release's own Python and Qt for the tests, as environments the tests build and cache.

    Nuke 14: Python 3.9  + PySide2 5.15.2.1     .venv-nuke14
    Nuke 15: Python 3.10 + PySide2 5.15.2.1     .venv-nuke15
    Nuke 16: Python 3.11 + PySide6 6.5.3        .venv-nuke16 (Qt 6.5, the VFX Reference Platform CY2024's)

An environment is a venv at the repository root made from that Python (found as `pythonX.Y` on PATH or
in pyenv's versions folder) holding only the Qt bindings: no pip, no numpy, gRPC, protobuf or
OpenImageIO, as in Nuke, where the plugin has the standard library and Qt and nothing else. It is
built once (a lock for parallel runs) and rebuilt when its stamp (interpreter, version, packages) no
longer matches; pip itself comes from the tests' own environment (`pip --python`).

`release_python(release)` returns an environment's python (pytest.skip when the release's interpreter
is not on this machine; pytest.fail when it is but the build fails). `run_in_nuke(python, script, tmp,
params)` runs tests/nuke/<script> there with HOME and the Mattebox settings file under `tmp`,
offscreen Qt, and returns the JSON object the script prints on its last stdout line.
"""
from __future__ import annotations

import fcntl
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = Path(__file__).resolve().parent / "nuke"
DOUBLE = Path(__file__).resolve().parent / "nuke_double"
#: the `mattebox` client command of the environment running the tests (and the server)
MATTEBOX = str(Path(sys.executable).with_name("mattebox"))


@dataclass(frozen=True)
class Release:
    name: str            # "Nuke 14"
    python: str          # "3.9"
    packages: tuple      # pip requirements: the Qt bindings Nuke ships, nothing else
    qt: str              # the module the plugin's qt.py should end up importing

    @property
    def venv(self) -> Path:
        return ROOT / (".venv-" + self.name.lower().replace(" ", ""))


RELEASES = {
    "nuke14": Release("Nuke 14", "3.9", ("PySide2==5.15.2.1",), "PySide2"),
    "nuke15": Release("Nuke 15", "3.10", ("PySide2==5.15.2.1",), "PySide2"),
    "nuke16": Release("Nuke 16", "3.11", ("PySide6-Essentials==6.5.3",), "PySide6"),
}
PROBE = "import sys; print(sys.executable); print('%d.%d.%d' % sys.version_info[:3])"
#: build and probe seconds of this session's environments, for the report at the end of the run
TIMES: dict = {}


def _probe(python: str) -> tuple[str, str] | None:
    """(real executable, X.Y.Z) of a python command, or None when it does not run."""
    try:
        r = subprocess.run([python, "-c", PROBE], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = r.stdout.split()
    return (lines[0], lines[1]) if r.returncode == 0 and len(lines) == 2 else None


def find_interpreter(version: str) -> tuple[str, str] | None:
    """(executable, X.Y.Z) of a Python `version` ("3.9") on this machine: `pythonX.Y` on PATH (a pyenv shim
    resolves to the real one), else pyenv's versions/X.Y.* (newest first), else the usual system paths."""
    candidates = [shutil.which("python" + version)]
    pyenv = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    found = glob.glob(os.path.join(pyenv, "versions", version + ".*", "bin", "python" + version))
    candidates += sorted(found, key=lambda p: [int(x) if x.isdigit() else -1
                                              for x in Path(p).parents[1].name.split(".")], reverse=True)
    candidates += ["/usr/local/bin/python" + version, "/usr/bin/python" + version]
    for c in candidates:
        if c and os.path.exists(c):
            got = _probe(c)
            if got and got[1].rsplit(".", 1)[0] == version:
                return got
    return None


def _stamp(release: Release, interpreter: tuple[str, str]) -> str:
    return json.dumps({"python": interpreter[0], "version": interpreter[1], "packages": list(release.packages)},
                      sort_keys=True)


def _ready(release: Release, stamp: str) -> bool:
    """The environment exists, matches its stamp and imports its Qt."""
    python = release.venv / "bin" / "python"
    stamp_file = release.venv / "mattebox-stamp.json"
    if not python.exists() or not stamp_file.exists() or stamp_file.read_text() != stamp:
        return False
    return subprocess.run([str(python), "-c", "import %s.QtWidgets" % release.qt], capture_output=True).returncode == 0


def _lock_path(release: Release) -> Path:
    checkout = hashlib.sha1(str(ROOT).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / ("mattebox-%s-%s.lock" % (checkout, release.venv.name))


def build(release: Release, interpreter: tuple[str, str]) -> Path:
    """The release's environment, (re)built when missing or stale; returns its python."""
    stamp = _stamp(release, interpreter)
    python = release.venv / "bin" / "python"
    with open(_lock_path(release), "w") as lock:  # parallel runs: one builds, the others wait and reuse it
        fcntl.flock(lock, fcntl.LOCK_EX)
        t0 = time.monotonic()
        if _ready(release, stamp):
            TIMES[release.name + " check"] = time.monotonic() - t0
            return python
        for cmd in ([interpreter[0], "-m", "venv", "--clear", "--without-pip", str(release.venv)],
                    [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
                     "--disable-pip-version-check", *release.packages]):
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                pytest.fail("could not build %s for the %s tests: %s\n%s"
                            % (release.venv, release.name, " ".join(cmd), (r.stdout + r.stderr)[-3000:]))
        (release.venv / "mattebox-stamp.json").write_text(stamp)
        if not _ready(release, stamp):
            pytest.fail("%s was built but does not import %s" % (release.venv, release.qt))
        TIMES[release.name + " build"] = time.monotonic() - t0
    return python


def release_python(key: str) -> Path:
    """The python of release `key` ("nuke14"), its environment built when needed."""
    release = RELEASES[key]
    interpreter = find_interpreter(release.python)
    if interpreter is None:
        pytest.skip("%s runs Python %s, which is not on this machine (no python%s on PATH, none in %s/versions): "
                    "install it (e.g. `pyenv install %s`) to test that release"
                    % (release.name, release.python, release.python,
                       os.environ.get("PYENV_ROOT") or "~/.pyenv", release.python))
    return build(release, interpreter)


def nuke_env(tmp: Path) -> dict:
    """Environment of a release's process: HOME and the settings file under `tmp`, offscreen Qt, and no
    PYTHON* variable of ours leaking in."""
    (tmp / "home").mkdir(parents=True, exist_ok=True)
    (tmp / "run").mkdir(mode=0o700, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "QT_", "NUKE", "MATTEBOX"))}
    env.update(HOME=str(tmp / "home"), MATTEBOX_CONFIG=str(tmp / "client.json"), QT_QPA_PLATFORM="offscreen",
               XDG_RUNTIME_DIR=str(tmp / "run"), PYTHONNOUSERSITE="1", PYTHONDONTWRITEBYTECODE="1")
    return env


def run_in_nuke(python: Path, script: str, tmp: Path, params: dict, timeout: float = 240) -> dict:
    """Run tests/nuke/<script> PARAMS.json under `python`; its last stdout line is a JSON object, returned
    (with "wall_s", the run's seconds)."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "params.json").write_text(json.dumps(params))
    t0 = time.monotonic()
    try:
        r = subprocess.run([str(python), str(SCRIPTS / script), str(tmp / "params.json")], capture_output=True,
                           text=True, env=nuke_env(tmp), cwd=tmp, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        out, errs = (x.decode(errors="replace") if isinstance(x, bytes) else x or "" for x in (err.stdout, err.stderr))
        pytest.fail("%s under %s did not end within %.0f s:\n%s\n%s" % (script, python, timeout, out[-4000:],
                                                                         errs[-6000:]))
    lines = r.stdout.strip().splitlines()
    try:
        summary = json.loads(lines[-1]) if lines else None
    except ValueError:
        summary = None
    if r.returncode != 0 or not isinstance(summary, dict):
        pytest.fail("%s under %s failed (exit %s):\n%s\n%s" % (script, python, r.returncode, r.stdout[-4000:],
                                                              r.stderr[-6000:]))
    summary["wall_s"] = round(time.monotonic() - t0, 2)
    summary["stderr"] = r.stderr[-4000:]
    return summary
