"""Per-model readiness in the standard gRPC health service (grpc.health.v1), service name = model name:
SERVING when the model can run (a classical model, or a network whose weights are there), NOT_SERVING
when its weights are missing, SERVICE_UNKNOWN once it has left the list (a deleted fine-tune).

The list changes while the server runs (a fine-tune installed in or removed from the weights folder),
so it is read again before each health Check of a model and each ListModels answer (a few file stats),
and every PERIOD_S seconds for health Watch streams. The same reading sets mattebox_model_ready{model}
(1 or 0). The first reading imports every model's code (torch, seconds), so it is not done at start:
a private server that lives for one short command never pays for it."""
from __future__ import annotations

import contextlib
import logging
import threading

import grpc
from grpc_health.v1 import health, health_pb2
from prometheus_client import Gauge

from models.registry import Registry, UnknownModel
from server.api import SERVICE
from server.metrics import REGISTRY

log = logging.getLogger("mattebox.server")

#: seconds between two readings of the model list for Watch streams
PERIOD_S = 5.0

MODEL_READY = Gauge("mattebox_model_ready", "1 when the model can run (weights present or none needed), else 0",
                    ["model"], registry=REGISTRY)

Status = health_pb2.HealthCheckResponse


class Readiness:
    """Keeps `checker`'s per-model statuses in step with `registry`, from `start` until `close`."""

    def __init__(self, registry: Registry, checker: health.HealthServicer, period_s: float = PERIOD_S):
        self.registry = registry
        self.checker = checker
        self._status: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(period_s,), name="readiness", daemon=True)

    def start(self) -> None:
        """Read the list every period from now on, in a daemon thread, until `close`."""
        self._thread.start()

    def refresh(self) -> None:
        """Read the model list; tell the health service (and its watchers) what changed. It asks each
        model whether its weights are there, not for its ModelInfo (which counts a network's FLOPs)."""
        now = {}
        for name in self.registry.names():
            try:
                now[name] = Status.SERVING if self.registry.model(name).weights_ready() else Status.NOT_SERVING
            except UnknownModel:  # removed since names() was read
                pass
        with self._lock:
            for name in self._status.keys() - now.keys():
                self.checker.set(name, Status.SERVICE_UNKNOWN)
                with contextlib.suppress(KeyError):  # the gauge is the process's: another server's may be gone
                    MODEL_READY.remove(name)
            for name, status in now.items():
                if self._status.get(name) != status:
                    self.checker.set(name, status)
                MODEL_READY.labels(name).set(status == Status.SERVING)
            self._status = now

    def _loop(self, period_s: float) -> None:
        while not self._stop.wait(period_s):
            try:
                self.refresh()
            except Exception:  # a bad card or a weights folder gone for a moment: try again next time
                log.exception("reading the model list for health checks failed")

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def interceptor(self) -> grpc.ServerInterceptor:
        """Refreshes before each ListModels answer and each health Check of a model, in the RPC thread
        (not gRPC's dispatch thread), so the answer is the weights folder as it is now."""
        return _Refreshing(self.refresh)


#: the unary calls answered after a refresh, and which of their requests need one
_BEFORE = {f"/{SERVICE}/ListModels": lambda request: True,
           "/grpc.health.v1.Health/Check": lambda request: request.service not in ("", SERVICE)}


class _Refreshing(grpc.ServerInterceptor):
    def __init__(self, refresh):
        self.refresh = refresh

    def intercept_service(self, continuation, details):
        handler = continuation(details)
        needs = _BEFORE.get(details.method)
        if handler is None or needs is None:
            return handler
        answer, refresh = handler.unary_unary, self.refresh

        def refreshed(request, context):
            if needs(request):
                refresh()
            return answer(request, context)

        return grpc.unary_unary_rpc_method_handler(refreshed, request_deserializer=handler.request_deserializer,
                                                   response_serializer=handler.response_serializer)
