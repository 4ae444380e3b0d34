"""A client over several servers (plugin/client/servers.py), against real servers on loopback: frames
spread round-robin, what belongs to one server (a job's CancelJob, a shared-memory region) stays there,
a server that is down is skipped, and the list's entries (host names, IPv4, IPv6, default port).

Which server ran a frame is counted by each server's own CountingRegistry (the real models, counted)."""
from __future__ import annotations

import re
import socket

import grpc
import numpy as np
import pytest
from conftest import CountingRegistry
from test_jobs import long_job, still  # noqa: F401 (its fixture: the one frame of a long job)

from plugin.client.connection import Client
from plugin.client.servers import DEFAULT_PORT, split
from server.api import pb

FRAME = np.zeros((32, 48, 3), np.uint8)


def dead_address() -> str:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def named(address: str) -> str:
    """The same server by host name, as a studio's list names its servers."""
    return address.replace("127.0.0.1", "localhost")


@pytest.fixture
def counted(make_server, tmp_path):
    """make_server with a CountingRegistry; returns (running, registry). Jobs may use tmp_path and
    the `still` frame's folder."""
    def make(host: str = "127.0.0.1", roots: list | None = None):
        registry = CountingRegistry()
        return make_server(registry, host=host, allow_roots=roots or [str(tmp_path)]), registry
    return make


@pytest.mark.parametrize("entry, want", [
    ("gpu1:50052", ("gpu1", 50052)), ("gpu1", ("gpu1", DEFAULT_PORT)), ("10.0.0.5:6000", ("10.0.0.5", 6000)),
    ("10.0.0.5", ("10.0.0.5", DEFAULT_PORT)), ("[::1]:6000", ("::1", 6000)), ("::1", ("::1", DEFAULT_PORT)),
    (" [fd00::5] ", ("fd00::5", DEFAULT_PORT))])
def test_list_entries(entry, want):
    assert split(entry) == want


@pytest.mark.parametrize("address, said", [
    ("127.0.0.1:1,gpu1:http", "'gpu1:http' is not host, host:port or [IPv6]:port"),
    ("[::1:5000", "'[::1:5000' is not host"), ("gpu1:70000", "'gpu1:70000' is not host"),
    ("127.0.0.1:1,no-such-server.invalid:50051", "cannot resolve 'no-such-server.invalid'"),
    (" , ", "no server address given")])
def test_bad_list_said_at_once(address, said):
    with pytest.raises(ValueError, match=re.escape(said)):
        Client(address)


def test_frames_spread_over_named_ipv4_and_ipv6_servers(counted):
    (a, ra), (b, rb), (c, rc) = counted(), counted(), counted(host="::1")
    assert c.address.startswith("[::1]:")
    port_b = b.address.rsplit(":", 1)[1]
    with Client(f"{a.address},localhost:{port_b},{c.address}") as client:
        for _ in range(3):
            assert client.matte("null", FRAME, timeout=30).shape == (32, 48)
            assert client.matte_stream("null", FRAME, timeout=30).shape == (32, 48)
    assert [ra.runs["null"], rb.runs["null"], rc.runs["null"]] == [2, 2, 2]


def test_bare_host_takes_the_default_port():
    with Client("localhost") as client:
        assert client.servers.all[0].target == f"localhost:{DEFAULT_PORT}"


def test_cancel_job_reaches_the_server_that_runs_it(counted, still, tmp_path):  # noqa: F811
    (a, ra), (b, rb) = counted(roots=[str(tmp_path), str(still)]), counted(roots=[str(tmp_path), str(still)])
    address = f"{named(a.address)},{named(b.address)}"
    with Client(address) as client, Client(address) as other:
        calls = [client.run_job(long_job(still, tmp_path / f"out{i}", job_id=f"job-{i}"), timeout=120)
                 for i in range(2)]
        for call in calls:
            assert next(call).started.job_id and next(call).WhichOneof("event") == "done"
        assert {call.server.address for call in calls} == {named(a.address), named(b.address)}
        assert ra.runs["closed_form"] and rb.runs["closed_form"]  # one job on each server
        # the client that started the job knows its server; another client (a host's panel) asks every one
        assert client.cancel_job("job-0") is True
        assert other.cancel_job("job-1") is True
        for call in calls:
            summary = [ev for ev in call][-1].summary
            assert summary.cancelled and summary.done < 50
        assert client.cancel_job("job-0") is False and other.cancel_job("never-was-a-job") is False
        assert client._jobs == {}  # finished jobs are forgotten


def test_shared_memory_stays_on_the_region_server_and_moves_when_it_stops(counted):
    (a, ra), (b, rb) = counted(), counted()
    with Client(f"{a.address},{named(b.address)}") as client:
        for _ in range(4):
            assert client.matte_shared("null", FRAME, timeout=30).shape == (32, 48)
        first = client._region_server.address
        held, other = (a, b) if first == a.address else (b, a)
        runs = {a.address: ra, named(b.address): rb}
        assert runs[first].runs["null"] == 4 and sum(r.runs["null"] for r in (ra, rb)) == 4
        held.stop()
        for _ in range(2):  # the region's server is gone: a new region on the other one
            assert client.matte_shared("null", FRAME, timeout=30).shape == (32, 48)
        assert client._region_server.address != first
        assert sum(r.runs["null"] for r in (ra, rb)) == 6 and runs[first].runs["null"] == 4


def test_a_dead_server_in_the_list_is_skipped(counted, still, tmp_path):  # noqa: F811
    live, registry = counted(roots=[str(tmp_path), str(still)])
    with Client(f"{dead_address()},{named(live.address)},{dead_address()}") as client:
        assert client.health() == "SERVING"
        for _ in range(3):
            client.matte("null", FRAME, timeout=30)
            client.matte_stream("null", FRAME, timeout=30)
            client.matte_shared("null", FRAME, timeout=30)
        assert registry.runs["null"] == 9
        for i in range(3):  # whichever server's turn it is, the job runs on the live one
            req = long_job(still, tmp_path / f"out{i}")
            req.last = 2
            events = list(client.run_job(req, timeout=60))
            assert events[-1].summary.done == 2
            outside = str(tmp_path.parent / "elsewhere" / "a.####.exr")
            with pytest.raises(grpc.RpcError) as err:  # the live server's answer to a fine-tune
                list(client.finetune(pb.FinetuneRequest(base="null", name="x", input=outside, mattes=outside,
                                                        train_frames=[1]), timeout=60))
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED and "allowed roots" in err.value.details()
        assert client.cancel_job("never-was-a-job") is False


def test_no_server_answers():
    one, two = dead_address(), dead_address()
    with Client(f"{one},{named(two)}") as client:
        for send in (lambda: client.matte("null", FRAME, timeout=30), lambda: client.models(),
                     lambda: list(client.run_job(pb.JobRequest(model="null"), timeout=30)),
                     lambda: client.cancel_job("j")):
            with pytest.raises(grpc.RpcError) as err:
                send()
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert err.value.details().startswith("no server of the list answers: ")
            assert one in err.value.details() and named(two) in err.value.details()
    with Client(one) as client, pytest.raises(grpc.RpcError) as err:  # one server: its own error, as ever
        client.matte("null", FRAME, timeout=30)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE and "no server of the list" not in err.value.details()
