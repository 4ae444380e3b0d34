"""The serving pipeline: a CPU stage around the models, device workers that batch frames of one model
and size, CPU models in a lane of their own, path-mode prefetch, one worker per device, and what it
counts. Ordering is shown with gated test models (tests/slow_models.py), never with clocks."""
from __future__ import annotations

import os
import threading
from concurrent.futures import CancelledError, ThreadPoolExecutor

import numpy as np
import pytest
import torch

from conftest import encode_srgb, job_events
from models import colour, images
from models.base import IMAGE, Sample
from models.bgm.model import BGMExcite
from models.colour import SCENE_LINEAR, SRGB
from models.devices import accelerators
from models.lightweight.model import Lightweight
from models.registry import Registry
from plugin.client.connection import Client
from server import jobs
from server.api import pb
from server.frames import Inputs
from server.metrics import REGISTRY
from server.pipeline import Pipeline
from server.scheduler import MAX_BATCH, Scheduler
from slow_models import GATED, Gate, SlowCPU, SlowNet
from trained_bgm import trained_like
from training.synthetic import make_shot


@pytest.fixture
def gates():
    """Fresh gates for the gated models; opened at the end so nothing stays held."""
    SlowCPU.gate, SlowNet.gate = Gate(), Gate()
    yield SlowCPU.gate, SlowNet.gate
    SlowCPU.gate.open.set()
    SlowNet.gate.open.set()


@pytest.fixture
def gated(make_server, gates):
    return make_server(registry=Registry(catalogue=GATED))


@pytest.fixture(scope="module")
def frames():
    s = make_shot(width=48, height=32, frames=4, seed=5)
    return [encode_srgb(s.image[i], "uint8")[0] for i in range(4)], encode_srgb(s.plate, "uint8")[0]


def sample_value(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# -- batching: the same answers batched and alone ----------------------------------------------------


def test_network_batch_is_one_forward_per_size_with_the_answers_alone(one_thread):
    """Frames of one size go through the network together, other sizes apart; each alpha equals the
    frame's own run, packed in the CPU stage or not."""
    torch.manual_seed(0)
    model = Lightweight()
    model.use(model.build(), "cpu")
    rng = np.random.default_rng(1)
    batch = [Sample(image=rng.random((h, w, 3), dtype=np.float32)) for h, w in ((32, 48), (32, 48), (40, 24), (32, 48))]
    forwards = []
    net = model.net
    model.net = lambda x: (forwards.append(tuple(x.shape)), net(x))[1]
    together = model.run([model.packed(s) for s in batch])
    assert sorted(forwards) == [(1, 3, 40, 24), (3, 3, 32, 48)]
    for s, got in zip(batch, together):
        alone = model.run([s])[0]
        assert got.shape == s.image.shape[:2] and got.dtype == np.float32
        np.testing.assert_allclose(got, alone, atol=1e-5)
    # packed for a CUDA device (half precision, pinned where CUDA is): the same frame within half's rounding
    half = model.packed(batch[0], "cuda")
    assert half.x.dtype == torch.float16 and half.x.shape == (3, 32, 48)
    np.testing.assert_allclose(model.run([half])[0], together[0], atol=1e-2)


def test_recursion_steps_never_share_a_forward(one_thread):
    """bgm_excite frames with different `steps` in one batch: each as if it ran alone."""
    torch.manual_seed(0)
    model = BGMExcite()
    model.use(trained_like(model.build()), "cpu")
    rng = np.random.default_rng(2)
    image, plate = rng.random((32, 32, 3), dtype=np.float32), rng.random((32, 32, 3), dtype=np.float32)
    batch = [Sample(image=image, background=plate, steps=k) for k in (1, 3, 1)]
    together = model.run(batch)
    np.testing.assert_allclose(together[0], together[2], atol=1e-6)
    for s, got in zip(batch, together):
        np.testing.assert_allclose(got, model.run([s])[0], atol=1e-5)
    assert np.abs(together[0] - together[1]).max() > 1e-4  # the steps reached the network


def test_waiting_frames_of_one_model_and_size_run_as_one_batch(frames, gates):
    """Behind a busy device, four lightweight frames of one size become one batch and a fifth of
    another size its own; every answer equals the frame matted alone."""
    scheduler = Scheduler(queue_size=16, devices=["cpu"])
    pipe = Pipeline(Registry(catalogue=GATED), scheduler)
    try:
        images_, _ = frames
        inputs = [Inputs({IMAGE: im}, {}, pb.MatteOptions()) for im in images_]
        inputs.append(Inputs({IMAGE: np.ascontiguousarray(images_[0][:24, :40])}, {}, pb.MatteOptions()))
        alone = [pipe.matte("lightweight", i, None) for i in inputs]
        batches = sample_value("mattebox_batch_size_count", model="lightweight")
        framed = sample_value("mattebox_batch_size_sum", model="lightweight")

        held = pipe.submit(pipe.prepare("slow_net", inputs[0]), None)
        assert gates[1].started.wait(30)
        prepared = [pipe.prepare("lightweight", i) for i in inputs]
        waiting = [pipe.submit(p, None) for p in prepared]  # queued: the device is held
        gates[1].open.set()
        held.result(timeout=30)
        together = [pipe.finish(p, Pipeline.result("lightweight", f, None)) for p, f in zip(prepared, waiting)]
        for got, want in zip(together, alone):
            np.testing.assert_allclose(got.alpha.astype(np.float32), want.alpha.astype(np.float32), atol=2e-3)
        assert sample_value("mattebox_batch_size_count", model="lightweight") - batches == 2
        assert sample_value("mattebox_batch_size_sum", model="lightweight") - framed == 5
    finally:
        scheduler.close()


def test_a_batch_holds_at_most_max_batch_and_one_key():
    """The device worker takes the waiting frames of the first one's key, at most MAX_BATCH, and leaves
    the others (another model or size) for later batches, in their turn."""
    release, held, ran = threading.Event(), threading.Event(), []

    def fn(device, payloads):
        if payloads == ["hold"]:
            held.set()
            release.wait(30)
        ran.append(payloads)
        return payloads

    scheduler = Scheduler(queue_size=32, devices=["cpu"])
    try:
        hold = scheduler.submit(fn, "hold", key="hold")
        assert held.wait(30)  # on the device: the next frames wait
        a = [scheduler.submit(fn, f"a{i}", key="a") for i in range(MAX_BATCH + 2)]
        b = [scheduler.submit(fn, f"b{i}", key="b") for i in range(2)]
        release.set()
        assert [f.result(timeout=30) for f in a] == [f"a{i}" for i in range(MAX_BATCH + 2)]
        assert [f.result(timeout=30) for f in b] == ["b0", "b1"]
        assert hold.result(timeout=30) == "hold"
        assert ran == [["hold"], [f"a{i}" for i in range(MAX_BATCH)], ["a8", "a9"], ["b0", "b1"]]
    finally:
        scheduler.close()


def test_one_bad_frame_fails_only_itself():
    """A batch that raises is run again frame by frame: the good frames get their answers."""
    release = threading.Event()

    def fn(device, payloads):
        release.wait(30)
        if "bad" in payloads:
            raise ValueError("bad frame")
        return [p.upper() for p in payloads]

    scheduler = Scheduler(devices=["cpu"])
    try:
        first = scheduler.submit(fn, "first", key="k")
        futs = [scheduler.submit(fn, p, key="k") for p in ("x", "bad", "y")]
        release.set()
        assert first.result(timeout=30) == "FIRST"
        assert futs[0].result(timeout=30) == "X" and futs[2].result(timeout=30) == "Y"
        with pytest.raises(ValueError, match="bad frame"):
            futs[1].result(timeout=30)
    finally:
        scheduler.close()


# -- devices -------------------------------------------------------------------------------------------


def test_devices_default_to_every_accelerator():
    found = accelerators()
    assert found == ([f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else ["cpu"])
    scheduler = Scheduler()
    try:
        assert scheduler.devices == found
    finally:
        scheduler.close()


@pytest.mark.parametrize("devices", [[], ["cpu", "cpu"], [""], [0]])
def test_devices_refused_when_they_name_no_device_once(devices):
    with pytest.raises(ValueError, match="device"):
        Scheduler(devices=devices)


def test_network_frames_spread_over_the_devices():
    """A second frame goes to the device that has none, not behind the first."""
    release, seen = threading.Event(), []
    started = threading.Event()

    def fn(device, payloads):
        seen.append((device, payloads))
        started.set()
        release.wait(30)
        return payloads

    scheduler = Scheduler(devices=["dev-a", "dev-b"])
    try:
        first = scheduler.submit(fn, 1, key=1)
        assert started.wait(30)
        started.clear()
        second = scheduler.submit(fn, 2, key=2)
        assert started.wait(30)  # running while the first still runs: on the other device
        release.set()
        assert (first.result(timeout=30), second.result(timeout=30)) == (1, 2)
        assert sorted(seen) == [("dev-a", [1]), ("dev-b", [2])]
    finally:
        scheduler.close()


def test_close_finishes_frames_in_flight_and_cancels_the_waiting():
    release, started = threading.Event(), threading.Event()

    def fn(device, payloads):
        started.set()
        release.wait(30)
        return payloads

    scheduler = Scheduler(devices=["cpu"])
    running = scheduler.submit(fn, "running", key="r")
    assert started.wait(30)
    waiting = scheduler.submit(fn, "waiting", key="w")
    closing = threading.Thread(target=scheduler.close)
    closing.start()
    with pytest.raises(CancelledError):
        waiting.result(timeout=30)
    release.set()
    closing.join(30)
    assert running.result(timeout=0) == "running"
    with pytest.raises(RuntimeError, match="shutting down"):
        scheduler.submit(fn, "late")


# -- CPU models never wait behind other work -------------------------------------------------------------


def test_a_slow_cpu_model_does_not_hold_up_fast_ones(gated, gates, frames, direct):
    images_, plate = frames
    with Client(gated.address) as c, ThreadPoolExecutor(1) as pool:
        slow = pool.submit(c.matte, "slow_cpu", images_[0], timeout=60)
        assert gates[0].started.wait(30)
        got = c.matte("difference", images_[1], background=plate, timeout=30)
        assert not c.matte("null", images_[1], timeout=30).any()
        assert not slow.done(), "the slow frame finished first: the fast ones did not pass it"
        np.testing.assert_array_equal(got, direct("difference", images_[1], background=plate))
        gates[0].open.set()
        assert slow.result().shape == images_[0].shape[:2]


def test_a_cpu_model_does_not_wait_behind_a_busy_device(gated, gates, frames, direct):
    images_, plate = frames
    with Client(gated.address) as c, ThreadPoolExecutor(1) as pool:
        held = pool.submit(c.matte, "slow_net", images_[0], timeout=60)
        assert gates[1].started.wait(30)
        got = c.matte("difference", images_[2], background=plate, timeout=30)
        assert not held.done(), "the device frame finished first"
        np.testing.assert_array_equal(got, direct("difference", images_[2], background=plate))
        gates[1].open.set()
        held.result()


# -- path mode: frames read ahead -----------------------------------------------------------------------


def write_frames(folder, images_, n: int) -> str:
    for f in range(1, n + 1):
        im = images_[(f - 1) % len(images_)].astype(np.float32) / 255
        images.write_rgb(folder / f"in.{f:04d}.exr", colour.convert(im, SRGB, SCENE_LINEAR))
    return str(folder / "in.####.exr")


def test_path_mode_reads_ahead_while_a_frame_is_on_the_device(gated, gates, frames, tmp_path):
    """While frame 1 is held on the device, the next AHEAD frames are read and prepared (and no more);
    once it goes, every frame is written and reported in order."""
    n = jobs.AHEAD + 4
    req = pb.JobRequest(model="slow_net", input=write_frames(tmp_path, frames[0], n), first=1, last=n,
                        output=str(tmp_path / "out" / "a.####.exr"))
    with Client(gated.address) as c, ThreadPoolExecutor(1) as pool:
        job = pool.submit(lambda: job_events(c.run_job(req, timeout=60)))
        assert gates[1].started.wait(30) and gates[1].wait_prepared(1 + jobs.AHEAD)
        assert gates[1].prepared == 1 + jobs.AHEAD and not job.done()
        gates[1].open.set()
        events = job.result()
    assert [d.frame for d in events["done"]] == list(range(1, n + 1)) and not events["error"]
    assert sorted(os.listdir(tmp_path / "out")) == [f"a.{f:04d}.exr" for f in range(1, n + 1)]


def test_cancel_stops_after_the_frames_in_flight(gated, gates, frames, tmp_path):
    """CancelJob while frames are read ahead: the frames sent to the device finish and are reported,
    none after them is written, and every file on disk is a frame reported done."""
    req = pb.JobRequest(job_id="ahead", model="slow_net", input=write_frames(tmp_path, frames[0], 30), first=1,
                        last=30, output=str(tmp_path / "out" / "a.####.exr"))
    with Client(gated.address) as c, ThreadPoolExecutor(1) as pool:
        job = pool.submit(lambda: job_events(c.run_job(req, timeout=60)))
        assert gates[1].started.wait(30) and gates[1].wait_prepared(1 + jobs.AHEAD)
        assert c.cancel_job("ahead")
        gates[1].open.set()
        events = job.result()
    summary = events["summary"][0]
    assert summary.cancelled and not events["error"]
    assert 1 <= summary.done <= 1 + jobs.AHEAD
    assert [d.frame for d in events["done"]] == list(range(1, summary.done + 1))
    assert sorted(os.listdir(tmp_path / "out")) == [f"a.{f:04d}.exr" for f in range(1, summary.done + 1)]


def test_skip_existing_with_read_ahead(client, frames, tmp_path):
    """A re-run keeps the complete frames, redoes the missing one, and reports all in order."""
    images_, plate = frames
    images.write_rgb(tmp_path / "plate.exr", colour.convert(plate.astype(np.float32) / 255, SRGB, SCENE_LINEAR))
    req = pb.JobRequest(model="difference", input=write_frames(tmp_path, images_, 6), first=1, last=6,
                        background=str(tmp_path / "plate.exr"), output=str(tmp_path / "out" / "a.####.exr"))
    first = job_events(client.run_job(req, timeout=60))
    assert [d.frame for d in first["done"]] == list(range(1, 7)) and not any(d.skipped for d in first["done"])
    kept = images.read(tmp_path / "out" / "a.0002.exr").pixels
    os.remove(tmp_path / "out" / "a.0004.exr")
    req.skip_existing = True
    again = job_events(client.run_job(req, timeout=60))
    assert [(d.frame, d.skipped) for d in again["done"]] == [(f, f != 4) for f in range(1, 7)]
    assert again["summary"][0].skipped == 5
    np.testing.assert_array_equal(images.read(tmp_path / "out" / "a.0002.exr").pixels, kept)
    assert os.path.exists(tmp_path / "out" / "a.0004.exr")


# -- what is counted ------------------------------------------------------------------------------------


def test_frames_and_runs_are_counted(client, frames, tmp_path):
    images_, plate = frames
    ok = sample_value("mattebox_frames_total", model="difference", status="ok")
    runs = sample_value("mattebox_inference_seconds_count", model="difference")
    errors = sample_value("mattebox_frames_total", model="difference", status="error")
    client.matte("difference", images_[0], background=plate, timeout=30)
    req = pb.JobRequest(model="difference", input=str(tmp_path / "missing.####.exr"), first=1, last=2,
                        background=str(tmp_path / "missing_plate.exr"), output=str(tmp_path / "a.####.exr"))
    assert len(job_events(client.run_job(req, timeout=30))["error"]) == 2
    assert sample_value("mattebox_frames_total", model="difference", status="ok") - ok == 1
    assert sample_value("mattebox_inference_seconds_count", model="difference") - runs == 1
    assert sample_value("mattebox_frames_total", model="difference", status="error") - errors == 2
    assert sample_value("mattebox_bytes_in_flight") == 0
