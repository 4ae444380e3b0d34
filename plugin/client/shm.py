"""The client side of the shared-memory transport: a file in /dev/shm that the client owns.

The client creates and sizes the file, maps it, registers it with the server once, and removes it
when done. Frames are copied in at an offset and the server writes alpha at another.
"""
from __future__ import annotations

import mmap
import os
import uuid
import weakref

import numpy as np

from server.shm import shm_dir

ALIGN = 64


class SharedRegion:
    """A mapped shared-memory file of `size` bytes. Use as a context manager to remove it at the end."""

    def __init__(self, size: int):
        self.name = f"mattebox-{uuid.uuid4().hex}"
        self.path = os.path.join(shm_dir(), self.name)
        self.size = size
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        # removes the file when close() is forgotten: at garbage collection or interpreter exit
        self._remove = weakref.finalize(self, _unlink, self.path)
        try:
            os.ftruncate(fd, size)
            self.map = mmap.mmap(fd, size)
        finally:
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


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def layout(sizes: list[int]) -> tuple[list[int], int]:
    """Offsets of consecutive blocks of `sizes` bytes, each aligned to 64 bytes, and the total."""
    offsets, at = [], 0
    for n in sizes:
        offsets.append(at)
        at += (n + ALIGN - 1) // ALIGN * ALIGN
    return offsets, at
