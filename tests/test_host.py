"""The host plugins' shared side (plugin/host): the settings file, the `mattebox` client command run in a
subprocess with JSON progress against a real server, and the local server a host may start."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
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


def test_settings_studio_keys_round_trip_and_combine(tmp_path, monkeypatch):
    file = tmp_path / "client.json"
    cfg = config.Config(client=MATTEBOX, servers=["gpu1:50051", " gpu2:50052"], allowed_roots=["~/shows", "/mnt/p",
                        "/mnt/p"], token="s3cret", tls_ca="/etc/mattebox/ca.pem")
    config.save(cfg, file)
    assert json.loads(file.read_text())["servers"] == ["gpu1:50051", " gpu2:50052"]
    loaded = config.load(file)
    assert loaded == cfg
    # servers, when given, replace server: the client balances round-robin over them
    assert loaded.address() == "gpu1:50051,gpu2:50052" and loaded.addresses() == ["gpu1:50051", "gpu2:50052"]
    assert config.Config(server="10.0.0.5:6000").address() == "10.0.0.5:6000"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert loaded.roots() == [str(tmp_path / "home" / "shows"), "/mnt/p"]
    assert not client.is_local(loaded.address()) and client.is_local("127.0.0.1:5") and not client.is_local(
        "127.0.0.1:5,127.0.0.1:6")  # a list of servers is never a server the plugin starts


def test_settings_of_the_wrong_type_say_which_key_and_file(tmp_path):
    file = tmp_path / "client.json"
    for data, fragment in (({"allowed_roots": "/mnt/projects"}, "'allowed_roots' is \"/mnt/projects\", it must be a list"),
                           ({"servers": "a:1,b:2"}, "'servers' is \"a:1,b:2\", it must be a list"),
                           ({"servers": ["gpu1"]}, "'servers' has 'gpu1', which is not host:port"),
                           ({"start_server": "yes"}, "'start_server' is \"yes\", it must be true or false"),
                           ({"token": 123}, "'token' is 123"), ({"tls_ca": None}, "'tls_ca' is null"),
                           ({"server": "localhost"}, "'server' has 'localhost', which is not host:port"),
                           ([1, 2], "not a JSON object")):
        file.write_text(json.dumps(data))
        with pytest.raises(config.ConfigError) as err:
            config.load(file)
        assert str(file) in str(err.value) and fragment in str(err.value), str(err.value)
    with pytest.raises(config.ConfigError, match="'allowed_roots'"):
        config.Config(allowed_roots="/mnt")


def test_install_keeps_the_studio_keys_and_sets_aside_a_broken_file(tmp_path, monkeypatch):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import install

    file = tmp_path / "client.json"
    monkeypatch.setenv("MATTEBOX_CONFIG", str(file))
    config.save(config.Config(client="/old/mattebox", servers=["gpu1:50051"], allowed_roots=["/mnt/p"], token="t"))
    install.write_host_config(MATTEBOX)
    assert config.load() == config.Config(client=MATTEBOX, servers=["gpu1:50051"], allowed_roots=["/mnt/p"], token="t")
    file.write_text('{"allowed_roots": "/mnt/p", "token": "t"}')
    install.write_host_config(MATTEBOX)
    assert config.load() == config.Config(client=MATTEBOX)
    assert json.loads((tmp_path / "client.json.broken").read_text()) == {"allowed_roots": "/mnt/p", "token": "t"}


def fake_client(folder: Path, events: list[dict]) -> str:
    """A stand-in `mattebox` command that prints `events` as JSON lines, then one event with its own
    command line and the token it was given in its environment."""
    path = folder / "fake-mattebox"
    lines = "".join(f"print(json.dumps({e!r}), flush=True)\n" for e in events)
    path.write_text(f"#!{sys.executable}\nimport json, os, sys\n{lines}"
                    "print(json.dumps({'event': 'args', 'argv': sys.argv[1:], "
                    "'token': os.environ.get('MATTEBOX_TOKEN')}))\n")
    path.chmod(0o755)
    return str(path)


def test_job_gathers_notices_and_failed_alignments_and_hides_the_token(tmp_path):
    ok = {"ok": True, "inliers": 80, "shift_px": 3.2, "message": "aligned"}
    bad = {"ok": False, "inliers": 3, "shift_px": 0.0, "message": "too few feature matches (3)"}
    note = "the server may not read /mnt/x: sending the pixels through shared memory"
    events = [{"event": "start", "job": "j", "frames": 3}, {"event": "notice", "message": note},
              {"event": "frame", "frame": -1, "output": "a.-001.exr", "seconds": 0.1, "percent": 33.3, "alignment": ok},
              {"event": "frame", "frame": 0, "output": "a.0000.exr", "seconds": 0.1, "percent": 66.7, "alignment": bad,
               "foreground": "f.0000.exr"},
              {"event": "notice", "message": note},
              {"event": "frame", "frame": 1, "output": "a.0001.exr", "seconds": 0.0, "percent": 100.0, "skipped": True},
              {"event": "done", "done": 3, "failed": 0, "cancelled": False, "seconds": 0.3, "skipped": 1,
               "misaligned": 1}]
    cfg = config.Config(client=fake_client(tmp_path, events), servers=["gpu1:1", "gpu2:2"], token="s3cret",
                        tls_ca=str(tmp_path / "ca.pem"))
    job = client.Job(cfg, ["matte", "--model", "bgm"])
    assert job.wait(30) == 0
    got = job.poll()
    args = got[-1]
    assert args["token"] == "s3cret" and "s3cret" not in " ".join(job.command)  # environment, not command line
    assert args["argv"] == ["matte", "--model", "bgm", "--server", "gpu1:1,gpu2:2", "--tls-ca", str(tmp_path / "ca.pem"),
                            "--progress", "json"]
    assert job.notices == [note] and job.misaligned == {0: "too few feature matches (3)"}
    assert job.summary["skipped"] == 1 and job.failure() == ""
    assert job.warnings() == [note, "the clean plate could not be aligned on frame 0 (too few feature matches (3)): "
                                    "it was matted with the plate as given"]
    assert client.warning_lines([], {3: "x", 7: "y"}) == [
        "the clean plate could not be aligned on frames 3, 7 (x): they were matted with the plate as given"]
    plain = client.Job(config.Config(client=cfg.client), ["models"])
    plain.wait(30)
    assert plain.poll()[-1]["argv"] == ["models", "--server", config.DEFAULT_SERVER, "--progress", "json"]


def test_token_and_server_list_reach_real_servers(server, make_server, tmp_path):
    guarded = make_server(token="s3cret")
    with pytest.raises(client.HostError, match="token"):
        client.models(config.Config(client=MATTEBOX, server=guarded.address))
    cfg = config.Config(client=MATTEBOX, server=guarded.address, token="s3cret")
    assert "difference" in [m["name"] for m in client.models(cfg)]
    src, plate = write_shot(tmp_path, 2)
    named = make_server().address.replace("127.0.0.1", "localhost")  # studio servers are named, not numbered
    both = config.Config(client=MATTEBOX, server="127.0.0.1:1", servers=[server.address, named])
    assert client.reachable(both.address()) and client.ensure_server(both) is None
    job = client.Job(both, ["matte", "--model", "difference", "--input", src, "--background", plate,
                            "--output", str(tmp_path / "alpha.####.exr")])  # round-robin over two servers
    assert job.wait(120) == 0, job.failure()
    job.poll()
    assert job.summary["done"] == 2 and (tmp_path / "alpha.0002.exr").exists()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_tls_ca_reaches_a_tls_server(make_server, tmp_path):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(tmp_path / "key.pem"),
                    "-out", str(tmp_path / "cert.pem")], check=True, capture_output=True)
    tls = make_server(tls_cert=str(tmp_path / "cert.pem"), tls_key=str(tmp_path / "key.pem"), token="t0k")
    cfg = config.Config(client=MATTEBOX, server=tls.address, token="t0k", tls_ca=str(tmp_path / "cert.pem"))
    assert "closed_form" in [m["name"] for m in client.models(cfg)]
    with pytest.raises(client.HostError):
        client.models(config.Config(client=MATTEBOX, server=tls.address, token="t0k"), timeout=30)


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


def test_a_host_starts_and_stops_a_local_server_with_the_allowed_roots(tmp_path, monkeypatch):
    """The local server may use the settings' allowed_roots besides home and temp (here both moved into
    tmp_path, so that shots/ lies outside them): a shot in an allowed root is read by the server, one
    outside gets a notice and its pixels go by shared memory."""
    home, temp, studio, elsewhere = (tmp_path / n for n in ("home", "tmp", "studio", "elsewhere"))
    for folder in (home, temp, studio, elsewhere):
        folder.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    cfg = config.Config(client=MATTEBOX, server=f"127.0.0.1:{free_port()}", start_server=True,
                        allowed_roots=[str(studio)])
    assert client.local_roots(cfg) == [str(home), str(temp), str(studio)]
    local = client.ensure_server(cfg)
    try:
        assert local is not None and client.reachable(cfg.address())
        assert local.command[-6:] == ["--allow-root", str(home), "--allow-root", str(temp), "--allow-root", str(studio)]
        assert client.ensure_server(cfg) is None  # one is answering now: nothing more to start
        assert "null" in [m["name"] for m in client.models(cfg)]
        for folder, noticed in ((studio, False), (elsewhere, True)):
            src, plate = write_shot(folder, 1)
            job = client.Job(cfg, ["matte", "--model", "difference", "--input", src, "--background", plate,
                                   "--output", str(folder / "alpha.####.exr")])
            assert job.wait(120) == 0, job.failure()
            job.poll()
            assert (folder / "alpha.0001.exr").exists() and bool(job.notices) == noticed, job.notices
        assert "shared memory" in job.notices[0] and job.warnings() == job.notices
    finally:
        local.stop()
    assert not client.reachable(cfg.address())
