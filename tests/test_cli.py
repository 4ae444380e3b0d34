"""The `mattebox` command line as a user and a host plugin run it: real processes, real servers."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from models import colour, images, sequence
from plugin.cli.connect import spawn_server
from plugin.client.connection import Client
from server.api import pb
from training.synthetic import make_shot, trimap_from_alpha


def mattebox(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "plugin.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def shot_files(tmp_path_factory):
    """A 4-frame 96x64 shot as scene-linear EXRs with a clean plate and 8-bit trimaps."""
    d = tmp_path_factory.mktemp("shot")
    shot = make_shot(96, 64, 4, first=11, seed=3)
    pat = {"input": str(d / "src.####.exr"), "background": str(d / "plate.exr"), "trimap": str(d / "tri.%04d.png")}
    images.write_rgb(pat["background"], colour.convert(shot.plate, colour.SRGB, colour.SCENE_LINEAR))
    for i in range(4):
        images.write_rgb(sequence.frame_path(pat["input"], 11 + i),
                         colour.convert(shot.image[i], colour.SRGB, colour.SCENE_LINEAR))
        images.write_rgb(sequence.frame_path(pat["trimap"], 11 + i),
                         np.repeat(trimap_from_alpha(shot.alpha[i], band=2)[..., None], 3, 2))
    return pat


@pytest.fixture(scope="module")
def server_address():
    with spawn_server() as address:
        yield address


def test_models_json_lists_every_model_locally_and_from_a_server(server_address):
    local = json.loads(mattebox("models", "--json").stdout)
    served = json.loads(mattebox("models", "--json", "--server", server_address).stdout)
    assert [m["name"] for m in local] == [m["name"] for m in served]
    by_name = {m["name"]: m for m in local}
    assert by_name["closed_form"]["inputs"] == ["image", "trimap"]
    assert by_name["difference"]["inputs"] == ["image", "background"]
    for m in local:
        assert {"name", "inputs", "params", "gflops_512", "weights"} <= m.keys()


@pytest.mark.parametrize("transport", ["path", "stream", "unary", "shm"])
def test_matte_sequence_by_every_transport_gives_the_same_alpha(shot_files, tmp_path, server_address, transport):
    out = str(tmp_path / "a.$F4.exr")
    r = mattebox("matte", "--model", "difference", "--input", shot_files["input"], "--background",
                 shot_files["background"], "--output", out, "--server", server_address, "--transport", transport,
                 "--progress", "json")
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert [e["event"] for e in events] == ["start", "frame", "frame", "frame", "frame", "done"]
    assert [e["frame"] for e in events[1:5]] == [11, 12, 13, 14]  # range found on disk
    assert events[4]["percent"] == 100.0
    with Client(server_address) as c:
        for e in events[1:5]:
            got = images.read(e["output"])
            assert got.pixels.dtype == np.float16 and got.pixels.shape == (64, 96, 1)
            src = images.read(sequence.frame_path(shot_files["input"], e["frame"]), 3)
            plate = images.read(shot_files["background"], 3)
            want = c.matte("difference", src.pixels, background=plate.pixels)
            np.testing.assert_array_equal(got.pixels[..., 0], want)


def test_matte_without_server_starts_a_private_one_and_writes_png(shot_files, tmp_path):
    out = tmp_path / "alpha.png"
    r = mattebox("matte", "--model", "closed_form", "--input", sequence.frame_path(shot_files["input"], 12),
                 "--trimap", sequence.frame_path(shot_files["trimap"], 12), "--output", str(out))
    assert r.returncode == 0, r.stderr
    a = images.read(out)
    assert a.pixels.dtype == np.uint8 and a.pixels.shape == (64, 96, 1)
    assert 0 < a.pixels.mean() < 255


def test_matte_failures_exit_non_zero_with_a_clear_message(shot_files, tmp_path, server_address):
    r = mattebox("matte", "--model", "closed_form", "--input", shot_files["input"], "--output",
                 str(tmp_path / "a.####.exr"), "--server", server_address, "--progress", "json")
    assert r.returncode == 1
    err = json.loads(r.stdout.splitlines()[-1])
    assert err["event"] == "error" and "needs a trimap" in err["message"]
    r = mattebox("matte", "--model", "nope", "--input", shot_files["input"], "--output", str(tmp_path / "b.####.exr"),
                 "--server", server_address)
    assert r.returncode == 1 and "unknown model 'nope'" in r.stderr and "closed_form" in r.stderr
    r = mattebox("matte", "--model", "difference", "--input", str(tmp_path / "none.####.exr"), "--background",
                 shot_files["background"], "--output", str(tmp_path / "c.####.exr"), "--server", server_address)
    assert r.returncode == 1 and "no frames on disk match" in r.stderr


def test_missing_frame_fails_alone_and_exit_code_says_so(shot_files, tmp_path, server_address):
    missing = tmp_path / "src.####.exr"
    for f in (11, 12, 14):  # frame 13 missing
        data = open(sequence.frame_path(shot_files["input"], f), "rb").read()
        open(sequence.frame_path(str(missing), f), "wb").write(data)
    r = mattebox("matte", "--model", "difference", "--input", str(missing), "--background", shot_files["background"],
                 "--output", str(tmp_path / "a.####.exr"), "--frames", "11-14", "--server", server_address,
                 "--progress", "json")
    assert r.returncode == 1
    events = [json.loads(line) for line in r.stdout.splitlines()]
    errors = [e for e in events if e["event"] == "error"]
    assert [e["frame"] for e in errors] == [13] and "src.0013.exr" in errors[0]["message"]
    assert events[-1] == {**events[-1], "event": "done", "done": 3, "failed": 1}
    assert sorted(os.listdir(tmp_path)) == ["a.0011.exr", "a.0012.exr", "a.0014.exr", "src.0011.exr",
                                            "src.0012.exr", "src.0014.exr"]


def test_eval_reports_zero_for_a_perfect_matte_and_more_for_a_worse_one(tmp_path):
    shot = make_shot(96, 64, 1, seed=5)
    gt, tri = str(tmp_path / "gt.exr"), str(tmp_path / "tri.png")
    images.write_alpha(gt, shot.alpha[0])
    images.write_rgb(tri, trimap_from_alpha(shot.alpha[0])[..., None].repeat(3, 2))
    images.write_alpha(tmp_path / "bad.exr", np.clip(shot.alpha[0] + 0.2, 0, 1))
    perfect = json.loads(mattebox("eval", "--pred", gt, "--gt", gt, "--trimap", tri, "--json").stdout)["mean"]
    worse = json.loads(mattebox("eval", "--pred", str(tmp_path / "bad.exr"), "--gt", gt, "--trimap", tri,
                                "--json").stdout)["mean"]
    assert perfect == {"sad": 0.0, "mse": 0.0, "grad": 0.0, "conn": 0.0}
    assert worse["sad"] > 0 and worse["mse"] > 0


def test_serve_refuses_a_public_bind_without_token():
    r = mattebox("serve", "--host", "0.0.0.0", "--port", "0", timeout=60)
    assert r.returncode == 2 and "token" in r.stderr


def test_a_stopped_matte_reports_every_frame_it_leaves_on_disk(tmp_path, server):
    """A host stops `mattebox matte` (SIGTERM) mid-job: the job stops on the server, the frames already on
    their way are finished and reported, and the frames on disk are exactly the ones reported done."""
    shot = make_shot(320, 180, 1, seed=2)
    images.write_rgb(tmp_path / "src.exr", shot.image[0].astype(np.float16))
    images.write_rgb(tmp_path / "tri.png", trimap_from_alpha(shot.alpha[0], band=20)[..., None].repeat(3, 2))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "plugin.cli.main", "matte", "--server", server.address,
                             "--model", "knn", "--input", str(tmp_path / "src.exr"), "--trimap", str(tmp_path / "tri.png"),
                             "--output", str(out / "a.####.exr"), "--frames", "1-200", "--progress", "json"],
                            stdout=subprocess.PIPE, text=True)
    events = []
    for line in proc.stdout:
        events.append(json.loads(line))
        if events[-1]["event"] == "frame" and len(events) == 2:
            proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 130
    assert events[-1]["event"] == "done" and events[-1]["cancelled"]
    reported = sorted(os.path.basename(e["output"]) for e in events if e["event"] == "frame")
    assert 1 <= len(reported) < 200 and sorted(os.listdir(out)) == reported


def test_sigterm_finishes_the_frame_in_flight_and_leaves_no_half_files(tmp_path):
    """A server stopped mid-job: the job ends, every alpha on disk is complete, no temp files remain."""
    src = tmp_path / "src.exr"
    shot = make_shot(320, 180, 1, seed=2)
    images.write_rgb(src, shot.image[0].astype(np.float16))
    images.write_rgb(tmp_path / "tri.png", trimap_from_alpha(shot.alpha[0], band=20)[..., None].repeat(3, 2))
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen([sys.executable, "-m", "plugin.cli.main", "serve", "--port", "0", "--ready-file",
                             str(ready), "--allow-root", str(tmp_path)], stderr=subprocess.PIPE, text=True)
    try:
        while not ready.exists():
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.05)
        address = json.loads(ready.read_text())["address"]
        out = tmp_path / "out"
        with Client(address) as c:
            call = c.run_job(pb.JobRequest(model="closed_form", input=str(src), trimap=str(tmp_path / "tri.png"),
                                           first=1, last=400, output=str(out / "a.####.exr"), colour_space="sRGB"))
            events = iter(call)
            next(events)  # started
            assert next(events).WhichOneof("event") == "done"
            proc.send_signal(signal.SIGTERM)
            rest = [ev.WhichOneof("event") for ev in events]
        assert proc.wait(60) == 0
        assert rest[-1] == "summary"
        written = sorted(os.listdir(out))
        assert all(name.startswith("a.") and name.endswith(".exr") for name in written)  # no temp files
        assert 1 <= len(written) < 400
        for name in written:
            assert images.read(out / name).pixels.shape == (180, 320, 1)
    finally:
        if proc.poll() is None:
            proc.kill()
