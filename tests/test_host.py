"""The host plugins' shared side (plugin/host): the settings file, the `mattebox` client command run in a
subprocess with JSON progress against a real server, and the local server a host may start."""
from __future__ import annotations

import socket
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import write_pixels
from models import images
from plugin.host import client, config
from training.synthetic import make_shot, trimap_from_alpha

MATTEBOX = str(Path(sys.executable).with_name("mattebox"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_shot(folder: Path, frames: int, w: int = 80, h: int = 64) -> tuple[str, str]:
    """An EXR-free 16-bit sequence src.####.tif and its plate.tif; returns (pattern, plate)."""
    shot = make_shot(width=w, height=h, frames=frames, first=1, seed=3)
    for i, img in enumerate(shot.image):
        write_pixels(folder / f"src.{i + 1:04d}.tif", (img * 65535).round().astype(np.uint16))
    write_pixels(folder / "plate.tif", (shot.plate * 65535).round().astype(np.uint16))
    return str(folder / "src.####.tif"), str(folder / "plate.tif")


def test_settings_default_round_trip_and_unknown_keys(tmp_path, monkeypatch):
    file = tmp_path / "client.json"
    monkeypatch.setenv("MATTEBOX_CONFIG", str(file))
    assert config.load() == config.Config()
    config.save(config.Config(client=MATTEBOX, server="10.0.0.5:6000", start_server=False))
    file.write_text(file.read_text().replace('"start_server"', '"newer_key": 1, "start_server"'))
    assert config.load() == config.Config(client=MATTEBOX, server="10.0.0.5:6000", start_server=False)


def test_broken_settings_and_missing_client_say_what_to_do(tmp_path):
    file = tmp_path / "client.json"
    file.write_text("{not json")
    with pytest.raises(config.ConfigError, match="install.py"):
        config.load(file)
    with pytest.raises(config.ConfigError, match="install.py"):
        config.Config(client=str(tmp_path / "no-such-mattebox")).executable()


def test_job_reports_every_frame_and_writes_the_alpha(server, tmp_path):
    src, plate = write_shot(tmp_path, 3)
    cfg = config.Config(client=MATTEBOX, server=server.address)
    assert "difference" in [m["name"] for m in client.models(cfg)]
    job = client.Job(cfg, ["matte", "--model", "difference", "--input", src, "--background", plate,
                           "--output", str(tmp_path / "alpha.####.exr")])
    assert job.wait(120) == 0
    events = job.poll()
    assert [e["event"] for e in events] == ["start", "frame", "frame", "frame", "done"]
    assert job.percent == 100.0 and job.summary["done"] == 3 and job.failure() == ""
    for e in events[1:4]:
        alpha = images.read(e["output"], 1).pixels
        assert alpha.shape == (64, 80, 1) and 0.0 <= alpha.min() and alpha.max() <= 1.0


def test_job_failures_are_explained(server, tmp_path):
    src, _ = write_shot(tmp_path, 1)
    cfg = config.Config(client=MATTEBOX, server=server.address)
    job = client.Job(cfg, ["matte", "--model", "no_such_model", "--input", src, "--output", str(tmp_path / "a.exr")])
    assert job.wait(120) == 1
    job.poll()
    assert "unknown model 'no_such_model'" in job.failure()
    down = config.Config(client=MATTEBOX, server=f"127.0.0.1:{free_port()}", start_server=False)
    job = client.Job(down, ["matte", "--model", "difference", "--input", src, "--output", str(tmp_path / "a.exr")])
    job.wait(120)
    job.poll()
    assert "no Mattebox server answers" in job.failure() and "mattebox serve" in job.failure()
    with pytest.raises(client.HostError, match="start a local server"):
        client.ensure_server(down)


def test_cancel_stops_the_job_and_keeps_finished_frames(server, tmp_path):
    shot = make_shot(width=320, height=240, frames=12, first=1, seed=5)
    for i, (img, alpha) in enumerate(zip(shot.image, shot.alpha)):
        write_pixels(tmp_path / f"src.{i + 1:04d}.tif", (img * 65535).round().astype(np.uint16))
        write_pixels(tmp_path / f"tri.{i + 1:04d}.png", trimap_from_alpha(alpha, band=6)[..., None])
    cfg = config.Config(client=MATTEBOX, server=server.address)
    job = client.Job(cfg, ["matte", "--model", "closed_form", "--input", str(tmp_path / "src.####.tif"),
                           "--trimap", str(tmp_path / "tri.####.png"), "--output", str(tmp_path / "alpha.####.exr")])
    written = []
    while job.running and not written:
        written = [e for e in job.poll() if e["event"] == "frame"]
    job.cancel()
    assert job.wait(60) == 130
    written += [e for e in job.poll() if e["event"] == "frame"]
    assert 1 <= len(written) < 12 and job.failure() == ""
    assert all(Path(e["output"]).exists() for e in written)
    assert client.models(cfg)  # the server goes on serving


def test_a_host_starts_and_stops_a_local_server(tmp_path):
    cfg = config.Config(client=MATTEBOX, server=f"127.0.0.1:{free_port()}", start_server=True)
    local = client.ensure_server(cfg)
    try:
        assert local is not None and client.reachable(cfg.server)
        assert client.ensure_server(cfg) is None  # one is answering now: nothing more to start
        assert "null" in [m["name"] for m in client.models(cfg)]
    finally:
        local.stop()
    assert not client.reachable(cfg.server)
