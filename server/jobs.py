"""Path mode: sequence jobs on shared storage. The server reads the frames, mattes them and writes the
alpha files itself, sending one event per finished frame and a final summary.

A job whose patterns (first frame) lie outside the allowed roots is refused before it starts
(PERMISSION_DENIED), and so is one whose output or foreground could name one of its own input, trimap
or plate files, for any frame of the range (INVALID_ARGUMENT, naming both patterns); a frame that fails
later (missing file, a path outside the roots, bad pixels, a write the volume cannot take) becomes an
error event and the job goes on. Write failures are also logged; so is, once per job, a trimap snapped
to its three levels. With skip_existing, frames whose outputs are complete on
disk are reported done (skipped) without matting. Cancelling the job (CancelJob, a cancelled or dropped call, server shutdown)
stops it after the frames in flight (those already sent to their model); finished frames stay on disk,
and every frame written is one reported done.

Frames flow: up to AHEAD frames ahead of the oldest one in flight are read and prepared in the server's
CPU stage while earlier ones run on a device, and answered frames are finished and written there too;
frames go to their model in frame order, and events come in frame order.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

import grpc

from models import images, sequence
from models.base import BACKGROUND, IMAGE, TRIMAP
from models.colour import check_space
from models.job_files import JobFiles
from server import frames
from server.api import pb
from server.frames import Inputs, RequestError
from server.metrics import BYTES_IN_FLIGHT, FRAMES
from server.pipeline import Prepared

if TYPE_CHECKING:
    from server.servicer import Matting

log = logging.getLogger("mattebox.jobs")
#: most frames one job may name
MAX_FRAMES = 100_000
#: frames a job reads and prepares ahead of the oldest one in flight (so a device never waits for a read)
AHEAD = 3


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
        """The job's events: started, one done or error per frame in frame order, the summary. Up to
        AHEAD frames are read and prepared in the CPU stage while an earlier one runs on its device;
        finished frames are finished and written in the CPU stage."""
        r, t0 = self.request, time.perf_counter()
        done = failed = skipped = misaligned = 0
        window: deque[_Slot] = deque()
        frames_left = iter(range(r.first, r.last + 1))
        try:
            yield pb.JobEvent(started=pb.JobStarted(job_id=self.id, frames=r.last - r.first + 1))
            while True:
                while len(window) <= AHEAD and not self.cancel.is_set():
                    frame = next(frames_left, None)
                    if frame is None:
                        break
                    window.append(_Slot(frame, self._stage(self._load, frame)))
                if not window:
                    break
                self._advance(window)
                head = window[0]
                if not head.finished():
                    wait([f for f in map(_Slot.pending, window) if f is not None], return_when=FIRST_COMPLETED)
                    continue
                window.popleft()
                _release(head)
                outcome = head.outcome()
                if outcome is None or (isinstance(outcome, RequestError) and outcome.code == grpc.StatusCode.CANCELLED):
                    FRAMES.labels(r.model, "cancelled").inc()
                    self.cancel.set()  # a frame cancelled in its lane (server shutdown): no more are sent
                    continue
                if isinstance(outcome, RequestError):
                    if outcome.code in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE,
                                        grpc.StatusCode.INTERNAL, grpc.StatusCode.FAILED_PRECONDITION):
                        log.warning("job %s frame %d: %s", self.id, head.frame, outcome.message)
                    failed += 1
                    FRAMES.labels(r.model, "error").inc()
                    yield pb.JobEvent(error=pb.FrameError(frame=head.frame, message=outcome.message))
                    continue
                if isinstance(outcome, (OSError, ValueError)):
                    if isinstance(outcome, images.WriteError):  # a full volume, a quota: the operator's to know
                        log.warning("job %s frame %d: %s", self.id, head.frame, outcome)
                    failed += 1
                    FRAMES.labels(r.model, "error").inc()
                    yield pb.JobEvent(error=pb.FrameError(frame=head.frame, message=str(outcome)))
                    continue
                if isinstance(outcome, BaseException):
                    raise outcome
                notes = head.load.result().notes
                if notes and not self.noted:
                    self.noted = True
                    outcome.notice = f"frame {head.frame}: {'; '.join(notes)} (said once per job)"
                    log.warning("job %s %s", self.id, outcome.notice)
                done += 1
                skipped += outcome.skipped
                misaligned += outcome.HasField("alignment") and not outcome.alignment.ok
                FRAMES.labels(r.model, "ok").inc()
                yield pb.JobEvent(done=outcome)
            yield pb.JobEvent(summary=pb.JobSummary(done=done, failed=failed, cancelled=self.cancel.is_set(),
                                                    seconds=time.perf_counter() - t0, skipped=skipped,
                                                    misaligned=misaligned))
        finally:
            self._drain(window)
            self.server.jobs.remove(self.id)

    def _advance(self, window: deque["_Slot"]) -> None:
        """Move every frame in flight on as far as it goes now: a read frame to its model, in frame order
        (so that a cancelled job leaves no gap: the frames sent before the cancel finish, no later one
        is sent), and a frame its model answered to the CPU stage's finish and write."""
        in_order = True  # every frame before this one is sent to its model or settled
        for slot in window:
            if slot.run is None and not slot.settled():
                if not slot.load.done():
                    in_order = False
                elif in_order:
                    self._send(slot)
            elif slot.run is not None and slot.store is None and slot.run.done():
                slot.store = self._stage(self._store, slot)

    def _send(self, slot: "_Slot") -> None:
        """A read frame to its model, waiting for room on the devices (or the CPU models' lane)."""
        loaded = slot.loaded()
        if loaded is None or loaded.prepared is None:  # failed to read, or skipped: settled by its read
            return
        if self.cancel.is_set():
            slot.dropped = True
            return
        try:
            slot.run = self.server.pipeline.submit(loaded.prepared, None, wait=lambda: not self.cancel.is_set())
        except RequestError as err:
            slot.failed = err

    def _drain(self, window: deque["_Slot"]) -> None:
        """Let the frames sent to a model finish (and be written) and drop the others, so that no file is
        written once the job is gone."""
        self.cancel.set()
        while window:
            self._advance(window)
            pending = [f for f in map(_Slot.pending, window) if f is not None]
            if not pending:
                break
            wait(pending, return_when=FIRST_COMPLETED)
        for slot in window:
            slot.load.cancel()
            _release(slot)

    def _stage(self, fn, *args) -> Future:
        """fn(*args) in the server's CPU stage; a failed Future once the server is shutting down."""
        try:
            return self.server.scheduler.stage(fn, *args)
        except RuntimeError as err:
            fut: Future = Future()
            fut.set_exception(RequestError(grpc.StatusCode.UNAVAILABLE, str(err)))
            return fut

    def _load(self, frame: int) -> "_Loaded":
        """CPU stage: the frame's outputs checked, its files read and prepared for the model (nothing
        read when skip_existing finds its outputs complete)."""
        t, r, files = time.perf_counter(), self.request, self.files
        outputs = [self.check(p) for p in files.outputs(frame)]
        event = pb.FrameDone(frame=frame, output=outputs[0], foreground=outputs[1] if files.foreground else "")
        if r.skip_existing and files.complete(frame, self.check):
            event.skipped = True
            event.seconds = time.perf_counter() - t
            return _Loaded(event, t)
        inputs = files.read(frame, self.check)
        prepared = self.server.pipeline.prepare(r.model, Inputs(inputs.arrays, inputs.spaces, self.options))
        held = sum(a.nbytes for a in inputs.arrays.values())
        BYTES_IN_FLIGHT.inc(held)
        return _Loaded(event, t, prepared, inputs.window, inputs.notes, held)

    def _store(self, slot: "_Slot") -> pb.FrameDone:
        """CPU stage: the model's answer finished (dtype, foreground) and written."""
        loaded = slot.loaded()
        got = self.server.pipeline.finish(loaded.prepared, self.server.pipeline.result(self.request.model,
                                                                                        slot.run, None))
        self.files.write(slot.frame, got.alpha, got.foreground, loaded.window, self.check)
        event = loaded.event
        if got.alignment is not None:
            event.alignment.CopyFrom(got.alignment)
        event.seconds = time.perf_counter() - loaded.t0
        return event


@dataclass(frozen=True)
class _Loaded:
    """A frame as the CPU stage read it. event: its FrameDone so far (complete when skipped); t0: when
    its reading began (perf_counter); prepared: what its model runs on, None when skipped; window: the
    image's data window; notes: what its reader noticed; held: bytes of its input arrays."""

    event: pb.FrameDone
    t0: float
    prepared: Prepared | None = None
    window: images.Window | None = None
    notes: tuple[str, ...] = ()
    held: int = 0


@dataclass(eq=False)
class _Slot:
    """One frame of a job in flight: `load` (CPU stage: read and prepare), `run` (its model, once sent),
    `store` (CPU stage: finish and write); dropped: cancelled before it was sent; failed: refused when
    sent (the server shutting down)."""

    frame: int
    load: Future
    run: Future | None = None
    store: Future | None = None
    dropped: bool = False
    failed: RequestError | None = None

    def loaded(self) -> _Loaded | None:
        """The read frame, or None when its reading failed (or has not finished)."""
        if not self.load.done() or self.load.cancelled() or self.load.exception() is not None:
            return None
        return self.load.result()

    def settled(self) -> bool:
        """Whether the frame's outcome is known without waiting for its model."""
        if self.dropped or self.failed is not None:
            return True
        if not self.load.done():
            return False
        loaded = self.loaded()
        return loaded is None or loaded.prepared is None

    def finished(self) -> bool:
        return self.settled() or (self.store is not None and self.store.done())

    def pending(self) -> Future | None:
        """What the frame waits on now (None: nothing, or its turn to be sent)."""
        for fut in (self.load, self.run, self.store):
            if fut is not None and not fut.done():
                return fut
        return None

    def outcome(self) -> pb.FrameDone | BaseException | None:
        """A finished frame's event, or what went wrong; None when it was dropped."""
        if self.dropped:
            return None
        if self.failed is not None:
            return self.failed
        fut = self.store if self.store is not None else self.load
        if fut.cancelled():
            return None
        err = fut.exception()
        return err if err is not None else (fut.result().event if fut is self.load else fut.result())


def _release(slot: _Slot) -> None:
    loaded = slot.loaded()
    if loaded is not None and loaded.held:
        BYTES_IN_FLIGHT.dec(loaded.held)
