"""The Nuke plugin under each Nuke release's own Python and Qt: Nuke 14 (Python 3.9, PySide2 5.15),
Nuke 15 (3.10, PySide2 5.15) and Nuke 16 (3.11, PySide6 6.5), each an environment with Qt and nothing
else (tests/nuke_env.py builds and caches them). tests/nuke/session.py runs there in one process: every
plugin module imports without anything Nuke lacks, the plugin and the Nuke double keep to the types-nuke
stubs, the start-up files make the menu and panel, the panel shows the server offscreen, and a
MatteboxMatte node mattes a shot through the real `mattebox` client command and the real server of
this test session (which runs here, in the project's environment). This test checks what it saw and
the alpha EXRs the server wrote.

A release whose Python is not on this machine is skipped, saying which interpreter to install.
"""
from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import numpy as np
import pytest

from models import images
from nuke_env import MATTEBOX, RELEASES, ROOT, release_python, run_in_nuke

sys.path.insert(0, str(Path(__file__).parent / "nuke_double"))
from shots import write_shot  # noqa: E402  (OpenImageIO, here: the release environments have only Qt)

STUBS = next(Path(p) / "nuke-stubs" for p in sys.path if (Path(p) / "nuke-stubs" / "__init__.pyi").exists())
QT = {"PySide2": "5.15.", "PySide6": "6.5."}


@pytest.fixture(scope="module")
def shot(tmp_path_factory):
    return write_shot(tmp_path_factory.mktemp("nuke_release_shot"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def plugin_modules() -> set[str]:
    out = set()
    for folder in ("plugin/host", "plugin/nuke"):
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out


@pytest.mark.parametrize("key", list(RELEASES))
def test_nuke_release_session(key, server, shot, tmp_path, direct):
    release = RELEASES[key]
    python = release_python(key)
    comp = tmp_path / "comp"
    comp.mkdir()
    dead = "127.0.0.1:%d" % free_port()
    s = run_in_nuke(python, "session.py", tmp_path, {
        "root": str(ROOT), "stubs": str(STUBS), "shot": str(shot), "comp": str(comp), "server": server.address,
        "dead_server": dead, "mattebox": MATTEBOX})
    print("%s: Python %s, %s; %.1f s (steps: %s)" % (release.name, s["python"], s.get("qt"), s["wall_s"], s["times"]))

    # 1. only the standard library and Qt
    errors = s["import_errors"]
    if errors:  # each distinct error once, with the modules it stops and how the first of them got there
        by_error: dict = {}
        for module, (error, trace) in sorted(errors.items()):
            by_error.setdefault(error, []).append((module, trace))
        pytest.fail("%d plugin modules do not import under %s (Python %s):\n\n%s" % (
            len(errors), release.name, s["python"], "\n".join(
                "%s%s\nit stops %s" % (seen[0][1], error.rstrip(), ", ".join(m for m, _ in seen))
                for error, seen in by_error.items())))
    if s["failures"]:
        pytest.fail("under %s (Python %s), %s\n%s" % (release.name, s["python"], "\n".join(s["failures"]), s["stderr"]))
    assert s["python"].startswith(release.python + ".")
    assert s["qt"][0] == release.qt and s["qt"][1].startswith(QT[release.qt]), s["qt"]
    assert s["refused"] == [] and s["outside"] == [], (s["refused"], s["outside"])
    assert set(s["imported"]) == plugin_modules()
    # 2. the types-nuke stubs
    assert s["stubs_missing"] == {"plugin": [], "double": []} and s["double_lacks"] == []
    assert s["nuke_names_used"] > 10
    # 3. start-up files, 4. panel
    assert s["startup"] == {"menu": True, "toolbar_icon": True, "panel": ["Mattebox", "com.mattebox.panel"]}
    assert {"difference", "closed_form", "knn", "null"} <= set(s["panel_models"]) <= set(s["node_models"])
    assert s["loss_curve"] == "drawn"
    # 5. the job: shown in the panel and cancelled there, then run, then up to date
    node = s["node"]
    assert s["job_row"] == ["%s matte" % node, 0, True] and s["job_row_after"] == [False, False]
    assert s["statuses"] == {"cancelled": "cancelled: 0 of 4 frames done and kept; press Matte to do the rest",
                             "matte": "4 frames matted with difference (0 were up to date)",
                             "again": "all 4 frames are up to date (difference)"}
    folder = comp / "mattebox" / node
    assert s["alpha_read"] == [str(folder / "alpha.####.exr"), 1, 4, False] and s["percent"] == 100
    assert s["command"] == ["matte", "--model", "difference", "--input", str(shot / "src.####.exr"),
                            "--output", str(folder / "alpha.####.exr"), "--frames=1-4", "--transport", "auto",
                            "--background", str(shot / "plate.exr"), "--server", server.address,
                            "--progress", "json"]
    assert s["messages"] == [] and s["double_state"]["renders"] == []  # plain Reads: by path, nothing rendered
    plate = images.read(shot / "plate.exr", 3).pixels
    for f in range(1, 5):
        want = direct("difference", images.read(shot / f"src.{f:04d}.exr", 3).pixels, background=plate,
                      colour_space="scene_linear")
        np.testing.assert_array_equal(images.read(folder / f"alpha.{f:04d}.exr").pixels[..., 0], want)
    assert s["refused_status"] == ("closed_form needs the Trimap input: connect it, or pick a model that does "
                                   "not need it")
    assert s["down_status"].startswith("no Mattebox server answers at %s: start one with `mattebox serve`" % dead)
    assert s["down_message"] == ["Mattebox %s: %s" % (node, s["down_status"])]
    # the farm job
    template = comp / ("comp.%s.matte.json" % node)
    assert str(template) in s["farm_status"], s["farm_status"]
    defaults = {p["name"]: p.get("default") for p in json.loads(template.read_text())["parameterDefinitions"]}
    assert (defaults["Model"], defaults["FrameRange"], defaults["ChunkSize"]) == ("difference", "1-4", 2)
    assert json.loads((comp / ("comp.%s.matte.params.json" % node)).read_text()) == {
        "Input": str(shot / "src.####.exr"), "Background": str(shot / "plate.exr"),
        "Output": str(folder / "alpha.####.exr"), "AlignPlate": "false"}
