"""Colour handling of frames and alpha files: scene-linear EXR vs display sRGB, explicit colour spaces,
alpha written as it is, atomic writes, and frame-number tokens."""
from __future__ import annotations

import os

import numpy as np
import OpenImageIO as oiio
import pytest

from conftest import encode_srgb, job_events, write_pixels
from host_files import acescct_tiff, acescg_exr, bbox_exr, cineon_code, log_dpx, rgba_roto_exr, rgba_trimap_png
from models import colour, images, pixels, sequence
from models.colour import SCENE_LINEAR, SRGB
from server.api import pb
from training.data.files import read_matte
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


def test_half_float_alpha_to_16_bit_tiff(tmp_path):
    """The server's alpha is half float: scaled to 16 bit in half it would overflow to inf."""
    alpha = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8).astype(np.float16)
    images.write_alpha(tmp_path / "a.tif", alpha)
    back = images.read(tmp_path / "a.tif").pixels[..., 0]
    np.testing.assert_array_equal(back, np.rint(alpha.astype(np.float32) * 65535).astype(np.uint16))


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


# --- files as Nuke and Blender write them: channels, data windows, colour --------------------------

def _picture(h=32, w=48, seed=5) -> np.ndarray:
    """(h, w, 3) float32 sRGB in [0, 1]: independent random channels (every hue and saturation) with
    pure primaries, black and white in the first row."""
    srgb = np.random.default_rng(seed).random((h, w, 3), dtype=np.float32)
    srgb[0, :5] = (1, 0, 0), (0, 1, 0), (0, 0, 1), (0, 0, 0), (1, 1, 1)
    return srgb


def _matte(h=32, w=48) -> np.ndarray:
    """(h, w) float32 in [0, 1]: a soft-edged disc, so no colour channel of the writers equals it."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.clip((min(h, w) / 3 - np.hypot(yy - h / 2, xx - w / 2)) / 4, 0, 1).astype(np.float32)


def test_rgba_roto_exr_is_read_from_alpha(tmp_path):
    """A roto exported as an RGBA EXR: mattes (and fine-tuning's read_matte) come from A, not red."""
    matte = _matte()
    rgba_roto_exr(tmp_path / "roto.exr", matte)
    img = images.read(tmp_path / "roto.exr", 1)
    assert img.channels == ("R", "G", "B", "A") and img.pixels.shape == (32, 48, 1)
    np.testing.assert_array_equal(img.pixels[..., 0], matte.astype(np.float16))
    np.testing.assert_array_equal(read_matte(tmp_path / "roto.exr"), matte.astype(np.float16))
    # the user can still ask for red, by name in any case
    red = images.read(tmp_path / "roto.exr", 1, channel="r").pixels[..., 0].astype(np.float32)
    assert np.abs(red - matte).max() > 0.5
    np.testing.assert_array_equal(read_matte(tmp_path / "roto.exr", channel="R"), red)


def test_rgba_trimap_png_is_read_from_alpha(tmp_path):
    """An 8-bit RGBA PNG with the trimap in alpha: read exactly, as uint8; its RGB stays straight."""
    trimap = np.zeros((32, 48), np.uint8)
    trimap[8:24, 12:36], trimap[12:20, 18:30] = 128, 255
    rgba_trimap_png(tmp_path / "tri.png", trimap)
    img = images.read(tmp_path / "tri.png", 1)
    assert img.pixels.dtype == np.uint8
    np.testing.assert_array_equal(img.pixels[..., 0], trimap)
    rgb = images.read(tmp_path / "tri.png", 3).pixels
    assert rgb[0, -1, 0] == 255 and rgb[-1, 0, 1] == 255  # not premultiplied by the 0 alpha there


def test_matte_channel_rule_and_override(tmp_path):
    """Default: alpha (also a layer's alpha "matte.A"), else the only channel, else Rec.709 luminance;
    a named channel overrides; "Y" is luminance; integers stay integers."""
    rgb8 = np.rint(_picture() * 255).astype(np.uint8)
    write_pixels(tmp_path / "rgb.png", rgb8)
    luma = np.rint(rgb8.astype(np.float64) @ (0.2126, 0.7152, 0.0722)).astype(np.uint8)
    for channel in ("", "Y", "y"):
        img = images.read(tmp_path / "rgb.png", 1, channel=channel)
        assert img.pixels.dtype == np.uint8
        np.testing.assert_array_equal(img.pixels[..., 0], luma)
    np.testing.assert_array_equal(images.read(tmp_path / "rgb.png", 1, "G").pixels[..., 0], rgb8[..., 1])
    grey = rgb8[..., :1]
    write_pixels(tmp_path / "grey.tif", grey)
    np.testing.assert_array_equal(images.read(tmp_path / "grey.tif", 1).pixels, grey)

    layers = np.stack([np.full((4, 6), v, np.float32) for v in (0.1, 0.2, 0.3, 0.6, 0.9)], axis=2)
    spec = oiio.ImageSpec(6, 4, 5, oiio.HALF)
    spec.channelnames = ("R", "G", "B", "depth.Z", "matte.A")
    out = oiio.ImageOutput.create(str(tmp_path / "layers.exr"))
    out.open(str(tmp_path / "layers.exr"), spec)
    out.write_image(layers)
    out.close()
    read = lambda channel="": float(images.read(tmp_path / "layers.exr", 1, channel).pixels[0, 0, 0])
    assert read() == pytest.approx(0.9, abs=1e-3)  # the layer's alpha
    assert read("depth.Z") == pytest.approx(0.6, abs=1e-3)
    assert read("DEPTH.z") == pytest.approx(0.6, abs=1e-3)
    assert read("Y") == pytest.approx(0.2126 * 0.1 + 0.7152 * 0.2 + 0.0722 * 0.3, abs=1e-3)


def test_missing_channel_is_an_error_naming_what_the_file_has(tmp_path):
    rgba_roto_exr(tmp_path / "roto.exr", _matte())
    with pytest.raises(ValueError, match=r"roto\.exr: has no channel 'mask\.a'; its channels are R, G, B, A"):
        images.read(tmp_path / "roto.exr", 1, channel="mask.a")
    with pytest.raises(ValueError, match="channels=1"):
        images.read(tmp_path / "roto.exr", 3, channel="A")


def test_rgb_is_taken_by_name(tmp_path):
    """OpenEXR stores channels sorted (A, B, G, R): an RGB read still gets red in R."""
    spec = oiio.ImageSpec(6, 4, 4, oiio.HALF)
    spec.channelnames = ("A", "B", "G", "R")
    out = oiio.ImageOutput.create(str(tmp_path / "abgr.exr"))
    out.open(str(tmp_path / "abgr.exr"), spec)
    out.write_image(np.broadcast_to(np.array([1.0, 0.75, 0.5, 0.25], np.float32), (4, 6, 4)).copy())
    out.close()
    np.testing.assert_array_equal(images.read(tmp_path / "abgr.exr", 3).pixels[0, 0], [0.25, 0.5, 0.75])


@pytest.mark.parametrize("box", [(6, 4, 30, 20), (-5, -3, 20, 14), (40, 20, 12, 16)],
                         ids=["inside", "past the top left", "past the bottom right"])
def test_bbox_placement_both_ways(tmp_path, box):
    """A Nuke bbox EXR against a full-frame plate PNG and trimap: the plate is cropped to the bbox, and
    a bbox matte placed in the full frame is 0 (background) outside its box."""
    plate = np.rint(_picture(32, 48) * 255).astype(np.uint8)
    write_pixels(tmp_path / "plate.png", plate)
    bbox_exr(tmp_path / "src.exr", _picture(32, 48, seed=6), box, alpha=_matte())
    src, full = images.read(tmp_path / "src.exr", 3), images.read(tmp_path / "plate.png", 3)
    x, y, w, h = box
    assert (src.window.x, src.window.y, src.window.width, src.window.height) == box
    assert src.window.format() == full.window.format() == "48x32"
    want = np.zeros((h, w, 3), np.uint8)  # the plate where the bbox is, 0 where the bbox leaves the format
    fx0, fy0, fx1, fy1 = max(x, 0), max(y, 0), min(x + w, 48), min(y + h, 32)
    want[fy0 - y:fy1 - y, fx0 - x:fx1 - x] = plate[fy0:fy1, fx0:fx1]
    np.testing.assert_array_equal(images.fit(full, src.window), want)

    matte = images.read(tmp_path / "src.exr", 1)
    placed = images.fit(matte, full.window)[..., 0]
    inside = np.zeros((32, 48), bool)
    inside[fy0:fy1, fx0:fx1] = True
    np.testing.assert_array_equal(placed[inside], _matte().astype(np.float16)[inside])
    assert not placed[~inside].any()
    assert images.fit(src, src.window) is src.pixels  # same window: no copy


def test_different_formats_are_refused_with_the_fix(tmp_path):
    write_pixels(tmp_path / "plate.png", np.zeros((24, 36, 3), np.uint8))
    bbox_exr(tmp_path / "src.exr", _picture(32, 48), (4, 4, 20, 10))
    plate, src = images.read(tmp_path / "plate.png", 3), images.read(tmp_path / "src.exr", 3)
    with pytest.raises(ValueError, match=r"the plate plate\.png is 36x24 in format 36x24 but the image is "
                                         r"20x10 in format 48x32: Reformat the plate plate\.png to the "
                                         r"image's format \(48x32\)"):
        images.fit(plate, src.window, "the plate plate.png")


def test_alpha_keeps_a_bbox_reaching_outside_the_format(tmp_path):
    """Output alpha written with the input's window reads back with it, negative origin included."""
    window = images.Window(-5, -3, 0, 0, 48, 32, 20, 14)
    alpha = np.linspace(0, 1, 14 * 20, dtype=np.float32).reshape(14, 20)
    images.write_alpha(tmp_path / "a.exr", alpha, window)
    back = images.read(tmp_path / "a.exr", 1)
    assert back.window == window
    np.testing.assert_array_equal(back.pixels[..., 0], alpha.astype(np.float16))
    full = images.fit(back, images.Window(0, 0, 0, 0, 48, 32, 48, 32))[..., 0]
    np.testing.assert_array_equal(full[:11, :15], alpha[3:, 5:].astype(np.float16))


@pytest.mark.parametrize("ext, dtype", [(".exr", np.float16), (".png", np.uint8), (".tif", np.uint16)])
def test_write_rgb_in_the_input_format(tmp_path, ext, dtype):
    """A float foreground is written as half EXR (values as they are), 8-bit PNG or 16-bit TIFF
    (clipped to [0, 1] and rounded), atomically and with the input's window."""
    fg = _picture(14, 20) * np.float32(1.5) - np.float32(0.2)
    window = images.Window(6, 4, 0, 0, 48, 32, 20, 14)
    images.write_rgb(tmp_path / f"fg{ext}", fg, window)
    back = images.read(tmp_path / f"fg{ext}", 3)
    assert back.pixels.dtype == dtype and back.pixels.shape == (14, 20, 3)
    if ext == ".exr":
        assert back.window == window
        np.testing.assert_array_equal(back.pixels, fg.astype(np.float16))
    else:
        top = np.iinfo(dtype).max
        np.testing.assert_array_equal(back.pixels, np.rint(np.clip(fg, 0, 1) * top).astype(dtype))
    assert os.listdir(tmp_path) == [f"fg{ext}"]


def _as_srgb(img: images.Image, space: str = "") -> np.ndarray:
    return colour.convert(pixels.to_unit_float(img.pixels), space or img.colour_space, SRGB)


# Tolerances: the file's own quantisation step, carried to sRGB. Each picture channel is linear in
# [0, 1]; AP1 -> Rec.709 sums up to 2.41 x the AP1 channels' errors (row sum of its |entries|); the
# sRGB curve's steepest slope is 12.92 (near black).
# ACEScg half: rounding <= 2^-12 of values < 1 -> 2.4e-4 linear, x 2.41 x 12.92 = 7.6e-3.
# ACEScct 16 bit: 0.5 / 65535 in ACEScct = 9.3e-5 relative in linear (slope 17.52 ln 2) -> 2.9e-3.
# Cineon 10 bit: half a code value = 0.38 % relative in linear (0.5 ln 10 x 0.002 / 0.6), no primaries
# change; through sRGB (relative slope <= 1/2.4 x 1.055) <= 1.7e-3 at white.
def test_acescg_exr_is_detected_and_matches_the_rec709_original(tmp_path):
    srgb = _picture()
    acescg_exr(tmp_path / "plate.exr", colour.convert(srgb, SRGB, colour.LINEAR_REC709))
    img = images.read(tmp_path / "plate.exr", 3)
    assert img.colour_space == "ACEScg"
    assert np.abs(_as_srgb(img) - srgb).max() < 7.6e-3
    # the test can tell: the same numbers taken as linear Rec.709 are far off
    assert np.abs(_as_srgb(img, colour.LINEAR_REC709) - srgb).max() > 0.1


def test_exr_chromaticities_alone_name_the_space(tmp_path):
    for space, name in (("ACEScg", "ACEScg"), ("ACES2065-1", "ACES2065-1"),
                        (colour.LINEAR_REC709, "Linear Rec.709 (sRGB)")):
        spec = oiio.ImageSpec(6, 4, 3, oiio.HALF)
        spec.attribute("chromaticities", oiio.TypeDesc("float[8]"), oiio.ColorConfig().get_chromaticities(space))
        out = oiio.ImageOutput.create(str(tmp_path / "c.exr"))
        out.open(str(tmp_path / "c.exr"), spec)
        out.write_image(np.zeros((4, 6, 3), np.float32))
        out.close()
        assert images.read(tmp_path / "c.exr").colour_space == name


def test_acescct_tiff_needs_the_users_colour_space(tmp_path):
    srgb = _picture()
    acescct_tiff(tmp_path / "plate.tif", colour.convert(srgb, SRGB, colour.LINEAR_REC709))
    img = images.read(tmp_path / "plate.tif", 3)
    assert img.colour_space == SRGB  # no metadata: the integer default, so --colour-space ACEScct
    assert np.abs(_as_srgb(img, colour.check_space("ACEScct")) - srgb).max() < 2.9e-3


@pytest.mark.parametrize("transfer", ["Logarithmic", "Printing density"])
def test_log_dpx_is_read_as_cineon(tmp_path, transfer):
    srgb = _picture()
    linear = colour.convert(srgb, SRGB, colour.LINEAR_REC709)
    log_dpx(tmp_path / "scan.dpx", linear, transfer)
    img = images.read(tmp_path / "scan.dpx", 3)
    assert img.colour_space == colour.CINEON and img.pixels.dtype == np.uint16
    assert colour.check_space(img.colour_space) == colour.CINEON
    # Nuke's curve: 18 % grey at code 467.8, white at 685
    assert cineon_code(np.float32(0.18)) == pytest.approx(467.8, abs=0.1)
    assert np.abs(_as_srgb(img) - srgb).max() < 1.7e-3


def test_plain_files_and_unknown_names_keep_the_default_rule(tmp_path):
    """OpenImageIO reports no colour space for plain EXR and TIFF, and srgb_rec709_scene for every PNG:
    float stays scene-linear, integer sRGB. A name the configuration does not know is ignored."""
    spec = oiio.ImageSpec(6, 4, 3, oiio.HALF)
    spec.attribute("oiio:ColorSpace", "Studio Log v7")
    out = oiio.ImageOutput.create(str(tmp_path / "odd.exr"))
    out.open(str(tmp_path / "odd.exr"), spec)
    out.write_image(np.zeros((4, 6, 3), np.float32))
    out.close()
    assert images.read(tmp_path / "odd.exr").colour_space == SCENE_LINEAR
    rgba_trimap_png(tmp_path / "tri.png", np.zeros((4, 6), np.uint8))
    assert images.read(tmp_path / "tri.png").colour_space == SRGB


def test_an_opaque_alpha_is_not_taken_for_the_matte(tmp_path):
    """A trimap painted in RGB and saved as RGBA with an opaque alpha reads from its luminance."""
    tri = np.zeros((8, 10), np.uint8)
    tri[2:6, 3:7] = 128
    tri[3:5, 4:6] = 255
    rgba = np.concatenate([np.repeat(tri[..., None], 3, 2), np.full((8, 10, 1), 255, np.uint8)], axis=2)
    write_pixels(tmp_path / "tri.png", rgba)
    np.testing.assert_array_equal(images.read(tmp_path / "tri.png", 1).pixels[..., 0], tri)
    np.testing.assert_array_equal(images.read(tmp_path / "tri.png", 1, channel="A").pixels[..., 0], 255)
