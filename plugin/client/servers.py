"""The servers one Client talks to: the list's parsing (host names, IPv4, IPv6, default port), one gRPC
channel per server, round-robin over the servers that answer, and the clear error when none does.

Why one channel per server and not gRPC's own round_robin over one channel: calls that belong to one
server (CancelJob for the job it runs, MatteShared for the region it holds) must reach that server,
and one channel cannot say which server a call went to. With a channel each, the client chooses.

A server is down when a call to it answers UNAVAILABLE (nothing listens, the connection broke, the
server is stopping): the call is sent to the next server, and the down server is tried last for
DOWN_S seconds (it is still tried when every other server is down too, so that a restarted one is
found). No health Watch stream per server: the server caps those per peer (server.limits), and every
Client of a host or farm machine would hold one per server.
"""
from __future__ import annotations

import itertools
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import grpc

from server.api import rpc

DEFAULT_PORT = 50051
DOWN_S = 10.0

T = TypeVar("T")


def split(text: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """One server of a list as (host, port): "gpu1:50052" -> ("gpu1", 50052), "gpu1" -> ("gpu1", 50051),
    "10.0.0.5:6000", "[::1]:6000" -> ("::1", 6000), "::1" or "[fd00::5]" -> (host, 50051).
    Raises ValueError naming the entry when it is empty or its port is not a number 1..65535."""
    entry = text.strip()
    if entry.startswith("["):
        host, bracket, rest = entry[1:].partition("]")
        port = (rest[1:] or None) if rest.startswith(":") else ("" if bracket and not rest else None)
    elif entry.count(":") == 1:
        host, _, port = entry.partition(":")
        port = port or None
    else:  # a bare name, IPv4 or IPv6 address
        host, port = entry, ""
    if not host or port is None or (port and not (port.isdigit() and 0 < int(port) < 65536)):
        raise ValueError(f"server {entry!r} is not host, host:port or [IPv6]:port (e.g. gpu1:50051, "
                         f"[::1]:50051); check the server list")
    return host, int(port) if port else default_port


@dataclass(eq=False)
class Server:
    """One server of the list: `address` as given, `target` the "host:port" its channel dials."""

    address: str
    target: str
    channel: grpc.Channel
    stub: rpc.MattingStub
    down_since: float | None = field(default=None, repr=False)


class NoServer(grpc.RpcError):
    """No server of a list answers: UNAVAILABLE, with what each server answered."""

    def __init__(self, errors: list[tuple[Server, grpc.RpcError]]):
        super().__init__()
        self._details = "no server of the list answers: " + "; ".join(
            f"{s.address} ({err.details() or err.code().name})" for s, err in errors)

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return self._details

    def __str__(self) -> str:
        return f"UNAVAILABLE: {self._details}"


def unavailable(err: grpc.RpcError) -> bool:
    return err.code() == grpc.StatusCode.UNAVAILABLE


class Servers:
    """The server list of one Client. address: "host:port" or several, comma-separated (each
    resolved now, so that a misspelt name is said at once). options: the gRPC channel options.
    tls_ca, tls_cert, tls_key: PEM files (TLS on when tls_ca or tls_cert is given); the channel dials
    the name, so a server's certificate is checked against the name in the list."""

    def __init__(self, address: str, options: list, tls_ca: str = "", tls_cert: str = "", tls_key: str = ""):
        creds = None
        if tls_ca or tls_cert:
            creds = grpc.ssl_channel_credentials(
                Path(tls_ca).read_bytes() if tls_ca else None,
                private_key=Path(tls_key).read_bytes() if tls_key else None,
                certificate_chain=Path(tls_cert).read_bytes() if tls_cert else None)
        entries = [a.strip() for a in address.split(",") if a.strip()]
        if not entries:
            raise ValueError("no server address given: give host:port (or several, comma-separated)")
        self.all: list[Server] = []
        for entry in entries:
            host, port = split(entry)
            _resolve(entry, host, port)
            target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            channel = grpc.secure_channel(target, creds, options) if creds else grpc.insecure_channel(target, options)
            self.all.append(Server(entry, target, channel, rpc.MattingStub(channel)))
        self._turn = itertools.count()
        self._lock = threading.Lock()

    def order(self) -> list[Server]:
        """The servers for the next call: round-robin from the next turn, those marked down last."""
        start = next(self._turn) % len(self.all)
        turn = self.all[start:] + self.all[:start]
        now = time.monotonic()
        with self._lock:
            for s in turn:
                if s.down_since is not None and now - s.down_since > DOWN_S:
                    s.down_since = None
            return [s for s in turn if s.down_since is None] + [s for s in turn if s.down_since is not None]

    def failed(self, server: Server, err: grpc.RpcError) -> bool:
        """Note a call's error; True when it says the server is down (the caller tries the next one)."""
        if not unavailable(err):
            return False
        with self._lock:
            server.down_since = time.monotonic()
        return True

    def answered(self, server: Server) -> None:
        with self._lock:
            server.down_since = None

    def first(self, call: Callable[[Server], T]) -> tuple[Server, T]:
        """call(server) on the servers in order() until one answers; (that server, its answer). An
        error other than UNAVAILABLE is the answer (raised). UNAVAILABLE everywhere: the one server's
        error, NoServer for a list."""
        errors = []
        for s in self.order():
            try:
                got = call(s)
            except grpc.RpcError as err:
                if not self.failed(s, err):
                    raise
                errors.append((s, err))
                continue
            self.answered(s)
            return s, got
        raise _none_answers(errors)

    def every(self, call: Callable[[Server], T]) -> list[T]:
        """call(server) on every server; the answers of those that answer (a down one is skipped),
        raised as in first() when none does."""
        got, errors = [], []
        for s in self.all:
            try:
                got.append(call(s))
            except grpc.RpcError as err:
                if not self.failed(s, err):
                    raise
                errors.append((s, err))
        if not got:
            raise _none_answers(errors)
        return got

    def close(self) -> None:
        for s in self.all:
            s.channel.close()


def _none_answers(errors: list[tuple[Server, grpc.RpcError]]) -> grpc.RpcError:
    """The error to raise when no server answered: the one server's own, NoServer for a list."""
    return errors[0][1] if len(errors) == 1 else NoServer(errors)


def _resolve(entry: str, host: str, port: int) -> None:
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as err:
        raise ValueError(f"server {entry!r}: cannot resolve {host!r} ({err}); check the server list") from None


class Events:
    """A server-streaming call (RunJob, Finetune) on the first server that answers: iterate it for the
    events, all from that server; `cancel()` stops it. A server that answers UNAVAILABLE before its
    first event is skipped for the next (nothing ran there). Other attributes are the gRPC call's.
    seen(server, event): told each event (e.g. to note which server runs a job id); ended(): told
    once when the call ends, however it ends."""

    def __init__(self, servers: Servers, start: Callable[[Server], grpc.Call],
                 seen: Callable[[Server, object], None] = lambda s, ev: None, ended: Callable[[], None] = lambda: None):
        self._servers, self._start, self._seen, self._ended = servers, start, seen, ended
        self._left: Iterator[Server] = iter(servers.order())
        self._errors: list = []
        self._events = 0
        self._next_server()

    def _next_server(self) -> None:
        self.server = next(self._left)
        self._call = self._start(self.server)

    def __iter__(self) -> "Events":
        return self

    def __next__(self):
        while True:
            try:
                ev = next(self._call)
            except grpc.RpcError as err:
                if self._events or not self._servers.failed(self.server, err):
                    self._end()
                    raise
                self._errors.append((self.server, err))
                try:
                    self._next_server()
                except StopIteration:
                    self._end()
                    raise _none_answers(self._errors) from None
                continue
            except StopIteration:
                self._end()
                raise
            if not self._events:
                self._servers.answered(self.server)
            self._events += 1
            self._seen(self.server, ev)
            return ev

    def _end(self) -> None:
        ended, self._ended = self._ended, lambda: None
        ended()

    def cancel(self) -> bool:
        return self._call.cancel()

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._call, name)
