"""The Matting service end to end over real gRPC on loopback: every transport, every refusal, the
queue, deadlines, tokens, concurrency, health checking, reflection and shared memory."""
from __future__ import annotations

import glob
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from conftest import DTYPES, H, W, CountingRegistry, encode_srgb, job_events, write_pixels
from models import colour, images
from models.colour import SCENE_LINEAR, SRGB
from models.registry import Registry
from plugin.client.connection import Client
from plugin.client.shm import SharedRegion
from server.api import SERVICE, codec, pb
from server.app import ConfigError, ServerConfig, start
from server.scheduler import CPU_THREADS
from server.shm import shm_dir
from training.synthetic import make_shot, trimap_from_alpha

TRANSPORTS = ("unary", "stream", "shared", "path")
INPUT_EXT = {np.uint8: ".png", np.uint16: ".tif", np.float16: ".exr", np.float32: ".exr"}


def via(transport: str, client: Client, folder, model: str, image, trimap=None, background=None,
        options: pb.MatteOptions | None = None, colour_space: str = "") -> np.ndarray:
    """Matte one frame through `transport` and return the (H, W) alpha the client got back."""
    if transport == "unary":
        return client.matte(model, image, trimap, background, colour_space, options, timeout=60)
    if transport == "stream":
        return client.matte_stream(model, image, trimap, background, colour_space, options, timeout=60)
    if transport == "shared":
        return client.matte_shared(model, image, trimap, background, colour_space, options, timeout=60)
    assert transport == "path"
    ext = INPUT_EXT[image.dtype.type]
    folder.mkdir(parents=True, exist_ok=True)
    write_pixels(folder / f"in.0007{ext}", image)
    req = pb.JobRequest(model=model, input=str(folder / f"in.####{ext}"), first=7, last=7,
                        output=str(folder / "out" / "alpha.####.exr"), colour_space=colour_space, options=options)
    if background is not None:
        write_pixels(folder / f"plate{ext}", background)
        req.background = str(folder / f"plate{ext}")
    if trimap is not None:
        write_pixels(folder / "trimap.png", trimap[..., None])
        req.trimap = str(folder / "trimap.png")
    events = job_events(client.run_job(req, timeout=60))
    assert [e.message for e in events["error"]] == []
    assert events["summary"][0].done == 1
    out = events["done"][0].output
    assert out == str(folder / "out" / "alpha.0007.exr")
    px = images.read(out).pixels
    assert px.shape == (image.shape[0], image.shape[1], 1)
    return px[..., 0]


def nontrivial(alpha: np.ndarray) -> None:
    """The reference answer has both background and foreground, so a wrong frame would show."""
    assert alpha.min() < 0.05 and alpha.max() > 0.95


# -- 1. round trips -----------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_matches_model(client, shot, direct, tmp_path, transport, dtype):
    image, _ = encode_srgb(shot.image[0], dtype)
    plate, _ = encode_srgb(shot.plate, dtype)
    want = direct("difference", image, background=plate)
    nontrivial(want)
    got = via(transport, client, tmp_path, "difference", image, background=plate)
    assert got.shape == (H, W)
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("dtype", ["uint8", "float16"])
def test_round_trip_with_trimap(client, shot, trimap, direct, tmp_path, transport, dtype):
    image, _ = encode_srgb(shot.image[0], dtype)
    want = direct("closed_form", image, trimap=trimap)
    nontrivial(want)
    got = via(transport, client, tmp_path, "closed_form", image, trimap=trimap)
    assert got.shape == (H, W) and got.dtype == np.float16
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("transport", ["unary", "stream", "shared"])
@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_float32_alpha_on_request(client, shot, direct, tmp_path, transport, dtype):
    image, _ = encode_srgb(shot.image[2], dtype)
    plate, _ = encode_srgb(shot.plate, dtype)
    want = direct("difference", image, background=plate, alpha_dtype=np.float32)
    got = via(transport, client, tmp_path, "difference", image, background=plate,
              options=pb.MatteOptions(alpha_dtype=pb.FLOAT32))
    assert got.shape == (H, W) and got.dtype == np.float32
    np.testing.assert_array_equal(got, want)
    # and it really is more precise than the default half-float answer
    assert not np.array_equal(got, got.astype(np.float16).astype(np.float32))


def test_rgba_input_uses_rgb(client, shot, direct):
    image, _ = encode_srgb(shot.image[0], "uint8")
    plate, _ = encode_srgb(shot.plate, "uint8")
    rgba = np.dstack([image, np.full(image.shape[:2], 7, np.uint8)])
    got = client.matte("difference", rgba, background=plate, timeout=30)
    np.testing.assert_array_equal(got, direct("difference", image, background=plate))


def test_alpha_descriptors_on_the_wire(client, stub, shot):
    """The raw replies describe one channel of the frame's size, half float by default, and carry
    exactly that many bytes (the client library would hide an extra channel)."""
    image, _ = encode_srgb(shot.image[0], "uint8")
    plate, _ = encode_srgb(shot.plate, "uint8")
    for alpha_dtype, np_dtype in ((pb.DTYPE_UNSPECIFIED, np.float16), (pb.FLOAT32, np.float32)):
        opts = pb.MatteOptions(alpha_dtype=alpha_dtype)
        resp = stub.Matte(pb.MatteRequest(model="difference", image=codec.encode(image),
                                          background=codec.encode(plate), options=opts), timeout=30)
        d = resp.alpha.desc
        assert (d.width, d.height, d.channels, d.dtype) == (W, H, 1, codec.CODES[np.dtype(np_dtype)])
        assert len(resp.alpha.data) == W * H * np.dtype(np_dtype).itemsize
        assert resp.seconds > 0

        head = pb.MatteHeader(model="difference", image=codec.describe(image), background=codec.describe(plate),
                              options=opts)
        chunks = [pb.MatteChunk(header=head), pb.MatteChunk(data=image.tobytes() + plate.tobytes())]
        replies = list(stub.MatteStream(iter(chunks), timeout=30))
        d = replies[0].alpha
        assert (d.width, d.height, d.channels, d.dtype) == (W, H, 1, codec.CODES[np.dtype(np_dtype)])
        assert not replies[0].data
        assert sum(len(r.data) for r in replies[1:]) == W * H * np.dtype(np_dtype).itemsize
        assert b"".join(r.data for r in replies[1:]) == resp.alpha.data


@pytest.fixture(scope="module")
def large_frame():
    """A 1200x1000 float32 frame and plate: 14.4 MB each, far above 1 MiB chunks and 4 MiB defaults."""
    s = make_shot(width=120, height=100, frames=1, seed=5)
    size = (1200, 1000)
    image = cv2.resize(s.image[0], size, interpolation=cv2.INTER_LINEAR)
    plate = cv2.resize(s.plate, size, interpolation=cv2.INTER_LINEAR)
    image, _ = encode_srgb(np.clip(image, 0, 1), "float32")
    plate, _ = encode_srgb(np.clip(plate, 0, 1), "float32")
    assert image.nbytes > 12 << 20
    return image, plate


@pytest.fixture(scope="module")
def large_want(large_frame, direct):
    image, plate = large_frame
    return direct("difference", image, background=plate)


@pytest.mark.parametrize("transport", ["stream", "unary", "shared"])
def test_large_frame(client, large_frame, large_want, transport, tmp_path):
    image, plate = large_frame
    got = via(transport, client, tmp_path, "difference", image, background=plate)
    assert got.shape == (1000, 1200) and got.dtype == np.float16
    np.testing.assert_array_equal(got, large_want)


def test_large_frame_null_model(client, large_frame):
    image, _ = large_frame
    for send in (client.matte_stream, client.matte):
        got = send("null", image, timeout=60)
        assert got.shape == (1000, 1200) and got.dtype == np.float16
        assert not got.any()


def test_list_models(client):
    client.matte("null", np.zeros((4, 4, 3), np.uint8), timeout=30)
    infos = {m.name: m for m in client.models()}
    assert infos["null"].loaded  # loaded lazily, on first use
    assert sorted(infos) == Registry().names()
    for m in infos.values():
        assert m.inputs[0] == pb.IMAGE and m.description and m.device
    assert pb.BACKGROUND in infos["difference"].inputs
    assert pb.TRIMAP in infos["closed_form"].inputs and pb.TRIMAP in infos["knn"].inputs
    assert list(infos["null"].inputs) == [pb.IMAGE]


# -- 2. bad requests ----------------------------------------------------------------------------------


def _unary_cases(shot, trimap):
    image, _ = encode_srgb(shot.image[0], "uint8")
    plate, _ = encode_srgb(shot.plate, "uint8")
    nbytes = image.nbytes

    def req(model="difference", img=None, tri=None, bg=None, options=None):
        r = pb.MatteRequest(model=model, image=codec.encode(image) if img is None else img, options=options)
        if tri is not None:
            r.trimap.CopyFrom(tri)
        if bg is not None:
            r.background.CopyFrom(bg)
        return r

    def img_with(**desc):
        f = codec.encode(image)
        for k, v in desc.items():
            setattr(f.desc, k, v)
        return f

    def bad_float(dtype, value, where):
        a, _ = encode_srgb(shot.image[0], dtype)
        p, _ = encode_srgb(shot.plate, dtype)
        target = a if where == "image" else p
        target[5, 7, 1] = value
        return req(img=codec.encode(a), bg=codec.encode(p))

    known = Registry().names()
    inv = grpc.StatusCode.INVALID_ARGUMENT
    tri = codec.encode(trimap)
    nan_tri = (trimap / np.float32(255)).astype(np.float32)
    nan_tri[3, 3] = np.nan
    cases = {
        "unknown model": (req(model="no_such_model", bg=codec.encode(plate)), grpc.StatusCode.NOT_FOUND,
                          ["no_such_model", *known]),
        "missing trimap": (req(model="closed_form"), grpc.StatusCode.FAILED_PRECONDITION, ["closed_form", "trimap"]),
        "empty trimap": (req(model="closed_form", tri=pb.Frame(desc=tri.desc)), grpc.StatusCode.FAILED_PRECONDITION,
                         ["trimap"]),
        "missing plate": (req(), grpc.StatusCode.FAILED_PRECONDITION, ["difference", "background"]),
        "image bytes short": (req(img=pb.Frame(desc=codec.describe(image), data=image.tobytes()[:-1]),
                                  bg=codec.encode(plate)), inv, ["image", str(nbytes - 1), str(nbytes)]),
        "image bytes long": (req(img=pb.Frame(desc=codec.describe(image), data=image.tobytes() + b"\0" * 3),
                                 bg=codec.encode(plate)), inv, ["image", str(nbytes + 3), str(nbytes)]),
        "plate bytes short": (req(bg=pb.Frame(desc=codec.describe(plate), data=plate.tobytes()[:-3])), inv,
                              ["background", str(nbytes - 3)]),
        "trimap bytes short": (req(model="closed_form", tri=pb.Frame(desc=tri.desc, data=tri.data[:-1])), inv,
                               ["trimap", str(W * H - 1)]),
        "zero width": (req(img=img_with(width=0), bg=codec.encode(plate)), inv, ["image", f"0x{H}"]),
        "zero height": (req(img=img_with(height=0), bg=codec.encode(plate)), inv, ["image", f"{W}x0"]),
        "too wide": (req(img=img_with(width=16385), bg=codec.encode(plate)), inv, ["image", "16385", "16384"]),
        "too tall": (req(img=img_with(height=40000), bg=codec.encode(plate)), inv, ["image", "40000", "16384"]),
        "trimap size differs": (req(model="closed_form", tri=codec.encode(trimap[:-1])), inv,
                                ["trimap", f"{W}x{H - 1}", f"{W}x{H}"]),
        "plate size differs": (req(bg=codec.encode(np.ascontiguousarray(plate[:, :-2]))), inv,
                               ["background", f"{W - 2}x{H}", f"{W}x{H}"]),
        "dtype unspecified": (req(img=img_with(dtype=pb.DTYPE_UNSPECIFIED), bg=codec.encode(plate)), inv,
                              ["image", "dtype"]),
        "dtype unknown enum": (req(img=img_with(dtype=7), bg=codec.encode(plate)), inv, ["image", "dtype", "7"]),
        "plate dtype unspecified": (req(bg=pb.Frame(desc=pb.FrameDesc(width=W, height=H, channels=3),
                                                    data=plate.tobytes())), inv, ["background", "dtype"]),
        "two channels": (req(img=pb.Frame(desc=pb.FrameDesc(width=W, height=H, channels=2, dtype=pb.UINT8),
                                          data=bytes(W * H * 2)), bg=codec.encode(plate)), inv, ["image", "channels"]),
        "unknown colour space": (req(img=codec.encode(image, "no-such-space"), bg=codec.encode(plate)), inv,
                                 ["no-such-space"]),
        "unknown display space": (req(bg=codec.encode(plate), options=pb.MatteOptions(display_space="nowhere")), inv,
                                  ["nowhere"]),
        "NaN trimap": (req(model="closed_form", tri=codec.encode(nan_tri)), inv, ["trimap", "NaN"]),
    }
    for dtype in ("float16", "float32"):
        for name, value in (("NaN", np.nan), ("Inf", np.inf), ("-Inf", -np.inf)):
            cases[f"{name} {dtype} image"] = (bad_float(dtype, value, "image"), inv, ["image", "NaN"])
        cases[f"NaN {dtype} plate"] = (bad_float(dtype, np.nan, "plate"), inv, ["background", "NaN"])
    return cases


UNARY_CASES = [
    "unknown model", "missing trimap", "empty trimap", "missing plate", "image bytes short", "image bytes long",
    "plate bytes short", "trimap bytes short", "zero width", "zero height", "too wide", "too tall",
    "trimap size differs", "plate size differs", "dtype unspecified", "dtype unknown enum",
    "plate dtype unspecified", "two channels", "unknown colour space", "unknown display space", "NaN trimap",
    "NaN float16 image", "Inf float16 image", "-Inf float16 image", "NaN float16 plate",
    "NaN float32 image", "Inf float32 image", "-Inf float32 image", "NaN float32 plate",
]


@pytest.mark.parametrize("case", UNARY_CASES)
def test_bad_unary_request(client, stub, shot, trimap, expect_status, assert_serves, case):
    request, code, fragments = _unary_cases(shot, trimap)[case]
    with expect_status(code, *fragments):
        stub.Matte(request, timeout=30)
    assert_serves(client)


def test_unknown_model_by_every_transport(client, stub, shot, expect_status, assert_serves, tmp_path):
    image, _ = encode_srgb(shot.image[0], "uint8")
    known = Registry().names()
    for send in (client.matte, client.matte_stream, client.matte_shared):
        with expect_status(grpc.StatusCode.NOT_FOUND, "no_such_model", *known):
            send("no_such_model", image, timeout=30)
        assert_serves(client)
    with expect_status(grpc.StatusCode.NOT_FOUND, "no_such_model", *known):
        list(client.run_job(pb.JobRequest(model="no_such_model", input=str(tmp_path / "x.####.png"), first=1, last=2,
                                          output=str(tmp_path / "a.####.png")), timeout=30))
    assert_serves(client)


def _stream(header=None, *datas):
    msgs = [] if header is None else [pb.MatteChunk(header=header)]
    msgs += [pb.MatteChunk(data=d) for d in datas]
    return msgs


def _stream_cases(shot):
    image, _ = encode_srgb(shot.image[0], "uint8")
    plate, _ = encode_srgb(shot.plate, "uint8")
    head = pb.MatteHeader(model="difference", image=codec.describe(image), background=codec.describe(plate))
    total = image.nbytes + plate.nbytes
    data = image.tobytes() + plate.tobytes()
    inv = grpc.StatusCode.INVALID_ARGUMENT

    def head_with(**kw):
        h = pb.MatteHeader()
        h.CopyFrom(head)
        for path, value in kw.items():
            msg_name, field = path.split("__")
            setattr(getattr(h, msg_name), field, value)
        return h

    nan_image, _ = encode_srgb(shot.image[0], "float32")
    nan_image[1, 1, 0] = np.nan
    nan_head = pb.MatteHeader(model="null", image=codec.describe(nan_image))
    return {
        "empty stream": (_stream(), inv, ["header"]),
        "missing header": (_stream(None, data), inv, ["header"]),
        "short stream": (_stream(head, data[:1000], data[1000:-5]), inv, [str(total - 5), str(total)]),
        "image only": (_stream(head, image.tobytes()), inv, [str(image.nbytes), str(total)]),
        "too many bytes": (_stream(head, data, b"\0" * 10), inv, [str(total)]),
        "unknown model": (_stream(pb.MatteHeader(model="no_such_model", image=head.image), image.tobytes()),
                          grpc.StatusCode.NOT_FOUND, ["no_such_model", *Registry().names()]),
        "missing plate": (_stream(pb.MatteHeader(model="difference", image=head.image), image.tobytes()),
                          grpc.StatusCode.FAILED_PRECONDITION, ["background"]),
        "missing trimap": (_stream(pb.MatteHeader(model="closed_form", image=head.image), image.tobytes()),
                           grpc.StatusCode.FAILED_PRECONDITION, ["trimap"]),
        "zero width": (_stream(head_with(image__width=0), data), inv, ["image", f"0x{H}"]),
        "oversized": (_stream(head_with(image__width=16384, image__height=16385), data), inv, ["16385"]),
        "plate size differs": (_stream(head_with(background__height=H + 1), data), inv, ["background", f"{W}x{H + 1}"]),
        "dtype unspecified": (_stream(head_with(image__dtype=pb.DTYPE_UNSPECIFIED), data), inv, ["dtype"]),
        "dtype unknown enum": (_stream(head_with(background__dtype=9), data), inv, ["background", "dtype"]),
        "NaN pixels": (_stream(nan_head, nan_image.tobytes()), inv, ["NaN"]),
    }


STREAM_CASES = ["empty stream", "missing header", "short stream", "image only", "too many bytes", "unknown model",
                "missing plate", "missing trimap", "zero width", "oversized", "plate size differs",
                "dtype unspecified", "dtype unknown enum", "NaN pixels"]


@pytest.mark.parametrize("case", STREAM_CASES)
def test_bad_stream(client, stub, shot, expect_status, assert_serves, case):
    chunks, code, fragments = _stream_cases(shot)[case]
    with expect_status(code, *fragments):
        list(stub.MatteStream(iter(chunks), timeout=30))
    assert_serves(client)


def test_stream_ignores_extra_input_like_unary(client, shot, trimap, direct):
    """A trimap the model does not take is ignored by MatteStream, as by Matte and MatteShared."""
    image, _ = encode_srgb(shot.image[0], "uint8")
    plate, _ = encode_srgb(shot.plate, "uint8")
    want = direct("difference", image, background=plate)
    unary = client.matte("difference", image, trimap=trimap, background=plate, timeout=30)
    np.testing.assert_array_equal(unary, want)
    shared = client.matte_shared("difference", image, trimap=trimap, background=plate, timeout=30)
    np.testing.assert_array_equal(shared, want)
    got = client.matte_stream("difference", image, trimap=trimap, background=plate, timeout=30)
    assert got.shape == (H, W) and got.dtype == np.float16
    np.testing.assert_array_equal(got, unary)
    np.testing.assert_array_equal(got, want)


def _flush_worker(stub) -> None:
    """Run one unrelated frame, so the CPU worker drops its reference to the last shared-memory frame.

    Not needed for ReleaseRegion any more (test_release_region_right_after_matte_shared pins that); kept
    so fixtures release their regions with no frame of theirs still in flight."""
    stub.Matte(pb.MatteRequest(model="null", image=codec.encode(np.zeros((2, 2, 3), np.uint8))), timeout=30)


@pytest.fixture
def region(stub):
    """A registered 1 MiB shared-memory region: (SharedRegion, region_id). Removed at the end."""
    with SharedRegion(1 << 20) as r:
        region_id = stub.RegisterRegion(pb.RegisterRegionRequest(name=r.name, size=r.size), timeout=10).region_id
        yield r, region_id
        _flush_worker(stub)
        stub.ReleaseRegion(pb.ReleaseRegionRequest(region_id=region_id), timeout=10)


def test_shared_raw_request(stub, region, shot, direct):
    """The protocol as documented: pixels at offsets, alpha written where the request says."""
    r, region_id = region
    image, _ = encode_srgb(shot.image[3], "uint16")
    plate, _ = encode_srgb(shot.plate, "uint16")
    r.put(128, image)
    r.put(128 + image.nbytes + 64, plate)
    alpha_at = 500_032
    resp = stub.MatteShared(pb.MatteSharedRequest(
        model="difference", region_id=region_id, alpha_offset=alpha_at,
        image=pb.RegionSlice(offset=128, desc=codec.describe(image)),
        background=pb.RegionSlice(offset=128 + image.nbytes + 64, desc=codec.describe(plate))), timeout=30)
    assert (resp.alpha.width, resp.alpha.height, resp.alpha.channels, resp.alpha.dtype) == (W, H, 1, pb.FLOAT16)
    got = r.array(alpha_at, np.float16, (H, W)).copy()
    np.testing.assert_array_equal(got, direct("difference", image, background=plate))
    # the inputs were not touched
    np.testing.assert_array_equal(r.array(128, np.uint16, image.shape), image)


SHARED_CASES = ["image past end", "plate past end", "image offset beyond region", "alpha past end", "unknown region",
                "empty region id", "missing plate", "NaN pixels", "plate size differs"]


@pytest.mark.parametrize("case", SHARED_CASES)
def test_bad_shared_request(client, stub, region, shot, expect_status, assert_serves, case):
    r, region_id = region
    image, _ = encode_srgb(shot.image[0], "float32")
    plate, _ = encode_srgb(shot.plate, "float32")
    r.put(0, image)
    r.put(image.nbytes, plate)
    alpha_at = 2 * image.nbytes
    inv = grpc.StatusCode.INVALID_ARGUMENT

    def req(**kw):
        base = dict(model="difference", region_id=region_id, alpha_offset=alpha_at,
                    image=pb.RegionSlice(offset=0, desc=codec.describe(image)),
                    background=pb.RegionSlice(offset=image.nbytes, desc=codec.describe(plate)))
        base.update(kw)
        return pb.MatteSharedRequest(**{k: v for k, v in base.items() if v is not None})

    if case == "NaN pixels":
        bad = image.copy()
        bad[2, 2, 2] = np.nan
        r.put(0, bad)
    cases = {
        "image past end": (req(image=pb.RegionSlice(offset=r.size - 100, desc=codec.describe(image))), inv,
                           ["image", str(r.size - 100), str(r.size)]),
        "plate past end": (req(background=pb.RegionSlice(offset=r.size - plate.nbytes + 1, desc=codec.describe(plate))),
                           inv, ["background", str(r.size)]),
        "image offset beyond region": (req(image=pb.RegionSlice(offset=10 * r.size, desc=codec.describe(image))), inv,
                                       ["image", str(10 * r.size), str(r.size)]),
        "alpha past end": (req(alpha_offset=r.size - 10), inv, ["alpha", str(r.size - 10), str(r.size)]),
        "unknown region": (req(region_id="0123456789abcdef"), grpc.StatusCode.NOT_FOUND, ["0123456789abcdef"]),
        "empty region id": (req(region_id=""), grpc.StatusCode.NOT_FOUND, ["region"]),
        "missing plate": (req(background=None), grpc.StatusCode.FAILED_PRECONDITION, ["background"]),
        "NaN pixels": (req(), inv, ["image", "NaN"]),
        "plate size differs": (req(background=pb.RegionSlice(offset=image.nbytes, desc=pb.FrameDesc(
            width=W, height=H - 1, channels=3, dtype=pb.FLOAT32))), inv, ["background", f"{W}x{H - 1}"]),
    }
    request, code, fragments = cases[case]
    with expect_status(code, *fragments):
        stub.MatteShared(request, timeout=30)
    assert_serves(client)
    # and the region still works after the refusal
    r.put(0, image)
    stub.MatteShared(req(), timeout=30)


def test_released_region_is_gone(stub, expect_status, shot):
    image, _ = encode_srgb(shot.image[0], "uint8")
    with SharedRegion(image.nbytes + 4 * W * H) as r:
        region_id = stub.RegisterRegion(pb.RegisterRegionRequest(name=r.name, size=r.size), timeout=10).region_id
        r.put(0, image)
        req = pb.MatteSharedRequest(model="null", region_id=region_id, alpha_offset=image.nbytes,
                                    image=pb.RegionSlice(offset=0, desc=codec.describe(image)))
        stub.MatteShared(req, timeout=30)
        _flush_worker(stub)
        stub.ReleaseRegion(pb.ReleaseRegionRequest(region_id=region_id), timeout=10)
        with expect_status(grpc.StatusCode.NOT_FOUND, region_id):
            stub.MatteShared(req, timeout=30)


def test_release_region_right_after_matte_shared(client, stub, shot, direct, expect_status, assert_serves):
    """ReleaseRegion straight after a MatteShared reply (no other frame in between) succeeds: the worker
    holds no reference to the region's memory once the reply has gone out."""
    image, _ = encode_srgb(shot.image[0], "uint8")
    plate, _ = encode_srgb(shot.plate, "uint8")
    with SharedRegion(image.nbytes + plate.nbytes + 4 * W * H) as r:
        region_id = stub.RegisterRegion(pb.RegisterRegionRequest(name=r.name, size=r.size), timeout=10).region_id
        r.put(0, image)
        r.put(image.nbytes, plate)
        alpha_at = image.nbytes + plate.nbytes
        req = pb.MatteSharedRequest(model="difference", region_id=region_id, alpha_offset=alpha_at,
                                    image=pb.RegionSlice(offset=0, desc=codec.describe(image)),
                                    background=pb.RegionSlice(offset=image.nbytes, desc=codec.describe(plate)))
        stub.MatteShared(req, timeout=30)
        np.testing.assert_array_equal(r.array(alpha_at, np.float16, (H, W)),
                                      direct("difference", image, background=plate))
        stub.ReleaseRegion(pb.ReleaseRegionRequest(region_id=region_id), timeout=10)  # no _flush_worker
        with expect_status(grpc.StatusCode.NOT_FOUND, region_id):
            stub.MatteShared(req, timeout=30)
    assert_serves(client)


# -- 3. queue -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def busy_frame():
    """(image, trimap): a closed_form frame that keeps a thread of the CPU models' lane busy for seconds."""
    s = make_shot(width=320, height=256, frames=1, seed=3)
    image, _ = encode_srgb(s.image[0], "uint8")
    return image, trimap_from_alpha(s.alpha[0], band=8)


def _attempt(send, *args, **kw):
    """The call's answer, or the grpc.RpcError it raised."""
    try:
        return send(*args, **kw)
    except grpc.RpcError as err:
        return err


def _busy(pool, c: Client, registry: CountingRegistry, busy_frame) -> list:
    """Busy frames on every thread of the CPU models' lane, started (one at a time, for a one-frame
    queue): the next CPU frames must wait."""
    big, deadline = [], time.monotonic() + 30
    for n in range(1, CPU_THREADS + 1):
        big.append(pool.submit(c.matte, "closed_form", *busy_frame, timeout=60))
        while registry.runs["closed_form"] < n:
            assert time.monotonic() < deadline, "the busy frames never started"
            time.sleep(0.01)
    return big


def test_full_queue_is_refused(make_server, busy_frame, shot, direct, assert_serves):
    registry = CountingRegistry()
    srv = make_server(registry=registry, queue_size=1, peer_calls=CPU_THREADS + 6)
    image, _ = encode_srgb(shot.image[0], "uint8")
    plate, _ = encode_srgb(shot.plate, "uint8")
    want = direct("difference", image, background=plate)
    with Client(srv.address) as c, ThreadPoolExecutor(CPU_THREADS + 6) as pool:
        big = _busy(pool, c, registry, busy_frame)
        results = list(pool.map(lambda _: _attempt(c.matte, "difference", image, background=plate, timeout=60),
                                range(6)))
        assert all(b.result().shape == busy_frame[1].shape for b in big)
    refused = [r for r in results if isinstance(r, grpc.RpcError)]
    answered = [r for r in results if not isinstance(r, grpc.RpcError)]
    assert refused, "six frames for a one-frame queue behind a busy worker: at least one must be refused"
    for err in refused:
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err
        assert "queue" in err.details() and "full" in err.details()
    for alpha in answered:
        np.testing.assert_array_equal(alpha, want)
    assert registry.runs["difference"] == len(answered)  # refused frames were never computed
    assert_serves(srv.address)


# -- 4. deadlines -------------------------------------------------------------------------------------


def test_deadline_on_busy_server(make_server, busy_frame, shot, trimap, expect_status, assert_serves):
    registry = CountingRegistry()
    srv = make_server(registry=registry)
    image, _ = encode_srgb(shot.image[0], "uint8")
    plate, _ = encode_srgb(shot.plate, "uint8")
    with Client(srv.address) as c, ThreadPoolExecutor(CPU_THREADS + 3) as pool:
        c.matte("closed_form", image, trimap, timeout=60)
        c.matte("difference", image, background=plate, timeout=60)
        registry.runs["closed_form"] = 0
        before = registry.runs["difference"]
        big = _busy(pool, c, registry, busy_frame)
        late = list(pool.map(lambda _: _attempt(c.matte, "difference", image, background=plate, timeout=0.2),
                             range(3)))
        for err in late:
            assert isinstance(err, grpc.RpcError) and err.code() == grpc.StatusCode.DEADLINE_EXCEEDED, err
        for b in big:
            b.result()
        assert_serves(c)
        # the frames whose deadline passed in the queue were dropped, not computed for nobody
        assert registry.runs["difference"] - before == 1


# -- 5. token -----------------------------------------------------------------------------------------


def test_token(make_server, shot, expect_status, assert_serves, tmp_path):
    srv = make_server(token="s3cret")
    image, _ = encode_srgb(shot.image[0], "uint8")
    plate, _ = encode_srgb(shot.plate, "uint8")
    for token in ("", "wrong", "S3CRET", "s3cret2"):
        with Client(srv.address, token=token) as c:
            with expect_status(grpc.StatusCode.UNAUTHENTICATED, "token"):
                c.models()
            with expect_status(grpc.StatusCode.UNAUTHENTICATED, "token"):
                c.matte("difference", image, background=plate, timeout=10)
            with expect_status(grpc.StatusCode.UNAUTHENTICATED, "token"):
                c.matte_stream("difference", image, background=plate, timeout=10)
            with expect_status(grpc.StatusCode.UNAUTHENTICATED, "token"):
                list(c.run_job(pb.JobRequest(model="null", input=str(tmp_path / "x.png"), first=1, last=1,
                                             output=str(tmp_path / "a.png")), timeout=10))
            with expect_status(grpc.StatusCode.UNAUTHENTICATED, "token"):
                c.cancel_job("anything")
            assert c.health() == "SERVING"  # probes need no token
    with Client(srv.address, token="s3cret") as c:
        assert c.health() == "SERVING"
        assert {m.name for m in c.models()} == set(Registry().names())
        c.matte_shared("null", image, timeout=10)
        assert_serves(c)


def test_public_bind_needs_token():
    with pytest.raises(ConfigError, match="token"):
        start(ServerConfig(host="0.0.0.0", port=0))


# -- 6. concurrent clients ----------------------------------------------------------------------------


def test_concurrent_clients(server, direct):
    """Four clients (own channels, different transports) send ten different frames each at once."""
    clients, frames = 4, 10
    work = {}
    for k in range(clients):
        s = make_shot(width=W, height=H, frames=frames, seed=100 + k)
        plate, _ = encode_srgb(s.plate, "uint8")
        for i in range(frames):
            image, _ = encode_srgb(s.image[i], "uint8")
            work[k, i] = (image, plate, direct("difference", image, background=plate))
    wants = [w[2].tobytes() for w in work.values()]
    assert len(set(wants)) == len(wants), "test frames must all differ so a mix-up would show"

    results: dict[tuple[int, int], list[np.ndarray]] = {key: [] for key in work}
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def run(k):
        with Client(server.address) as c:
            send = (c.matte, c.matte_stream, c.matte_shared, c.matte)[k]
            barrier.wait(10)
            for i in range(frames):
                image, plate, _ = work[k, i]
                alpha = send("difference", image, background=plate, timeout=60)
                with lock:
                    results[k, i].append(np.array(alpha))

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(run, range(clients)))
    for key, got in results.items():
        assert len(got) == 1, f"frame {key}: {len(got)} answers"
        np.testing.assert_array_equal(got[0], work[key][2], err_msg=f"frame {key}")


# -- 9. health and reflection -------------------------------------------------------------------------


def test_health_serving(client):
    stub = health_pb2_grpc.HealthStub(client.channel)
    for service in ("", SERVICE):
        resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
    assert client.health() == "SERVING"


def test_reflection_lists_service(client):
    db = ProtoReflectionDescriptorDatabase(client.channel)
    services = set(db.get_services())
    assert "mattebox.v1.Matting" in services
    assert "grpc.health.v1.Health" in services
    proto = db.FindFileContainingSymbol("mattebox.v1.Matting")
    methods = {m.name for s in proto.service for m in s.method}
    assert {"Matte", "MatteStream", "MatteShared", "RunJob", "CancelJob", "ListModels"} <= methods


def test_stop_ends_running_job(tmp_path, shot):
    """Stopping the server cancels a running job after its frame in flight; the client gets a summary."""
    srv = start(ServerConfig(port=0, grace_s=5.0))
    image, _ = encode_srgb(shot.image[0], "uint8")
    write_pixels(tmp_path / "still.png", image)
    stopper = threading.Thread(target=srv.stop)
    try:
        with Client(srv.address) as c:
            call = c.run_job(pb.JobRequest(model="null", input=str(tmp_path / "still.png"), first=1, last=100_000,
                                           output=str(tmp_path / "out" / "a.######.png")), timeout=60)
            events = iter(call)
            assert next(events).WhichOneof("event") == "started"
            assert next(events).WhichOneof("event") == "done"
            t0 = time.monotonic()
            stopper.start()
            rest = list(events)
            stopper.join(10)
            assert not stopper.is_alive() and time.monotonic() - t0 < 5
    finally:
        if not stopper.is_alive() and stopper.ident is None:
            srv.stop()
    kinds = [ev.WhichOneof("event") for ev in rest]
    assert kinds[-1] == "summary" and kinds.count("summary") == 1
    summary = rest[-1].summary
    assert summary.cancelled
    assert summary.done == 1 + kinds.count("done") < 100_000
    assert len(os.listdir(tmp_path / "out")) == summary.done


# -- 10. shared memory --------------------------------------------------------------------------------


def _shm_files() -> set[str]:
    return set(glob.glob(os.path.join(shm_dir(), "mattebox-*")))


def test_shared_region_lifecycle(server, shot, direct):
    image, _ = encode_srgb(shot.image[1], "uint8")
    plate, _ = encode_srgb(shot.plate, "uint8")
    before = _shm_files()
    c = Client(server.address)
    c.shm_memfd = False  # a file in /dev/shm (a sealed memfd, the default, leaves none: test_shm.py)
    try:
        got = c.matte_shared("difference", image, background=plate, timeout=30)
        np.testing.assert_array_equal(got, direct("difference", image, background=plate))
        new = _shm_files() - before
        assert len(new) == 1, new
        path = new.pop()
        assert os.path.dirname(path) == "/dev/shm" or not os.path.isdir("/dev/shm")
        assert os.path.basename(path).startswith("mattebox-")
        c.matte_shared("difference", image, background=plate, timeout=30)  # reused, not a second file
        assert _shm_files() - before == {path}
    finally:
        c.close()
    assert not os.path.exists(path)


def test_shared_memory_over_ipv6_loopback(make_server, shot, direct):
    try:
        srv = make_server(host="::1")
    except Exception as err:  # no IPv6 loopback on this machine
        pytest.skip(f"cannot bind [::1]: {err}")
    image, _ = encode_srgb(shot.image[0], "uint8")
    plate, _ = encode_srgb(shot.plate, "uint8")
    with Client(srv.address) as c:
        np.testing.assert_array_equal(c.matte("difference", image, background=plate, timeout=30),
                                      direct("difference", image, background=plate))
        try:
            got = c.matte_shared("difference", image, background=plate, timeout=30)
        except grpc.RpcError as err:
            raise AssertionError(f"shared memory refused on [::1]: {err.code()} {err.details()}") from None
        np.testing.assert_array_equal(got, direct("difference", image, background=plate))


@pytest.mark.parametrize("name", ["other-name", "mattebox-", "mattebox-../../etc/passwd", "../mattebox-x",
                                  "mattebox-a/b", "/dev/shm/mattebox-abc", "mattebox-a b"])
def test_register_bad_region_name(client, stub, name, expect_status, assert_serves):
    with expect_status(grpc.StatusCode.INVALID_ARGUMENT, "mattebox-"):
        stub.RegisterRegion(pb.RegisterRegionRequest(name=name, size=4096), timeout=10)
    assert_serves(client)


def test_register_missing_or_small_region(client, stub, expect_status, assert_serves):
    with expect_status(grpc.StatusCode.NOT_FOUND, "mattebox-doesnotexist0123"):
        stub.RegisterRegion(pb.RegisterRegionRequest(name="mattebox-doesnotexist0123", size=4096), timeout=10)
    with SharedRegion(4096) as r:
        with expect_status(grpc.StatusCode.INVALID_ARGUMENT, "4096", "8192"):
            stub.RegisterRegion(pb.RegisterRegionRequest(name=r.name, size=8192), timeout=10)
        with expect_status(grpc.StatusCode.INVALID_ARGUMENT, r.name):
            stub.RegisterRegion(pb.RegisterRegionRequest(name=r.name, size=0), timeout=10)
    assert_serves(client)


# -- colour spaces of plates -------------------------------------------------------------------------


@pytest.mark.parametrize("plate_kind", ["uint8 plate", "float plate tagged sRGB"])
def test_plate_colour_space_is_its_own(stub, shot, direct, plate_kind):
    """The plate is read in its own colour space, not the image's: a scene-linear float image (untagged)
    with an sRGB plate (8-bit, or float tagged "sRGB") mattes like the same scene all in sRGB."""
    srgb = np.ascontiguousarray(shot.image[0], np.float32)
    image = colour.convert(srgb, SRGB, SCENE_LINEAR).astype(np.float32)
    plate8 = np.rint(shot.plate * 255).astype(np.float32) / 255
    want = direct("difference", srgb, background=plate8, colour_space=SRGB).astype(np.float32)
    assert want.min() < 0.05 and want.max() > 0.95
    if plate_kind == "uint8 plate":
        plate = codec.encode(np.rint(shot.plate * 255).astype(np.uint8))  # integers: sRGB by default
        assert plate.desc.colour_space == ""
    else:
        assert plate_kind == "float plate tagged sRGB"
        plate = codec.encode(np.rint(shot.plate * 255).astype(np.float32) / 255, SRGB)
    resp = stub.Matte(pb.MatteRequest(model="difference", image=codec.encode(image, ""), background=plate),
                      timeout=30)
    got = codec.view(resp.alpha.desc, resp.alpha.data)[..., 0].astype(np.float32)
    # same plate content, so the matte agrees up to 8-bit rounding of the plate
    assert np.abs(got - want).max() < 0.05
