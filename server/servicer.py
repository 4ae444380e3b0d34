"""The Matting service: every RPC checks its request, sends the frame through the pipeline (CPU stage,
the model's device, CPU stage: server/pipeline.py), and answers with alpha or a status that says what
was wrong."""
from __future__ import annotations

import functools
import time
from urllib.parse import unquote

import grpc
import numpy as np

from models.base import BACKGROUND, IMAGE, TRIMAP
from models.registry import Registry, UnknownModel
from server import finetune, frames, jobs
from server.api import codec, pb, rpc
from server.auth import is_loopback
from server.frames import Inputs, Matted, RequestError
from server.limits import Limits, mib
from server.paths import AllowedRoots
from server.pipeline import Pipeline
from server.scheduler import Scheduler
from server.shm import Regions

CHUNK = 1 << 20
VERSION = "0.1.0"


def _status(handler):
    """Turn RequestError into the call's gRPC status; the server goes on serving."""

    @functools.wraps(handler)
    def wrapped(self, request, context):
        try:
            return handler(self, request, context)
        except RequestError as err:
            context.abort(err.code, err.message)

    return wrapped


def _status_stream(handler):
    @functools.wraps(handler)
    def wrapped(self, request, context):
        try:
            yield from handler(self, request, context)
        except RequestError as err:
            context.abort(err.code, err.message)

    return wrapped


class Matting(rpc.MattingServicer):
    def __init__(self, registry: Registry, scheduler: Scheduler, roots: AllowedRoots, limits: Limits | None = None):
        self.registry = registry
        self.scheduler = scheduler
        self.roots = roots
        self.limits = limits or Limits()
        self.warnings: list[str] = []  # what ListModels tells every client about how the server is set up
        self.pipeline = Pipeline(registry, scheduler)
        self.regions = Regions()
        self.jobs = jobs.Jobs()

    # -- the one path every transport takes ------------------------------------------------------

    def model_inputs(self, name: str) -> tuple[str, ...]:
        try:
            return self.registry.model(name).inputs
        except UnknownModel as err:
            raise RequestError(grpc.StatusCode.NOT_FOUND, err.message) from None

    def parts(self, model: str, message, sent) -> dict:
        """The parts of `message` (fields named image / trimap / background) the model takes, by role:
        the image always, a trimap or plate when the model needs one and `sent(part)` says it came.
        Refuses a request that lacks one (FAILED_PRECONDITION)."""
        needs = self.model_inputs(model)
        parts = {IMAGE: message.image}
        for role in (TRIMAP, BACKGROUND):
            if role in needs and sent(message, role):
                parts[role] = getattr(message, role)
        frames.check_inputs(model, needs, parts)
        return parts

    def matte(self, name: str, frame: Inputs, deadline: float | None, wait=None) -> Matted:
        """One frame through the pipeline (server/pipeline.py): alpha, and the foreground and plate
        alignment when the options ask (see Matted). Raises RequestError."""
        return self.pipeline.matte(name, frame, deadline, wait)

    # -- RPCs --------------------------------------------------------------------------------------

    def ListModels(self, request, context):
        infos = self.registry.infos()
        return pb.ListModelsResponse(server_version=VERSION, warnings=self.warnings, models=[
            pb.ModelInfo(name=i.name, description=i.description, inputs=[codec.INPUT_CODES[k] for k in i.inputs],
                         weights_ready=i.weights, params=i.params, gflops_512=i.gflops_512, device=i.device,
                         loaded=i.loaded, digest=i.digest, card=i.card) for i in infos])

    @_status
    def Matte(self, request, context):
        t0 = time.perf_counter()
        parts = self.parts(request.model, request, lambda m, role: bool(getattr(m, role).data))
        descs = {role: p.desc for role, p in parts.items()}
        arrays = _arrays(descs, lambda role: parts[role].data)
        got = self.matte(request.model, Inputs(arrays, _spaces(descs), request.options), _deadline(context))
        return pb.MatteResponse(alpha=codec.encode(got.alpha), seconds=time.perf_counter() - t0,
                                foreground=None if got.foreground is None else codec.encode(got.foreground),
                                alignment=got.alignment)

    @_status_stream
    def MatteStream(self, request_iterator, context):
        """The buffer grows with the data as it arrives, each chunk reserved in the server's stream
        budget first (RESOURCE_EXHAUSTED past it) and given back when the call ends, however it ends;
        a stream whose next chunk does not come within the idle limit is ended (DEADLINE_EXCEEDED)."""
        t0 = time.perf_counter()
        budget, held = self.limits.stream_bytes, 0
        messages = self.limits.within(request_iterator)
        try:
            first = next(messages, None)
            if first is None or not first.HasField("header"):
                raise frames.invalid("the first MatteStream message must carry the header (model and frame "
                                     "descriptors)")
            head = first.header
            descs = self.parts(head.model, head, lambda m, role: m.HasField(role))
            # the data carries every input the header describes, in this order, needed or not
            sent = [role for role in (IMAGE, TRIMAP, BACKGROUND) if role == IMAGE or head.HasField(role)]
            for role in sent:
                frames.check_desc(role, getattr(head, role), None if role == IMAGE else head.image)
            sizes = [(role, codec.nbytes(getattr(head, role))) for role in sent]
            total = sum(n for _, n in sizes)
            if total > budget.limit:
                raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                   f"a {mib(total)} frame is more than this server holds of streamed frames at once "
                                   f"({mib(budget.limit)}, mattebox serve --stream-memory-mb): send it through "
                                   "shared memory or path mode")
            buf = bytearray()  # nothing is allocated for what the header only declares
            for chunk in messages:
                n = len(chunk.data)
                if len(buf) + n > total:
                    raise frames.invalid(f"the stream sent more than the {total} bytes its header describes")
                if not budget.take(n):
                    raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                       f"the server holds {mib(budget.used)} of streamed frames in flight, its limit "
                                       f"(mattebox serve --stream-memory-mb {budget.limit >> 20}): retry shortly")
                held += n
                buf += chunk.data
            if len(buf) != total:
                raise frames.invalid(f"the stream ended after {len(buf)} of the {total} bytes its header describes")
            mv, offsets, at = memoryview(buf), {}, 0
            for role, n in sizes:
                offsets[role] = mv[at:at + n]
                at += n
            arrays = _arrays(descs, offsets.__getitem__)
            got = self.matte(head.model, Inputs(arrays, _spaces(descs), head.options), _deadline(context))
            del arrays, offsets, mv, buf  # the inputs' bytes go back before the reply is sent
        finally:
            messages.close()
            budget.give(held)
            # freed now, even when the traceback of a cancelled call keeps this frame a while
            buf = mv = offsets = arrays = first = None  # noqa: F841
        yield pb.AlphaChunk(alpha=codec.describe(got.alpha), seconds=time.perf_counter() - t0,
                            foreground=None if got.foreground is None else codec.describe(got.foreground),
                            alignment=got.alignment)
        for a in filter(lambda a: a is not None, (got.alpha, got.foreground)):
            data = memoryview(np.ascontiguousarray(a)).cast("B")
            for i in range(0, len(data), CHUNK):
                yield pb.AlphaChunk(data=data[i:i + CHUNK].tobytes())

    @_status
    def RegisterRegion(self, request, context):
        if not _is_local(context.peer()):
            raise RequestError(grpc.StatusCode.FAILED_PRECONDITION,
                               f"shared memory needs client and server on one host (peer {context.peer()}); "
                               "use MatteStream or path mode")
        return pb.RegisterRegionResponse(region_id=self.regions.register(request.name, request.size, context.peer()))

    @_status
    def ReleaseRegion(self, request, context):
        self.regions.release(request.region_id, context.peer())
        return pb.ReleaseRegionResponse()

    @_status
    def MatteShared(self, request, context):
        """A sealed memfd's inputs are read as views of its mapping and the results written straight
        into it; any other region's inputs are copied out into arrays the server owns and the results
        copied in (server.shm: the server maps only what its client cannot shrink)."""
        t0 = time.perf_counter()
        with self.regions.use(request.region_id, context.peer()) as region:
            slices = self.parts(request.model, request, lambda m, role: m.HasField(role))
            for role, s in slices.items():
                frames.check_desc(role, s.desc, None if role == IMAGE else request.image.desc)
                _check_bounds(role, s.offset, codec.nbytes(s.desc), region.size)
            descs = {role: s.desc for role, s in slices.items()}
            arrays = _arrays(descs, lambda role: region.read(slices[role].offset, codec.nbytes(descs[role])))
            got = self.matte(request.model, Inputs(arrays, _spaces(descs), request.options), _deadline(context))
            del arrays
            results = [("alpha", got.alpha, request.alpha_offset)]
            if got.foreground is not None:
                results.append(("foreground", got.foreground, request.foreground_offset))
            for role, a, offset in results:
                _check_bounds(role, offset, a.nbytes, region.size)
            for role, a, offset in results:
                region.write(offset, a)
        return pb.MatteSharedResponse(alpha=codec.describe(got.alpha), seconds=time.perf_counter() - t0,
                                      foreground=None if got.foreground is None else codec.describe(got.foreground),
                                      alignment=got.alignment)

    def RunJob(self, request, context):
        try:
            job = jobs.Job.start(self, request, context)
        except RequestError as err:
            context.abort(err.code, err.message)
        yield from job.events()

    def Finetune(self, request, context):
        try:
            yield from finetune.events(request, self.roots, context)
        except RequestError as err:
            context.abort(err.code, err.message)

    def CancelJob(self, request, context):
        return pb.CancelJobResponse(found=self.jobs.cancel(request.job_id))

    def shutdown(self) -> None:
        """Stop every job after its frame in flight."""
        self.jobs.cancel_all()


def _arrays(descs: dict[str, pb.FrameDesc], data) -> dict[str, np.ndarray]:
    out = {}
    for role, desc in descs.items():
        frames.check_desc(role, desc, None if role == IMAGE else descs[IMAGE])
        out[role] = frames.to_array(role, desc, data(role))
    return out


def _spaces(descs: dict[str, pb.FrameDesc]) -> dict[str, str]:
    return {role: d.colour_space for role, d in descs.items()}


def _deadline(context) -> float | None:
    left = context.time_remaining()  # a huge number when the client set no deadline
    return None if left is None or left > 1e7 else time.monotonic() + left


def _check_bounds(role: str, offset: int, size: int, total: int) -> None:
    if offset + size > total:
        raise frames.invalid(f"{role}: bytes {offset}..{offset + size} run past the end of the "
                             f"{total}-byte region")


def _is_local(peer: str) -> bool:
    """Whether a gRPC peer ("ipv4:127.0.0.1:5000", "ipv6:%5B::1%5D:5000", "unix:...") is this host."""
    kind, _, address = unquote(peer).partition(":")
    return kind == "unix" or (kind in ("ipv4", "ipv6") and is_loopback(address.rsplit(":", 1)[0]))
