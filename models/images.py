"""Reading and writing frames with OpenImageIO (EXR, DPX, TIFF, PNG, JPEG and the rest it knows).

Channels: `read(path, 3)` takes R, G, B by name; `read(path, 1)` (mattes, trimaps) takes a named
channel, else the file's alpha (unless opaque), else its only channel, else the Rec.709 luminance of R, G, B.
Data windows: `Image.window` holds the data window (Nuke's bbox) and the display window (the format);
`fit` places one picture into another's data window. Colour: a file's own colour space when its header
names one (`oiio:ColorSpace`, EXR chromaticities, DPX log transfer), else float files (EXR, HDR, float
TIFF) are scene-linear and integer files display-referred sRGB; callers may override. Alpha is written
linear as it is, never colour-converted. Writes are atomic: a temp file in the same folder, then a
rename, so a crash never leaves a half frame that a re-run would trust; every write is checked end to
end (see _write_atomic) and one that fails raises WriteError, leaving nothing behind.
"""
from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import OpenImageIO as oiio

from models import colour
from models.colour import SCENE_LINEAR, SRGB

#: output formats for alpha and RGB, by extension: (OpenImageIO pixel type, numpy dtype)
OUTPUT_FORMATS = {
    ".exr": (oiio.HALF, np.float16),
    ".png": (oiio.UINT8, np.uint8),
    ".tif": (oiio.UINT16, np.uint16),
    ".tiff": (oiio.UINT16, np.uint16),
    ".dpx": (oiio.UINT16, np.uint16),
    ".jpg": (oiio.UINT8, np.uint8),
    ".jpeg": (oiio.UINT8, np.uint8),
}

#: DPX transfer characteristics that mean Cineon printing-density log
_LOG_TRANSFERS = ("Logarithmic", "Printing density")

#: Rec.709 luminance weights of R, G, B
_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


@dataclass(frozen=True)
class Window:
    """Where a frame's pixels sit, in the format's pixel coordinates (y down, OpenEXR's convention).

    x, y, width, height: the data window, the pixels the file holds (a Nuke bbox: x, y may be negative
    and the box may reach past the format). full_*: the display window (the format). Files without
    windows (PNG, TIFF, JPEG) have both equal to their size. Zero sizes mean not known; writing then
    uses the pixels' own size.
    """

    x: int = 0
    y: int = 0
    full_x: int = 0
    full_y: int = 0
    full_width: int = 0
    full_height: int = 0
    width: int = 0
    height: int = 0

    def format(self) -> str:
        """The display window as a user reads it: "1920x1080", or "1920x1080+x+y" off the origin."""
        offset = f"{self.full_x:+d}{self.full_y:+d}" if (self.full_x, self.full_y) != (0, 0) else ""
        return f"{self.full_width}x{self.full_height}{offset}"


@dataclass(frozen=True)
class Image:
    """pixels: (H, W, C) in the file's own dtype (uint8, uint16, float16 or float32), top row first.
    colour_space: OpenColorIO name of the pixels' space. window: data/display window of the file.
    channels: the file's channel names in its order (OpenImageIO's: EXR comes back R, G, B, A first)."""

    pixels: np.ndarray
    colour_space: str
    window: Window
    channels: tuple[str, ...] = ()


_NUMPY = {oiio.UINT8: np.uint8, oiio.UINT16: np.uint16, oiio.HALF: np.float16, oiio.FLOAT: np.float32}
_OIIO = {np.dtype(np.uint8): oiio.UINT8, np.dtype(np.uint16): oiio.UINT16}


def read(path: str | os.PathLike, channels: int | None = None, channel: str = "") -> Image:
    """Read one image.

    channels: None = every channel in the file's order; 3 = R, G, B, found by name where the file names
    them, else its first three (a one-channel file is repeated); 1 = one channel, for mattes and
    trimaps: `channel` when given (a channel name of the file such as "A" or "mask.a", matched exactly,
    else in any case; "Y" = the Rec.709 luminance of R, G, B where the file has no channel Y), else
    the file's alpha channel (unless it is opaque, 1 everywhere: no matte there), else its only
    channel, else the luminance of R, G, B.
    Integer files keep their dtype (luminance rounded back to it); float files come back float16 or
    float32; other pixel types (uint32, double, ...) are read as float32. Colour values are as stored
    (straight RGB of a PNG or TIFF with unassociated alpha is not premultiplied).
    Raises FileNotFoundError, or ValueError naming the file (and, for a channel the file lacks, the
    channel asked and the channels it has).
    """
    path = os.fspath(path)
    if channel and channels != 1:
        raise ValueError(f"{path}: a channel name ({channel!r}) picks one channel; read it with channels=1")
    spec, px = _read_pixels(path)
    names = tuple(spec.channelnames)
    if channels == 1:
        px = _matte(path, px, names, spec.alpha_channel, channel)
    elif channels == 3:
        px = _rgb(path, px, names)
    elif channels is not None:
        raise ValueError(f"{path}: read {channels} channels? Use None (all), 3 (RGB) or 1 (a matte)")
    space = _colour_space(spec, px.dtype.kind == "f")
    return Image(np.ascontiguousarray(px), space, _window(spec), names)


def window(path: str | os.PathLike) -> Window:
    """A file's data and display windows, from its header only (no pixels are read).
    Raises FileNotFoundError, or ValueError naming the file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    inp = oiio.ImageInput.open(path)
    if inp is None:
        raise ValueError(f"{path}: cannot read it as an image ({oiio.geterror()})")
    try:
        return _window(inp.spec())
    finally:
        inp.close()


def _window(spec: oiio.ImageSpec) -> Window:
    return Window(spec.x, spec.y, spec.full_x, spec.full_y, spec.full_width, spec.full_height,
                  spec.width, spec.height)


def fit(img: Image, target: Window, name: str = "the picture") -> np.ndarray:
    """img's pixels placed in `target`'s data window: (target.height, target.width, C), img's dtype.

    The two must share a display window (format). Where img's data window reaches past target's it is
    cropped; where it does not cover it the result is 0 (black, transparent, trimap background: what
    Nuke shows outside a bbox). With equal data windows this is img.pixels itself, not a copy.
    Raises ValueError naming `name` (e.g. "the trimap tri.0001.png") when the formats differ.
    """
    src, h, w = img.window, img.pixels.shape[0], img.pixels.shape[1]
    if src.format() != target.format():
        raise ValueError(f"{name} is {w}x{h} in format {src.format()} but the image is "
                         f"{target.width}x{target.height} in format {target.format()}: Reformat {name} to "
                         f"the image's format ({target.format()})")
    if (src.x, src.y, w, h) == (target.x, target.y, target.width, target.height):
        return img.pixels
    out = np.zeros((target.height, target.width, img.pixels.shape[2]), img.pixels.dtype)
    x0, x1 = max(src.x, target.x), min(src.x + w, target.x + target.width)
    y0, y1 = max(src.y, target.y), min(src.y + h, target.y + target.height)
    if x0 < x1 and y0 < y1:
        out[y0 - target.y:y1 - target.y, x0 - target.x:x1 - target.x] = \
            img.pixels[y0 - src.y:y1 - src.y, x0 - src.x:x1 - src.x]
    return out


def _read_pixels(path: str) -> tuple[oiio.ImageSpec, np.ndarray]:
    """The file's spec and all its pixels, (H, W, C) in the dtype read() documents."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    config = oiio.ImageSpec()
    config.attribute("oiio:UnassociatedAlpha", 1)
    inp = oiio.ImageInput.open(path, config)
    if inp is None:
        raise ValueError(f"{path}: cannot read it as an image ({oiio.geterror()})")
    try:
        spec = inp.spec()
        fmt = spec.format.basetype
        px = inp.read_image(0, 0, 0, spec.nchannels, fmt if fmt in _NUMPY else oiio.FLOAT)
        if px is None:
            raise ValueError(f"{path}: failed to read pixels ({inp.geterror()})")
    finally:
        inp.close()
    return spec, np.asarray(px).reshape(spec.height, spec.width, spec.nchannels)


def _matte(path: str, px: np.ndarray, names: tuple[str, ...], alpha: int, channel: str) -> np.ndarray:
    """(H, W, C) -> (H, W, 1), same dtype: the channel read(path, 1, channel) takes."""
    if channel:
        index = _find(names, channel)
        if index is None and channel.upper() != "Y":
            raise ValueError(f"{path}: has no channel {channel!r}; its channels are {', '.join(names)}")
    else:
        index = alpha if alpha >= 0 else next((i for i, n in enumerate(names) if _is_alpha(n)), None)
        if index is not None and len(names) > 1 and _opaque(px[..., index]):
            index = None  # an opaque alpha holds no matte (a trimap painted in RGB, saved as RGBA)
        if index is None and len(names) == 1:
            index = 0
    if index is not None:
        return px[..., index:index + 1]
    rgb = _rgb_indices(names)
    if rgb is None:
        raise ValueError(f"{path}: no alpha, single channel or R, G, B to read a matte from (it has "
                         f"{', '.join(names)}); name the channel to read")
    return _luminance(px, rgb)


def _opaque(a: np.ndarray) -> bool:
    """Whether a channel (integer or float) is 1 everywhere."""
    one = np.iinfo(a.dtype).max if a.dtype.kind == "u" else 1.0
    return bool((a == one).all())


def _rgb(path: str, px: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """(H, W, C) -> (H, W, 3), same dtype: R, G, B, or a one-channel picture repeated."""
    if len(names) == 1:
        return np.repeat(px, 3, axis=2)
    rgb = _rgb_indices(names)
    if rgb is None:
        raise ValueError(f"{path}: has channels {', '.join(names)}; need R, G, B or a single channel")
    return px[..., rgb]


def _find(names: tuple[str, ...], wanted: str) -> int | None:
    """Index of the channel named `wanted` (exactly, else in any case), None when there is none."""
    exact = [i for i, n in enumerate(names) if n == wanted]
    loose = [i for i, n in enumerate(names) if n.lower() == wanted.lower()]
    return (exact or loose or [None])[0]


def _is_alpha(name: str) -> bool:
    """True for alpha channel names: A, alpha, and a layer's alpha ("matte.A", "mask.alpha")."""
    low = name.lower()
    return low in ("a", "alpha") or low.endswith((".a", ".alpha"))


def _rgb_indices(names: tuple[str, ...]) -> list[int] | None:
    """Indices of R, G, B: by name where the file names all three, else the first three, else None."""
    low = [n.lower() for n in names]
    if all(c in low for c in "rgb"):
        return [low.index(c) for c in "rgb"]
    return [0, 1, 2] if len(names) >= 3 else None


def _luminance(px: np.ndarray, rgb: list[int]) -> np.ndarray:
    """(H, W, C) -> (H, W, 1) Rec.709 luminance of channels `rgb` (R, G, B), in px's dtype (integers
    rounded and clipped). Summed a channel at a time: a 4K frame in tens of milliseconds."""
    y = px[..., rgb[0]] * _LUMA[0]
    for index, weight in zip(rgb[1:], _LUMA[1:]):
        y += px[..., index] * weight
    if px.dtype.kind == "u":
        y = np.clip(np.rint(y, out=y), 0, np.iinfo(px.dtype).max, out=y)
    return y.astype(px.dtype)[..., None]


def _colour_space(spec: oiio.ImageSpec, floating: bool) -> str:
    """The space the file's header names, when the colour configuration knows it: a DPX log transfer
    (Cineon), `oiio:ColorSpace`, or (float files) EXR chromaticities of a linear space. Else the
    default: SCENE_LINEAR for float pixels, SRGB for integers."""
    named = (colour.CINEON if spec.getattribute("dpx:Transfer") in _LOG_TRANSFERS else "",
             spec.getattribute("oiio:ColorSpace") or "",
             colour.from_chromaticities(spec.getattribute("chromaticities")) if floating else "")
    return next(filter(None, map(colour.declared, named)), SCENE_LINEAR if floating else SRGB)


def _encode(path: str, px: np.ndarray) -> tuple[np.ndarray, object]:
    """(H, W, C) pixels -> (array, OpenImageIO pixel type) for `path`'s format (OUTPUT_FORMATS).

    Float pixels get the format's type: half for EXR as they are, else clipped to [0, 1] and rounded to
    8 or 16 bit. uint8 / uint16 pixels are written as they are.
    """
    ext = Path(path).suffix.lower()
    if ext not in OUTPUT_FORMATS:
        raise ValueError(f"{path}: output must be one of {', '.join(OUTPUT_FORMATS)}")
    if px.dtype in _OIIO:
        return px, _OIIO[px.dtype]
    if px.dtype.kind != "f":
        raise ValueError(f"{path}: cannot write {px.dtype} pixels; use float, uint8 or uint16")
    pixel_type, dtype = OUTPUT_FORMATS[ext]
    if np.dtype(dtype).kind == "u":
        px = np.rint(np.clip(px.astype(np.float32, copy=False), 0.0, 1.0) * np.iinfo(dtype).max)  # half overflows at 65535
    return px.astype(dtype), pixel_type


class WriteError(OSError):
    """A frame that could not be written whole (a full volume, a quota, a file size limit, an I/O error).
    Nothing is left behind: the temp file is removed and the destination is untouched."""


#: formats written through OpenCV into memory, then to the file with checked writes: libjpeg (under
#: OpenImageIO's JPEG writer) ends the whole process with exit() when a write fails
_IN_MEMORY = {".jpg": ".jpg", ".jpeg": ".jpg"}
#: OpenImageIO's default JPEG quality, kept by the in-memory encoder
_JPEG_QUALITY = 98


def _write_atomic(path: str, px: np.ndarray, window: Window | None, channel_names: list[str]) -> None:
    """Write (H, W, C) pixels (encoded for the path's format) with their window, via a temp file in the
    same folder, checked end to end before it is renamed over `path`: every error the writer reports
    (its write and close results and its error messages), fsync, a non-empty size, and the file read
    back whole with the pixels written (lossless formats) or the picture's size (JPEG). The temp file
    is created with mode 0666 less the umask (and a folder's default ACL), like any file a program
    creates. Raises WriteError naming `path` (the volume's free space when it is nearly full)."""
    data, pixel_type = _encode(path, px)
    data = np.ascontiguousarray(data)
    folder, name = os.path.split(os.path.abspath(path))
    ext = os.path.splitext(name)[1].lower()
    os.makedirs(folder, exist_ok=True)
    h, w, c = data.shape
    spec = oiio.ImageSpec(w, h, c, pixel_type)
    spec.channelnames = channel_names
    if window is not None:
        spec.x, spec.y = window.x, window.y
        spec.full_x, spec.full_y = window.full_x, window.full_y
        spec.full_width, spec.full_height = window.full_width or w, window.full_height or h
    if ext == ".exr":
        spec.attribute("compression", "zip")
    if ext in (".tif", ".tiff"):
        spec.attribute("tiff:write_exif", 0)  # no Exif to write; else the writer reports a failure on every file
    tmp, fd = _temp_file(folder, name)
    try:
        try:
            if ext in _IN_MEMORY:
                _write_encoded(fd, path, _encode_in_memory(path, data, _IN_MEMORY[ext]))
            else:
                os.close(fd)
                fd = -1
                _write_oiio(tmp, path, spec, data)
                fd = os.open(tmp, os.O_RDONLY)
            os.fsync(fd)  # where a network volume or a delayed allocation reports a full disk or a quota
            size = os.fstat(fd).st_size
        except OSError as err:
            if isinstance(err, WriteError):
                raise
            failed = WriteError(f"{path}: cannot write it ({err.strerror or err}){_space(folder)}")
            failed.errno = err.errno
            raise failed from None
        finally:
            if fd >= 0:
                os.close(fd)
        if size == 0:
            raise WriteError(f"{path}: the writer left an empty file{_space(folder)}")
        _verify(tmp, path, spec, data, lossless=ext not in _IN_MEMORY, window=ext == ".exr")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _temp_file(folder: str, name: str) -> tuple[str, int]:
    """A new file ".NAME.XXXXXXXX.EXT" in folder, open for writing: (path, descriptor). Created with
    O_EXCL and mode 0666, so the umask decides who may read it (tempfile.mkstemp would make it 0600)."""
    stem, ext = os.path.splitext(name)
    for _ in range(100):
        tmp = os.path.join(folder, f".{name}.{uuid.uuid4().hex[:8]}{ext}")
        try:
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileExistsError:
            continue
        except OSError as err:
            raise WriteError(f"{os.path.join(folder, name)}: cannot make a temp file beside it "
                             f"({err.strerror or err}){_space(folder)}") from None
    raise WriteError(f"{os.path.join(folder, name)}: cannot make a temp file beside it")


def _write_oiio(tmp: str, path: str, spec: oiio.ImageSpec, data: np.ndarray) -> None:
    """OpenImageIO's writer for tmp's format; every failure it reports raises WriteError. Its write
    and close results are not enough: the PNG writer reports a failed write only through geterror()
    (and answers True), the DPX writer only from close(); a writer that failed to open is never
    used (TIFF's crashes the process then)."""
    folder = os.path.dirname(tmp)
    oiio.geterror()  # clear this thread's global error message: only this write's may count
    out = oiio.ImageOutput.create(tmp)
    if out is None:
        raise WriteError(f"{path}: no writer for this format ({oiio.geterror()})")
    if not out.open(tmp, spec):
        raise WriteError(f"{path}: cannot write it ({out.geterror() or oiio.geterror()}){_space(folder)}")
    wrote = out.write_image(data)
    errors = [out.geterror()]
    closed = out.close()
    errors += [out.geterror(), oiio.geterror()]
    lines = [line.strip() for e in errors if e for line in e.splitlines() if line.strip()]
    said = "; ".join(lines[:3]) + (f"; and {len(lines) - 3} more" if len(lines) > 3 else "")
    if not wrote or not closed or said:
        raise WriteError(f"{path}: write failed ({said or 'the writer gave no reason'}){_space(folder)}")


def _encode_in_memory(path: str, data: np.ndarray, ext: str) -> bytes:
    """(H, W, C) uint8 pixels, R, G, B order (or one channel), as the bytes of an `ext` file."""
    import cv2  # only for JPEG outputs

    bgr = data[..., ::-1] if data.shape[2] == 3 else data[..., 0]
    ok, encoded = cv2.imencode(ext, np.ascontiguousarray(bgr), [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
    if not ok:
        raise WriteError(f"{path}: cannot encode {data.shape[2]}-channel {data.dtype} pixels as {ext}")
    return encoded.tobytes()


def _write_encoded(fd: int, path: str, encoded: bytes) -> None:
    """Write all of `encoded` to fd; a short write is retried, a failed one raises OSError."""
    view = memoryview(encoded)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise WriteError(f"{path}: the volume took no more bytes{_space(os.path.dirname(path))}")
        view = view[n:]


def _verify(tmp: str, path: str, spec: oiio.ImageSpec, data: np.ndarray, lossless: bool, window: bool) -> None:
    """tmp must read back whole: same size and channels, the same data window origin (window: formats
    that keep one), and the same pixels where the format stores them as given (lossless, same type)."""
    inp = oiio.ImageInput.open(tmp)
    if inp is None:
        raise WriteError(f"{path}: the file written does not read back ({oiio.geterror()})")
    try:
        got = inp.spec()
        same = (got.width, got.height, got.nchannels) == (spec.width, spec.height, spec.nchannels) and (
            not window or (got.x, got.y) == (spec.x, spec.y))
        px = inp.read_image(0, 0, 0, got.nchannels, spec.format) if same else None
        err = inp.geterror()
    finally:
        inp.close()
    if not same:
        raise WriteError(f"{path}: the file written reads back as {got.width}x{got.height}x{got.nchannels}, "
                         f"not {spec.width}x{spec.height}x{spec.nchannels}")
    if px is None or err:
        raise WriteError(f"{path}: the file written does not read back whole ({err or oiio.geterror()})")
    px = np.asarray(px).reshape(data.shape)
    exact = lossless and got.format == spec.format  # else the format converted the pixels (uint16 in an EXR)
    bits = np.dtype(f"u{data.dtype.itemsize}")  # bit for bit: NaNs too, and faster than float compares
    if exact and not np.array_equal(px.view(bits), data.view(bits)):
        raise WriteError(f"{path}: the file written reads back with other pixels than were written")


def _space(folder: str) -> str:
    """"; the volume is nearly full (N KiB free)" when the folder's volume has less than 1 MiB free, else ""."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return ""
    free = st.f_bavail * st.f_frsize
    return f"; the volume is nearly full ({free // 1024} KiB free)" if free < (1 << 20) else ""


def write_alpha(path: str | os.PathLike, alpha: np.ndarray, window: Window | None = None) -> None:
    """Write a (H, W) alpha (float, clipped to [0, 1]) as one channel "A" in the path's format:
    half-float EXR, 8-bit PNG/JPEG, 16-bit TIFF/DPX. window: the data/display window to keep (EXR)."""
    path = os.fspath(path)
    a = np.clip(alpha.astype(np.float32, copy=False), 0.0, 1.0)
    _write_atomic(path, a[..., None], window, ["A"])


def write_rgb(path: str | os.PathLike, rgb: np.ndarray, window: Window | None = None) -> None:
    """Write (H, W, 3) pixels as R, G, B in the path's format (OUTPUT_FORMATS), e.g. an unmixed
    foreground in the input's format. Float pixels: half-float EXR as given (scene-linear values above
    1 kept), or clipped to [0, 1] and rounded to 8-bit PNG/JPEG or 16-bit TIFF/DPX; uint8 / uint16
    pixels as they are. window: the data/display window to keep (EXR)."""
    _write_atomic(os.fspath(path), rgb, window, ["R", "G", "B"])
