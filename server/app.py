"""Building and running the server: bind, TLS, token, admission limits, health checking (per model),
reflection, devices, the metrics endpoint, graceful stop."""
from __future__ import annotations

import logging
import signal
import tempfile
import threading
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from models.registry import Registry
from server import exposition
from server.api import SERVICE, rpc
from server.auth import TokenInterceptor, is_loopback
from server.limits import (PEER_CALLS, PEER_JOBS, PEER_WATCHES, STREAM_IDLE_S, STREAM_MEMORY_MB, THREADS, Admission,
                           Limits, bound_arenas)
from server.paths import AllowedRoots
from server.readiness import Readiness
from server.scheduler import QUEUE_SIZE, Scheduler
from server.servicer import Matting

log = logging.getLogger("mattebox.server")


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 50051
    token: str = ""
    insecure_token: bool = False  # accept a token without TLS off loopback (a trusted network only)
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""  # when set, clients must present a certificate signed by it
    allow_roots: list[str] = field(default_factory=list)  # empty: home and temp dir on loopback
    queue_size: int = QUEUE_SIZE
    threads: int = THREADS  # RPC threads; limits.RESERVE of them never go to long calls
    peer_calls: int = PEER_CALLS  # matting calls (Matte, MatteStream, MatteShared) one peer may have in flight
    peer_jobs: int = PEER_JOBS  # RunJob and Finetune calls one peer may have running
    peer_watches: int = PEER_WATCHES  # health Watch and reflection streams one peer may hold open
    stream_idle_s: float = STREAM_IDLE_S  # a MatteStream whose next chunk takes longer is ended
    stream_memory_mb: int = STREAM_MEMORY_MB  # bytes all MatteStream calls together may hold
    max_message_mb: int = 512
    grace_s: float = 30.0
    devices: list[str] = field(default_factory=list)  # "cpu" / "cuda:N"; empty: every visible GPU, else the CPU
    metrics_port: int = 0  # Prometheus text at http://metrics_host:metrics_port/metrics; 0: off
    metrics_host: str = ""  # empty: the server's host
    insecure_metrics: bool = False  # serve the (unauthenticated) metrics off loopback


class ConfigError(ValueError):
    pass


@dataclass
class Running:
    """A started server: its address and the pieces `stop` shuts down in order."""

    address: str
    grpc_server: grpc.Server
    servicer: Matting
    scheduler: Scheduler
    health: health.HealthServicer
    grace_s: float
    limits: Limits | None = None
    readiness: Readiness | None = None
    metrics: exposition.Endpoint | None = None

    def stop(self) -> None:
        """Refuse new calls, stop jobs after their frame in flight, let calls finish, stop workers."""
        if self.readiness:
            self.readiness.close()
        self.health.enter_graceful_shutdown()
        self.servicer.shutdown()
        self.grpc_server.stop(self.grace_s).wait()
        self.scheduler.close()
        self.servicer.regions.close()
        if self.metrics:
            self.metrics.close()

    def wait(self) -> None:
        self.grpc_server.wait_for_termination()


def default_roots(cfg: ServerConfig) -> list[str]:
    if cfg.allow_roots:
        return cfg.allow_roots
    return [str(Path.home()), tempfile.gettempdir()] if is_loopback(cfg.host) else []


def warnings(cfg: ServerConfig) -> list[str]:
    """What the operator chose that clients should know (logged at start, sent in ListModels)."""
    if cfg.token and not cfg.tls_cert and not is_loopback(cfg.host):
        return [f"the bearer token is accepted without TLS on {cfg.host} (--insecure-token): it crosses the "
                "network in clear; serve with --tls-cert/--tls-key"]
    return []


def check_devices(devices: list[str]) -> None:
    """Raises ConfigError unless every name is "cpu" or "cuda:N" of a GPU visible here, each once."""
    if not devices:
        return
    import torch

    visible = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    unknown = [d for d in devices if d not in visible]
    if unknown:
        raise ConfigError(f"--devices: {', '.join(map(repr, unknown))} not a device here; the devices visible are "
                          f"{', '.join(visible)} (give cpu or cuda:N, comma-separated)")
    if len(set(devices)) < len(devices):
        raise ConfigError(f"--devices {','.join(devices)}: name each device once")


def metrics_host(cfg: ServerConfig) -> str:
    """Where the metrics endpoint binds; raises ConfigError for a port out of range or an
    unauthenticated endpoint off loopback."""
    if not 0 < cfg.metrics_port < 65536:
        raise ConfigError(f"--metrics-port {cfg.metrics_port}: give a port from 1 to 65535 (0 or none: no metrics)")
    host = cfg.metrics_host or cfg.host
    if not is_loopback(host) and not cfg.insecure_metrics:
        raise ConfigError(f"the metrics endpoint has no authentication: on {host} anyone who reaches port "
                          f"{cfg.metrics_port} reads the server's models and load; give --metrics-host 127.0.0.1 "
                          "(scrape through a local agent or a tunnel), or --insecure-metrics on a trusted network")
    return host


def start(cfg: ServerConfig, registry: Registry | None = None) -> Running:
    """Start serving; raises ConfigError for an unsafe or incomplete configuration."""
    if not is_loopback(cfg.host) and not cfg.token:
        raise ConfigError(f"binding {cfg.host} exposes the server beyond this machine: give a token "
                          "(--token, --token-file or MATTEBOX_TOKEN), and TLS with --tls-cert/--tls-key")
    if bool(cfg.tls_cert) != bool(cfg.tls_key):
        raise ConfigError("TLS needs both --tls-cert and --tls-key")
    if cfg.tls_client_ca and not cfg.tls_cert:
        raise ConfigError("--tls-client-ca checks client certificates over TLS: give --tls-cert/--tls-key too")
    if cfg.token and not cfg.tls_cert and not is_loopback(cfg.host) and not cfg.insecure_token:
        raise ConfigError(f"binding {cfg.host} with a token but without TLS would send the token across the network "
                          "in clear: give --tls-cert/--tls-key, or --insecure-token to accept that on a trusted "
                          "network")
    problems = Limits.check(cfg.threads, cfg.peer_calls, cfg.peer_jobs, cfg.peer_watches, cfg.stream_idle_s,
                            cfg.stream_memory_mb)
    if problems:
        raise ConfigError("; ".join(problems))
    check_devices(cfg.devices)
    if cfg.metrics_port:
        host_for_metrics = metrics_host(cfg)
    limits = Limits(cfg.threads, cfg.peer_calls, cfg.peer_jobs, cfg.peer_watches, cfg.stream_idle_s,
                    cfg.stream_memory_mb)
    bound_arenas()  # so that freed frames go back to the system (server/limits.py)
    scheduler = Scheduler(cfg.queue_size, devices=cfg.devices or None)
    registry = registry or Registry()
    servicer = Matting(registry, scheduler, AllowedRoots(default_roots(cfg)), limits)
    servicer.warnings = warnings(cfg)
    for text in servicer.warnings:
        log.warning("%s", text)
    limit = cfg.max_message_mb << 20
    checker = health.HealthServicer()
    readiness = Readiness(registry, checker)
    # the token is checked first: a call without it is refused before it counts against any limit
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=cfg.threads, thread_name_prefix="rpc"),
        interceptors=([TokenInterceptor(cfg.token)] if cfg.token else []) + [Admission(limits),
                                                                              readiness.interceptor()],
        options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit),
                 ("grpc.so_reuseport", 0)],
    )
    rpc.add_MattingServicer_to_server(servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    for name in ("", SERVICE):
        checker.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        [SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], server)
    bind = f"[{cfg.host}]:{cfg.port}" if ":" in cfg.host else f"{cfg.host}:{cfg.port}"
    if cfg.tls_cert:
        client_ca = Path(cfg.tls_client_ca).read_bytes() if cfg.tls_client_ca else None
        creds = grpc.ssl_server_credentials([(Path(cfg.tls_key).read_bytes(), Path(cfg.tls_cert).read_bytes())],
                                            root_certificates=client_ca, require_client_auth=client_ca is not None)
        port = server.add_secure_port(bind, creds)
    else:
        port = server.add_insecure_port(bind)
    server.start()
    readiness.start()
    host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
    running = Running(f"{host}:{port}", server, servicer, scheduler, checker, cfg.grace_s, limits, readiness)
    if cfg.metrics_port:
        try:
            running.metrics = exposition.serve(host_for_metrics, cfg.metrics_port)
        except OSError as err:
            running.stop()
            raise ConfigError(f"--metrics-port {cfg.metrics_port} on {host_for_metrics}: {err}") from None
        if not is_loopback(host_for_metrics):
            log.warning("metrics are served without authentication at %s (--insecure-metrics)", running.metrics.url)
    return running


def serve_forever(cfg: ServerConfig, ready=None) -> None:
    """Run until SIGTERM or SIGINT, then stop gracefully (frames in flight finish)."""
    running = start(cfg)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if ready is not None:
        ready(running)
    stop.wait()
    log.info("stopping: finishing frames in flight")
    running.stop()
