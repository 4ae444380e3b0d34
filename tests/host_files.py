"""Files written the way compositing hosts write them, for tests of every reader of frames.

Each writer uses OpenImageIO (and its OpenColorIO configuration) directly, never models.images, so a
test checks Mattebox's reading against an independent writer. Imported by tests with
`from host_files import ...` (tests/ is on sys.path). Pictures are top row first; "box" and windows
are in the format's pixel coordinates with y down (OpenEXR's convention).
"""
from __future__ import annotations

import numpy as np
import OpenImageIO as oiio

#: Cineon curve of Nuke's Log2Lin / "Cineon" colour space: 10-bit code values of black and white,
#: and the density each code value stands for over the negative's gamma
CINEON_BLACK, CINEON_WHITE, CINEON_STEP = 95, 685, 0.002 / 0.6


def _write(path, px: np.ndarray, spec: oiio.ImageSpec) -> None:
    """Write (H, W, C) float pixels with `spec` (whose format OpenImageIO converts them to)."""
    out = oiio.ImageOutput.create(str(path))
    assert out is not None and out.open(str(path), spec), oiio.geterror()
    assert out.write_image(np.ascontiguousarray(px, np.float32)), out.geterror()
    out.close()


def _exr_spec(width: int, height: int, channels: tuple[str, ...]) -> oiio.ImageSpec:
    """Nuke's Write defaults for EXR: 16-bit half, Zip (1 scanline) compression."""
    spec = oiio.ImageSpec(width, height, len(channels), oiio.HALF)
    spec.channelnames = channels
    spec.attribute("compression", "zips")
    return spec


def _ocio(rgb: np.ndarray, src: str, dst: str) -> np.ndarray:
    """(H, W, 3) float32 from colour space src to dst through OpenColorIO, unclipped."""
    buf = oiio.ImageBufAlgo.colorconvert(oiio.ImageBuf(np.ascontiguousarray(rgb, np.float32)), src, dst)
    assert not buf.has_error, buf.geterror()
    return buf.get_pixels(oiio.FLOAT)


def bbox_exr(path, full_rgb: np.ndarray, box: tuple[int, int, int, int],
             alpha: np.ndarray | None = None) -> None:
    """What Nuke's Write writes when the node tree's bbox is smaller than the format (or reaches past
    it): an EXR whose display window is the whole of full_rgb (H, W, 3) float and whose data window is
    box = (x, y, width, height), x and y possibly negative. The data window holds full_rgb's pixels
    inside the box and 0 where the box leaves the format. Channels R, G, B, and A when `alpha`
    ((H, W) float in [0, 1]) is given; half float, Zip (1 scanline) compression."""
    x, y, w, h = box
    planes = [full_rgb] if alpha is None else [full_rgb, alpha[..., None]]
    full = np.concatenate(planes, axis=2).astype(np.float32)
    data = np.zeros((h, w, full.shape[2]), np.float32)
    fx0, fx1 = max(x, 0), min(x + w, full.shape[1])
    fy0, fy1 = max(y, 0), min(y + h, full.shape[0])
    data[fy0 - y:fy1 - y, fx0 - x:fx1 - x] = full[fy0:fy1, fx0:fx1]
    spec = _exr_spec(w, h, ("R", "G", "B", "A")[:full.shape[2]])
    spec.x, spec.y = x, y
    spec.full_x, spec.full_y, spec.full_width, spec.full_height = 0, 0, full.shape[1], full.shape[0]
    _write(path, data, spec)


def rgba_roto_exr(path, matte: np.ndarray, red: np.ndarray | None = None) -> None:
    """A roto exported from Nuke as a Write of rgba to EXR: channels R, G, B, A (half, Zip 1 scanline),
    the shape's matte (H, W) in [0, 1] in A, and in R, G, B whatever the tree carried there (here
    `red` (H, W) in red, default a horizontal ramp unrelated to the matte; G, B a different ramp)."""
    h, w = matte.shape
    ramp = np.broadcast_to(np.linspace(0.0, 1.0, w, dtype=np.float32), (h, w))
    red = ramp if red is None else red
    other = np.broadcast_to(np.linspace(1.0, 0.2, h, dtype=np.float32)[:, None], (h, w))
    _write(path, np.stack([red, other, other, matte], axis=2), _exr_spec(w, h, ("R", "G", "B", "A")))


def rgba_trimap_png(path, trimap: np.ndarray) -> None:
    """A trimap painted into the alpha of an RGBA 8-bit PNG (a paint application, or Nuke's Write of
    rgba to PNG): A holds trimap (H, W) uint8 (0 background, 128 unknown, 255 foreground), R, G, B an
    unrelated picture (a colour gradient), stored straight as PNG stores colour (unassociated alpha)."""
    h, w = trimap.shape
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    rgb = np.stack([gx / max(w - 1, 1), gy / max(h - 1, 1), np.full((h, w), 0.7, np.float32)], axis=2)
    spec = oiio.ImageSpec(w, h, 4, oiio.UINT8)
    spec.channelnames = ("R", "G", "B", "A")
    spec.alpha_channel = 3
    spec.attribute("oiio:UnassociatedAlpha", 1)  # the pixels given are straight: store them as they are
    _write(path, np.concatenate([rgb, trimap[..., None] / np.float32(255)], axis=2), spec)


def acescg_exr(path, linear_rec709_rgb: np.ndarray) -> None:
    """A plate from an ACES pipeline (Nuke's Write under an ACES OpenColorIO config, or oiiotool): the
    linear Rec.709 picture (H, W, 3) float converted to ACEScg through OpenColorIO, half EXR (Zip 1
    scanline) with the AP1 primaries in the standard `chromaticities` attribute and the space's name
    in `oiio:ColorSpace` (stored by OpenImageIO 3 as the EXR `colorInteropID` "lin_ap1_scene")."""
    h, w = linear_rec709_rgb.shape[:2]
    spec = _exr_spec(w, h, ("R", "G", "B"))
    spec.attribute("chromaticities", oiio.TypeDesc("float[8]"), oiio.ColorConfig().get_chromaticities("ACEScg"))
    spec.attribute("oiio:ColorSpace", "ACEScg")
    _write(path, _ocio(linear_rec709_rgb, "lin_rec709_scene", "ACEScg"), spec)


def acescct_tiff(path, linear_rec709_rgb: np.ndarray) -> None:
    """A 16-bit TIFF graded or exported in ACEScct (Nuke's Write to TIFF with colorspace ACEScct, a
    grading application's log export): the linear Rec.709 picture (H, W, 3) float converted to ACEScct
    through OpenColorIO, rounded to 16 bit, and no colour metadata at all (TIFF has no tag for it), so
    the reader sees an ordinary 16-bit TIFF and the user must say --colour-space ACEScct."""
    h, w = linear_rec709_rgb.shape[:2]
    _write(path, np.clip(_ocio(linear_rec709_rgb, "lin_rec709_scene", "ACEScct"), 0, 1),
           oiio.ImageSpec(w, h, 3, oiio.UINT16))


def cineon_code(linear: np.ndarray) -> np.ndarray:
    """Linear light (any shape, float) -> Cineon 10-bit code values (float, unrounded), Nuke's curve:
    0 -> 95, 1 -> 685, 0.18 -> 467.8."""
    offset = 10.0 ** ((CINEON_BLACK - CINEON_WHITE) * CINEON_STEP)
    return CINEON_WHITE + np.log10(np.maximum(linear * (1 - offset) + offset, 1e-10)) / CINEON_STEP


def log_dpx(path, linear_rec709_rgb: np.ndarray, transfer: str = "Logarithmic") -> None:
    """A 10-bit log DPX as a film scanner or Nuke's Write (colorspace Cineon) writes it: the linear
    picture (H, W, 3) float encoded with the Cineon curve (cineon_code), rounded to 10-bit code values
    (filled, method A packing), and the header's transfer characteristic set to `transfer`:
    "Logarithmic" (DPX code 3) or "Printing density" (code 1, what film scans record)."""
    h, w = linear_rec709_rgb.shape[:2]
    spec = oiio.ImageSpec(w, h, 3, oiio.UINT16)
    spec.attribute("oiio:BitsPerSample", 10)
    spec.attribute("dpx:Transfer", transfer)
    code = np.clip(np.rint(cineon_code(linear_rec709_rgb)), 0, 1023)
    _write(path, code / 1023.0, spec)
