"""Path mode: sequence jobs on shared storage. The server reads the frames, mattes them and writes the
alpha files itself, sending one event per finished frame and a final summary.

A job whose patterns (first frame) lie outside the allowed roots is refused before it starts
(PERMISSION_DENIED), and so is one whose output or foreground could name one of its own input, trimap
or plate files, for any frame of the range (INVALID_ARGUMENT, naming both patterns); a frame that fails
later (missing file, a path outside the roots, bad pixels, a write the volume cannot take) becomes an
error event and the job goes on. Write failures are also logged; so is, once per job, a trimap snapped
to its three levels. With skip_existing, frames whose outputs are complete on
disk are reported done (skipped) without matting. Cancelling the job (CancelJob, a cancelled or dropped call, server shutdown)
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

from models import images, sequence
from models.base import BACKGROUND, IMAGE, TRIMAP
from models.colour import check_space
from models.job_files import JobFiles
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
        r = request
        self.files = JobFiles(input=r.input, output=r.output, trimap=r.trimap, background=r.background,
                              foreground=r.foreground, matte_channel=r.matte_channel, colour_space=r.colour_space)
        self.options = pb.MatteOptions()
        self.options.CopyFrom(r.options)
        self.options.foreground = self.options.foreground or bool(r.foreground)
        self.noted = False  # whether the frames' notes (a snapped trimap) were logged

    def check(self, path: str) -> str:
        """`path` resolved, if it is under the server's allowed roots (else RequestError)."""
        return str(self.server.roots.check(path))

    @classmethod
    def start(cls, server: "Matting", request: pb.JobRequest, context) -> "Job":
        """Check the whole request before any frame runs; raise RequestError if it cannot work at all
        (a path outside the allowed roots included: PERMISSION_DENIED, so a client on this machine can
        send the pixels itself instead; an output that could be one of the job's own inputs, or a frame
        token past 10 digits: INVALID_ARGUMENT)."""
        try:
            return cls._start(server, request, context)
        except ValueError as err:
            raise frames.invalid(str(err)) from None

    @classmethod
    def _start(cls, server: "Matting", request: pb.JobRequest, context) -> "Job":
        r = request
        needs = server.model_inputs(r.model)
        if not r.input:
            raise frames.invalid("the job names no input pattern")
        for pattern in filter(None, (r.input, r.trimap, r.background, r.output, r.foreground)):
            sequence.check_pattern(pattern)
        frames.check_inputs(r.model, needs, [IMAGE] + [role for role in (TRIMAP, BACKGROUND) if getattr(r, role)])
        if r.last < r.first:
            raise frames.invalid(f"frame range {r.first}-{r.last} ends before it starts")
        if r.last - r.first + 1 > MAX_FRAMES:
            raise frames.invalid(f"frame range {r.first}-{r.last} is longer than {MAX_FRAMES} frames; split the job")
        for name, pattern in (("output", r.output), ("foreground", r.foreground)):
            if not pattern and name == "foreground":
                continue
            ext = os.path.splitext(pattern)[1].lower()
            if ext not in images.OUTPUT_FORMATS:
                raise frames.invalid(f"{name} {pattern!r} must end in one of {', '.join(images.OUTPUT_FORMATS)}")
            if r.last > r.first and not sequence.has_frame_token(pattern):
                raise frames.invalid(f"{name} {pattern!r} has no frame token (####, %04d or $F4) for a "
                                     f"{r.last - r.first + 1}-frame range")
        for space in filter(None, (r.colour_space, r.options.display_space)):
            try:
                check_space(space)
            except ValueError as err:
                raise frames.invalid(str(err)) from None
        for pattern in filter(None, (r.input, r.trimap, r.background, r.output, r.foreground)):
            server.roots.check(sequence.frame_path(pattern, r.first))
        JobFiles(input=r.input, output=r.output, trimap=r.trimap, background=r.background,
                 foreground=r.foreground).check_distinct(r.first, r.last)
        job_id = r.job_id or uuid.uuid4().hex[:12]
        cancel = server.jobs.add(job_id)
        context.add_callback(cancel.set)  # a cancelled or dropped call stops the job
        return cls(server, request, context, job_id, cancel)

    def events(self) -> Iterator[pb.JobEvent]:
        r, t0 = self.request, time.perf_counter()
        done = failed = skipped = misaligned = 0
        try:
            yield pb.JobEvent(started=pb.JobStarted(job_id=self.id, frames=r.last - r.first + 1))
            for frame in range(r.first, r.last + 1):
                if self.cancel.is_set():
                    break
                t = time.perf_counter()
                try:
                    event = self._frame(frame)
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
                    if isinstance(err, images.WriteError):  # a full volume, a quota: the operator's to know
                        log.warning("job %s frame %d: %s", self.id, frame, err)
                    failed += 1
                    yield pb.JobEvent(error=pb.FrameError(frame=frame, message=str(err)))
                    continue
                done += 1
                skipped += event.skipped
                misaligned += event.HasField("alignment") and not event.alignment.ok
                event.seconds = time.perf_counter() - t
                yield pb.JobEvent(done=event)
            yield pb.JobEvent(summary=pb.JobSummary(done=done, failed=failed, cancelled=self.cancel.is_set(),
                                                    seconds=time.perf_counter() - t0, skipped=skipped,
                                                    misaligned=misaligned))
        finally:
            self.server.jobs.remove(self.id)

    def _frame(self, frame: int) -> pb.FrameDone:
        r, files = self.request, self.files
        outputs = [self.check(p) for p in files.outputs(frame)]
        event = pb.FrameDone(frame=frame, output=outputs[0], foreground=outputs[1] if files.foreground else "")
        if r.skip_existing and files.complete(frame, self.check):
            event.skipped = True
            return event
        inputs = files.read(frame, self.check)
        if inputs.notes and not self.noted:
            self.noted = True
            event.notice = f"frame {frame}: {'; '.join(inputs.notes)} (said once per job)"
            log.warning("job %s %s", self.id, event.notice)
        got = self.server.matte(r.model, Inputs(inputs.arrays, inputs.spaces, self.options), None,
                                wait=lambda: not self.cancel.is_set())
        files.write(frame, got.alpha, got.foreground, inputs.window, self.check)
        if got.alignment is not None:
            event.alignment.CopyFrom(got.alignment)
        return event
