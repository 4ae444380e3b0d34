"""Path mode (RunJob / CancelJob): sequences on disk, frame tokens, per-frame errors, allowed roots,
cancellation, and the alpha files the server writes."""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import OpenImageIO as oiio
import pytest

from conftest import job_events, write_pixels
from models import colour, images
from models.colour import SCENE_LINEAR, SRGB
from plugin.client.connection import Client
from server.api import pb
from training.synthetic import make_shot, trimap_from_alpha

W, H = 96, 64
FIRST, LAST, MISSING = 1001, 1006, 1003
TOKENS = ["####", "%04d", "$F4"]


@dataclass
class Sequence:
    folder: Path
    srgb: np.ndarray  # (N, H, W, 3) display-referred frames
    plate_srgb: np.ndarray


@pytest.fixture(scope="module")
def seq(tmp_path_factory) -> Sequence:
    """Six scene-linear EXR frames shot.1001.exr ... shot.1006.exr (1003 deleted), a still plate, and
    trimaps tri.1001.png ... (all present)."""
    folder = tmp_path_factory.mktemp("seq")
    s = make_shot(width=W, height=H, frames=LAST - FIRST + 1, first=FIRST, seed=21)
    for i, frame in enumerate(range(FIRST, LAST + 1)):
        images.write_rgb(folder / f"shot.{frame:04d}.exr", colour.convert(s.image[i], SRGB, SCENE_LINEAR))
        write_pixels(folder / f"tri.{frame:04d}.png", trimap_from_alpha(s.alpha[i], band=3)[..., None])
    images.write_rgb(folder / "plate.exr", colour.convert(s.plate, SRGB, SCENE_LINEAR))
    os.remove(folder / f"shot.{MISSING:04d}.exr")
    return Sequence(folder, s.image, s.plate)


def read_alpha(path) -> np.ndarray:
    return images.read(path).pixels[..., 0]


def spec_of(path) -> oiio.ImageSpec:
    inp = oiio.ImageInput.open(str(path))
    assert inp is not None, oiio.geterror()
    spec = oiio.ImageSpec(inp.spec())
    inp.close()
    return spec


def unary_answer(client: Client, model: str, frame: int, seq: Sequence, trimap: bool = False) -> np.ndarray:
    """What the server answers for the same frame sent inline (pixels as read from the files)."""
    image = images.read(seq.folder / f"shot.{frame:04d}.exr", 3).pixels
    if trimap:
        tri = images.read(seq.folder / f"tri.{frame:04d}.png", 1).pixels[..., 0]
        return client.matte(model, image, trimap=tri, timeout=60)
    plate = images.read(seq.folder / "plate.exr", 3).pixels
    return client.matte(model, image, background=plate, timeout=60)


def check_job(client, seq, events, out_dir: Path, out_name, model="difference", trimap=False):
    assert events["order"][0] == "started" and events["order"][-1] == "summary"
    assert events["order"].count("started") == 1 and events["order"].count("summary") == 1
    started = events["started"][0]
    assert started.job_id and started.frames == LAST - FIRST + 1

    (error,) = events["error"]
    assert error.frame == MISSING
    assert str(seq.folder / f"shot.{MISSING:04d}.exr") in error.message

    expected = [f for f in range(FIRST, LAST + 1) if f != MISSING]
    assert [d.frame for d in events["done"]] == expected
    for d in events["done"]:
        assert d.output == str(out_dir / out_name(d.frame))
        assert d.seconds > 0

    summary = events["summary"][0]
    assert (summary.done, summary.failed, summary.cancelled) == (len(expected), 1, False)
    assert summary.seconds > 0

    # only the finished frames, no temp files left by the atomic writes
    assert sorted(os.listdir(out_dir)) == sorted(out_name(f) for f in expected)
    for frame in expected:
        path = out_dir / out_name(frame)
        spec = spec_of(path)
        assert (spec.width, spec.height, spec.nchannels) == (W, H, 1)
        assert spec.format.basetype == oiio.HALF
        got = read_alpha(path)
        want = unary_answer(client, model, frame, seq, trimap)
        assert got.dtype == np.float16
        np.testing.assert_array_equal(got, want)
        assert want.min() < 0.05 and want.max() > 0.95


@pytest.mark.parametrize("token", TOKENS)
def test_sequence_job(client, seq, tmp_path, token):
    out_dir = tmp_path / "out"
    req = pb.JobRequest(model="difference", input=str(seq.folder / f"shot.{token}.exr"),
                        background=str(seq.folder / "plate.exr"), first=FIRST, last=LAST,
                        output=str(out_dir / f"matte.{token}.exr"))
    events = job_events(client.run_job(req, timeout=120))
    check_job(client, seq, events, out_dir, lambda f: f"matte.{f:04d}.exr")


def test_mixed_tokens_with_trimap_sequence(client, seq, tmp_path):
    """Input, trimap and output each spelled differently in one job (closed_form, per-frame trimaps)."""
    out_dir = tmp_path / "alpha"
    req = pb.JobRequest(model="closed_form", input=str(seq.folder / "shot.####.exr"),
                        trimap=str(seq.folder / "tri.$F4.png"), first=FIRST, last=LAST,
                        output=str(out_dir / "a_%04d.exr"))
    events = job_events(client.run_job(req, timeout=120))
    check_job(client, seq, events, out_dir, lambda f: f"a_{f:04d}.exr", model="closed_form", trimap=True)


@pytest.mark.parametrize("ext, dtype", [(".png", np.uint8), (".tif", np.uint16), (".tiff", np.uint16)])
def test_integer_outputs(client, seq, tmp_path, ext, dtype):
    req = pb.JobRequest(model="difference", input=str(seq.folder / "shot.####.exr"),
                        background=str(seq.folder / "plate.exr"), first=FIRST, last=FIRST + 1,
                        output=str(tmp_path / f"m.####{ext}"))
    events = job_events(client.run_job(req, timeout=60))
    assert events["summary"][0].done == 2 and not events["error"]
    for frame in (FIRST, FIRST + 1):
        px = images.read(tmp_path / f"m.{frame:04d}{ext}").pixels
        assert px.shape == (H, W, 1) and px.dtype == dtype
        want = unary_answer(client, "difference", frame, seq).astype(np.float32)
        np.testing.assert_array_equal(px[..., 0], np.rint(want * np.iinfo(dtype).max).astype(dtype))


def test_still_input_and_relative_path(client, seq, tmp_path):
    """A pattern without a token is one file for every frame; relative paths are refused per frame."""
    req = pb.JobRequest(model="difference", input=str(seq.folder / "shot.1002.exr"),
                        background=str(seq.folder / "plate.exr"), first=1, last=3, output=str(tmp_path / "o.#.exr"))
    events = job_events(client.run_job(req, timeout=60))
    assert [d.frame for d in events["done"]] == [1, 2, 3]
    want = unary_answer(client, "difference", 1002, seq)
    for f in (1, 2, 3):
        np.testing.assert_array_equal(read_alpha(tmp_path / f"o.{f}.exr"), want)

    req = pb.JobRequest(model="difference", input="shot.####.exr", background=str(seq.folder / "plate.exr"),
                        first=FIRST, last=FIRST + 1, output=str(tmp_path / "r.####.exr"))
    with pytest.raises(grpc.RpcError) as err:
        job_events(client.run_job(req, timeout=60))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "absolute" in err.value.details()


def _start_errors(folder: Path):
    inp, plate, out = str(folder / "shot.####.exr"), str(folder / "plate.exr"), str(folder / "o.####.exr")
    inv = grpc.StatusCode.INVALID_ARGUMENT
    return {
        "unknown model": (dict(model="nope", input=inp, output=out, first=1, last=2), grpc.StatusCode.NOT_FOUND,
                          ["nope", "difference", "closed_form"]),
        "missing plate": (dict(model="difference", input=inp, output=out, first=1, last=2),
                          grpc.StatusCode.FAILED_PRECONDITION, ["background"]),
        "missing trimap": (dict(model="closed_form", input=inp, output=out, first=1, last=2),
                           grpc.StatusCode.FAILED_PRECONDITION, ["trimap"]),
        "no input": (dict(model="null", output=out, first=1, last=2), inv, ["input"]),
        "range backwards": (dict(model="null", input=inp, output=out, first=5, last=2), inv, ["5-2"]),
        "range too long": (dict(model="null", input=inp, output=out, first=1, last=200_000), inv, ["100000"]),
        "bad output format": (dict(model="null", input=inp, output=str(folder / "o.####.mov"), first=1, last=2), inv,
                              [".mov", ".exr"]),
        "output without token": (dict(model="null", input=inp, output=str(folder / "o.exr"), first=1, last=2), inv,
                                 ["token"]),
        "unknown colour space": (dict(model="difference", input=inp, background=plate, output=out, first=1, last=2,
                                      colour_space="not-a-space"), inv, ["not-a-space"]),
    }


@pytest.mark.parametrize("case", ["unknown model", "missing plate", "missing trimap", "no input", "range backwards",
                                  "range too long", "bad output format", "output without token",
                                  "unknown colour space"])
def test_job_refused_before_any_frame(client, tmp_path, expect_status, assert_serves, case):
    fields, code, fragments = _start_errors(tmp_path)[case]
    with expect_status(code, *fragments):
        list(client.run_job(pb.JobRequest(**fields), timeout=30))
    assert os.listdir(tmp_path) == []
    assert_serves(client)


# -- allowed roots ------------------------------------------------------------------------------------


def test_allowed_roots(make_server, seq, tmp_path):
    inside, outside = tmp_path / "inside", tmp_path / "outside"
    for d in (inside, outside):
        d.mkdir()
        for f in (FIRST, FIRST + 1):
            shutil.copy(seq.folder / f"shot.{f:04d}.exr", d)
        shutil.copy(seq.folder / "plate.exr", d)
    (inside / "link").symlink_to(outside, target_is_directory=True)
    (inside / "plate_link.exr").symlink_to(outside / "plate.exr")
    srv = make_server(allow_roots=[str(inside)])

    def job(input, background, output):
        req = pb.JobRequest(model="difference", input=input, background=background, first=FIRST, last=FIRST + 1,
                            output=output)
        with Client(srv.address) as c:
            return job_events(c.run_job(req, timeout=60))

    good_in, good_plate = str(inside / "shot.####.exr"), str(inside / "plate.exr")
    cases = {
        "input outside": (str(outside / "shot.####.exr"), good_plate, str(inside / "o1" / "a.####.exr"), "outside"),
        "plate outside": (good_in, str(outside / "plate.exr"), str(inside / "o2" / "a.####.exr"), "outside"),
        "output outside": (good_in, good_plate, str(outside / "o3" / "a.####.exr"), "outside"),
        "dot-dot input": (str(inside / ".." / "inside" / "shot.####.exr"), good_plate, str(inside / "o4" / "a.####.exr"),
                          "'..'"),
        "dot-dot output": (good_in, good_plate, str(inside / "o5" / ".." / ".." / "outside" / "a.####.exr"), "'..'"),
        "symlinked folder input": (str(inside / "link" / "shot.####.exr"), good_plate,
                                   str(inside / "o6" / "a.####.exr"), "outside"),
        "symlinked plate": (good_in, str(inside / "plate_link.exr"), str(inside / "o7" / "a.####.exr"), "outside"),
        "symlinked folder output": (good_in, good_plate, str(inside / "link" / "o8" / "a.####.exr"), "outside"),
    }
    for name, (inp, plate, out, why) in cases.items():
        with pytest.raises(grpc.RpcError) as err:  # refused before any frame runs
            job(inp, plate, out)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED, name
        assert why in err.value.details(), (name, err.value.details())
        if why == "outside":  # the message names the fix
            assert "mattebox serve --allow-root" in err.value.details() and "allowed_roots" in err.value.details()
    # nothing was written anywhere by the refused jobs
    assert sorted(os.listdir(outside)) == sorted(["plate.exr", f"shot.{FIRST:04d}.exr", f"shot.{FIRST + 1:04d}.exr"])
    assert not [p for p in inside.iterdir() if p.name.startswith("o")]

    # and the same server does run a job that stays inside
    events = job(good_in, good_plate, str(inside / "ok" / "a.####.exr"))
    assert events["summary"][0].done == 2 and not events["error"]
    assert sorted(os.listdir(inside / "ok")) == [f"a.{FIRST:04d}.exr", f"a.{FIRST + 1:04d}.exr"]


# -- cancellation -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def still(tmp_path_factory):
    """One 96x64 frame and trimap used for every frame of a long closed_form job."""
    folder = tmp_path_factory.mktemp("still")
    s = make_shot(width=W, height=H, frames=1, seed=8)
    images.write_rgb(folder / "frame.exr", colour.convert(s.image[0], SRGB, SCENE_LINEAR))
    write_pixels(folder / "trimap.png", trimap_from_alpha(s.alpha[0], band=3)[..., None])
    return folder


def long_job(still: Path, out_dir: Path, job_id: str = "") -> pb.JobRequest:
    return pb.JobRequest(job_id=job_id, model="closed_form", input=str(still / "frame.exr"),
                         trimap=str(still / "trimap.png"), first=1, last=200, output=str(out_dir / "a.####.exr"))


def test_cancel_job_by_id(client, still, tmp_path, expect_status):
    out_dir = tmp_path / "out"
    call = client.run_job(long_job(still, out_dir, job_id="long-job-1"), timeout=120)
    events = iter(call)
    first = next(events)
    assert first.started.job_id == "long-job-1" and first.started.frames == 200
    assert next(events).done.frame == 1

    # the id is taken while the job runs
    with expect_status(grpc.StatusCode.ALREADY_EXISTS, "long-job-1"):
        list(client.run_job(long_job(still, tmp_path / "other", job_id="long-job-1"), timeout=30))

    assert client.cancel_job("long-job-1") is True
    rest = list(events)
    kinds = [ev.WhichOneof("event") for ev in rest]
    assert kinds[-1] == "summary" and "error" not in kinds
    summary = rest[-1].summary
    assert summary.cancelled
    assert summary.done == 1 + kinds.count("done")
    assert summary.done < 50, "cancelled after the first frame, yet most of the 200 frames ran"
    assert sorted(os.listdir(out_dir)) == [f"a.{f:04d}.exr" for f in range(1, summary.done + 1)]
    assert not (tmp_path / "other").exists()
    # finished: its id is free and unknown again
    assert client.cancel_job("long-job-1") is False
    assert client.cancel_job("never-was-a-job") is False


def test_cancelling_the_call_stops_the_job(client, still, tmp_path):
    out_dir = tmp_path / "out"
    call = client.run_job(long_job(still, out_dir), timeout=120)
    events = iter(call)
    job_id = next(events).started.job_id
    assert next(events).WhichOneof("event") == "done"
    call.cancel()

    deadline = time.monotonic() + 10
    while client.cancel_job(job_id):
        assert time.monotonic() < deadline, "the job kept running after its call was cancelled"
        time.sleep(0.02)
    written = sorted(os.listdir(out_dir))
    time.sleep(0.5)
    assert sorted(os.listdir(out_dir)) == written, "frames kept appearing after the job was gone"
    assert 1 <= len(written) < 50
    assert all(n.startswith("a.") and n.endswith(".exr") for n in written), written  # no temp files


# -- colour space of the plate -----------------------------------------------------------------------


def test_png_plate_with_exr_frames(client, seq, tmp_path):
    """A still plate saved as an 8-bit sRGB PNG beside scene-linear EXR frames is read as sRGB (its own
    colour space), so it mattes like the same plate saved as a scene-linear EXR."""
    images.write_rgb(tmp_path / "plate.png", np.rint(seq.plate_srgb * 255).astype(np.uint8))
    images.write_rgb(tmp_path / "plate.exr", colour.convert(seq.plate_srgb, SRGB, SCENE_LINEAR))
    outs = {}
    for kind in ("png", "exr"):
        req = pb.JobRequest(model="difference", input=str(seq.folder / "shot.####.exr"),
                            background=str(tmp_path / f"plate.{kind}"), first=FIRST, last=FIRST,
                            output=str(tmp_path / kind / "a.####.exr"))
        events = job_events(client.run_job(req, timeout=60))
        assert events["summary"][0].done == 1
        outs[kind] = read_alpha(tmp_path / kind / f"a.{FIRST:04d}.exr").astype(np.float32)
    assert outs["exr"].min() < 0.05 and outs["exr"].max() > 0.95
    # one plate, two file formats: the same matte up to half-float rounding
    assert np.abs(outs["png"] - outs["exr"]).max() < 0.05
