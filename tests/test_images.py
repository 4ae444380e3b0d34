"""Colour handling of frames and alpha files: scene-linear EXR vs display sRGB, explicit colour spaces,
alpha written as it is, atomic writes, and frame-number tokens."""
from __future__ import annotations

import os

import numpy as np
import OpenImageIO as oiio
import pytest

from conftest import encode_srgb, job_events, write_pixels
from models import colour, images, sequence
from models.colour import SCENE_LINEAR, SRGB
from server.api import pb
from training.synthetic import make_shot


@pytest.fixture(scope="module")
def frame8():
    """A display-referred 8-bit frame X and its plate (what a user would see on screen)."""
    s = make_shot(width=96, height=72, frames=1, seed=31)
    return np.rint(s.image[0] * 255).astype(np.uint8), np.rint(s.plate * 255).astype(np.uint8)


def linear_exr(path, srgb8: np.ndarray) -> None:
    """Write the scene-linear version of an 8-bit sRGB frame as a half-float EXR."""
    images.write_rgb(path, colour.convert(srgb8.astype(np.float32) / 255, SRGB, SCENE_LINEAR))


def test_linear_exr_gives_same_alpha_as_srgb(client, frame8, tmp_path):
    image8, plate8 = frame8
    want = client.matte("difference", image8, background=plate8, timeout=30).astype(np.float32)
    assert want.min() < 0.05 and want.max() > 0.95
    linear_exr(tmp_path / "frame.exr", image8)
    linear_exr(tmp_path / "plate.exr", plate8)
    frame, plate = images.read(tmp_path / "frame.exr", 3), images.read(tmp_path / "plate.exr", 3)
    assert frame.colour_space == SCENE_LINEAR and frame.pixels.dtype == np.float16
    # the EXR really holds linear values (darker than the sRGB code values in the mid-tones)
    assert frame.pixels.astype(np.float32).mean() < image8.mean() / 255 - 0.05

    # inline: the server takes float pixels as scene-linear and converts them to sRGB first
    got = client.matte("difference", frame.pixels, background=plate.pixels, timeout=30).astype(np.float32)
    # path mode: the server reads the EXRs itself
    events = job_events(client.run_job(pb.JobRequest(
        model="difference", input=str(tmp_path / "frame.exr"), background=str(tmp_path / "plate.exr"),
        first=1, last=1, output=str(tmp_path / "alpha.exr")), timeout=60))
    assert events["summary"][0].done == 1
    from_job = images.read(tmp_path / "alpha.exr").pixels[..., 0].astype(np.float32)
    np.testing.assert_array_equal(from_job, got)

    # equal up to half-float storage and rounding: a few soft pixels move a little, none much
    diff = np.abs(got - want)
    assert diff.max() < 0.05, diff.max()
    assert diff.mean() < 2e-3, diff.mean()


def test_explicit_srgb_float_is_not_converted(client, frame8):
    image8, plate8 = frame8
    want = client.matte("difference", image8, background=plate8, timeout=30)
    image_f, plate_f = image8.astype(np.float32) / 255, plate8.astype(np.float32) / 255
    got = client.matte("difference", image_f, background=plate_f, colour_space=SRGB, timeout=30)
    np.testing.assert_array_equal(got, want)
    # without the tag the same numbers are taken as scene-linear and the answer changes
    default = client.matte("difference", image_f, background=plate_f, timeout=30)
    assert np.abs(default.astype(np.float32) - want).max() > 0.1


def test_explicit_linear_tag_on_integer_data(client, frame8):
    """colour_space also overrides the integer default: uint16 tagged scene_linear is converted."""
    image8, plate8 = frame8
    lin = colour.convert(image8.astype(np.float32) / 255, SRGB, SCENE_LINEAR)
    plin = colour.convert(plate8.astype(np.float32) / 255, SRGB, SCENE_LINEAR)
    image16 = np.rint(np.clip(lin, 0, 1) * 65535).astype(np.uint16)
    plate16 = np.rint(np.clip(plin, 0, 1) * 65535).astype(np.uint16)
    want = client.matte("difference", image8, background=plate8, timeout=30).astype(np.float32)
    got = client.matte("difference", image16, background=plate16, colour_space=SCENE_LINEAR,
                       timeout=30).astype(np.float32)
    assert np.abs(got - want).max() < 0.1
    assert np.abs(got - want).mean() < 5e-3


def test_job_colour_space_option(client, frame8, tmp_path):
    """JobRequest.colour_space: an EXR holding sRGB code values, declared sRGB, is not converted."""
    image8, plate8 = frame8
    images.write_rgb(tmp_path / "f.exr", image8.astype(np.float32) / 255)
    images.write_rgb(tmp_path / "p.exr", plate8.astype(np.float32) / 255)
    want = client.matte("difference", images.read(tmp_path / "f.exr").pixels,
                        background=images.read(tmp_path / "p.exr").pixels, colour_space=SRGB, timeout=30)
    for space, out in ((SRGB, "tagged.exr"), ("", "default.exr")):
        events = job_events(client.run_job(pb.JobRequest(
            model="difference", input=str(tmp_path / "f.exr"), background=str(tmp_path / "p.exr"),
            first=1, last=1, output=str(tmp_path / out), colour_space=space), timeout=60))
        assert events["summary"][0].done == 1
    np.testing.assert_array_equal(images.read(tmp_path / "tagged.exr").pixels[..., 0], want)
    default = images.read(tmp_path / "default.exr").pixels[..., 0].astype(np.float32)
    assert np.abs(default - want).max() > 0.1


def test_alpha_exr_is_never_colour_converted(tmp_path):
    path = tmp_path / "half.exr"
    images.write_alpha(path, np.full((8, 10), 0.5, np.float32))
    back = images.read(path)
    assert back.pixels.shape == (8, 10, 1) and back.pixels.dtype == np.float16
    assert np.all(back.pixels == np.float16(0.5))
    # a whole ramp of half-float values comes back bit for bit
    ramp = np.linspace(0, 1, 16 * 16, dtype=np.float32).reshape(16, 16).astype(np.float16)
    images.write_alpha(tmp_path / "ramp.exr", ramp)
    np.testing.assert_array_equal(images.read(tmp_path / "ramp.exr").pixels[..., 0], ramp)


@pytest.mark.parametrize("ext, dtype, pixel_type", [
    (".exr", np.float16, oiio.HALF), (".png", np.uint8, oiio.UINT8),
    (".tif", np.uint16, oiio.UINT16), (".tiff", np.uint16, oiio.UINT16)])
def test_write_alpha_round_trip(tmp_path, ext, dtype, pixel_type):
    rng = np.random.default_rng(3)
    alpha = rng.random((12, 20), dtype=np.float32)
    alpha[0, :3] = (-0.25, 0.0, 1.0)
    alpha[1, :2] = (1.5, 0.5)
    path = tmp_path / f"alpha{ext}"
    images.write_alpha(path, alpha)

    inp = oiio.ImageInput.open(str(path))
    spec = inp.spec()
    assert (spec.width, spec.height, spec.nchannels) == (20, 12, 1)
    assert spec.format.basetype == pixel_type
    if ext == ".exr":  # PNG and TIFF have no channel names for one-channel images
        assert spec.channelnames == ("A",)
    inp.close()

    back = images.read(path)
    assert back.pixels.shape == (12, 20, 1) and back.pixels.dtype == dtype
    clipped = np.clip(alpha, 0, 1)
    if np.dtype(dtype).kind == "u":
        top = np.iinfo(dtype).max
        np.testing.assert_array_equal(back.pixels[..., 0], np.rint(clipped * top).astype(dtype))
        assert back.pixels[0, 0, 0] == 0 and back.pixels[1, 0, 0] == top
    else:
        np.testing.assert_array_equal(back.pixels[..., 0], clipped.astype(np.float16))
    assert os.listdir(tmp_path) == [f"alpha{ext}"]  # atomic: no temp file left beside it


def test_write_alpha_refuses_unknown_format(tmp_path):
    with pytest.raises(ValueError, match=".mov"):
        images.write_alpha(tmp_path / "a.mov", np.zeros((4, 4), np.float32))
    assert os.listdir(tmp_path) == []


def test_write_replaces_atomically(tmp_path):
    path = tmp_path / "a.exr"
    images.write_alpha(path, np.zeros((4, 4), np.float32))
    images.write_alpha(path, np.ones((4, 4), np.float32))
    assert np.all(images.read(path).pixels == 1)
    assert os.listdir(tmp_path) == ["a.exr"]


def test_read_keeps_dtypes_and_spaces(tmp_path):
    for name, px, space in (("a.png", np.full((4, 5, 3), 200, np.uint8), SRGB),
                            ("b.tif", np.full((4, 5, 3), 60000, np.uint16), SRGB),
                            ("c.exr", np.full((4, 5, 3), 0.25, np.float16), SCENE_LINEAR),
                            ("d.exr", np.full((4, 5, 3), 0.125, np.float32), SCENE_LINEAR)):
        write_pixels(tmp_path / name, px)
        img = images.read(tmp_path / name, 3)
        assert img.colour_space == space, name
        assert img.pixels.dtype == px.dtype, name
        np.testing.assert_array_equal(img.pixels, px)
    with pytest.raises(FileNotFoundError, match="nothere.exr"):
        images.read(tmp_path / "nothere.exr")


def test_encode_helper_matches_server_defaults():
    """Sanity check of the tests' own helper: floats go linear, integers stay sRGB code values."""
    srgb = np.full((2, 2, 3), 0.5, np.float32)
    for dtype in ("float16", "float32"):
        px, space = encode_srgb(srgb, dtype)
        assert space == SCENE_LINEAR and abs(float(px[0, 0, 0]) - 0.214) < 0.01
    px, space = encode_srgb(srgb, "uint8")
    assert space == SRGB and px[0, 0, 0] == 128


@pytest.mark.parametrize("pattern, frame, expected", [
    ("/shots/a.####.exr", 7, "/shots/a.0007.exr"),
    ("/shots/a.####.exr", 12345, "/shots/a.12345.exr"),
    ("/shots/a.#.exr", 42, "/shots/a.42.exr"),
    ("/shots/a.%04d.exr", 7, "/shots/a.0007.exr"),
    ("/shots/a.%d.exr", 7, "/shots/a.7.exr"),
    ("/shots/a_%03d.png", 12, "/shots/a_012.png"),
    ("/shots/a.$F4.exr", 7, "/shots/a.0007.exr"),
    ("/shots/a.$F.exr", 7, "/shots/a.7.exr"),
    ("/shots/a.$F4.exr", -3, "/shots/a.-003.exr"),
    ("/shots/a.####.exr", 1001, "/shots/a.1001.exr"),
    ("/shots/plate.exr", 7, "/shots/plate.exr"),
])
def test_frame_path(pattern, frame, expected):
    assert sequence.frame_path(pattern, frame) == expected
    assert sequence.has_frame_token(pattern) == (pattern != "/shots/plate.exr")


def test_three_spellings_agree():
    for frame in (0, 1, 99, 1001, 9999):
        names = {sequence.frame_path(f"/s/x.{tok}.exr", frame) for tok in ("####", "%04d", "$F4")}
        assert names == {f"/s/x.{frame:04d}.exr"}
