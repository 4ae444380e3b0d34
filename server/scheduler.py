"""One worker thread per device, each with a bounded queue.

RPC threads submit work and wait; a full queue is refused at once (RESOURCE_EXHAUSTED) for
interactive requests, while sequence jobs wait for room. Work whose deadline passed before it started
is dropped. On shutdown each worker finishes the item in flight and the rest are cancelled.
"""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from typing import Callable

#: default number of frames that may wait per device
QUEUE_SIZE = 8


class QueueFull(Exception):
    pass


class DeadlinePassed(Exception):
    pass


class Scheduler:
    def __init__(self, queue_size: int = QUEUE_SIZE):
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise ValueError(f"queue size {queue_size!r}: must be at least 1 (frames that may wait per device; "
                             f"default {QUEUE_SIZE}); a queue.Queue of size 0 or less would have no bound")
        self.queue_size = queue_size
        self._queues: dict[str, queue.Queue] = {}
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False

    def _queue(self, device: str) -> queue.Queue:
        with self._lock:
            if self._closed:
                raise RuntimeError("the server is shutting down")
            if device not in self._queues:
                q: queue.Queue = queue.Queue(maxsize=self.queue_size)
                t = threading.Thread(target=self._work, args=(q,), name=f"worker-{device}", daemon=True)
                self._queues[device] = q
                self._threads.append(t)
                t.start()
            return self._queues[device]

    def submit(self, device: str, fn: Callable[[], object], deadline: float | None = None,
               wait: Callable[[], bool] | None = None) -> Future:
        """Queue `fn` on `device`'s worker. `deadline` is a time.monotonic() value.

        Without `wait`, a full queue raises QueueFull at once. With `wait` (a callable returning False
        when the caller gives up, e.g. a cancelled job) the call blocks until there is room.
        """
        fut: Future = Future()
        item = (fn, fut, deadline)
        q = self._queue(device)
        if wait is None:
            try:
                q.put_nowait(item)
            except queue.Full:
                raise QueueFull(f"the {device} queue is full ({self.queue_size} frames waiting); "
                                "retry shortly or use path mode for sequences") from None
            return fut
        while True:
            try:
                q.put(item, timeout=0.1)
                return fut
            except queue.Full:
                if not wait():
                    fut.cancel()
                    return fut

    def _work(self, q: queue.Queue) -> None:
        while self._run(q.get()):
            pass

    @staticmethod
    def _run(item) -> bool:
        """Run one queued item; False for the stop sentinel. The item's references (its inputs may be
        views of a shared-memory region the client wants to release) die when this returns."""
        if item is None:
            return False
        fn, fut, deadline = item
        if not fut.set_running_or_notify_cancel():
            return True
        if deadline is not None and time.monotonic() > deadline:
            fut.set_exception(DeadlinePassed("the deadline passed while the frame waited in the queue"))
            return True
        try:
            fut.set_result(fn())
        except BaseException as exc:  # handed to the waiting RPC thread
            fut.set_exception(exc)
        return True

    def close(self) -> None:
        """Finish the items in flight, cancel the waiting ones, stop the workers."""
        with self._lock:
            self._closed = True
            queues = list(self._queues.values())
        for q in queues:
            while True:
                try:
                    item = q.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[1].cancel()
            q.put(None)
        for t in self._threads:
            t.join()
