"""What one client may hold on a shared server: calls in flight per peer, a reserve of RPC threads for
health, listing and cancel, the bytes streamed frames may hold, and streams that stop sending.

gRPC Python runs every call on a thread of one pool, and a call that waits (a stream whose client
sends nothing, a job waiting for the device queue, a health Watch) keeps its thread. `maximum_concurrent_rpcs`
would refuse every call alike once the pool is busy, health checks and CancelJob included; instead
the calls that can hold a thread for long are admitted here (Admission, a server interceptor) and
the rest always find a thread:

- HELD names those calls by kind: matting calls (Matte, MatteStream, MatteShared), jobs (RunJob,
  Finetune) and watches (health Watch, reflection). One peer may have `per_peer[kind]` of a kind in
  flight; all peers together at most `threads - RESERVE`, so RESERVE threads are always free for
  the quick calls (Check, ListModels, CancelJob, RegisterRegion, ReleaseRegion) and for refusals.
  Past either limit a call is refused at once with RESOURCE_EXHAUSTED and a message naming the flag.
- A peer is the client's IP address without the port (peer_of): every channel a process opens has
  its own port, so a per-connection limit is one a client multiplies at will, while it cannot
  choose its address. Every connection from this machine (127/8, ::1, a unix socket) is one peer,
  "this machine". Clients behind one NAT share a budget (raise --peer-calls for such a site).
- Budget: the bytes MatteStream calls hold, reserved as data arrives (never for what a header only
  declares) and given back when the call ends, whichever way it ends.
- within(): a client stream whose next message does not come within `stream_idle_s` is ended.
- Freed memory goes back to the system once no long call has been in flight for QUIET_S. glibc's
  malloc keeps freed blocks of up to 32 MiB for reuse, in up to 8 arenas per core, and gives back
  only the main arena's top on malloc_trim: a burst of 24 MiB frames on many threads stayed as
  +55-90 MiB of RSS for the server's lifetime. With MALLOC_ARENAS arenas (set at start, see
  bound_arenas) and a trim when quiet it stays at +3-4 MiB, while reuse under load is kept (freeing
  every block to the system at once would page-fault every frame's buffers in again).
"""
from __future__ import annotations

import collections
import ctypes
import ipaddress
import os
import queue
import threading
from typing import Iterator
from urllib.parse import unquote

import grpc

from server.frames import RequestError

CALLS, JOBS, WATCHES = "calls", "jobs", "watches"
#: the RPCs that may keep a thread for long, by kind
HELD = {
    "/mattebox.v1.Matting/Matte": CALLS,
    "/mattebox.v1.Matting/MatteStream": CALLS,
    "/mattebox.v1.Matting/MatteShared": CALLS,
    "/mattebox.v1.Matting/RunJob": JOBS,
    "/mattebox.v1.Matting/Finetune": JOBS,
    "/grpc.health.v1.Health/Watch": WATCHES,
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": WATCHES,
}
#: RPC threads never given to HELD calls: health, listing, cancel and refusals always find one
RESERVE = 8
THREADS = 64
PEER_CALLS, PEER_JOBS, PEER_WATCHES = 8, 4, 4
STREAM_IDLE_S = 30.0
STREAM_MEMORY_MB = 1024
LOCAL = "local"
#: seconds without long calls after which freed memory is given back to the system
QUIET_S = 1.0
#: malloc arenas of a server process (glibc's default: 8 per core)
MALLOC_ARENAS = 2
_M_ARENA_MAX = -8
#: what a kind is called in messages, and the flag that sets its per-peer limit
_KINDS = {CALLS: ("matting calls", "--peer-calls"), JOBS: ("jobs", "--peer-jobs"),
          WATCHES: ("health watches or reflection streams", "--peer-watches")}


def peer_of(peer: str) -> str:
    """The peer a gRPC `context.peer()` ("ipv4:10.0.0.5:51234", "ipv6:%5B::1%5D:5000", "unix:...")
    belongs to: its IP address without the port (an IPv4-mapped IPv6 address as IPv4), or LOCAL for
    any connection from this machine."""
    kind, _, address = unquote(peer).partition(":")
    if kind == "unix":
        return LOCAL
    if kind not in ("ipv4", "ipv6"):
        return peer
    host = address.rsplit(":", 1)[0].strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return LOCAL if ip.is_loopback else str(ip)


def _who(peer: str) -> str:
    return "this machine" if peer == LOCAL else peer


def mib(n: int) -> str:
    return f"{n / (1 << 20):.0f} MiB" if n >= 1 << 20 else f"{n} bytes"


class Budget:
    """A count of bytes with a ceiling: take() reserves (False when it would pass the limit), give()
    returns. Thread-safe."""

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        with self._lock:
            if self.used + n > self.limit:
                return False
            self.used += n
            return True

    def give(self, n: int) -> None:
        with self._lock:
            self.used -= n


def _malloc_trim():
    """glibc's malloc_trim, or None (another C library)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def bound_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Limit glibc's malloc to `arenas` arenas (before the RPC threads make theirs; the
    MALLOC_ARENA_MAX environment variable, when set, is left to decide). False on another C library."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, arenas))


class Trimmer:
    """Calls malloc_trim(0) once `busy()` has stayed False for `quiet_s` after a poke() (on a thread of
    its own, started by the first poke)."""

    def __init__(self, busy, quiet_s: float = QUIET_S):
        self._busy, self._quiet_s = busy, quiet_s
        self._trim = _malloc_trim()
        self._poked = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.trims = 0

    def poke(self) -> None:
        if self._trim is None:
            return
        self._poked.set()
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="memory-trim", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            self._poked.wait()
            self._poked.clear()
            while self._poked.wait(self._quiet_s):  # not quiet yet: wait again
                self._poked.clear()
            if not self._busy():
                self._trim(0)
                self.trims += 1


class _Readers:
    """Daemon threads that read client streams for within(), kept for reuse: starting a thread per
    MatteStream call cost about as much as moving a small frame. At most as many as were ever busy
    at once (the held calls, bounded by Limits)."""

    def __init__(self):
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._idle = 0
        self._lock = threading.Lock()

    def run(self, fn) -> None:
        with self._lock:
            spawn = not self._idle
            if not spawn:
                self._idle -= 1
        self._tasks.put(fn)
        if spawn:
            threading.Thread(target=self._work, name="stream-reader", daemon=True).start()

    def _work(self) -> None:
        while True:
            fn = self._tasks.get()
            try:
                fn()
            except BaseException:  # noqa: BLE001 - fn hands its own errors over; the thread lives on
                pass
            fn = None
            with self._lock:
                self._idle += 1


class Limits:
    """The server's limits and what is held against them (see the module docstring)."""

    def __init__(self, threads: int = THREADS, peer_calls: int = PEER_CALLS, peer_jobs: int = PEER_JOBS,
                 peer_watches: int = PEER_WATCHES, stream_idle_s: float = STREAM_IDLE_S,
                 stream_memory_mb: int = STREAM_MEMORY_MB):
        self.threads = threads
        self.held_max = threads - RESERVE
        self.per_peer = {CALLS: peer_calls, JOBS: peer_jobs, WATCHES: peer_watches}
        self.stream_idle_s = stream_idle_s
        self.stream_bytes = Budget(stream_memory_mb << 20)
        self._held: collections.Counter = collections.Counter()
        self._total = 0
        self._lock = threading.Lock()
        self.trimmer = Trimmer(lambda: self._total > 0)
        self._readers = _Readers()

    @staticmethod
    def check(threads: int, peer_calls: int, peer_jobs: int, peer_watches: int, stream_idle_s: float,
              stream_memory_mb: int) -> list[str]:
        """What is wrong with these values, one text each (for the server's ConfigError)."""
        problems = []
        if threads < RESERVE + 1:
            problems.append(f"--threads {threads}: at least {RESERVE + 1} ({RESERVE} stay free for health, "
                            f"listing and cancel)")
        for flag, n in (("--peer-calls", peer_calls), ("--peer-jobs", peer_jobs), ("--peer-watches", peer_watches)):
            if n < 1:
                problems.append(f"{flag} {n}: at least 1")
        if not stream_idle_s > 0:
            problems.append(f"--stream-idle-s {stream_idle_s}: more than 0 seconds")
        if stream_memory_mb < 1:
            problems.append(f"--stream-memory-mb {stream_memory_mb}: at least 1")
        return problems

    def admit(self, peer: str, kind: str) -> str:
        """Count one call of `kind` for `peer`; "" when admitted, else why not (then nothing is counted)."""
        with self._lock:
            held, most = self._held[peer, kind], self.per_peer[kind]
            if held >= most:
                what, flag = _KINDS[kind]
                return (f"{_who(peer)} already has {held} {what} in flight, the most one client may have "
                        f"(mattebox serve {flag} {most}): wait for one to finish"
                        + ("; send sequences as one path-mode job" if kind == CALLS else ""))
            if self._total >= self.held_max:
                return (f"the server has {self._total} long calls in flight, the most it takes while keeping "
                        f"{RESERVE} threads for health, listing and cancel (mattebox serve --threads "
                        f"{self.threads}): retry shortly")
            self._held[peer, kind] += 1
            self._total += 1
            return ""

    def leave(self, peer: str, kind: str) -> None:
        with self._lock:
            self._held[peer, kind] -= 1
            if not self._held[peer, kind]:
                del self._held[peer, kind]
            self._total -= 1
            quiet = not self._total
        if quiet:
            self.trimmer.poke()

    def in_flight(self) -> int:
        """Held calls of every peer and kind now."""
        with self._lock:
            return self._total

    def within(self, messages: Iterator) -> Iterator:
        """The messages of a client stream, each (the first too) within `stream_idle_s` of the one
        before; raises RequestError(DEADLINE_EXCEEDED) when one does not come in time. gRPC's request
        iterator blocks without a timeout, so it is read on a helper thread, at most one message
        ahead; the helper is free again when the call ends (a finished call ends its request iterator)."""
        box: queue.Queue = queue.Queue(maxsize=1)
        done = threading.Event()

        def put(item) -> bool:
            while not done.is_set():
                try:
                    box.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def read() -> None:
            try:
                for m in messages:
                    if not put((True, m)):
                        return
                put((False, None))
            except BaseException as err:  # the call was cancelled: handed to the handler as it is
                put((False, err))

        self._readers.run(read)
        try:
            while True:
                try:
                    more, item = box.get(timeout=self.stream_idle_s)
                except queue.Empty:
                    raise RequestError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                       f"no data for {self.stream_idle_s:g} s: the stream was ended (the server "
                                       f"waits at most mattebox serve --stream-idle-s for the next chunk)") from None
                if not more:
                    if item is not None:
                        raise item
                    return
                yield item
        finally:
            done.set()


class Admission(grpc.ServerInterceptor):
    """Counts the HELD calls against Limits, refusing those past a limit with RESOURCE_EXHAUSTED.
    A call counts from the moment its handler starts until it returns (a streaming reply: until its
    generator ends or is closed, which gRPC does when the call ends however it ends)."""

    def __init__(self, limits: Limits):
        self.limits = limits

    def intercept_service(self, continuation, details):
        handler = continuation(details)
        kind = HELD.get(details.method)
        if handler is None or kind is None:
            return handler
        limits = self.limits

        def admit(context) -> str:
            peer = peer_of(context.peer())
            refusal = limits.admit(peer, kind)
            if refusal:
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, refusal)
            return peer

        def unary_reply(behaviour):
            def held(request, context):
                peer = admit(context)
                try:
                    return behaviour(request, context)
                finally:
                    limits.leave(peer, kind)
            return held

        def stream_reply(behaviour):
            def held(request, context):
                peer = admit(context)
                try:
                    yield from behaviour(request, context)
                finally:
                    limits.leave(peer, kind)
            return held

        make = {(False, False): grpc.unary_unary_rpc_method_handler,
                (True, False): grpc.stream_unary_rpc_method_handler,
                (False, True): grpc.unary_stream_rpc_method_handler,
                (True, True): grpc.stream_stream_rpc_method_handler}
        key = (handler.request_streaming, handler.response_streaming)
        behaviour = {(False, False): handler.unary_unary, (True, False): handler.stream_unary,
                     (False, True): handler.unary_stream, (True, True): handler.stream_stream}[key]
        wrap = stream_reply if handler.response_streaming else unary_reply
        return make[key](wrap(behaviour), request_deserializer=handler.request_deserializer,
                         response_serializer=handler.response_serializer)
