"""One frame's way through the server, in the three steps every transport and path mode take:

1. `prepare`, in the CPU stage: the inputs as a Sample, the model's colour conversion, the plate
   aligned (options.align_plate), a network's input tensor built (for dcnn: its classical alphas);
2. `submit`: the model's run, on a device worker (networks, batched with frames of the same model and
   size) or in the CPU models' lane (server/scheduler.py);
3. `finish`, in the CPU stage: alpha in the dtype asked for and, when asked, the unmixed foreground.

`matte` takes one frame through all three and waits (the unary, stream and shared-memory calls); path
mode (server/jobs.py) runs the steps itself, with the next frames prepared while one is on a device.

Metrics (server/metrics.py): FRAMES counts each frame `matte` answers (path mode counts its own), a
frame refused or failed as "error", one cancelled as "cancelled"; INFERENCE and BATCH each model run;
BYTES_IN_FLIGHT the input arrays of the frames in progress: `matte`'s from the call's decoded pixels to
its answer, path mode's from a frame's read to its write (a best effort: the request's own buffers,
the prepared copies, a network's input tensor and the answers are not counted).
"""
from __future__ import annotations

import functools
import logging
import time
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass, replace

import grpc
import numpy as np

from models import colour, pixels
from models.base import BACKGROUND, IMAGE, TRIMAP, Sample
from models.colour import SCENE_LINEAR, SRGB, check_space
from models.registry import Registry, UnknownModel
from server import frames
from server.api import pb
from server.frames import Inputs, Matted, RequestError
from server.metrics import BATCH, BYTES_IN_FLIGHT, FRAMES, INFERENCE
from server.scheduler import DeadlinePassed, QueueFull, Scheduler

log = logging.getLogger("mattebox.server")


@dataclass(frozen=True)
class Prepared:
    """A frame ready for its model. raw: the inputs as they arrived (arrays in their own dtypes and
    spaces); sample: what the model runs on (prepared; for a network, packed); report: the plate's
    alignment, or None; cpu: whether a CPU model runs it; key: frames of equal keys may share a batch
    (model, (H, W), steps), None for CPU models."""

    name: str
    raw: Sample
    sample: Sample
    report: object | None
    options: pb.MatteOptions
    cpu: bool
    key: tuple | None


class Pipeline:
    def __init__(self, registry: Registry, scheduler: Scheduler):
        self.registry, self.scheduler = registry, scheduler
        # networks' inputs are built in the form their devices take (half in pinned memory for CUDA)
        self._pack_for = "cuda" if all(d.startswith("cuda") for d in scheduler.devices) else "cpu"

    def matte(self, name: str, frame: Inputs, deadline: float | None, wait=None) -> Matted:
        """Prepare, run and finish one frame, waiting for each; raises RequestError. deadline: a
        time.monotonic() value; wait: see Scheduler.submit."""
        held = sum(a.nbytes for a in frame.arrays.values())
        BYTES_IN_FLIGHT.inc(held)
        status = "error"
        try:
            prepared = self.result(name, self._stage(self.prepare, name, frame), deadline)
            alpha = self.result(name, self.submit(prepared, deadline, wait), deadline)
            got = self.result(name, self._stage(self.finish, prepared, alpha), deadline)
            status = "ok"
            return got
        except RequestError as err:
            status = "cancelled" if err.code == grpc.StatusCode.CANCELLED else "error"
            raise
        finally:
            BYTES_IN_FLIGHT.dec(held)
            FRAMES.labels(name, status).inc()

    def prepare(self, name: str, frame: Inputs) -> Prepared:
        """CPU work before the model runs (see the module's step 1). Raises RequestError."""
        try:
            model = self.registry.model(name)
        except UnknownModel as err:
            raise RequestError(grpc.StatusCode.NOT_FOUND, err.message) from None
        opts = frame.options
        background = frame.arrays.get(BACKGROUND) if BACKGROUND in model.inputs else None
        try:
            raw = Sample(image=frame.arrays[IMAGE], trimap=frame.arrays.get(TRIMAP), background=background,
                         colour_space=_space(frame, IMAGE), display_space=check_space(opts.display_space or SRGB),
                         background_space=SRGB if background is None else _space(frame, BACKGROUND), steps=opts.steps)
        except ValueError as err:
            raise frames.invalid(str(err)) from None
        cpu = model.runs_on == "cpu"
        try:
            sample = model.prepare(raw)
            report = None
            if opts.align_plate and background is not None:
                from models import align  # OpenCV only when asked
                report = align.estimate(sample.image, sample.background)
                sample = replace(sample, background=align.warp(sample.background, report))
            if not cpu:
                from models.network import NetworkModel  # torch only for networks
                if isinstance(model, NetworkModel):
                    sample = model.packed(sample, self._pack_for)
        except Exception as err:
            raise failure(name, err) from None
        key = None if cpu else (name, sample.image.shape[:2], sample.steps)
        return Prepared(name, raw, sample, report, opts, cpu, key)

    def submit(self, prepared: Prepared, deadline: float | None, wait=None) -> Future:
        """Queue the frame for its model: a Future of its alpha (see Scheduler.submit; `result` turns its
        failures into RequestError). Raises RequestError when refused."""
        try:
            return self.scheduler.submit(functools.partial(self._run, prepared.name), prepared.sample,
                                         key=prepared.key, cpu=prepared.cpu, deadline=deadline, wait=wait)
        except QueueFull as err:
            raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED, str(err)) from None
        except RuntimeError as err:
            raise RequestError(grpc.StatusCode.UNAVAILABLE, str(err)) from None

    def finish(self, prepared: Prepared, alpha: np.ndarray) -> Matted:
        """CPU work after the model ran (see the module's step 3). Raises RequestError."""
        opts = prepared.options
        out = np.float32 if opts.alpha_dtype == pb.FLOAT32 else np.float16
        try:
            alpha = np.asarray(alpha)
            fgr = None
            if opts.foreground:
                fgr = _unmix(prepared.raw, alpha.astype(np.float32, copy=False), prepared.report).astype(out)
            report = prepared.report
            return Matted(alpha.astype(out, copy=False), fgr, None if report is None else _alignment(report))
        except Exception as err:
            raise failure(prepared.name, err) from None

    @staticmethod
    def result(name: str, fut: Future, deadline: float | None):
        """What a step's Future holds, waiting until the deadline; its failure as RequestError."""
        try:
            return fut.result(timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            fut.cancel()
            raise RequestError(grpc.StatusCode.DEADLINE_EXCEEDED, "the deadline passed before the frame was done")
        except RequestError:
            raise
        except (Exception, CancelledError) as err:
            raise failure(name, err, fut.cancelled()) from None

    def _stage(self, fn, *args) -> Future:
        try:
            return self.scheduler.stage(fn, *args)
        except RuntimeError as err:
            raise RequestError(grpc.StatusCode.UNAVAILABLE, str(err)) from None

    def _run(self, name: str, device: str, batch: list[Sample]) -> list[np.ndarray]:
        """Run on a device worker or the CPU models' lane: the model loaded on `device`, one batch."""
        model = self.registry.get(name, device)
        t = time.perf_counter()
        alphas = model.run(batch)
        INFERENCE.labels(name).observe(time.perf_counter() - t)
        BATCH.labels(name).observe(len(batch))
        return alphas


def failure(name: str, err: BaseException, cancelled: bool = False) -> RequestError:
    """A model step's exception as the status the client gets (the server goes on)."""
    if isinstance(err, RequestError):
        return err
    if isinstance(err, DeadlinePassed):
        return RequestError(grpc.StatusCode.DEADLINE_EXCEEDED, str(err))
    if isinstance(err, UnknownModel):
        return RequestError(grpc.StatusCode.NOT_FOUND, err.message)
    if isinstance(err, FileNotFoundError):
        return RequestError(grpc.StatusCode.FAILED_PRECONDITION, str(err))
    if isinstance(err, ValueError):
        return RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"model {name!r}: {err}")
    if cancelled or isinstance(err, CancelledError):
        return RequestError(grpc.StatusCode.CANCELLED, "the request was cancelled")
    log.error("model %s failed", name, exc_info=err)
    return RequestError(grpc.StatusCode.INTERNAL, f"model {name!r} failed: {err!r}")


def _unmix(raw: Sample, alpha: np.ndarray, report) -> np.ndarray:
    """The straight foreground in the image's own colour space: (H, W, 3) float32, solved there (in
    linear light for an EXR). raw: the frame as it arrived; alpha: (H, W) float32 in [0, 1]; report:
    the plate's alignment, or None. The plate (aligned like the one the model saw) is brought into the
    image's space."""
    from models import align, foreground
    image = pixels.to_unit_float(raw.image)[..., :3]
    plate = None
    if raw.background is not None:
        plate = pixels.to_unit_float(raw.background)[..., :3]
        if raw.background_space != raw.colour_space:
            plate = colour.convert(plate, raw.background_space, raw.colour_space)
        if report is not None:
            plate = align.warp(plate, report)
    return foreground.unmix(image, alpha, plate)


def _alignment(report) -> pb.Alignment:
    return pb.Alignment(ok=report.ok, inliers=report.inliers, shift_px=report.shift_px, message=report.message)


def _space(frame: Inputs, role: str) -> str:
    """The colour space of a picture: as its sender named it, else float scene-linear, integer sRGB."""
    named = frame.spaces.get(role, "")
    if named:
        return check_space(named)
    return SCENE_LINEAR if frame.arrays[role].dtype.kind == "f" else SRGB
