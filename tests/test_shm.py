"""Shared memory against a real server in its own process (`mattebox serve`), so that a crash kills only
that process: a client that truncates, removes, abandons or re-registers its region, or names a link,
gets a status for that request, and the server goes on serving everyone (issue 14: defects 1, 7, 9).

What the server holds of a region is read from /proc/<server pid>/{fd,maps}; Linux only.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import encode_srgb

from plugin.cli import connect
from plugin.client.connection import Client
from plugin.client.shm import SharedRegion, layout
from server.api import codec, pb, rpc
from server.shm import shm_dir

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads /proc (Linux)")

ROOT = Path(__file__).resolve().parents[1]
#: the module's server: small per-peer caps (so a test reaches them with a few sparse files), quick sweeps
ENV = {"MATTEBOX_REGIONS_PER_PEER": "4", "MATTEBOX_REGION_MB_PER_PEER": "64", "MATTEBOX_REGION_SWEEP_S": "0.1"}
INV, NOT_FOUND, EXHAUSTED = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                             grpc.StatusCode.RESOURCE_EXHAUSTED)


class Served:
    def __init__(self, proc: subprocess.Popen, address: str, pid: int):
        self.proc, self.address, self.pid = proc, address, pid

    def alive(self) -> None:
        assert self.proc.poll() is None, f"the server died (exit {self.proc.returncode})"


@contextlib.contextmanager
def serve(**env: str):
    """`mattebox serve --port 0` in its own process, with `env` added to its environment."""
    with connect.server_process(cwd=ROOT, env={**os.environ, **env}) as info:
        yield Served(info["process"], info["address"], info["pid"])


@pytest.fixture(scope="module")
def servers():
    """get(): the module's server, started again if a test killed it (so one crash fails one test)."""
    with contextlib.ExitStack() as stack:
        current = []

        def get() -> Served:
            if not current or current[-1].proc.poll() is not None:
                current.append(stack.enter_context(serve(**ENV)))
            return current[-1]

        yield get


@pytest.fixture
def srv(servers):
    return servers()


@pytest.fixture
def frames(shot):
    """(image, plate): a small uint8 frame and its clean plate."""
    return encode_srgb(shot.image[0], "uint8")[0], encode_srgb(shot.plate, "uint8")[0]


@pytest.fixture
def check_serves(frames):
    """check(server): a good MatteShared and a good Matte from a fresh client, and they agree."""

    def check(s: Served) -> None:
        s.alive()
        image, plate = frames
        with Client(s.address) as c:
            unary = c.matte("difference", image, background=plate, timeout=30)
            shared = c.matte_shared("difference", image, background=plate, timeout=30)
        np.testing.assert_array_equal(shared, unary)
        assert unary.min() < 0.1 and unary.max() > 0.9

    return check


def held(pid: int, path: str) -> int:
    """How many file descriptors and mappings of process `pid` refer to `path` (removed or not)."""
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            n += os.readlink(f"/proc/{pid}/fd/{fd}").removesuffix(" (deleted)") == path
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        n += len(parts) == 6 and parts[5].removesuffix(" (deleted)") == path
    return n


def wait_until(test, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not test():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def shared_request(region_id: str, image: np.ndarray, plate: np.ndarray) -> tuple[pb.MatteSharedRequest, int]:
    """A difference-model request for image at 0 and plate after it; (request, region bytes it needs)."""
    offsets, total = layout([image.nbytes, plate.nbytes, image.shape[0] * image.shape[1] * 2])
    return pb.MatteSharedRequest(model="difference", region_id=region_id, alpha_offset=offsets[2],
                                 image=pb.RegionSlice(offset=offsets[0], desc=codec.describe(image)),
                                 background=pb.RegionSlice(offset=offsets[1], desc=codec.describe(plate))), total


def register(stub, r: SharedRegion, size: int | None = None) -> str:
    return stub.RegisterRegion(pb.RegisterRegionRequest(name=r.name, size=size or r.size), timeout=10).region_id


def fill(r: SharedRegion, req: pb.MatteSharedRequest, image: np.ndarray, plate: np.ndarray) -> None:
    r.put(req.image.offset, image)
    r.put(req.background.offset, plate)


# -- defect 1: a truncated region is that request's error, not the server's death ---------------------------


def test_truncated_region_is_the_requests_error(srv, frames, expect_status, check_serves):
    image, plate = frames
    req, size = shared_request("", image, plate)
    with Client(srv.address) as c, SharedRegion(size) as r:
        stub = rpc.MattingStub(c.channel)
        req.region_id = register(stub, r)
        fill(r, req, image, plate)
        stub.MatteShared(req, timeout=30)
        want = r.array(req.alpha_offset, np.float16, image.shape[:2]).copy()
        # nothing left; the image but not the plate; the inputs but only part of the alpha's place
        for cut in (0, req.background.offset + 10, req.alpha_offset + 10):
            os.truncate(r.path, cut)
            with expect_status(INV, r.name, f"{cut} bytes", "register"):
                stub.MatteShared(req, timeout=30)
            check_serves(srv)
            assert os.path.getsize(r.path) == cut, "the server changed the size of the client's file"
            # once the file has its size back, the same region works again
            os.truncate(r.path, r.size)
            fill(r, req, image, plate)
            stub.MatteShared(req, timeout=30)
            np.testing.assert_array_equal(r.array(req.alpha_offset, np.float16, image.shape[:2]), want)
    check_serves(srv)


# -- defect 9: RegisterRegion on a link or an odd file ------------------------------------------------------


def test_register_link_or_odd_file_is_invalid_argument(srv, expect_status, check_serves):
    tag = uuid.uuid4().hex
    made = []
    try:
        with Client(srv.address) as c, SharedRegion(4096) as target:
            stub = rpc.MattingStub(c.channel)
            link = os.path.join(shm_dir(), f"mattebox-link{tag}")
            os.symlink(target.path, link)
            made.append(link)
            with expect_status(INV, link, "link"):
                stub.RegisterRegion(pb.RegisterRegionRequest(name=os.path.basename(link), size=4096), timeout=10)
            check_serves(srv)
            folder = os.path.join(shm_dir(), f"mattebox-dir{tag}")
            os.mkdir(folder)
            made.append(folder)
            fifo = os.path.join(shm_dir(), f"mattebox-fifo{tag}")
            os.mkfifo(fifo)
            made.append(fifo)
            for odd in (folder, fifo):
                with expect_status(INV, odd, "regular file"):
                    stub.RegisterRegion(pb.RegisterRegionRequest(name=os.path.basename(odd), size=4096), timeout=10)
                check_serves(srv)
    finally:
        for p in made:
            (os.rmdir if os.path.isdir(p) and not os.path.islink(p) else os.unlink)(p)


# -- defect 7: regions belong to their client and do not outlive it ------------------------------------------


def test_registering_a_file_again_is_the_same_region(srv, frames, check_serves):
    image, plate = frames
    req, size = shared_request("", image, plate)
    with Client(srv.address) as c, SharedRegion(size + 4096) as r:
        stub = rpc.MattingStub(c.channel)
        ids = {register(stub, r, size) for _ in range(200)}
        assert len(ids) == 1, f"{len(ids)} regions for one file"
        assert held(srv.pid, r.path) == 1
        # registered again with its full size: still the one region, now usable up to the new end
        assert register(stub, r) in ids
        req.region_id = ids.pop()
        req.alpha_offset = r.size - image.shape[0] * image.shape[1] * 2
        fill(r, req, image, plate)
        stub.MatteShared(req, timeout=30)
        assert held(srv.pid, r.path) == 1
    check_serves(srv)


def test_regions_and_bytes_are_capped_per_peer(srv, expect_status, check_serves):
    with contextlib.ExitStack() as stack:
        c = stack.enter_context(Client(srv.address))
        stub = rpc.MattingStub(c.channel)
        regions = [stack.enter_context(SharedRegion(4096)) for _ in range(5)]
        ids = [register(stub, r) for r in regions[:4]]
        with expect_status(EXHAUSTED, "4 regions", "ReleaseRegion"):
            register(stub, regions[4])
        stub.ReleaseRegion(pb.ReleaseRegionRequest(region_id=ids.pop()), timeout=10)
        ids.append(register(stub, regions[4]))
        # another connection (another peer) has caps of its own
        other = stack.enter_context(grpc.insecure_channel(srv.address, [("grpc.use_local_subchannel_pool", 1)]))
        other_stub = rpc.MattingStub(other)
        big = stack.enter_context(SharedRegion(65 << 20))  # sparse: costs no memory
        with expect_status(EXHAUSTED, "64 MiB", "ReleaseRegion"):
            register(other_stub, big)
        other_id = register(other_stub, regions[0])
        assert other_id not in ids
        for region_id in ids:
            stub.ReleaseRegion(pb.ReleaseRegionRequest(region_id=region_id), timeout=10)
        other_stub.ReleaseRegion(pb.ReleaseRegionRequest(region_id=other_id), timeout=10)
        check_serves(srv)


CLIENT = """
import sys, time
import numpy as np
from plugin.client.connection import Client
c = Client(sys.argv[1])
c.matte_shared("null", np.zeros((48, 64, 3), np.uint8), timeout=30)
print(c._region.path, flush=True)
if sys.argv[2] == "wait":
    time.sleep(60)
"""


def _client_process(address: str, mode: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-c", CLIENT, address, mode], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    path = proc.stdout.readline().strip()
    assert path, f"the client process failed ({proc.wait()})"
    return proc, path


def test_killed_clients_region_is_dropped_and_its_file_removed_later(srv, check_serves):
    live, live_path = _client_process(srv.address, "wait")
    proc, path = _client_process(srv.address, "wait")
    try:
        assert os.path.basename(path).startswith(f"mattebox-{proc.pid}-"), "the file does not name its owner"
        assert held(srv.pid, path) == 1
        proc.kill()
        proc.wait()
        assert wait_until(lambda: held(srv.pid, path) == 0), "the server still holds a killed client's region"
        assert os.path.exists(path)  # killed: nothing removed it yet
        with SharedRegion(4096):  # the next client to start removes files whose process is gone
            assert not os.path.exists(path)
        time.sleep(0.5)  # five sweeps: a live client's idle region stays
        assert held(srv.pid, live_path) == 1 and os.path.exists(live_path)
    finally:
        live.terminate()
        live.wait(30)
    check_serves(srv)


@pytest.mark.parametrize("ending", ["exit", "SIGTERM"])
def test_client_removes_its_file(srv, ending):
    proc, path = _client_process(srv.address, "exit" if ending == "exit" else "wait")
    if ending == "SIGTERM":
        proc.terminate()
    assert proc.wait(30) == (0 if ending == "exit" else 128 + signal.SIGTERM)
    assert not os.path.exists(path)
    assert wait_until(lambda: held(srv.pid, path) == 0)


def test_sigterm_of_the_mattebox_command_removes_its_file(srv):
    """`mattebox bench transport` moves frames by shared memory; stopped with SIGTERM, it removes its file."""
    proc = subprocess.Popen([sys.executable, "-m", "plugin.cli.main", "bench", "transport", "--server", srv.address,
                             "--size", "64x48", "--repeat", "20000"], cwd=ROOT, stdout=subprocess.DEVNULL)
    prefix = os.path.join(shm_dir(), f"mattebox-{proc.pid}-")
    mine = lambda: [str(p) for p in Path(shm_dir()).glob(f"mattebox-{proc.pid}-*")]  # noqa: E731
    try:
        assert wait_until(mine, 20), f"no {prefix}* file appeared"
        files = mine()
        proc.terminate()
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not [p for p in files if os.path.exists(p)]


def test_stale_files_of_gone_processes_are_removed(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    tag = uuid.uuid4().hex
    stale = Path(shm_dir(), f"mattebox-{gone.pid}-{tag}")
    live = Path(shm_dir(), f"mattebox-{os.getppid()}-{tag}")  # our parent is alive
    unowned = Path(shm_dir(), f"mattebox-{tag}")  # an old-style name: nobody to ask, left alone
    for p in (stale, live, unowned):
        p.write_bytes(b"x")
    try:
        with SharedRegion(4096):
            pass
        assert not stale.exists()
        assert live.exists() and unowned.exists()
    finally:
        for p in (stale, live, unowned):
            p.unlink(missing_ok=True)


def test_removed_file_is_dropped_at_next_use(srv, frames, expect_status, check_serves):
    image, plate = frames
    req, size = shared_request("", image, plate)
    with Client(srv.address) as c:
        stub = rpc.MattingStub(c.channel)
        r = SharedRegion(size)
        req.region_id = register(stub, r)
        fill(r, req, image, plate)
        stub.MatteShared(req, timeout=30)
        r.close()  # removes the file, without ReleaseRegion
        with expect_status(NOT_FOUND, req.region_id, "removed", "register"):
            stub.MatteShared(req, timeout=30)
        assert held(srv.pid, r.path) == 0, "the server keeps a removed file's memory alive"
        # the client library makes a new file and registers it when its own is gone
        want = c.matte("difference", image, background=plate, timeout=30)
        np.testing.assert_array_equal(c.matte_shared("difference", image, background=plate, timeout=30), want)
        os.unlink(c._region.path)
        np.testing.assert_array_equal(c.matte_shared("difference", image, background=plate, timeout=30), want)
    check_serves(srv)


def test_idle_region_expires(frames, expect_status, check_serves):
    image, plate = frames
    req, size = shared_request("", image, plate)
    with serve(MATTEBOX_REGION_IDLE_S="0.5", MATTEBOX_REGION_SWEEP_S="0.1") as s, Client(s.address) as c, \
            SharedRegion(size) as r:
        stub = rpc.MattingStub(c.channel)
        req.region_id = register(stub, r)
        fill(r, req, image, plate)
        stub.MatteShared(req, timeout=30)
        assert wait_until(lambda: held(s.pid, r.path) == 0, 5), "an idle region is still held"
        with expect_status(NOT_FOUND, req.region_id, "register"):
            stub.MatteShared(req, timeout=30)
        # the client library registers again when its region has expired
        want = c.matte("difference", image, background=plate, timeout=30)
        for _ in range(2):
            np.testing.assert_array_equal(c.matte_shared("difference", image, background=plate, timeout=30), want)
            assert wait_until(lambda: held(s.pid, c._region.path) == 0, 5)
        check_serves(s)
