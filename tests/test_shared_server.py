"""One shared server survives every abuse of issue 14 in one run, then serves a good request.

Each defect has its own tests (test_shm.py, test_limits.py, test_job_safety.py, test_tls.py); here the
whole set goes, in order, at ONE `mattebox serve` process, as a studio server meets them over a day:
a truncated shared-memory region, a region that is a link, streams that stop sending and header-only
streams declaring huge frames, a job whose output is its input, a frame token millions of digits
wide, a fine-tune whose held frame links out of the roots. After each the server must still answer
health and listing; at the end it mattes a frame by every transport and a path-mode job exactly as
the model does in-process.
"""
from __future__ import annotations

import os
import time

import grpc
import numpy as np
import pytest

from conftest import encode_srgb, job_events, write_pixels
from models import sequence
from plugin.client.connection import Client
from plugin.client.shm import SharedRegion
from server.api import pb, rpc
from test_limits import Stalled, answers, server_process, wait_until
from test_shm import register, shared_request

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads /proc (Linux)")

HUGE = pb.FrameDesc(width=16384, height=16384, channels=4, dtype=pb.FLOAT32)  # 4 GiB declared


def test_one_server_survives_the_whole_set(tmp_path, shot, direct):
    image, _ = encode_srgb(shot.image[0], "uint8")
    plate, _ = encode_srgb(shot.plate, "uint8")
    want = direct("difference", image, background=plate)
    roots = tmp_path / "roots"
    outside = tmp_path / "outside"
    for d in (roots, outside):
        d.mkdir()
    for f in (1, 2):
        write_pixels(roots / f"src.{f:04d}.png", image)
        write_pixels(roots / f"matte.{f:04d}.png", (shot.alpha[0] * 255).astype(np.uint8)[..., None])
    write_pixels(roots / "plate.png", plate)
    write_pixels(outside / "matte.0003.png", (shot.alpha[0] * 255).astype(np.uint8)[..., None])
    os.symlink(outside / "matte.0003.png", roots / "matte.0003.png")
    inv = grpc.StatusCode.INVALID_ARGUMENT

    serving = server_process("--allow-root", str(roots), "--allow-root", str(tmp_path / "out"))
    with serving as (address, pid), Client(address) as c:
        alive = lambda: os.path.exists(f"/proc/{pid}") or pytest.fail("the server died")  # noqa: E731
        stub = rpc.MattingStub(c.channel)
        c.models(timeout=60)

        # a truncated region: that request's INVALID_ARGUMENT, not SIGBUS
        req, size = shared_request("", image, plate)
        with SharedRegion(size, memfd=False) as region:  # a file: a sealed memfd cannot be truncated
            req.region_id = register(stub, region)
            os.truncate(region.path, 64)
            with pytest.raises(grpc.RpcError) as err:
                stub.MatteShared(req, timeout=30)
            assert err.value.code() == inv
        # a region that is a link
        link = f"/dev/shm/mattebox-{os.getpid()}-link"
        os.symlink("/etc/hostname", link)
        try:
            with pytest.raises(grpc.RpcError) as err:
                stub.RegisterRegion(pb.RegisterRegionRequest(name=os.path.basename(link), size=8), timeout=10)
            assert err.value.code() == inv
        finally:
            os.unlink(link)
        alive()
        answers(c)

        # streams that stop sending, and header-only streams declaring 4 GiB frames
        small = pb.FrameDesc(width=64, height=64, channels=3, dtype=pb.UINT8)
        stalled = [Stalled(stub, small) for _ in range(24)] + [Stalled(stub, HUGE) for _ in range(8)]
        try:
            time.sleep(0.5)
            answers(c)  # health and listing keep their threads
            assert any(s.done() and s.call.code() == grpc.StatusCode.RESOURCE_EXHAUSTED for s in stalled)
        finally:
            for s in stalled:
                s.stop()
        wait_until(lambda: all(s.done() for s in stalled), 10, "stalled streams did not end")

        # a job whose output is its own input; a frame token millions of digits wide
        for output in (str(roots / "src.####.png"), str(roots / ("%" + "9" * 7 + "d.exr"))):
            job = pb.JobRequest(model="difference", input=str(roots / "src.####.png"), background=str(roots / "plate.png"),
                                first=1, last=2, output=output)
            with pytest.raises(grpc.RpcError) as err:
                job_events(c.run_job(job, timeout=30))
            assert err.value.code() == inv, err.value.details()
        assert sequence.frames_on_disk(str(roots / "src.####.png")) == [1, 2]

        # a fine-tune whose held-back frame links out of the roots: refused before any training
        tune = pb.FinetuneRequest(base="lightweight", name="escape", input=str(roots / "src.####.png"),
                                  mattes=str(roots / "matte.####.png"), train_frames=[1], held_frames=[3])
        with pytest.raises(grpc.RpcError) as err:
            list(c.finetune(tune, timeout=60))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED and "matte.0003.png" in err.value.details()
        alive()
        answers(c)

        # and a good request at the end, by every transport and in path mode
        for send in (c.matte, c.matte_stream, c.matte_shared):
            np.testing.assert_array_equal(send("difference", image, background=plate, timeout=30), want)
        out = tmp_path / "out" / "a.####.exr"
        events = job_events(c.run_job(pb.JobRequest(model="difference", input=str(roots / "src.####.png"),
                                                    background=str(roots / "plate.png"), first=1, last=2,
                                                    output=str(out)), timeout=60))
        assert events["summary"][0].done == 2 and not events["error"]
        alive()
