"""Path mode: sequence jobs on shared storage. The server reads the frames, mattes them and writes the
alpha files itself, sending one event per finished frame and a final summary.

A frame that fails (missing file, path outside the allowed roots, bad pixels) becomes an error event
and the job goes on. Cancelling the job (CancelJob, a cancelled or dropped call, server shutdown)
stops it after the frame in flight; finished frames stay on disk.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from typing import TYPE_CHECKING, Iterator

import grpc

from models import images, pixels, sequence
from models.base import BACKGROUND, IMAGE, TRIMAP
from models.colour import check_space
from server import frames
from server.api import pb
from server.frames import Inputs, RequestError

if TYPE_CHECKING:
    from server.servicer import Matting

log = logging.getLogger("mattebox.jobs")
#: most frames one job may name
MAX_FRAMES = 100_000


class Jobs:
    """Running jobs by id, with their cancel flags."""

    def __init__(self):
        self._cancel: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def add(self, job_id: str) -> threading.Event:
        with self._lock:
            if job_id in self._cancel:
                raise RequestError(grpc.StatusCode.ALREADY_EXISTS, f"job {job_id!r} is already running")
            ev = self._cancel[job_id] = threading.Event()
            return ev

    def remove(self, job_id: str) -> None:
        with self._lock:
            self._cancel.pop(job_id, None)

    def cancel(self, job_id: str) -> bool:
        with self._lock:
            ev = self._cancel.get(job_id)
        if ev is not None:
            ev.set()
        return ev is not None

    def cancel_all(self) -> None:
        with self._lock:
            for ev in self._cancel.values():
                ev.set()


class Job:
    def __init__(self, server: "Matting", request: pb.JobRequest, context: grpc.ServicerContext, job_id: str,
                 cancel: threading.Event):
        self.server, self.request, self.context = server, request, context
        self.id, self.cancel = job_id, cancel

    @classmethod
    def start(cls, server: "Matting", request: pb.JobRequest, context) -> "Job":
        """Check the whole request before any frame runs; raise RequestError if it cannot work at all."""
        r = request
        needs = server.model_inputs(r.model)
        if not r.input:
            raise frames.invalid("the job names no input pattern")
        frames.check_inputs(r.model, needs, [IMAGE] + [role for role in (TRIMAP, BACKGROUND) if getattr(r, role)])
        if r.last < r.first:
            raise frames.invalid(f"frame range {r.first}-{r.last} ends before it starts")
        if r.last - r.first + 1 > MAX_FRAMES:
            raise frames.invalid(f"frame range {r.first}-{r.last} is longer than {MAX_FRAMES} frames; split the job")
        ext = os.path.splitext(r.output)[1].lower()
        if ext not in images.ALPHA_FORMATS:
            raise frames.invalid(f"output {r.output!r} must end in one of {', '.join(images.ALPHA_FORMATS)}")
        if r.last > r.first and not sequence.has_frame_token(r.output):
            raise frames.invalid(f"output {r.output!r} has no frame token (####, %04d or $F4) for a "
                                 f"{r.last - r.first + 1}-frame range")
        for space in filter(None, (r.colour_space, r.options.display_space)):
            try:
                check_space(space)
            except ValueError as err:
                raise frames.invalid(str(err)) from None
        job_id = r.job_id or uuid.uuid4().hex[:12]
        cancel = server.jobs.add(job_id)
        context.add_callback(cancel.set)  # a cancelled or dropped call stops the job
        return cls(server, request, context, job_id, cancel)

    def events(self) -> Iterator[pb.JobEvent]:
        r, t0 = self.request, time.perf_counter()
        done = failed = 0
        stills: dict[str, images.Image] = {}
        try:
            yield pb.JobEvent(started=pb.JobStarted(job_id=self.id, frames=r.last - r.first + 1))
            for frame in range(r.first, r.last + 1):
                if self.cancel.is_set():
                    break
                t = time.perf_counter()
                try:
                    out = self._frame(frame, stills)
                except RequestError as err:
                    if err.code == grpc.StatusCode.CANCELLED:
                        break
                    if err.code in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE,
                                    grpc.StatusCode.INTERNAL, grpc.StatusCode.FAILED_PRECONDITION):
                        log.warning("job %s frame %d: %s", self.id, frame, err.message)
                    failed += 1
                    yield pb.JobEvent(error=pb.FrameError(frame=frame, message=err.message))
                    continue
                except (OSError, ValueError) as err:
                    failed += 1
                    yield pb.JobEvent(error=pb.FrameError(frame=frame, message=str(err)))
                    continue
                done += 1
                yield pb.JobEvent(done=pb.FrameDone(frame=frame, output=out, seconds=time.perf_counter() - t))
            yield pb.JobEvent(summary=pb.JobSummary(done=done, failed=failed, cancelled=self.cancel.is_set(),
                                                    seconds=time.perf_counter() - t0))
        finally:
            self.server.jobs.remove(self.id)

    def _read(self, role: str, pattern: str, frame: int, stills: dict[str, images.Image]) -> images.Image:
        path = str(self.server.roots.check(sequence.frame_path(pattern, frame)))
        if not sequence.has_frame_token(pattern):
            if path not in stills:
                stills[path] = images.read(path, 1 if role == TRIMAP else 3)
            return stills[path]
        return images.read(path, 1 if role == TRIMAP else 3)

    def _frame(self, frame: int, stills: dict[str, images.Image]) -> str:
        r = self.request
        out = str(self.server.roots.check(sequence.frame_path(r.output, frame)))
        src = self._read(IMAGE, r.input, frame, stills)
        arrays, spaces = {IMAGE: src.pixels}, {IMAGE: r.colour_space or src.colour_space}
        for role, pattern in ((TRIMAP, r.trimap), (BACKGROUND, r.background)):
            if pattern:
                img = self._read(role, pattern, frame, stills)
                if img.pixels.shape[:2] != src.pixels.shape[:2]:
                    raise frames.invalid(f"frame {frame}: {role} is {img.pixels.shape[1]}x{img.pixels.shape[0]} "
                                         f"but the image is {src.pixels.shape[1]}x{src.pixels.shape[0]}")
                arrays[role] = img.pixels[..., 0] if role == TRIMAP else img.pixels
                spaces[role] = r.colour_space or img.colour_space
        for role, a in arrays.items():
            if not pixels.all_finite(a):
                raise frames.invalid(f"frame {frame}: the {role} has NaN or Inf pixels")
        alpha = self.server.matte(r.model, Inputs(arrays, spaces, r.options), None,
                                  wait=lambda: not self.cancel.is_set())
        images.write_alpha(out, alpha, src.window)
        return out
