"""A shared server never loses, overwrites or leaks a studio's frames (issue 14: defects 2, 3, 4 and the
smaller ones of 9), tried against real servers the way an unlucky or hostile client would.

- A full volume: every write is checked end to end (OpenImageIO's errors, close, fsync, size, read-back
  before the rename); a frame that cannot be written is an error event, leaves no temp file, and the
  command exits non-zero. Two real limits: a tiny tmpfs (ENOSPC, what a full shared volume answers; needs
  root to mount, as on the development and CI machines) and RLIMIT_FSIZE on the writing process (EFBIG;
  runs anywhere). The server runs in its own process there, so a writer that kills its process (libjpeg
  calls exit() on a write error) shows as a dead server, not a dead test run.
- Overwriting sources: a job whose output (or foreground) could name one of its input, trimap or plate
  files is refused before any frame runs, whatever the spelling (token, folder through a symlink, a
  file that is a symlink), by the server and by `mattebox matte` when it writes the files itself.
- Fine-tuning: every training and held-back frame of every pattern is checked against the allowed
  roots, resolved, before the child process starts.
- Outputs honour the umask; `--queue-size` below 1 is refused; frame tokens are at most 10 digits wide;
  trimap values between the three levels are snapped to the nearest and said so.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from conftest import job_events, write_pixels
from models import images, pixels, sequence
from plugin.cli import connect
from plugin.client.connection import Client
from server import finetune as server_finetune
from server.api import pb
from server.scheduler import Scheduler

N = 160                      # frame side: noisy alphas of 13 to 60 KB in every output format
FRAMES = (1, 4)
FORMATS = (".png", ".exr", ".tif", ".dpx", ".jpg")


def mattebox(*args: str, limit_bytes: int = 0, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `mattebox ARGS` (JSON progress) in a new process; limit_bytes: its RLIMIT_FSIZE."""
    return subprocess.run([sys.executable, "-m", "plugin.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, preexec_fn=_file_limit(limit_bytes) if limit_bytes else None)


def _file_limit(limit_bytes: int):
    def apply() -> None:  # Python ignores SIGXFSZ, so a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    return apply


def events_of(r: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


@contextlib.contextmanager
def serve(*roots: Path, limit_bytes: int = 0):
    """`mattebox serve` in its own process, allowed `roots`; yields (address, process), its stderr a
    pipe (what a dead server said)."""
    allow = [a for root in roots for a in ("--allow-root", str(root))]
    with connect.server_process(*allow, stderr=subprocess.PIPE, text=True,
                                preexec_fn=_file_limit(limit_bytes) if limit_bytes else None) as info:
        yield info["address"], info["process"]


@contextlib.contextmanager
def tmpfs(path: Path, size_kib: int):
    """A real tmpfs of size_kib mounted at path (skips where mounting is not allowed: not root)."""
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(path)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}); the RLIMIT_FSIZE case covers the same checks")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(volume: Path, leave: int) -> None:
    """Fill `volume` so that about `leave` bytes stay free."""
    st = os.statvfs(volume)
    free = st.f_bavail * st.f_frsize
    with open(volume / "filler", "ab") as f:
        f.write(b"\0" * max(0, free - leave))


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def noisy(tmp_path_factory) -> Path:
    """src.0001.png ... src.0004.png and plate.png: the difference key of each is a noisy alpha that
    compresses badly (13 KB as JPEG to 60 KB as DPX at 160x160)."""
    folder = tmp_path_factory.mktemp("noisy")
    rng = np.random.default_rng(5)
    plate = np.full((N, N, 3), 128, np.uint8)
    write_pixels(folder / "plate.png", plate)
    for f in range(FRAMES[0], FRAMES[1] + 1):
        img = plate.copy()
        img[..., 0] += np.rint(rng.uniform(0.04, 0.2, (N, N)) * 255).astype(np.uint8)
        write_pixels(folder / f"src.{f:04d}.png", img)
    return folder


def matte_args(noisy: Path, output: str, address: str, transport: str = "path") -> list[str]:
    return ["matte", "--model", "difference", "--input", str(noisy / "src.####.png"), "--background",
            str(noisy / "plate.png"), "--output", output, "--frames", f"{FRAMES[0]}-{FRAMES[1]}",
            "--transport", transport, "--server", address, "--progress", "json"]


def check_failed_frames(r: subprocess.CompletedProcess, out_dir: Path, ext: str, keep=("filler",)) -> None:
    """Exit code, events and files of a job that could not write all its frames: every frame is either
    an error event or a whole file on disk, no temp file is left, the summary says how many failed."""
    assert r.returncode == 1, (ext, r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    events = events_of(r)
    done = [e["frame"] for e in events if e["event"] == "frame"]
    failed = [e["frame"] for e in events if e["event"] == "error" and e["frame"] is not None]
    summary = events[-1]
    assert summary["event"] == "done", events
    assert failed, f"{ext}: no frame failed on a full volume: {events}"
    assert sorted(done + failed) == list(range(FRAMES[0], FRAMES[1] + 1)), events
    assert (summary["done"], summary["failed"]) == (len(done), len(failed)), summary
    for e in events:
        if e["event"] == "error":
            assert f"a.{e['frame']:04d}{ext}" in e["message"], e
    names = sorted(p.name for p in out_dir.iterdir() if p.name not in keep) if out_dir.exists() else []
    assert names == sorted(f"a.{f:04d}{ext}" for f in done), (ext, names, done)  # no temp files, no empty ones
    for f in done:
        px = images.read(out_dir / f"a.{f:04d}{ext}").pixels
        assert px.shape == (N, N, 1)


def test_frames_that_a_full_volume_cannot_hold_fail_and_the_command_exits_non_zero(noisy, tmp_path, assert_serves):
    """A nearly full shared volume (a real tmpfs): each format's writer either writes a whole frame or
    the frame is an error; the server goes on, and writes the frames once there is room again."""
    with tmpfs(tmp_path / "vol", 384) as vol, serve(tmp_path, noisy) as (address, proc):
        for ext in FORMATS:
            out = vol / ext[1:]
            out.mkdir()
            fill(vol, 24 << 10)
            r = mattebox(*matte_args(noisy, str(out / f"a.####{ext}"), address))
            check_failed_frames(r, out, ext)
            assert proc.poll() is None, proc.stderr.read()
            shutil.rmtree(out)
            os.remove(vol / "filler")
        # the command writing the files itself (frames read here, pixels streamed): the same checks
        out = vol / "stream"
        out.mkdir()
        fill(vol, 24 << 10)
        r = mattebox(*matte_args(noisy, str(out / "a.####.png"), address, "stream"))
        check_failed_frames(r, out, ".png")
        shutil.rmtree(out)
        os.remove(vol / "filler")
        # room again: the same server writes every frame
        r = mattebox(*matte_args(noisy, str(vol / "ok" / "a.####.png"), address))
        assert r.returncode == 0, r.stdout + r.stderr
        assert sorted(os.listdir(vol / "ok")) == [f"a.{f:04d}.png" for f in range(FRAMES[0], FRAMES[1] + 1)]
        assert_serves(address)


def test_frames_past_the_file_size_limit_fail_and_the_command_exits_non_zero(noisy, tmp_path, assert_serves):
    """The same with RLIMIT_FSIZE (8 KiB) on the server (path mode) and on the command (stream): writes
    fail with EFBIG after a partial file; no frame fits, so every one is an error and nothing is left."""
    limit = 8 << 10
    with serve(tmp_path, noisy, limit_bytes=limit) as (address, proc):
        for ext in FORMATS:
            out = tmp_path / f"out{ext}"
            r = mattebox(*matte_args(noisy, str(out / f"a.####{ext}"), address))
            check_failed_frames(r, out, ext)
            assert proc.poll() is None, proc.stderr.read()
        out = tmp_path / "stream"
        r = mattebox(*matte_args(noisy, str(out / "a.####.jpg"), address, "stream"), limit_bytes=limit)
        check_failed_frames(r, out, ".jpg")
        assert_serves(address)


# -- defect 3: a job never writes over its own sources ------------------------------------------------


@pytest.fixture
def src(tmp_path) -> Path:
    """shot.1001.exr, shot.1002.exr, tri.1001.png, tri.1002.png and plate.exr (small)."""
    folder = tmp_path / "src"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for f in (1001, 1002):
        images.write_rgb(folder / f"shot.{f:04d}.exr", rng.random((24, 32, 3)).astype(np.float16))
        tri = np.full((24, 32, 1), 128, np.uint8)
        tri[:6], tri[-6:] = 0, 255
        write_pixels(folder / f"tri.{f:04d}.png", tri)
    images.write_rgb(folder / "plate.exr", rng.random((24, 32, 3)).astype(np.float16))
    return folder


def _overwrite_cases(d: Path) -> dict[str, tuple[dict, str, str]]:
    """name: (JobRequest fields, the output-side pattern and the source pattern the message must name)."""
    shot, plate, tri = str(d / "shot.####.exr"), str(d / "plate.exr"), str(d / "tri.####.png")
    diff = dict(model="difference", input=shot, background=plate, first=1001, last=1002)
    return {
        "output is the input": (dict(diff, output=shot), shot, shot),
        "output is the input in another token": (dict(diff, output=str(d / "shot.%04d.exr")),
                                                 str(d / "shot.%04d.exr"), shot),
        "output in $F4": (dict(diff, input=str(d / "shot.$F4.exr"), output=shot), shot, str(d / "shot.$F4.exr")),
        "unpadded output reaches the input's frames": (dict(diff, output=str(d / "shot.%d.exr")),
                                                       str(d / "shot.%d.exr"), shot),
        "output is the trimap": (dict(model="closed_form", input=shot, trimap=tri, first=1001, last=1002,
                                      output=str(d / "tri.$F4.png")), str(d / "tri.$F4.png"), tri),
        "output is the still plate": (dict(diff, last=1001, output=plate), plate, plate),
        "foreground is the input": (dict(diff, output=str(d / "alpha" / "a.####.exr"), foreground=shot), shot, shot),
        "foreground is the output": (dict(diff, output=str(d / "o" / "a.####.exr"),
                                          foreground=str(d / "o" / "a.%04d.exr")),
                                     str(d / "o" / "a.%04d.exr"), str(d / "o" / "a.####.exr")),
        "output through a symlinked folder": (dict(diff, output=str(d / "link" / "shot.####.exr")),
                                              str(d / "link" / "shot.####.exr"), shot),
        "output file is a symlink to an input": (dict(diff, output=str(d / "out" / "a.####.exr")),
                                                 str(d / "out" / "a.####.exr"), shot),
    }


def _links(d: Path) -> None:
    (d / "link").symlink_to(d, target_is_directory=True)
    (d / "out").mkdir()
    (d / "out" / "a.1002.exr").symlink_to(d / "shot.1002.exr")  # a frame's output that is the input


@pytest.mark.parametrize("case", list(_overwrite_cases(Path("/x"))))
def test_a_job_whose_output_could_name_a_source_is_refused(client, src, expect_status, assert_serves, case):
    _links(src)
    fields, written, source = _overwrite_cases(src)[case]
    before = digest(src)
    with expect_status(grpc.StatusCode.INVALID_ARGUMENT, written, source):
        list(client.run_job(pb.JobRequest(**fields), timeout=30))
    assert digest(src) == before
    assert not (src / "alpha").exists() and not (src / "o").exists()
    assert_serves(client)


def test_patterns_that_differ_only_in_padding_collide_only_where_the_frames_meet():
    sequence.check_distinct({"input": "/s/a.####.exr"}, {"output": "/s/a.%d.exr"}, 1, 999)
    with pytest.raises(ValueError, match="frame 1000"):
        sequence.check_distinct({"input": "/s/a.####.exr"}, {"output": "/s/a.%d.exr"}, 1, 1000)
    sequence.check_distinct({"input": "/s/a.####.exr", "background": "/s/a.exr"}, {"output": "/s/b.####.exr"},
                            -100_000, 0)


@pytest.mark.parametrize("transport", ["stream", "path"])
def test_matte_command_refuses_to_write_over_its_input(server, src, transport):
    before = digest(src)
    r = mattebox("matte", "--model", "difference", "--input", str(src / "shot.####.exr"), "--background",
                 str(src / "plate.exr"), "--output", str(src / "shot.%04d.exr"), "--frames", "1001-1002",
                 "--transport", transport, "--server", server.address, "--progress", "json")
    assert r.returncode == 1, r.stdout + r.stderr
    (error,) = [e for e in events_of(r) if e["event"] == "error"]
    assert str(src / "shot.%04d.exr") in error["message"] and str(src / "shot.####.exr") in error["message"]
    assert digest(src) == before


# -- defect 4: fine-tuning reads only what path mode may read -----------------------------------------


@pytest.fixture
def finetune_shot(tmp_path):
    """inside/ (the allowed root) with frames 1-4 and mattes, outside/ with a secret picture."""
    inside, outside = tmp_path / "inside", tmp_path / "outside"
    inside.mkdir()
    outside.mkdir()
    rng = np.random.default_rng(1)
    write_pixels(outside / "secret.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    for f in (1, 2, 3, 4):
        write_pixels(inside / f"src.{f:04d}.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
        write_pixels(inside / f"m.{f:04d}.png", rng.integers(0, 256, (32, 32, 1), dtype=np.uint8))
        write_pixels(inside / f"bg.{f:04d}.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    return inside, outside


def _escape(inside: Path, outside: Path, name: str) -> None:
    os.remove(inside / name)
    (inside / name).symlink_to(outside / "secret.png")


def test_finetune_checks_every_frame_it_reads_before_the_child_starts(make_server, finetune_shot, monkeypatch,
                                                                      expect_status, assert_serves):
    inside, outside = finetune_shot
    started = []

    def popen(cmd, *args, **kwargs):  # the training child: recorded, never run here
        started.append(cmd)
        raise RuntimeError("test: the child process is not started")

    monkeypatch.setattr(server_finetune.subprocess, "Popen", popen)
    srv = make_server(allow_roots=[str(inside)])
    base = dict(base="bgm", name="ft-test", input=str(inside / "src.####.png"), mattes=str(inside / "m.####.png"),
                background=str(inside / "bg.####.png"), steps=1)
    cases = {
        "a later training frame": ("src.0002.png", dict(train_frames=[1, 2], held_frames=[3])),
        "a held-back matte": ("m.0003.png", dict(train_frames=[1, 2], held_frames=[3])),
        "a later plate frame": ("bg.0002.png", dict(train_frames=[1, 2], held_frames=[3])),
        "a matte the server finds on disk to hold back": ("m.0004.png", dict(train_frames=[1, 2])),
    }
    with Client(srv.address) as c:
        for name, (link, fields) in cases.items():
            _escape(inside, outside, link)
            with expect_status(grpc.StatusCode.PERMISSION_DENIED, str(inside / link), "outside"):
                list(c.finetune(pb.FinetuneRequest(**base, **fields), timeout=60))
            assert started == [], name
            os.remove(inside / link)
            shutil.copy(outside / "secret.png", inside / link)  # a real file again
        with expect_status(grpc.StatusCode.INVALID_ARGUMENT, "10 digits"):
            list(c.finetune(pb.FinetuneRequest(**dict(base, input=str(inside / "src.%10000000d.png")),
                                               train_frames=[1]), timeout=60))
        assert started == []
        # every path inside: the child starts, told exactly which frames to hold back
        with pytest.raises(grpc.RpcError):
            list(c.finetune(pb.FinetuneRequest(**base, train_frames=[1, 2]), timeout=60))
        (cmd,) = started
        assert cmd[cmd.index("--held-frames") + 1] == "3,4"
    assert_serves(srv.address)


def test_finetune_with_nothing_to_hold_back_does_not_let_the_child_look_for_more(finetune_shot):
    inside, _ = finetune_shot
    from server.paths import AllowedRoots

    req = pb.FinetuneRequest(base="bgm", name="ft", input=str(inside / "src.####.png"),
                             mattes=str(inside / "m.####.png"), train_frames=[1, 2, 3, 4])
    cmd = server_finetune.command(req, AllowedRoots([str(inside)]), "/tmp/run")
    assert "--held-frames" not in cmd and cmd[cmd.index("--frames") + 1] == "1-1"


# -- from 9: umask, queue size, token widths, trimap levels -------------------------------------------


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o007, 0o660)])
def test_outputs_honour_the_umask(client, src, tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        for ext in FORMATS:
            out = tmp_path / f"u{ext}"
            req = pb.JobRequest(model="difference", input=str(src / "shot.####.exr"),
                                background=str(src / "plate.exr"), first=1001, last=1002,
                                output=str(out / f"a.####{ext}"), foreground=str(out / f"f.####{ext}"))
            events = job_events(client.run_job(req, timeout=60))
            assert not events["error"], events["error"]
            for p in out.iterdir():
                assert oct(p.stat().st_mode & 0o777) == oct(mode), p
    finally:
        os.umask(old)


@pytest.mark.parametrize("size", ["0", "-3"])
def test_serve_refuses_a_queue_size_below_one(size):
    r = mattebox("serve", "--port", "0", "--queue-size", size, timeout=60)
    assert r.returncode == 2 and "--queue-size" in r.stderr and "at least 1" in r.stderr, r.stderr
    with pytest.raises(ValueError, match="at least 1"):
        Scheduler(int(size))


def test_frame_tokens_are_at_most_ten_digits_wide(client, src, tmp_path, expect_status, assert_serves):
    assert sequence.frame_path("a.%010d.exr", 7) == "a.0000000007.exr"
    assert sequence.frame_path("a.$F9.exr", 7) == "a.000000007.exr"
    for pattern in ("a.%10000000d.exr", "a.%011d.exr", "a." + "#" * 11 + ".exr"):
        with pytest.raises(ValueError, match="10 digits"):
            sequence.frame_path(pattern, 7)
    t0 = time.perf_counter()
    with expect_status(grpc.StatusCode.INVALID_ARGUMENT, "10 digits"):
        list(client.run_job(pb.JobRequest(model="difference", input=str(src / "shot.%10000000d.exr"),
                                          background=str(src / "plate.exr"), first=1, last=2,
                                          output=str(tmp_path / "a.####.exr")), timeout=30))
    with expect_status(grpc.StatusCode.INVALID_ARGUMENT, "10 digits"):
        list(client.run_job(pb.JobRequest(model="difference", input=str(src / "shot.####.exr"),
                                          background=str(src / "plate.exr"), first=1, last=2,
                                          output=str(tmp_path / ("a." + "#" * 100_000 + ".exr"))), timeout=30))
    assert time.perf_counter() - t0 < 5
    assert not list(tmp_path.glob("a.*"))
    assert_serves(client)


@pytest.fixture
def soft_trimap(tmp_path):
    """A frame, its trimap with antialiased edges (values between the three levels), and the same
    trimap snapped to 0 / 128 / 255."""
    folder = tmp_path / "soft"
    folder.mkdir()
    rng = np.random.default_rng(9)
    images.write_rgb(folder / "shot.0001.png", rng.random((40, 48, 3)).astype(np.float32))
    ramp = np.tile(np.rint(np.linspace(0, 255, 48)).astype(np.uint8), (40, 1))
    write_pixels(folder / "soft.0001.png", ramp[..., None])
    levels = pixels.trimap_levels(ramp)
    write_pixels(folder / "hard.0001.png", np.select([levels == 0, levels == 1], [0, 255], 128).astype(np.uint8)[..., None])
    return folder


def test_trimap_values_between_the_levels_are_snapped_and_said(client, server, soft_trimap, tmp_path, caplog):
    d = soft_trimap
    assert pixels.off_levels(images.read(d / "hard.0001.png", 1).pixels[..., 0]) == 0
    assert pixels.off_levels(images.read(d / "soft.0001.png", 1).pixels[..., 0]) > 0
    caplog.set_level(logging.WARNING, logger="mattebox.jobs")
    alphas = {}
    for name in ("soft", "hard"):
        req = pb.JobRequest(model="closed_form", input=str(d / "shot.####.png"), trimap=str(d / f"{name}.####.png"),
                            first=1, last=1, output=str(tmp_path / name / "a.####.exr"))
        events = job_events(client.run_job(req, timeout=60))
        assert events["summary"][0].done == 1, events
        alphas[name] = images.read(tmp_path / name / "a.0001.exr").pixels
    np.testing.assert_array_equal(alphas["soft"], alphas["hard"])  # snapped to the nearest level
    said = [r.getMessage() for r in caplog.records if "snapped" in r.getMessage()]
    assert len(said) == 1 and str(d / "soft.0001.png") in said[0], said
    # the command says so as a notice, whether the server read the frames (path) or the command did
    for transport in ("path", "stream"):
        r = mattebox("matte", "--model", "closed_form", "--input", str(d / "shot.####.png"), "--trimap",
                     str(d / "soft.####.png"), "--output", str(tmp_path / transport / "a.####.exr"), "--frames",
                     "1-1", "--transport", transport, "--server", server.address, "--progress", "json")
        assert r.returncode == 0, r.stdout + r.stderr
        notices = [e["message"] for e in events_of(r) if e["event"] == "notice"]
        assert len(notices) == 1 and "snapped" in notices[0] and "soft.0001.png" in notices[0], events_of(r)


def test_an_8_bit_trimap_saved_as_float_is_on_its_levels():
    """0 / 128 / 255 written to an EXR (half float 0, 0.502, 1) is a trimap of exact levels, not one to
    snap and warn about; 0.3 is between levels."""
    saved = np.array([[0.0, 128 / 255, 127 / 255, 1.0]], np.float16)
    assert pixels.off_levels(saved) == 0
    assert pixels.off_levels(np.array([[0.0, 0.3, 0.5]], np.float32)) == 1
