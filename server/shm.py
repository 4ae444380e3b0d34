"""Shared-memory regions registered by clients on the same host.

The client creates a file in the shared-memory folder (/dev/shm), sizes it and owns it; the server
maps it by name. Plain files + mmap rather than multiprocessing.SharedMemory: Python 3.11's resource
tracker would unlink a block the server attached to when the server exits, pulling it from under the
client. Names are restricted to "mattebox-<letters, digits, - or _>" in that folder, so a request can
never make the server map any other file.
"""
from __future__ import annotations

import mmap
import os
import re
import tempfile
import threading
import uuid

import grpc

from server.frames import RequestError

_NAME = re.compile(r"mattebox-[A-Za-z0-9_-]{1,200}")


def shm_dir() -> str:
    """Folder for shared-memory files: /dev/shm where it exists, else the temp folder."""
    return "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()


class Regions:
    """Mapped regions by id. Thread-safe."""

    def __init__(self):
        self._maps: dict[str, mmap.mmap] = {}
        self._lock = threading.Lock()

    def register(self, name: str, size: int) -> str:
        if not _NAME.fullmatch(name):
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"region name {name!r} must match 'mattebox-[A-Za-z0-9_-]+' (a file in {shm_dir()})")
        path = os.path.join(shm_dir(), name)
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise RequestError(grpc.StatusCode.NOT_FOUND,
                               f"no shared-memory file {path}: create it on this host before registering "
                               "(shared memory only works when client and server share a machine)") from None
        try:
            actual = os.fstat(fd).st_size
            if size == 0:
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"region {name}: give its size in bytes")
            if actual < size:
                raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"region {name} is {actual} bytes, smaller than the {size} registered")
            mm = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        region_id = uuid.uuid4().hex
        with self._lock:
            self._maps[region_id] = mm
        return region_id

    def get(self, region_id: str) -> mmap.mmap:
        with self._lock:
            mm = self._maps.get(region_id)
        if mm is None:
            raise RequestError(grpc.StatusCode.NOT_FOUND,
                               f"unknown region {region_id!r}: register it first (RegisterRegion)")
        return mm

    def release(self, region_id: str) -> None:
        with self._lock:
            mm = self._maps.pop(region_id, None)
        if mm is not None:
            try:
                mm.close()
            except BufferError:  # a request still reads it; the mapping closes when that request is done
                pass

    def close(self) -> None:
        with self._lock:
            maps, self._maps = list(self._maps.values()), {}
        for mm in maps:
            try:
                mm.close()
            except BufferError:
                pass
