"""Fixtures for the server tests: real gRPC servers on loopback, clients, frames and reference answers.

Every server here is the real thing (`server.app.start`) listening on 127.0.0.1 with a free port. The
default server is shared by the whole session; tests that need special settings (a tiny queue, a
token, allowed roots) start their own with `make_server`, which stops them at the end of the test.

Plain helpers (encode_srgb, write_pixels, job_events, CountingRegistry, W, H, DTYPES) are imported by
the test modules with `from conftest import ...` (pytest puts tests/ on sys.path for its conftest).
"""
from __future__ import annotations

import collections
import contextlib
import threading

import grpc
import numpy as np
import OpenImageIO as oiio
import pytest

from models import colour
from models.base import Sample
from models.colour import SCENE_LINEAR, SRGB
from models.registry import Registry
from plugin.client.connection import Client
from server.api import rpc
from server.app import ServerConfig, start
from training.synthetic import make_shot, trimap_from_alpha

#: small frame used by most tests: classical models answer in tens of milliseconds
W, H = 80, 64
DTYPES = ("uint8", "uint16", "float16", "float32")


# -- the shipped weights --------------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def finetune_runs_in_a_temporary_folder(tmp_path_factory):
    """Server-side fine-tunes keep their run folders ($MATTEBOX_RUNS, else ~/.cache): a test's, in its
    session's temporary folder (servers and the processes they start inherit the setting)."""
    import os

    before = os.environ.get("MATTEBOX_RUNS")
    os.environ["MATTEBOX_RUNS"] = str(tmp_path_factory.mktemp("finetune-runs"))
    yield
    if before is None:
        del os.environ["MATTEBOX_RUNS"]
    else:
        os.environ["MATTEBOX_RUNS"] = before


@pytest.fixture(scope="session", autouse=True)
def shipped_weights_untouched():
    """No test may add, change or remove a file in the repository's models/weights/ (a test that trains
    or fine-tunes writes into its own folder: the weights_dir fixture and $MATTEBOX_WEIGHTS)."""
    import hashlib

    from models import store

    def listing():
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(store.SHIPPED.glob("*")) if p.is_file()}

    before = listing()
    yield
    assert listing() == before, "a test changed the shipped weights in models/weights/"


# -- servers and clients ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def server():
    running = start(ServerConfig(port=0, grace_s=2.0))
    yield running
    running.stop()


@pytest.fixture(scope="session")
def client(server):
    with Client(server.address) as c:
        yield c


@pytest.fixture(scope="session")
def stub(client):
    """Raw stub, for requests the client library would not let us build."""
    return rpc.MattingStub(client.channel)


@pytest.fixture
def make_server():
    """Start an ad-hoc server: make_server(queue_size=1, token=..., registry=...). Stopped at teardown."""
    started = []

    def make(registry: Registry | None = None, **cfg):
        cfg.setdefault("port", 0)
        cfg.setdefault("grace_s", 2.0)
        running = start(ServerConfig(**cfg), registry)
        started.append(running)
        return running

    yield make
    for running in reversed(started):
        running.stop()


class CountingRegistry(Registry):
    """The real registry, but it counts the frames each model runs and signals when one starts.

    It changes nothing about what the models compute; tests use it to see whether the server ran a
    frame at all (e.g. a frame whose deadline passed in the queue must never reach the model).
    """

    def __init__(self):
        super().__init__()
        self.runs: collections.Counter[str] = collections.Counter()
        self.started = threading.Event()
        self._count = threading.Lock()

    def get(self, name, device=None):
        model = super().get(name, device)
        registry = self

        class Counted:
            inputs = model.inputs

            def prepare(self, sample):
                return model.prepare(sample)

            def run(self, batch):
                with registry._count:
                    registry.runs[name] += len(batch)
                registry.started.set()
                return model.run(batch)

        return Counted()


# -- frames -------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def shot():
    """A small synthetic shot, sRGB float32 in [0, 1], with exact alpha and a clean plate."""
    return make_shot(width=W, height=H, frames=4, first=1, seed=11)


@pytest.fixture(scope="session")
def trimap(shot):
    return trimap_from_alpha(shot.alpha[0], band=2)


def encode_srgb(srgb: np.ndarray, dtype: str) -> tuple[np.ndarray, str]:
    """sRGB float pixels in [0, 1] as a client would send them in `dtype`.

    Integers are display-referred sRGB (what the server assumes for integer data); floats are
    converted to scene-linear (what the server assumes for float data). Returns (pixels, space).
    """
    if dtype == "uint8":
        return np.rint(srgb * 255).astype(np.uint8), SRGB
    if dtype == "uint16":
        return np.rint(srgb * 65535).astype(np.uint16), SRGB
    linear = colour.convert(np.ascontiguousarray(srgb, np.float32), SRGB, SCENE_LINEAR)
    return linear.astype(np.dtype(dtype)), SCENE_LINEAR


@pytest.fixture(scope="session")
def direct():
    """Reference answer: the model called directly, without any server, the way a user would."""
    registry = Registry()

    def run(model: str, image, trimap=None, background=None, colour_space: str | None = None,
            alpha_dtype=np.float16, display_space: str = SRGB) -> np.ndarray:
        if colour_space is None:
            colour_space = SCENE_LINEAR if image.dtype.kind == "f" else SRGB
        m = registry.get(model)
        sample = Sample(image=image, trimap=trimap, background=background, colour_space=colour_space,
                        background_space=colour_space, display_space=display_space)
        return np.asarray(m.run([m.prepare(sample)])[0]).astype(alpha_dtype)

    return run


# -- assertions ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def _expect_status(code: grpc.StatusCode, *fragments: str):
    """The block must raise grpc.RpcError with `code` and a message containing every fragment."""
    with pytest.raises(grpc.RpcError) as info:
        yield info
    err = info.value
    assert err.code() == code, f"expected {code}, got {err.code()}: {err.details()}"
    details = err.details() or ""
    for f in fragments:
        assert f.lower() in details.lower(), f"message {details!r} does not mention {f!r}"


@pytest.fixture(scope="session")
def expect_status():
    return _expect_status


@pytest.fixture(scope="session")
def assert_serves(shot, direct):
    """A good request right after a bad one gets the right answer: the server kept serving."""
    image, _ = encode_srgb(shot.image[1], "uint8")
    plate, _ = encode_srgb(shot.plate, "uint8")
    want = direct("difference", image, background=plate)

    def check(target) -> None:
        c = target if isinstance(target, Client) else None
        if c is None:
            with Client(target) as fresh:
                got = fresh.matte("difference", image, background=plate, timeout=30)
        else:
            got = c.matte("difference", image, background=plate, timeout=30)
        np.testing.assert_array_equal(got, want)

    return check


# -- files --------------------------------------------------------------------------------------------


def write_pixels(path, px: np.ndarray) -> None:
    """Write (H, W, C) pixels keeping their exact dtype (uint8 PNG, uint16 TIFF, half or float EXR)."""
    types = {np.uint8: oiio.UINT8, np.uint16: oiio.UINT16, np.float16: oiio.HALF, np.float32: oiio.FLOAT}
    h, w, c = px.shape
    spec = oiio.ImageSpec(w, h, c, types[px.dtype.type])
    out = oiio.ImageOutput.create(str(path))
    assert out is not None and out.open(str(path), spec), oiio.geterror()
    assert out.write_image(np.ascontiguousarray(px)), out.geterror()
    out.close()


def job_events(call) -> dict:
    """Drain a RunJob call: {"started": [...], "done": [...], "error": [...], "summary": [...]}, in order."""
    events = {"started": [], "done": [], "error": [], "summary": [], "order": []}
    for ev in call:
        kind = ev.WhichOneof("event")
        events[kind].append(getattr(ev, kind))
        events["order"].append(kind)
    return events


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module of tiny-tensor tests: a second thread gains nothing there and
    loses much when the other core is busy (another test process, a server)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def weights_dir(tmp_path, monkeypatch):
    """An empty weights folder, the only one on the weights search path (the shipped weights hidden) for
    this test and the processes it starts: where the registry and every model read and install weights."""
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setenv("MATTEBOX_WEIGHTS", str(folder))
    monkeypatch.setenv("MATTEBOX_SHIPPED_WEIGHTS", str(folder))
    return folder
