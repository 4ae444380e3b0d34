"""The client side of the shared-memory transport: memory the client owns, mapped on both sides.

The client creates and sizes the region, maps it, registers it with the server once, and lets it go
when done. Frames are copied in at an offset and the server writes alpha at another.

Two kinds (server/shm.py says how the server treats each):
- a memfd sealed against shrinking (Linux; the default): the server maps it too, so a frame is read
  and its alpha written in place. It has no name in any folder and goes with the last descriptor or
  mapping of it, so nothing is left behind whatever ends the client.
- a file in /dev/shm, which the server copies in and out (where memfds are missing, or the server
  cannot open this process's descriptors: another user, another pid namespace, an older server).
  A file's name carries its owner's process id ("mattebox-<pid>-<hex>"). It is removed by `close`, at
  garbage collection, at interpreter exit and on SIGTERM (where nothing else handles SIGTERM, it is
  turned into SystemExit so that clean-up runs); a process killed outright leaves its file, and the
  next client to make a region on the machine removes the files of processes that are gone.
"""
from __future__ import annotations

import mmap
import os
import re
import signal
import stat
import threading
import uuid
import weakref

import numpy as np

from server.shm import shm_dir

ALIGN = 64
_OWNED = re.compile(r"mattebox-([0-9]+)-[0-9a-f]{32}")


class SharedRegion:
    """A mapped shared-memory region of `size` bytes: a sealed memfd when `memfd` and the system has
    them, else a file in /dev/shm. name: what RegisterRegion takes ("/proc/<pid>/fd/<fd>", or the
    file's name in /dev/shm); path: where it can be opened (the same /proc path, or the file's).
    Use as a context manager to let it go at the end."""

    def __init__(self, size: int, memfd: bool = True):
        remove_stale()
        self.size = size
        fd = _memfd() if memfd else None
        self.memfd = fd is not None
        if fd is None:
            _clean_up_on_sigterm()
            self.name = f"mattebox-{os.getpid()}-{uuid.uuid4().hex}"
            self.path = os.path.join(shm_dir(), self.name)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            # removes the file when close() is forgotten: at garbage collection or interpreter exit
            self._remove = weakref.finalize(self, _unlink, self.path)
        else:
            self.name = self.path = f"/proc/{os.getpid()}/fd/{fd}"
            # the memfd stays open while the region lives (the server opens it through that path)
            self._remove = weakref.finalize(self, os.close, fd)
        try:
            os.ftruncate(fd, size)
            self.map = mmap.mmap(fd, size)
        except BaseException:
            self._remove()
            raise
        finally:
            if not self.memfd:
                os.close(fd)

    def put(self, offset: int, a: np.ndarray) -> None:
        """Copy array `a` into the region at `offset`."""
        np.frombuffer(self.map, a.dtype, a.size, offset).reshape(a.shape)[...] = a

    def array(self, offset: int, dtype, shape) -> np.ndarray:
        """A view of the region (valid until `close`)."""
        count = int(np.prod(shape))
        return np.frombuffer(self.map, dtype, count, offset).reshape(shape)

    def close(self) -> None:
        try:
            self.map.close()
        except BufferError:  # a view is still alive; the mapping goes with it
            pass
        self._remove()

    def __enter__(self) -> "SharedRegion":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _memfd() -> int | None:
    """A new, empty memfd sealed against shrinking (so the server's mapping of it cannot fault; it may
    still grow to its size), or None where the system has no sealed memfds."""
    try:
        import fcntl

        fd = os.memfd_create(f"mattebox-{os.getpid()}", os.MFD_ALLOW_SEALING | os.MFD_CLOEXEC)
    except (ImportError, AttributeError, OSError):
        return None
    try:
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK)
    except (AttributeError, OSError):
        os.close(fd)
        return None
    return fd


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def remove_stale(folder: str | None = None) -> list[str]:
    """Remove this user's region files ("mattebox-<pid>-<hex>") whose process is gone; the paths
    removed. Files of live processes, of other users and with other names are left alone (a pid that
    has been reused keeps its file until that process is gone too)."""
    folder = folder or shm_dir()
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    removed, uid = [], os.getuid()
    for name in names:
        owner = _OWNED.fullmatch(name)
        if owner is None or _alive(int(owner.group(1))):
            continue
        path = os.path.join(folder, name)
        try:
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode) and st.st_uid == uid:
                os.unlink(path)
                removed.append(path)
        except OSError:  # gone meanwhile, or not ours to remove
            pass
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0
    return True


def _clean_up_on_sigterm() -> None:
    """SIGTERM's default action ends the process at once, without finalizers or atexit, so its region
    files would stay. Where nobody set a handler (checked from the main thread), make SIGTERM raise
    SystemExit(143): the program unwinds, exits and its files are removed. A second SIGTERM kills."""
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _exit_on_sigterm)
    except (ValueError, OSError):  # not the main interpreter, or no signals here
        pass


def _exit_on_sigterm(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise SystemExit(128 + signum)


def layout(sizes: list[int]) -> tuple[list[int], int]:
    """Offsets of consecutive blocks of `sizes` bytes, each aligned to 64 bytes, and the total."""
    offsets, at = [], 0
    for n in sizes:
        offsets.append(at)
        at += (n + ALIGN - 1) // ALIGN * ALIGN
    return offsets, at
