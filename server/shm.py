"""Shared-memory regions registered by clients on the same host.

RegisterRegion's name says which of two kinds a region is:

- "/proc/<client pid>/fd/<fd>": a memfd the client created (memfd_create with MFD_ALLOW_SEALING),
  sized and sealed against shrinking (F_SEAL_SHRINK); the client library's choice on Linux. The
  server opens it through /proc and, when F_GET_SEALS shows the seal, maps it: a request's inputs are
  read-only numpy views of the mapping (the model's first conversion to float is the only copy) and
  its results are written straight into it. A mapping kills the whole process with SIGBUS where the
  file has shrunk under it; a file sealed against shrinking cannot shrink, and a seal cannot be taken
  off, so this mapping cannot fault. Only memfds of ordinary pages are mapped (st_blksize = the page
  size: a hugetlbfs memfd can still fault when the huge-page pool runs dry), and only where the kernel
  does not account memory strictly (vm.overcommit_memory 2 can refuse a page at fault time: SIGBUS).
  A memfd that is not sealed (or not of that kind) is served by copying, as below.
- "mattebox-<letters, digits, - or _>": a plain file in the shared-memory folder (/dev/shm). Plain
  files rather than multiprocessing.SharedMemory: Python 3.11's resource tracker would unlink a block
  the server attached to when the server exits, pulling it from under the client. Links and anything
  but a regular file are refused, so a request can never make the server open any other file.

The copying path (every plain file, and a memfd that is not sealed): the server never maps the file,
because its client can truncate it at any moment. A request's inputs are copied with os.preadv into
arrays the server owns, and its results written with os.pwritev; a short read (the client truncated
the file) is that request's INVALID_ARGUMENT, and the server goes on.

Who may name a memfd. The kernel lets a process open /proc/<pid>/fd/<fd> only when it may ptrace
<pid> (the same user, or CAP_SYS_PTRACE): a server cannot reach another user's memory this way. On top
of that, process <pid> must hold the very TCP connection the request came on (that socket's inode,
from /proc/net/tcp*, among the links in /proc/<pid>/fd, checked before and after the open, so a
pid reused meanwhile is caught): a client can name only its own descriptors, even to a server run
as root. The descriptor must be a memfd ("/memfd:..."), never a file on disk the client has open.
What the server does not stop: the client writing its inputs while the model reads them; only that
request's answer suffers (the NaN check, for one, sees the bytes before the model's copy).

Views do not dangle. A request's views are taken while Regions.use holds the region (release, sweep
and re-registration wait for it to end). A frame given up at its deadline can still sit in the
scheduler, holding views, after its call has ended and its region was released: the mapping is an
mmap object, which refuses to unmap while an array is exported from it, so a dropped region closes
its descriptor and the mapping goes with the last view.

Regions belong to the connection (gRPC peer) that registered them:
- registering the same file again on that connection gives back the same region (with the new size);
- a peer holds at most `per_peer` regions and `bytes_per_peer` registered bytes, and the server at
  most `total` regions (RESOURCE_EXHAUSTED past a cap, saying what to release);
- a region is dropped when its file is removed (a memfd: no longer at its /proc path, the client
  closed it), at its next use or the next sweep; when the connection that registered it has closed
  (the sweep reads /proc/net/tcp*, Linux); and when it has not been used for `idle_s` seconds. Its
  id then answers NOT_FOUND, saying why: register again (the client library does so by itself).
Defaults come from the environment: MATTEBOX_REGION_IDLE_S (600), MATTEBOX_REGIONS_PER_PEER (16),
MATTEBOX_REGION_MB_PER_PEER (16384), MATTEBOX_REGIONS_MAX (256), MATTEBOX_REGION_SWEEP_S (10).
"""
from __future__ import annotations

import collections
import contextlib
import errno
import ipaddress
import mmap
import os
import re
import stat
import struct
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator
from urllib.parse import unquote

import grpc
import numpy as np

from server.frames import RequestError, invalid

_NAME = re.compile(r"mattebox-[A-Za-z0-9_-]{1,200}")
_PROC = re.compile(r"/proc/([0-9]{1,10})/fd/([0-9]{1,10})")
_OPEN = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
#: reads and writes at least this long are split over a few threads (the kernel copies in parallel)
PARALLEL_BYTES = 8 << 20
#: how many dropped region ids are remembered, so that their next use can say why they went
_REMEMBERED = 4096


def shm_dir() -> str:
    """Folder for shared-memory files: /dev/shm where it exists, else the temp folder."""
    return "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()


def _env(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


@dataclass(eq=False)
class Region:
    """One registered file: its descriptor, registered size and owner; memfd: named by its /proc path;
    map: the mapping of its first `size` bytes (a sealed memfd), None where it is copied."""

    id: str
    peer: str
    name: str
    fd: int
    size: int
    inode: tuple[int, int]
    used: float
    memfd: bool = False
    map: mmap.mmap | None = None
    users: int = 0
    dropped: bool = False

    def gone(self) -> str | None:
        """Why the client has let go of its file (removed from its folder; a memfd no longer at its
        /proc path: closed, or its process ended), else None."""
        if not self.memfd:
            return "its file was removed" if os.fstat(self.fd).st_nlink == 0 else None
        try:
            st = os.stat(self.name)
        except OSError:
            return "its client closed it"
        return None if (st.st_dev, st.st_ino) == self.inode else "its client closed it"

    def read(self, offset: int, nbytes: int, into: np.ndarray | None = None) -> np.ndarray:
        """A copy of bytes offset..offset+nbytes in an array the server owns: `into` (uint8, nbytes
        long) or a new one."""
        buf = np.empty(nbytes, np.uint8) if into is None else into
        if _transfer(os.preadv, self.fd, memoryview(buf), offset) < nbytes:
            raise self._truncated(offset + nbytes)
        return buf

    def write(self, offset: int, a: np.ndarray) -> None:
        """Copy array `a` into the file at `offset`. A file found shorter than the write is that
        request's error, so the server does not lengthen a file its client cut (a cut racing the
        check can only have the write give the file back bytes within its registered size)."""
        data = memoryview(np.ascontiguousarray(a)).cast("B")
        end = offset + len(data)
        if os.fstat(self.fd).st_size < end:
            raise self._truncated(end)
        _transfer(os.pwritev, self.fd, data, offset)

    def _truncated(self, end: int) -> RequestError:
        actual = os.fstat(self.fd).st_size
        return invalid(f"region {self.name}: the file is {actual} bytes now, short of the {end} this request "
                       f"uses (registered with {self.size}); the client truncated it: give it its size back, "
                       "or register it again (RegisterRegion) with its new size")


class Lease:
    """A region held for one request (Regions.use). Mapped (a sealed memfd): reads are read-only
    views of the mapping and writes go straight into it. Copied: reads land in buffers kept between
    requests. The caller keeps offsets within `size` (the mapping refuses the rest, ValueError)."""

    def __init__(self, region: Region, buffers: "Buffers"):
        self.region, self.buffers, self.taken = region, buffers, []
        self.name, self.size, self.map = region.name, region.size, region.map

    @property
    def mapped(self) -> bool:
        return self.map is not None

    def read(self, offset: int, nbytes: int) -> np.ndarray:
        """Bytes offset..offset+nbytes: uint8, nbytes long."""
        if self.map is not None:
            view = np.frombuffer(self.map, np.uint8, nbytes, offset)
            view.flags.writeable = False  # the client's inputs: no stage writes into them
            return view
        buf = self.buffers.take(nbytes)
        self.taken.append(buf)
        return self.region.read(offset, nbytes, buf)

    def write(self, offset: int, a: np.ndarray) -> None:
        """Array `a`'s bytes at `offset`."""
        if self.map is None:
            self.region.write(offset, a)
            return
        data = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
        np.frombuffer(self.map, np.uint8, data.size, offset)[...] = data


class Buffers:
    """Input arrays kept from one request for the next of the same size. A new 50 MB array costs the
    kernel a zeroed, faulted-in page every 4 KiB, about half as much again as the copy into it.
    Only a request that went well gives its arrays back (the model is done with them then); at most
    `limit` bytes are kept, none unused for longer than `keep_s`."""

    def __init__(self, limit: int = 256 << 20, keep_s: float = 10.0):
        self.limit, self.keep_s = limit, keep_s
        self._free: list[tuple[float, np.ndarray]] = []  # (given back at, array), oldest first
        self._lock = threading.Lock()

    def take(self, nbytes: int) -> np.ndarray:
        with self._lock:
            for i, (_, buf) in enumerate(self._free):
                if buf.size == nbytes:
                    del self._free[i]
                    return buf
        return np.empty(nbytes, np.uint8)

    def give(self, bufs: list[np.ndarray]) -> None:
        now = time.monotonic()
        with self._lock:
            self._free += [(now, b) for b in bufs if b.nbytes <= self.limit]
            while sum(b.nbytes for _, b in self._free) > self.limit:
                self._free.pop(0)

    def trim(self, keep_s: float | None = None) -> None:
        """Let go of arrays unused for longer than keep_s (default self.keep_s; 0: all of them)."""
        oldest = time.monotonic() - (self.keep_s if keep_s is None else keep_s)
        with self._lock:
            self._free = [(t, b) for t, b in self._free if t > oldest]

    def held(self) -> int:
        with self._lock:
            return sum(b.nbytes for _, b in self._free)


def _transfer(op, fd: int, mv: memoryview, offset: int) -> int:
    """Move len(mv) bytes between mv and the file at offset with os.preadv / os.pwritev, large ones
    in a few parallel pieces; the bytes moved (fewer: the file ended). I/O errors are the request's."""
    n = len(mv)
    try:
        if n < PARALLEL_BYTES or _workers() < 2:
            return _transfer_part(op, fd, mv, offset)
        step = -(-n // _workers() // 4096) * 4096
        parts = [(mv[i:i + step], offset + i) for i in range(0, n, step)]
        done = list(_pool().map(lambda p: _transfer_part(op, fd, *p), parts))
    except OSError as err:
        code = grpc.StatusCode.RESOURCE_EXHAUSTED if err.errno == errno.ENOSPC else grpc.StatusCode.INVALID_ARGUMENT
        raise RequestError(code, f"shared-memory file: {err.strerror or err}") from None
    moved = 0
    for (part, _), got in zip(parts, done):  # short only in the piece where the file ended
        moved += got
        if got < len(part):
            break
    return moved


def _transfer_part(op, fd: int, mv: memoryview, offset: int) -> int:
    done = 0
    while done < len(mv):
        got = op(fd, [mv[done:]], offset + done)
        if got == 0:
            break
        done += got
    return done


@lru_cache(maxsize=1)
def _workers() -> int:
    return min(4, os.cpu_count() or 1)


@lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=_workers(), thread_name_prefix="shm")


class Regions:
    """Registered regions by id, each bound to the peer that registered it. Thread-safe.
    idle_s: drop a region unused this long; per_peer / bytes_per_peer: caps per peer; total: regions
    on the whole server; sweep_s: how often expired, orphaned and removed regions are looked for."""

    def __init__(self, idle_s: float | None = None, per_peer: int | None = None,
                 bytes_per_peer: int | None = None, total: int | None = None, sweep_s: float | None = None):
        self.idle_s = idle_s if idle_s is not None else _env("MATTEBOX_REGION_IDLE_S", 600)
        self.per_peer = per_peer if per_peer is not None else int(_env("MATTEBOX_REGIONS_PER_PEER", 16))
        self.bytes_per_peer = (bytes_per_peer if bytes_per_peer is not None
                               else int(_env("MATTEBOX_REGION_MB_PER_PEER", 16384)) << 20)
        self.total = total if total is not None else int(_env("MATTEBOX_REGIONS_MAX", 256))
        self.sweep_s = sweep_s if sweep_s is not None else _env("MATTEBOX_REGION_SWEEP_S", 10)
        self._by_id: dict[str, Region] = {}
        self._gone: collections.OrderedDict[str, str] = collections.OrderedDict()  # dropped id -> why
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None
        self.buffers = Buffers()

    # -- the RPCs ------------------------------------------------------------------------------------

    def register(self, name: str, size: int, peer: str = "") -> str:
        """Open `name` of at least `size` bytes for `peer`; the region id. name: a file in shm_dir
        ("mattebox-..."), or "/proc/<pid>/fd/<fd>", a memfd of the process that holds peer's
        connection (mapped when sealed against shrinking). The same file registered again by the same
        peer is the same region, with the new size."""
        proc = _PROC.fullmatch(name)
        if proc is None and not _NAME.fullmatch(name):
            raise invalid(f"region name {name!r} must be 'mattebox-[A-Za-z0-9_-]+' (a file in {shm_dir()}) or "
                          "'/proc/<pid>/fd/<fd>' (a memfd of the process that makes this call)")
        path = name if proc else os.path.join(shm_dir(), name)
        fd = _open_memfd(path, int(proc.group(1)), peer) if proc else _open(path)
        mapping = None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise invalid(f"{path} is not a regular file: register a file the client created and sized "
                              "(os.open with O_CREAT, then ftruncate)")
            if size == 0:
                raise invalid(f"region {name}: give its size in bytes")
            if st.st_size < size:
                raise invalid(f"region {name} is {st.st_size} bytes, smaller than the {size} registered")
            mapping = _map(fd, st, size, path) if proc else None
            region = self._add(peer, name, fd, size, (st.st_dev, st.st_ino), mapping)
        except BaseException:
            os.close(fd)
            if mapping is not None:
                mapping.close()
            raise
        if region.fd != fd:  # the file was registered already: its first descriptor serves
            os.close(fd)
        return region.id

    @contextlib.contextmanager
    def use(self, region_id: str, peer: str = "") -> Iterator[Lease]:
        """The region, held for one request: it is not dropped (nor its descriptor closed) meanwhile.
        When the block ends without an exception, the arrays read for it serve later requests."""
        with self._lock:
            region = self._by_id.get(region_id)
            if region is None or region.peer != peer:
                why = self._gone.get(region_id) if region is None else "it belongs to another connection"
                raise RequestError(grpc.StatusCode.NOT_FOUND, f"unknown region {region_id!r}"
                                   + (f" ({why})" if why else "") + ": register it (again) first (RegisterRegion)")
            region.users += 1
            region.used = time.monotonic()
            lease = Lease(region, self.buffers)
        try:
            why = region.gone()
            if why:
                self._drop(region, why)
                raise RequestError(grpc.StatusCode.NOT_FOUND,
                                   f"region {region_id!r}: {region.name}: {why}; make a new region and "
                                   "register it (RegisterRegion)")
            yield lease
            self.buffers.give(lease.taken)
        finally:
            lease.map = None  # only the views taken keep the mapping from now on
            with self._lock:
                region.users -= 1
                region.used = time.monotonic()
                if region.dropped and region.users == 0:
                    _close(region)

    def release(self, region_id: str, peer: str = "") -> None:
        """Drop the peer's region (an unknown id or another peer's region: nothing to do)."""
        with self._lock:
            region = self._by_id.get(region_id)
        if region is not None and region.peer == peer:
            self._drop(region, "it was released")

    def close(self) -> None:
        """Drop every region and stop the sweeper (the server is stopping)."""
        self._stop.set()
        with self._lock:
            regions = list(self._by_id.values())
        for region in regions:
            self._drop(region, "the server stopped")
        self.buffers.trim(0)

    # -- bookkeeping ---------------------------------------------------------------------------------

    def _add(self, peer: str, name: str, fd: int, size: int, inode: tuple[int, int],
             mapping: mmap.mmap | None) -> Region:
        with self._lock:
            replaced = [r for r in self._by_id.values() if r.peer == peer and r.name == name and r.inode != inode]
        for old in replaced:  # a new file under an old name: the old file is gone or going
            self._drop(old, f"its file {name} was replaced", unless_busy=True)
        with self._lock:
            mine = [r for r in self._by_id.values() if r.peer == peer]
            same = next((r for r in mine if r.inode == inode), None)
            others = [r for r in mine if r is not same]
            held = sum(r.size for r in others)
            if same is None and len(others) >= self.per_peer:
                raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                   f"this connection holds {len(others)} regions, the most one may "
                                   f"({self.per_peer} regions): release one (ReleaseRegion) or reuse it")
            if held + size > self.bytes_per_peer:
                raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                   f"{size} bytes more would make this connection's regions "
                                   f"{(held + size) >> 20} MiB, over its {self.bytes_per_peer >> 20} MiB: "
                                   "release a region (ReleaseRegion) or register a smaller one")
            if same is None and len(self._by_id) >= self.total:
                raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                   f"the server holds {len(self._by_id)} regions, its most: release one "
                                   "(ReleaseRegion) or try again later; stale ones are dropped by themselves")
            now = time.monotonic()
            if same is not None:  # a request holding the old mapping keeps it until it ends
                same.size, same.used, same.map = size, now, mapping
                return same
            region = Region(uuid.uuid4().hex, peer, name, fd, size, inode, now, _PROC.fullmatch(name) is not None,
                            mapping)
            self._by_id[region.id] = region
            if self._sweeper is None and self.sweep_s > 0 and not self._stop.is_set():
                self._sweeper = threading.Thread(target=self._sweep_loop, name="shm-sweep", daemon=True)
                self._sweeper.start()
            return region

    def _drop(self, region: Region, why: str, unless_busy: bool = False) -> None:
        with self._lock:
            if unless_busy and region.users > 0 or self._by_id.pop(region.id, None) is None:
                return
            region.dropped = True
            self._gone[region.id] = why
            while len(self._gone) > _REMEMBERED:
                self._gone.popitem(last=False)
            if region.users == 0:
                _close(region)

    def _sweep_loop(self) -> None:
        while not self._stop.wait(self.sweep_s):
            try:
                self.sweep()
            except Exception:  # never let the sweeper die; the next round tries again
                pass

    def sweep(self) -> None:
        """Drop regions unused for idle_s, whose file was removed, or whose connection has closed;
        let go of kept arrays unused for a while (all of them once no region is left)."""
        with self._lock:
            regions = [r for r in self._by_id.values() if r.users == 0]
            none_left = not self._by_id
        self.buffers.trim(0 if none_left else None)
        if not regions:
            return
        open_ends = _sockets()
        now = time.monotonic()
        for region in regions:
            why = None
            end = _endpoint(region.peer)
            if now - region.used > self.idle_s:
                why = f"unused for more than {self.idle_s:g} s"
            elif open_ends is not None and end is not None and end not in open_ends:
                why = "the connection that registered it has closed"
            else:
                with self._lock:
                    if not region.dropped and region.users == 0:
                        why = region.gone()
            if why:
                self._drop(region, why, unless_busy=True)


def _open(path: str) -> int:
    try:
        return os.open(path, _OPEN)
    except FileNotFoundError:
        raise RequestError(grpc.StatusCode.NOT_FOUND,
                           f"no shared-memory file {path}: create it on this host before registering "
                           "(shared memory only works when client and server share a machine)") from None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise invalid(f"{path} is a symbolic link: the server opens no links; register the "
                          "shared-memory file itself") from None
        if err.errno == errno.EISDIR:
            raise invalid(f"{path} is not a regular file (a folder): register a file the client "
                          "created and sized") from None
        raise invalid(f"cannot open the shared-memory file {path} ({err.strerror or err}): it must be a regular "
                      f"file in {shm_dir()} that the server's user may read and write") from None


def _open_memfd(path: str, pid: int, peer: str) -> int:
    """Open memfd `path` ("/proc/<pid>/fd/<fd>") when process `pid` holds the connection of `peer`
    (checked before and after the open, see the module's docstring)."""
    end = _endpoint(peer)
    if end is None:
        raise invalid(f"{path}: a memfd is registered over a TCP connection (loopback), whose process the server "
                      f"can find; over this one ({peer}) register a file in {shm_dir()}")
    _check_holder(pid, end, path)
    try:
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))  # /proc's link: followed
    except FileNotFoundError:
        raise RequestError(grpc.StatusCode.NOT_FOUND, f"process {pid} has no descriptor at {path}: register "
                           "a memfd the calling process holds open") from None
    except OSError as err:
        raise invalid(f"cannot open {path} ({err.strerror or err}): the server opens another process's memfd only "
                      "when it runs as the same user; run client and server as one user or register a file in "
                      f"{shm_dir()}") from None
    try:
        if not os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:"):
            raise invalid(f"{path} is not a memfd: register a memfd (os.memfd_create) or a file in {shm_dir()}")
        _check_holder(pid, end, path)  # the pid did not end and get reused while we opened
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_holder(pid: int, end: tuple[str, int], path: str) -> None:
    """Refuse unless process `pid` holds the socket of the connection whose client end is `end`."""
    inode = (_sockets() or {}).get(end)
    try:
        links = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        links = []
    except OSError as err:
        raise invalid(f"{path}: the server may not look at process {pid} ({err.strerror or err}): run client and "
                      f"server as one user or register a file in {shm_dir()}") from None
    want = f"socket:[{inode}]"
    for fd in links if inode is not None else ():
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}") == want:
                return
    raise invalid(f"{path}: process {pid} does not hold this connection; a client registers only its own memfds "
                  "(/proc/<its pid>/fd/<fd>)")


def _map(fd: int, st: os.stat_result, size: int, path: str) -> mmap.mmap | None:
    """The first `size` bytes of memfd `fd` mapped, when nothing can make the mapping fault: sealed
    against shrinking, of ordinary pages, memory not strictly accounted. None: copy it instead."""
    import fcntl  # Unix only, like memfds; this module is imported by clients on any system

    if not fcntl.fcntl(fd, fcntl.F_GET_SEALS) & fcntl.F_SEAL_SHRINK or st.st_blksize != mmap.PAGESIZE \
            or _strict_overcommit():
        return None
    try:
        return mmap.mmap(fd, size)
    except OSError as err:
        raise invalid(f"cannot map {path} ({err.strerror or err}): the server writes alpha into the region, so "
                      "seal it against shrinking only (F_SEAL_SHRINK, no F_SEAL_WRITE)") from None


def _strict_overcommit() -> bool:
    """vm.overcommit_memory 2: a memfd's page is accounted when first touched, and a refusal is SIGBUS."""
    try:
        with open("/proc/sys/vm/overcommit_memory") as f:
            return f.read().strip() == "2"
    except OSError:
        return True


def _close(region: Region) -> None:
    """Close a dropped region's descriptor and mapping, once (called with the lock held, no request
    using it). Views of the mapping still held (a frame given up at its deadline, still in the
    scheduler) keep it: mmap refuses to close while they exist, and it goes with the last of them."""
    if region.map is not None:
        with contextlib.suppress(BufferError):
            region.map.close()
        region.map = None
    if region.fd >= 0:
        with contextlib.suppress(OSError):
            os.close(region.fd)
        region.fd = -1


def _endpoint(peer: str) -> tuple[str, int] | None:
    """(ip, port) of a gRPC TCP peer ("ipv4:127.0.0.1:5000", "ipv6:%5B::1%5D:5000"), else None."""
    kind, _, address = unquote(peer).partition(":")
    if kind not in ("ipv4", "ipv6"):
        return None
    host, _, port = address.rpartition(":")
    try:
        ip = ipaddress.ip_address(host.strip("[]").split("%")[0])
        return str(getattr(ip, "ipv4_mapped", None) or ip), int(port)
    except ValueError:
        return None


def _sockets() -> dict[tuple[str, int], str] | None:
    """The socket inode of every established TCP socket in this network namespace, by the (ip, port)
    of its local end (so a loopback client's end of its connection to us is there while it lasts);
    None where unknown."""
    ends, known = {}, False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        known = True
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != "01":  # 01: ESTABLISHED
                continue
            ip_hex, _, port_hex = fields[1].partition(":")
            raw = b"".join(struct.pack("=I", int(ip_hex[i:i + 8], 16)) for i in range(0, len(ip_hex), 8))
            ip = ipaddress.ip_address(raw)
            ends[(str(getattr(ip, "ipv4_mapped", None) or ip), int(port_hex, 16))] = fields[9]
    return ends if known else None
