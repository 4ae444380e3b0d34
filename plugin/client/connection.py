"""The Mattebox client library: one `Client` per server (or list of servers).

Transports: `matte` (unary, small frames), `matte_stream` (1 MiB chunks), `matte_shared` (shared
memory, same host), `run_job` (path mode, the normal case for sequences on shared storage).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from plugin.client.shm import SharedRegion, layout
from server.api import codec, pb, rpc

CHUNK = 1 << 20
DEFAULT_ADDRESS = "127.0.0.1:50051"


class Client:
    """address: "host:port", or "ip:port,ip:port,..." to balance round-robin over several servers
    (health-checked). token: sent as `authorization: Bearer` metadata. tls_ca: PEM file of the CA
    that signed the server's certificate (TLS on when given)."""

    def __init__(self, address: str = DEFAULT_ADDRESS, token: str = "", tls_ca: str = "",
                 max_message_mb: int = 512):
        self.address = address
        limit = max_message_mb << 20
        options = [("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)]
        target = address
        if "," in address:
            target = "ipv4:" + address
            options += [("grpc.service_config", json.dumps({
                "loadBalancingConfig": [{"round_robin": {}}],
                "healthCheckConfig": {"serviceName": ""}}))]
        if tls_ca:
            creds = grpc.ssl_channel_credentials(Path(tls_ca).read_bytes())
            self.channel = grpc.secure_channel(target, creds, options)
        else:
            self.channel = grpc.insecure_channel(target, options)
        self.stub = rpc.MattingStub(self.channel)
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._region: SharedRegion | None = None
        self._region_id = ""

    # -- information -------------------------------------------------------------------------------

    def health(self, timeout: float = 5.0) -> str:
        """"SERVING", "NOT_SERVING", ... Raises grpc.RpcError when the server cannot be reached."""
        stub = health_pb2_grpc.HealthStub(self.channel)
        resp = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout, metadata=self.metadata)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)

    def models(self, timeout: float | None = 30.0) -> list[pb.ModelInfo]:
        return list(self.stub.ListModels(pb.ListModelsRequest(), timeout=timeout, metadata=self.metadata).models)

    # -- one frame ---------------------------------------------------------------------------------

    def matte(self, model: str, image: np.ndarray, trimap: np.ndarray | None = None,
              background: np.ndarray | None = None, colour_space: str = "",
              options: pb.MatteOptions | None = None, timeout: float | None = None) -> np.ndarray:
        """One frame inline. image: (H, W, 3); trimap: (H, W) uint8 0/128/255; background: like image.
        Returns (H, W) alpha, float16 (or float32 when options ask)."""
        req = pb.MatteRequest(model=model, image=codec.encode(image, colour_space), options=options)
        if trimap is not None:
            req.trimap.CopyFrom(codec.encode(trimap))
        if background is not None:
            req.background.CopyFrom(codec.encode(background, colour_space))
        resp = self.stub.Matte(req, timeout=timeout, metadata=self.metadata)
        return codec.view(resp.alpha.desc, resp.alpha.data)[..., 0]

    def matte_stream(self, model: str, image: np.ndarray, trimap: np.ndarray | None = None,
                     background: np.ndarray | None = None, colour_space: str = "",
                     options: pb.MatteOptions | None = None, timeout: float | None = None) -> np.ndarray:
        """As `matte`, carried in ~1 MiB chunks each way (any frame size)."""
        head = pb.MatteHeader(model=model, image=codec.describe(image, colour_space), options=options)
        parts = [image]
        if trimap is not None:
            head.trimap.CopyFrom(codec.describe(trimap))
            parts.append(trimap)
        if background is not None:
            head.background.CopyFrom(codec.describe(background, colour_space))
            parts.append(background)

        def chunks():
            yield pb.MatteChunk(header=head)
            for a in parts:
                mv = memoryview(np.ascontiguousarray(a)).cast("B")
                for i in range(0, len(mv), CHUNK):
                    yield pb.MatteChunk(data=mv[i:i + CHUNK].tobytes())

        replies = self.stub.MatteStream(chunks(), timeout=timeout, metadata=self.metadata)
        head_out = next(replies).alpha
        out = bytearray(codec.nbytes(head_out))
        pos = 0
        for r in replies:
            out[pos:pos + len(r.data)] = r.data
            pos += len(r.data)
        return codec.view(head_out, out)[..., 0]

    def matte_shared(self, model: str, image: np.ndarray, trimap: np.ndarray | None = None,
                     background: np.ndarray | None = None, colour_space: str = "",
                     options: pb.MatteOptions | None = None, timeout: float | None = None,
                     out: np.ndarray | None = None) -> np.ndarray:
        """As `matte`, through a shared-memory region (client and server on one host).
        The region is created on first use, grown when a frame needs more, and reused.
        out: optional (H, W) array of the alpha dtype to copy the alpha into (saves allocating a new
        array per frame in a sequence loop); returned."""
        parts = [a for a in (image, trimap, background) if a is not None]
        alpha_dtype = np.float32 if options is not None and options.alpha_dtype == pb.FLOAT32 else np.float16
        alpha_bytes = image.shape[0] * image.shape[1] * np.dtype(alpha_dtype).itemsize
        offsets, total = layout([a.nbytes for a in parts] + [alpha_bytes])
        region = self._shared_region(total)
        req = pb.MatteSharedRequest(model=model, region_id=self._region_id, alpha_offset=offsets[-1], options=options)
        fields = ["image"] + (["trimap"] if trimap is not None else []) + (["background"] if background is not None else [])
        for name, a, off in zip(fields, parts, offsets):
            region.put(off, a)
            getattr(req, name).CopyFrom(pb.RegionSlice(offset=off, desc=codec.describe(
                a, "" if name == "trimap" else colour_space)))
        resp = self.stub.MatteShared(req, timeout=timeout, metadata=self.metadata)
        alpha = region.array(offsets[-1], codec.DTYPES[resp.alpha.dtype], (resp.alpha.height, resp.alpha.width))
        if out is None:
            return alpha.copy()
        np.copyto(out, alpha)
        return out

    def _shared_region(self, size: int) -> SharedRegion:
        if self._region is None or self._region.size < size:
            self._release_region()
            self._region = SharedRegion(size)
            self._region_id = self.stub.RegisterRegion(
                pb.RegisterRegionRequest(name=self._region.name, size=size), metadata=self.metadata).region_id
        return self._region

    def _release_region(self) -> None:
        if self._region is not None:
            try:
                self.stub.ReleaseRegion(pb.ReleaseRegionRequest(region_id=self._region_id), timeout=5,
                                        metadata=self.metadata)
            except grpc.RpcError:
                pass  # the server is gone: nothing to release there
            self._region.close()
            self._region = None

    # -- sequences (path mode) ---------------------------------------------------------------------

    def run_job(self, request: pb.JobRequest, timeout: float | None = None) -> Iterator[pb.JobEvent]:
        """Start a path-mode job; iterate the returned call for events. `call.cancel()` stops it."""
        return self.stub.RunJob(request, timeout=timeout, metadata=self.metadata)

    def finetune(self, request: pb.FinetuneRequest, timeout: float | None = None) -> Iterator[pb.FinetuneEvent]:
        """Fine-tune on the server; iterate the returned call for progress. `call.cancel()` stops it."""
        return self.stub.Finetune(request, timeout=timeout, metadata=self.metadata)

    def cancel_job(self, job_id: str) -> bool:
        return self.stub.CancelJob(pb.CancelJobRequest(job_id=job_id), timeout=10, metadata=self.metadata).found

    def close(self) -> None:
        self._release_region()
        self.channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
