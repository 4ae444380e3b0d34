"""Shots as a studio has them, through the real `mattebox matte` command and real servers: folders
outside the home and temp folders, Nuke bbox EXRs, RGBA rotos and trimaps, ACES and log plates, a
hand-held clean plate, the unmixed foreground, and restarting a stopped job."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from models import colour, images, sequence
from plugin.cli.connect import spawn_server
from training.synthetic import make_shot, trimap_from_alpha

W, H, FIRST, N = 96, 64, 1001, 3


def mattebox(*args: str, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "plugin.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, env=None if env is None else {**os.environ, **env})


def events(run: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def shot():
    return make_shot(W, H, N, first=FIRST, seed=5)


def write_shot(folder, shot) -> dict[str, str]:
    """The shot as scene-linear EXRs, a still clean plate and 8-bit grey trimaps; the patterns."""
    folder.mkdir(parents=True, exist_ok=True)
    pat = {"input": str(folder / "src.####.exr"), "background": str(folder / "plate.exr"),
           "trimap": str(folder / "tri.####.png")}
    images.write_rgb(pat["background"], colour.convert(shot.plate, colour.SRGB, colour.SCENE_LINEAR))
    for i in range(N):
        images.write_rgb(sequence.frame_path(pat["input"], FIRST + i),
                         colour.convert(shot.image[i], colour.SRGB, colour.SCENE_LINEAR))
        images.write_rgb(sequence.frame_path(pat["trimap"], FIRST + i),
                         np.repeat(trimap_from_alpha(shot.alpha[i], band=2)[..., None], 3, 2))
    return pat


@pytest.fixture(scope="module")
def server_address():
    with spawn_server() as address:
        yield address


def read_alpha(path) -> np.ndarray:
    return images.read(path).pixels[..., 0].astype(np.float32)


# -- where the shot lives -------------------------------------------------------------------------------


def test_private_server_allows_the_jobs_own_folders(tmp_path, shot):
    """A shot outside the home and temp folders (the server's default roots) mattes with the private
    server a command starts for itself."""
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir(), tmp.mkdir()
    pat = write_shot(tmp_path / "mnt" / "projects" / "show", shot)
    out = str(tmp_path / "mnt" / "renders" / "alpha.####.exr")
    run = mattebox("matte", "--model", "difference", "--input", pat["input"], "--background", pat["background"],
                   "--output", out, "--progress", "json", env={"HOME": str(home), "TMPDIR": str(tmp)})
    assert run.returncode == 0, run.stderr + run.stdout
    assert not [e for e in events(run) if e["event"] == "notice"]  # the server read the files itself
    assert sequence.frames_on_disk(out) == list(range(FIRST, FIRST + N))


def test_a_server_that_refuses_the_folder_gets_the_pixels_by_shared_memory(tmp_path, shot, make_server):
    """A local server whose roots do not hold the shot: one notice that says what happens and how to
    let the server read there, then every frame written, the same alpha as path mode."""
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    srv = make_server(allow_roots=[str(allowed)])
    pat = write_shot(tmp_path / "show", shot)
    out = str(tmp_path / "show" / "alpha.####.exr")
    run = mattebox("matte", "--model", "difference", "--input", pat["input"], "--background", pat["background"],
                   "--output", out, "--server", srv.address, "--progress", "json")
    assert run.returncode == 0, run.stderr + run.stdout
    got = events(run)
    notices = [e["message"] for e in got if e["event"] == "notice"]
    assert len(notices) == 1 and "shared memory" in notices[0] and "--allow-root" in notices[0]
    assert [e["frame"] for e in got if e["event"] == "frame"] == list(range(FIRST, FIRST + N))

    inside = write_shot(allowed / "show", shot)
    ref = str(allowed / "show" / "alpha.####.exr")
    run = mattebox("matte", "--model", "difference", "--input", inside["input"], "--background",
                   inside["background"], "--output", ref, "--server", srv.address, "--progress", "json")
    assert run.returncode == 0 and not [e for e in events(run) if e["event"] == "notice"]
    for f in range(FIRST, FIRST + N):
        np.testing.assert_array_equal(read_alpha(sequence.frame_path(out, f)), read_alpha(sequence.frame_path(ref, f)))


def test_transport_path_only_reports_the_refusal_with_its_fix(tmp_path, shot, make_server):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    srv = make_server(allow_roots=[str(allowed)])
    pat = write_shot(tmp_path / "show", shot)
    run = mattebox("matte", "--model", "difference", "--input", pat["input"], "--background", pat["background"],
                   "--output", str(tmp_path / "show" / "a.####.exr"), "--server", srv.address,
                   "--transport", "path", "--progress", "json")
    assert run.returncode == 1
    errors = [e["message"] for e in events(run) if e["event"] == "error"]
    assert len(errors) == 1 and "PERMISSION_DENIED" in errors[0]
    assert "mattebox serve --allow-root" in errors[0] and "allowed_roots" in errors[0]
    assert not sequence.frames_on_disk(str(tmp_path / "show" / "a.####.exr"))


# -- restarting a stopped job ------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["path", "shm"])
def test_skip_existing_keeps_complete_frames_and_redoes_the_rest(tmp_path, shot, server_address, transport):
    pat = write_shot(tmp_path / "show", shot)
    out = str(tmp_path / "out" / "alpha.####.exr")
    args = ["matte", "--model", "difference", "--input", pat["input"], "--background", pat["background"],
            "--output", out, "--server", server_address, "--progress", "json", "--transport", transport]
    assert mattebox(*args).returncode == 0
    kept = sequence.frame_path(out, FIRST)
    stamp = os.stat(kept).st_mtime_ns
    os.unlink(sequence.frame_path(out, FIRST + 1))                      # never written (job killed)
    with open(sequence.frame_path(out, FIRST + 2), "r+b") as f:         # written by something else, cut short
        f.truncate(100)
    run = mattebox(*args, "--skip-existing")
    assert run.returncode == 0, run.stderr + run.stdout
    frames = {e["frame"]: e for e in events(run) if e["event"] == "frame"}
    assert frames[FIRST].get("skipped") is True
    assert not frames[FIRST + 1].get("skipped") and not frames[FIRST + 2].get("skipped")
    assert os.stat(kept).st_mtime_ns == stamp
    done = [e for e in events(run) if e["event"] == "done"][0]
    assert done["done"] == N and done["skipped"] == 1
    assert read_alpha(sequence.frame_path(out, FIRST + 2)).shape == (H, W)
