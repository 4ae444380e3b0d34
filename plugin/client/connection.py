"""The Mattebox client library: one `Client` per server (or list of servers, plugin/client/servers.py).

Transports: `matte` (unary, small frames), `matte_stream` (1 MiB chunks), `matte_shared` (shared
memory, same host), `run_job` (path mode, the normal case for sequences on shared storage).

Only grpc and the protocol are imported with the module: what host plugins run on every Refresh and
Matte (listing models, path-mode jobs) starts fast. numpy, the pixel codec and shared memory are
imported by the calls that move pixels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

import grpc

from plugin.client.servers import Events, Servers
from server.api import pb

if TYPE_CHECKING:
    import numpy as np

    from plugin.client.shm import SharedRegion

CHUNK = 1 << 20
DEFAULT_ADDRESS = "127.0.0.1:50051"


@dataclass(frozen=True)
class Result:
    """One matted frame: alpha (H, W); foreground (H, W, 3) straight RGB in the image's colour space
    when the options asked for it, else None; alignment: the plate's (pb.Alignment) when asked, else None."""

    alpha: np.ndarray
    foreground: np.ndarray | None = None
    alignment: pb.Alignment | None = None


def _alignment(reply) -> pb.Alignment | None:
    return reply.alignment if reply.HasField("alignment") else None


class Client:
    """address: "host:port", or several comma-separated ("gpu1:50051,gpu2,[::1]:50052"; names and
    IPv4/IPv6 addresses, the port 50051 when none is given; ValueError for one that is malformed or
    does not resolve). Over a list, frames (matte, matte_stream) and new jobs and fine-tunes go
    round-robin to the servers that answer, skipping one that answers UNAVAILABLE; what belongs to one
    server stays there: a job's or fine-tune's events, CancelJob (to the server that runs the job), a
    shared-memory region's calls (to the server that holds it).
    token: sent as `authorization: Bearer` metadata. tls_ca: PEM file of the CA that signed the
    server's certificate (TLS on when given). tls_cert, tls_key: PEM files of this client's
    certificate (chain) and its private key, for a server that requires client certificates
    (`mattebox serve --tls-client-ca`); TLS on when given, trusting tls_ca, else the system's CAs.
    channel, stub: the first server's (raw calls in tests and tools)."""

    def __init__(self, address: str = DEFAULT_ADDRESS, token: str = "", tls_ca: str = "",
                 max_message_mb: int = 512, tls_cert: str = "", tls_key: str = ""):
        if bool(tls_cert) != bool(tls_key):
            raise ValueError("a client certificate needs both tls_cert and tls_key (--tls-cert and --tls-key)")
        self.address = address
        limit = max_message_mb << 20
        options = [("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)]
        self.servers = Servers(address, options, tls_ca, tls_cert, tls_key)
        self.channel, self.stub = self.servers.all[0].channel, self.servers.all[0].stub
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._jobs: dict = {}  # job id -> the Server whose RunJob answered JobStarted for it
        self._region: SharedRegion | None = None
        self._region_id = ""
        self._region_server = self.servers.all[0]
        self.shm_memfd = True  # shared memory by a sealed memfd, mapped by the server; False: a /dev/shm file, copied

    # -- information -------------------------------------------------------------------------------

    def health(self, timeout: float = 5.0) -> str:
        """"SERVING", "NOT_SERVING", ... (of a list: of the first server that answers). Raises
        grpc.RpcError when no server can be reached."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        _, resp = self.servers.first(lambda s: health_pb2_grpc.HealthStub(s.channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=timeout, metadata=self.metadata))
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)

    def models(self, timeout: float | None = 30.0) -> list[pb.ModelInfo]:
        return list(self.listing(timeout).models)

    def listing(self, timeout: float | None = 30.0) -> pb.ListModelsResponse:
        """The server's whole ListModels answer: models, version and the operator warnings it sends
        every client (e.g. a token accepted without TLS). Of a list: the first server that answers."""
        return self.servers.first(lambda s: s.stub.ListModels(pb.ListModelsRequest(), timeout=timeout,
                                                              metadata=self.metadata))[1]

    # -- one frame ---------------------------------------------------------------------------------
    # image: (H, W, 3); trimap: (H, W) uint8 0/128/255; background: like image; colour_space: the
    # image's and plate's OpenColorIO name ("" = float scene-linear, integer sRGB). The plain methods
    # return the (H, W) alpha, float16 (float32 when the options ask); `matte_frame` returns a Result
    # with the foreground and plate alignment the options ask for.

    def matte(self, model: str, image: np.ndarray, trimap: np.ndarray | None = None,
              background: np.ndarray | None = None, colour_space: str = "",
              options: pb.MatteOptions | None = None, timeout: float | None = None) -> np.ndarray:
        """One frame inline (small frames)."""
        return self._unary(model, image, trimap, background, colour_space, options, timeout).alpha

    def matte_stream(self, model: str, image: np.ndarray, trimap: np.ndarray | None = None,
                     background: np.ndarray | None = None, colour_space: str = "",
                     options: pb.MatteOptions | None = None, timeout: float | None = None) -> np.ndarray:
        """As `matte`, carried in ~1 MiB chunks each way (any frame size)."""
        return self._stream(model, image, trimap, background, colour_space, options, timeout).alpha

    def matte_shared(self, model: str, image: np.ndarray, trimap: np.ndarray | None = None,
                     background: np.ndarray | None = None, colour_space: str = "",
                     options: pb.MatteOptions | None = None, timeout: float | None = None,
                     out: np.ndarray | None = None) -> np.ndarray:
        """As `matte`, through a shared-memory region (client and server on one host).
        out: optional (H, W) array of the alpha dtype to copy the alpha into (saves allocating a new
        array per frame in a sequence loop); returned."""
        return self._shared(model, image, trimap, background, colour_space, options, timeout, out=out).alpha

    def matte_frame(self, transport: str, model: str, image: np.ndarray, trimap: np.ndarray | None = None,
                    background: np.ndarray | None = None, colour_space: str = "",
                    options: pb.MatteOptions | None = None, timeout: float | None = None,
                    background_space: str = "") -> "Result":
        """One frame by `transport` ("unary", "stream" or "shm"), with everything the options ask for.
        background_space: the plate's colour space when it is not the image's."""
        send = {"unary": self._unary, "stream": self._stream, "shm": self._shared}[transport]
        return send(model, image, trimap, background, colour_space, options, timeout, background_space)

    def _unary(self, model, image, trimap, background, colour_space, options, timeout,
               background_space="") -> "Result":
        from server.api import codec

        req = pb.MatteRequest(model=model, image=codec.encode(image, colour_space), options=options)
        if trimap is not None:
            req.trimap.CopyFrom(codec.encode(trimap))
        if background is not None:
            req.background.CopyFrom(codec.encode(background, background_space or colour_space))
        _, resp = self.servers.first(lambda s: s.stub.Matte(req, timeout=timeout, metadata=self.metadata))
        fgr = codec.view(resp.foreground.desc, resp.foreground.data) if resp.HasField("foreground") else None
        return Result(codec.view(resp.alpha.desc, resp.alpha.data)[..., 0], fgr, _alignment(resp))

    def _stream(self, model, image, trimap, background, colour_space, options, timeout,
                background_space="") -> "Result":
        import numpy as np

        from server.api import codec

        head = pb.MatteHeader(model=model, image=codec.describe(image, colour_space), options=options)
        parts = [image]
        if trimap is not None:
            head.trimap.CopyFrom(codec.describe(trimap))
            parts.append(trimap)
        if background is not None:
            head.background.CopyFrom(codec.describe(background, background_space or colour_space))
            parts.append(background)

        def chunks():
            yield pb.MatteChunk(header=head)
            for a in parts:
                mv = memoryview(np.ascontiguousarray(a)).cast("B")
                for i in range(0, len(mv), CHUNK):
                    yield pb.MatteChunk(data=mv[i:i + CHUNK].tobytes())

        def send(server):  # the whole frame again on the next server when this one is down
            replies = server.stub.MatteStream(chunks(), timeout=timeout, metadata=self.metadata)
            first = next(replies)
            descs = [first.alpha] + ([first.foreground] if first.HasField("foreground") else [])
            out = bytearray(sum(codec.nbytes(d) for d in descs))
            pos = 0
            for r in replies:
                out[pos:pos + len(r.data)] = r.data
                pos += len(r.data)
            return first, descs, out

        _, (first, descs, out) = self.servers.first(send)
        mv, n = memoryview(out), codec.nbytes(first.alpha)
        fgr = codec.view(descs[1], mv[n:]) if len(descs) > 1 else None
        return Result(codec.view(first.alpha, mv[:n])[..., 0], fgr, _alignment(first))

    def _shared(self, model, image, trimap, background, colour_space, options, timeout, background_space="",
                out=None) -> "Result":
        import numpy as np

        from plugin.client.shm import layout
        from server.api import codec

        parts = [a for a in (image, trimap, background) if a is not None]
        dtype = np.dtype(np.float32 if options is not None and options.alpha_dtype == pb.FLOAT32 else np.float16)
        pixels = image.shape[0] * image.shape[1]
        results = [pixels * dtype.itemsize] + ([3 * pixels * dtype.itemsize] if options and options.foreground else [])
        offsets, total = layout([a.nbytes for a in parts] + results)
        req = pb.MatteSharedRequest(model=model, alpha_offset=offsets[len(parts)], options=options)
        if len(results) > 1:
            req.foreground_offset = offsets[-1]
        fields = ["image"] + (["trimap"] if trimap is not None else []) + (["background"] if background is not None else [])
        for name, a, off in zip(fields, parts, offsets):
            space = {"image": colour_space, "trimap": "", "background": background_space or colour_space}[name]
            getattr(req, name).CopyFrom(pb.RegionSlice(offset=off, desc=codec.describe(a, space)))
        for attempt in (1, 2):
            region = self._shared_region(total)
            req.region_id = self._region_id
            for a, off in zip(parts, offsets):
                region.put(off, a)
            try:
                resp = self._region_server.stub.MatteShared(req, timeout=timeout, metadata=self.metadata)
                break
            except grpc.RpcError as err:
                # the server dropped the region (unused too long, our file removed, a new connection,
                # a restarted server; of a list: the region's server is down): once, a new file and
                # registration (on the next server that answers)
                gone = err.code() == grpc.StatusCode.NOT_FOUND and req.region_id in (err.details() or "")
                gone = gone or (len(self.servers.all) > 1 and self.servers.failed(self._region_server, err))
                if attempt == 2 or not gone:
                    raise
                self._release_region()
        a = resp.alpha
        alpha = region.array(req.alpha_offset, codec.DTYPES[a.dtype], (a.height, a.width))
        if out is None:
            alpha = alpha.copy()
        else:
            np.copyto(out, alpha)
            alpha = out
        fgr = None
        if resp.HasField("foreground"):
            f = resp.foreground
            fgr = region.array(req.foreground_offset, codec.DTYPES[f.dtype], (f.height, f.width, f.channels)).copy()
        return Result(alpha, fgr, _alignment(resp))

    def _shared_region(self, size: int) -> SharedRegion:
        from plugin.client.shm import SharedRegion

        def register(region: SharedRegion):
            return self.servers.first(lambda s: s.stub.RegisterRegion(
                pb.RegisterRegionRequest(name=region.name, size=size), timeout=30, metadata=self.metadata))

        if self._region is None or self._region.size < size:
            self._release_region()
            region = SharedRegion(size, memfd=self.shm_memfd)
            self.shm_memfd = region.memfd  # False where the system has no memfds
            try:
                try:
                    self._region_server, reply = register(region)
                except grpc.RpcError as err:
                    # a server that cannot open this process's memfd (another user or pid namespace, an
                    # older server): a file in /dev/shm, from now on
                    if not region.memfd or err.code() not in (grpc.StatusCode.INVALID_ARGUMENT,
                                                              grpc.StatusCode.NOT_FOUND):
                        raise
                    region.close()
                    self.shm_memfd = False
                    region = SharedRegion(size, memfd=False)
                    self._region_server, reply = register(region)
                self._region_id = reply.region_id
            except BaseException:
                region.close()
                raise
            self._region = region
        return self._region

    def _release_region(self) -> None:
        """Release the region on the server (where it still knows it) and let ours go (a file: removed)."""
        if self._region is not None:
            region, self._region, region_id, self._region_id = self._region, None, self._region_id, ""
            try:
                self._region_server.stub.ReleaseRegion(pb.ReleaseRegionRequest(region_id=region_id), timeout=5,
                                                       metadata=self.metadata)
            except grpc.RpcError:
                pass  # the server is gone: nothing to release there
            finally:
                region.close()

    # -- sequences (path mode) ---------------------------------------------------------------------

    def run_job(self, request: pb.JobRequest, timeout: float | None = None) -> Iterator[pb.JobEvent]:
        """Start a path-mode job (on the next server of a list that answers); iterate the returned call
        for events. `call.cancel()` stops it; so does `cancel_job(id)` while its events are read."""
        job_id = []

        def seen(server, ev):
            if ev.WhichOneof("event") == "started":
                job_id.append(ev.started.job_id)
                self._jobs[ev.started.job_id] = server

        def ended():
            if job_id:
                self._jobs.pop(job_id[0], None)

        return Events(self.servers, lambda s: s.stub.RunJob(request, timeout=timeout, metadata=self.metadata),
                      seen, ended)

    def finetune(self, request: pb.FinetuneRequest, timeout: float | None = None) -> Iterator[pb.FinetuneEvent]:
        """Fine-tune on a server (the next of a list that answers; the new model is on that server's
        weights folder); iterate the returned call for progress. `call.cancel()` stops it."""
        return Events(self.servers, lambda s: s.stub.Finetune(request, timeout=timeout, metadata=self.metadata))

    def cancel_job(self, job_id: str) -> bool:
        """Stop a job after its frame in flight; whether a server ran it. A job this client started goes
        to its server; any other job id is asked of every server of the list."""
        def cancel(server):
            return server.stub.CancelJob(pb.CancelJobRequest(job_id=job_id), timeout=10, metadata=self.metadata).found

        known = self._jobs.get(job_id)
        return cancel(known) if known is not None else any(self.servers.every(cancel))

    def close(self) -> None:
        try:
            self._release_region()
        finally:
            self.servers.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
