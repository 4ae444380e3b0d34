"""What one client can hold on a shared server, against real servers on loopback (issue 14, defects 5
and 6): calls in flight per peer, a thread reserve for health, listing and cancel, streams that stop
sending, memory that header-only streams could make the server allocate, and the bytes streamed
frames may hold in flight. Throughout, the server keeps answering health and ListModels, and serves a
good frame at the end."""
from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time

import grpc
import numpy as np
import pytest
from conftest import encode_srgb, write_pixels

from models.registry import Registry
from plugin.cli import connect
from plugin.client.connection import Client
from server.api import pb, rpc
from server.limits import QUIET_S

#: a frame as large as the server accepts: 16384 x 16384 RGBA float32 = 4 GiB declared
HUGE = pb.FrameDesc(width=16384, height=16384, channels=4, dtype=pb.FLOAT32)
SMALL = pb.FrameDesc(width=64, height=64, channels=3, dtype=pb.UINT8)


def wait_until(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} (after {timeout} s)")
        time.sleep(0.02)


class Stalled:
    """A MatteStream call that sends its header (and `data`, if any), then nothing until released."""

    def __init__(self, stub, desc: pb.FrameDesc, data: list[bytes] = (), timeout: float = 60):
        self.release = threading.Event()
        self.sent = threading.Event()

        def requests():
            yield pb.MatteChunk(header=pb.MatteHeader(model="null", image=desc))
            for d in data:
                yield pb.MatteChunk(data=d)
            self.sent.set()
            self.release.wait(timeout)

        self.call = stub.MatteStream(requests(), timeout=timeout)

    def done(self) -> bool:
        return self.call.done()

    def stop(self) -> None:
        self.call.cancel()
        self.release.set()


def refused(stalled: list[Stalled]) -> list[Stalled]:
    return [s for s in stalled if s.done() and s.call.code() == grpc.StatusCode.RESOURCE_EXHAUSTED]


def answers(c: Client) -> None:
    """Health and ListModels answer at once."""
    assert c.health(timeout=3) == "SERVING"
    assert set(m.name for m in c.models(timeout=3)) == set(Registry().names())


@pytest.fixture(scope="module")
def good(shot, direct):
    """check(client): a good frame by every transport gets the model's exact answer."""
    image, _ = encode_srgb(shot.image[1], "uint8")
    plate, _ = encode_srgb(shot.plate, "uint8")
    want = direct("difference", image, background=plate)

    def check(c: Client) -> None:
        for send in (c.matte, c.matte_stream, c.matte_shared):
            np.testing.assert_array_equal(send("difference", image, background=plate, timeout=30), want)

    return check


# -- defect 5: starvation -------------------------------------------------------------------------------


def test_idle_streams_of_one_peer_leave_health_and_listing_free(make_server, good):
    """24 idle MatteStream calls from one process (the issue's case): the peer's share is taken, the rest
    are refused at once with a message, and health and ListModels answer throughout."""
    srv = make_server()
    with Client(srv.address) as c:
        c.models(timeout=60)  # the first listing of a new server imports every model
        stub = rpc.MattingStub(c.channel)
        stalled = [Stalled(stub, SMALL) for _ in range(24)]
        try:
            wait_until(lambda: all(s.sent.is_set() or s.done() for s in stalled), 5, "the streams did not start")
            time.sleep(0.3)  # the streams have reached the server
            answers(c)
            wait_until(lambda: len(refused(stalled)) >= 1, 5, "no stream past the peer's share was refused")
            with Client(srv.address) as other:  # another channel of the same process: the same peer
                answers(other)
                with pytest.raises(grpc.RpcError) as err:
                    other.matte_stream("null", np.zeros((8, 8, 3), np.uint8), timeout=10)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "--peer-calls" in err.value.details(), err.value.details()
            held = [s for s in stalled if not s.done()]
            assert 1 <= len(held) <= 8, f"{len(held)} idle streams held by one peer"
            for s in refused(stalled):
                assert "in flight" in s.call.details() and "--peer-calls" in s.call.details(), s.call.details()
        finally:
            for s in stalled:
                s.stop()
        wait_until(lambda: srv.limits.in_flight() == 0, 5, "the cancelled streams still count")
        good(c)


def _gated_registry(gate: threading.Event, started: threading.Event):
    class Gated(Registry):
        def get(self, name, device=None):
            model = super().get(name, device)

            class Waits:
                inputs = model.inputs

                def prepare(self, sample):
                    return model.prepare(sample)

                def run(self, batch):
                    started.set()
                    gate.wait(30)
                    return model.run(batch)

            return Waits()

    return Gated()


def test_long_jobs_leave_cancel_free(make_server, shot, tmp_path, good):
    """16 long RunJob calls (the issue's case): CancelJob, health and listing still answer, the jobs past
    the peer's share are refused at once, and the cancel reaches its job."""
    gate, started = threading.Event(), threading.Event()
    srv = make_server(registry=_gated_registry(gate, started))
    image, _ = encode_srgb(shot.image[0], "uint8")
    write_pixels(tmp_path / "in.png", image)
    with Client(srv.address) as c:
        c.models(timeout=60)
        calls = [c.run_job(pb.JobRequest(model="null", input=str(tmp_path / "in.png"), first=1, last=1,
                                         output=str(tmp_path / f"out{i}.png"), job_id=f"long{i}"), timeout=60)
                 for i in range(16)]
        try:
            assert started.wait(10), "no job reached the model"
            time.sleep(0.3)  # the calls have reached the server
            answers(c)
            wait_until(lambda: sum(call.done() for call in calls) >= 1, 5, "no job past the peer's share was refused")
            running = [i for i, call in enumerate(calls) if not call.done()]
            assert 1 <= len(running) <= 4, f"{len(running)} jobs running for one peer"
            for call in calls:
                if call.done():
                    assert call.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, call.details()
                    assert "--peer-jobs" in call.details()
            t0 = time.monotonic()
            assert c.cancel_job(f"long{running[0]}")
            assert time.monotonic() - t0 < 2
        finally:
            gate.set()
        events = list(calls[running[0]])
        assert events[-1].summary.cancelled
        for i in running[1:]:
            assert list(calls[i])[-1].summary.done == 1
        wait_until(lambda: srv.limits.in_flight() == 0, 5, "finished jobs still count")
        good(c)


def test_stream_that_stops_sending_is_ended(make_server, good):
    """A stream whose next chunk does not come within --stream-idle-s is ended with DEADLINE_EXCEEDED,
    its bytes and its place given back; a stream that keeps sending is not."""
    srv = make_server(stream_idle_s=0.5)
    desc = pb.FrameDesc(width=1024, height=1024, channels=3, dtype=pb.UINT8)  # 3 MiB
    with Client(srv.address) as c:
        c.models(timeout=60)
        stub = rpc.MattingStub(c.channel)
        header_only, half = Stalled(stub, desc), Stalled(stub, desc, [bytes(1 << 20)] * 2)
        try:
            assert half.sent.wait(5)
            wait_until(lambda: srv.limits.stream_bytes.used >= 2 << 20, 5, "the sent data was not counted")
            t0 = time.monotonic()
            wait_until(lambda: header_only.done() and half.done(), 5, "idle streams were not ended")
            assert time.monotonic() - t0 < 3
            for s in (header_only, half):
                assert s.call.code() == grpc.StatusCode.DEADLINE_EXCEEDED, s.call.details()
                assert "no data" in s.call.details() and "--stream-idle-s" in s.call.details()
            answers(c)
        finally:
            header_only.stop()
            half.stop()
        wait_until(lambda: srv.limits.stream_bytes.used == 0 and srv.limits.in_flight() == 0, 5,
                   "the ended streams still hold bytes or places")

        # a slow but steady sender (a chunk every 0.3 s, under the 0.5 s limit) gets its alpha
        def steady():
            yield pb.MatteChunk(header=pb.MatteHeader(model="null", image=desc))
            for _ in range(3):
                time.sleep(0.3)
                yield pb.MatteChunk(data=bytes(1 << 20))

        replies = list(stub.MatteStream(steady(), timeout=30))
        assert replies[0].alpha.width == 1024
        good(c)


def test_all_peers_together_leave_the_reserve_free(make_server, good):
    """With --threads 12 (8 kept for the quick calls), a fifth long call is refused whoever sends it,
    and listing still answers; health Watch streams have their own per-peer share."""
    srv = make_server(threads=12)
    with Client(srv.address) as c:
        c.models(timeout=60)
        stub = rpc.MattingStub(c.channel)
        stalled = [Stalled(stub, SMALL) for _ in range(6)]
        try:
            wait_until(lambda: len(refused(stalled)) == 2, 5, "long calls past threads - reserve were not refused")
            for s in refused(stalled):
                assert "--threads 12" in s.call.details() and "health, listing and cancel" in s.call.details()
            answers(c)
        finally:
            for s in stalled:
                s.stop()
        wait_until(lambda: srv.limits.in_flight() == 0, 5, "the cancelled streams still count")

        from grpc_health.v1 import health_pb2, health_pb2_grpc

        health = health_pb2_grpc.HealthStub(c.channel)
        watches = [health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=30) for _ in range(6)]
        try:
            wait_until(lambda: sum(w.done() for w in watches) == 2, 5, "watches past the peer's share were not refused")
            for w in watches:
                if w.done():
                    assert w.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "--peer-watches" in w.details()
            answers(c)
        finally:
            for w in watches:
                w.cancel()
        wait_until(lambda: srv.limits.in_flight() == 0, 5, "the cancelled watches still count")
        good(c)


def test_limits_are_checked_at_start():
    from server.app import ConfigError, ServerConfig, start

    for bad, says in (({"threads": 8}, "--threads 8"), ({"peer_calls": 0}, "--peer-calls 0"),
                      ({"stream_idle_s": 0}, "--stream-idle-s"), ({"stream_memory_mb": 0}, "--stream-memory-mb")):
        with pytest.raises(ConfigError, match=says):
            start(ServerConfig(port=0, **bad))


# -- defect 6: memory amplification ---------------------------------------------------------------------


@contextlib.contextmanager
def server_process(*extra: str):
    """`mattebox serve` in its own process (so its RSS is its own): yields (address, pid); fails the
    test when the server died before the end."""
    with connect.server_process(*extra, stderr=subprocess.DEVNULL) as info:
        yield info["address"], info["pid"]
        assert info["process"].poll() is None, "the server died"


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def settled_rss(pid: int, quiet: bool = False) -> float:
    """RSS once it stops moving (freeing is not instant); quiet: after the server has had the time to
    give freed memory back (it does once no long call has been in flight for limits.QUIET_S)."""
    if quiet:
        time.sleep(QUIET_S + 0.5)
    last = rss_mib(pid)
    for _ in range(20):
        time.sleep(0.1)
        now = rss_mib(pid)
        if abs(now - last) < 1:
            return now
        last = now
    return last


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads RSS from /proc")
def test_header_only_streams_allocate_nothing(good):
    """8 header-only MatteStream calls each declaring a 100 MiB frame: the server's RSS does not grow by
    what they declare, nor stays up after they are cancelled; 8 declaring 4 GiB frames (the issue's
    case), more than the server's stream budget, are refused at once."""
    declared = pb.FrameDesc(width=5120, height=5120, channels=4, dtype=pb.UINT8)  # 100 MiB
    with server_process() as (address, pid), Client(address) as c:
        c.models(timeout=60)
        good(c)  # warm: models, codecs, a frame by each transport
        before = settled_rss(pid, quiet=True)
        stub = rpc.MattingStub(c.channel)
        stalled = [Stalled(stub, declared) for _ in range(8)]
        try:
            for s in stalled:
                assert s.sent.wait(5)
            time.sleep(0.5)  # the headers are in: whatever they make the server allocate, it has by now
            answers(c)
            during = settled_rss(pid)
            assert not [s for s in stalled if s.done()], [s.call.details() for s in stalled if s.done()]
        finally:
            for s in stalled:
                s.stop()
        wait_until(lambda: all(s.done() for s in stalled), 5, "cancelled streams did not end")
        after = settled_rss(pid, quiet=True)
        assert during - before < 32, f"8 header-only streams grew the server from {before:.0f} to {during:.0f} MiB"
        assert after - before < 32, f"the server kept {after - before:.0f} MiB after the streams were cancelled"

        huge = [Stalled(stub, HUGE) for _ in range(8)]
        try:
            wait_until(lambda: all(s.done() for s in huge), 5, "streams declaring 4 GiB frames were not refused")
            for s in huge:
                assert s.call.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, s.call.details()
                assert "--stream-memory-mb" in s.call.details()
        finally:
            for s in huge:
                s.stop()
        assert settled_rss(pid, quiet=True) - before < 32
        good(c)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads RSS from /proc")
def test_stream_bytes_in_flight_are_capped(good):
    """With --stream-memory-mb 32: a frame larger than the budget and a stream that would take the
    budget past its cap are refused with RESOURCE_EXHAUSTED; once the holders end, the bytes are free
    again (a frame that fits goes through) and the server's memory goes back down."""
    mib = 1 << 20
    with server_process("--stream-memory-mb", "32") as (address, pid), Client(address) as c:
        c.models(timeout=60)
        good(c)
        c.matte_stream("null", np.ones((1024, 2048, 3), np.float32), timeout=30)  # warm: a frame as large as below
        before = settled_rss(pid, quiet=True)
        too_big = np.zeros((2048, 2048, 3), np.float32)  # 48 MiB
        with pytest.raises(grpc.RpcError) as err:
            c.matte_stream("null", too_big, timeout=30)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "--stream-memory-mb" in err.value.details(), err.value.details()
        answers(c)

        stub = rpc.MattingStub(c.channel)
        desc = pb.FrameDesc(width=2048, height=1024, channels=3, dtype=pb.FLOAT32)  # 24 MiB
        chunk = bytes(mib)
        holders = [Stalled(stub, desc, [chunk] * 12) for _ in range(2)]  # 12 MiB each, held
        try:
            for s in holders:
                assert s.sent.wait(10)
            time.sleep(0.3)
            third = Stalled(stub, desc, [chunk] * 12)
            wait_until(third.done, 10, "a stream past the byte budget was not refused")
            assert third.call.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "--stream-memory-mb" in third.call.details()
            assert not any(s.done() for s in holders)
            answers(c)
        finally:
            for s in holders:
                s.stop()
            third.stop()
        wait_until(lambda: all(s.done() for s in holders), 5, "cancelled streams did not end")
        fits = np.ones((1024, 2048, 3), np.float32)  # 24 MiB: fits once the holders' bytes are back
        assert c.matte_stream("null", fits, timeout=30).shape == (1024, 2048)
        del fits
        after = settled_rss(pid, quiet=True)
        print(f"server RSS {before:.0f} MiB before, {after:.0f} MiB after")
        assert after - before < 48, f"the server kept {after - before:.0f} MiB after the streams ended"
        good(c)


def test_limits_unit():
    """Peer identity and the budgets themselves, without a server."""
    from server.limits import Budget, peer_of

    assert peer_of("ipv4:127.0.0.1:5000") == peer_of("ipv4:127.0.0.1:6000") == peer_of("ipv6:%5B::1%5D:7") == "local"
    assert peer_of("unix:/tmp/s") == "local"
    assert peer_of("ipv4:10.0.0.5:5000") == peer_of("ipv4:10.0.0.5:5001") == "10.0.0.5"
    assert peer_of("ipv6:%5B::ffff:10.0.0.5%5D:5000") == "10.0.0.5"
    assert peer_of("ipv6:%5B2001:db8::1%5D:5000") == "2001:db8::1"
    b = Budget(10)
    assert b.take(6) and not b.take(5) and b.take(4)
    b.give(10)
    assert b.used == 0
