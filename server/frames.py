"""Checking what a request sends against what the model needs, with messages that say what to do."""
from __future__ import annotations

from dataclasses import dataclass

import grpc
import numpy as np

from models import pixels
from models.base import BACKGROUND, IMAGE, TRIMAP
from server.api import codec, pb

#: largest width or height accepted (a 16K frame); larger is refused before any allocation
MAX_SIDE = 16384
CHANNELS = {IMAGE: (3, 4), TRIMAP: (1,), BACKGROUND: (3, 4)}


@dataclass(frozen=True)
class Inputs:
    """One frame's raw inputs as they arrived.
    arrays: by role (image, trimap, background); spaces: the colour space each picture says it is in,
    by role ("" or absent: by dtype, float scene-linear and integer sRGB); options: the request's."""

    arrays: dict[str, np.ndarray]
    spaces: dict[str, str]
    options: pb.MatteOptions


@dataclass(frozen=True)
class Matted:
    """One frame's answer. alpha: (H, W) float16 (float32 when the options ask); foreground: (H, W, 3)
    of the same dtype, straight RGB in the image's own colour space, when the options ask for it;
    alignment: how the plate was aligned (options.align_plate), else None."""

    alpha: np.ndarray
    foreground: np.ndarray | None = None
    alignment: pb.Alignment | None = None


class RequestError(Exception):
    """A bad request: becomes a gRPC status (or a per-frame error in path mode)."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str) -> RequestError:
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message)


def check_inputs(model_name: str, needs: tuple[str, ...], sent) -> None:
    """Refuse a request that lacks an input the model needs (FAILED_PRECONDITION).
    sent: the roles that came (any collection of role names)."""
    missing = [k for k in needs if k not in sent]
    if missing:
        raise RequestError(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"model {model_name!r} needs a {' and a '.join(missing)} "
            f"(its inputs: {', '.join(needs)}); send {'it' if len(missing) == 1 else 'them'} or pick another model")


def check_desc(role: str, desc: pb.FrameDesc, image: pb.FrameDesc | None = None) -> None:
    """Validate one descriptor: dtype, sizes, channels, and same size as the image."""
    if desc.dtype not in codec.DTYPES:
        raise invalid(f"{role}: unsupported dtype {pb.DType.Name(desc.dtype) if desc.dtype in pb.DType.values() else desc.dtype}; "
                      "use UINT8, UINT16, FLOAT16 or FLOAT32")
    if desc.width == 0 or desc.height == 0:
        raise invalid(f"{role}: {desc.width}x{desc.height} has no pixels")
    if desc.width > MAX_SIDE or desc.height > MAX_SIDE:
        raise invalid(f"{role}: {desc.width}x{desc.height} is larger than {MAX_SIDE} on a side; tile or scale it")
    if desc.channels not in CHANNELS[role]:
        raise invalid(f"{role}: {desc.channels} channels; expected {' or '.join(map(str, CHANNELS[role]))}")
    if image is not None and (desc.width, desc.height) != (image.width, image.height):
        raise invalid(f"{role} is {desc.width}x{desc.height} but the image is {image.width}x{image.height}; "
                      "they must be the same size")


def to_array(role: str, desc: pb.FrameDesc, buffer) -> np.ndarray:
    """Check the byte count and pixel values and view the pixels as (H, W, C) [trimap: (H, W)]."""
    want = codec.nbytes(desc)
    if len(buffer) != want:
        raise invalid(f"{role}: {len(buffer)} bytes do not match {desc.width}x{desc.height}x{desc.channels} "
                      f"{pb.DType.Name(desc.dtype)} ({want} bytes)")
    a = codec.view(desc, buffer)
    if not pixels.all_finite(a):
        raise invalid(f"{role}: contains NaN or Inf pixels; clamp or fix the source before matting")
    if role == TRIMAP:
        return a[..., 0]
    return a[..., :3]
