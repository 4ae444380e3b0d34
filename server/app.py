"""Building and running the server: bind, TLS, token, health checking, reflection, graceful stop."""
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
from server.api import SERVICE, rpc
from server.auth import TokenInterceptor, is_loopback
from server.paths import AllowedRoots
from server.scheduler import QUEUE_SIZE, Scheduler
from server.servicer import Matting

log = logging.getLogger("mattebox.server")


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 50051
    token: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""  # when set, clients must present a certificate signed by it
    allow_roots: list[str] = field(default_factory=list)  # empty: home and temp dir on loopback
    queue_size: int = QUEUE_SIZE
    threads: int = 16
    max_message_mb: int = 512
    grace_s: float = 30.0


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

    def stop(self) -> None:
        """Refuse new calls, stop jobs after their frame in flight, let calls finish, stop workers."""
        self.health.enter_graceful_shutdown()
        self.servicer.shutdown()
        self.grpc_server.stop(self.grace_s).wait()
        self.scheduler.close()
        self.servicer.regions.close()

    def wait(self) -> None:
        self.grpc_server.wait_for_termination()


def default_roots(cfg: ServerConfig) -> list[str]:
    if cfg.allow_roots:
        return cfg.allow_roots
    return [str(Path.home()), tempfile.gettempdir()] if is_loopback(cfg.host) else []


def start(cfg: ServerConfig, registry: Registry | None = None) -> Running:
    """Start serving; raises ConfigError for an unsafe or incomplete configuration."""
    if not is_loopback(cfg.host) and not cfg.token:
        raise ConfigError(f"binding {cfg.host} exposes the server beyond this machine: give a token "
                          "(--token, --token-file or MATTEBOX_TOKEN), and TLS with --tls-cert/--tls-key")
    if bool(cfg.tls_cert) != bool(cfg.tls_key):
        raise ConfigError("TLS needs both --tls-cert and --tls-key")
    scheduler = Scheduler(cfg.queue_size)
    servicer = Matting(registry or Registry(), scheduler, AllowedRoots(default_roots(cfg)))
    limit = cfg.max_message_mb << 20
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=cfg.threads, thread_name_prefix="rpc"),
        interceptors=[TokenInterceptor(cfg.token)] if cfg.token else [],
        options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit),
                 ("grpc.so_reuseport", 0)],
    )
    rpc.add_MattingServicer_to_server(servicer, server)
    checker = health.HealthServicer()
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
    host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
    return Running(f"{host}:{port}", server, servicer, scheduler, checker, cfg.grace_s)


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
