"""Where the server's work runs: a CPU stage, one worker per device, and a lane for the CPU models.

- The CPU stage (`stage`): a thread pool for everything around a model run: reading and decoding,
  colour conversion, plate alignment, building a network's input (dcnn's classical alphas included),
  the foreground unmix, encoding and writing.
- One device worker per device (`devices`: every visible CUDA GPU, or the CPU): it only runs
  networks. Frames of the same key (model and size) that wait are run as one batch: it takes the first
  and the others of its key, up to MAX_BATCH, and when nothing else waits it waits at most BATCH_WAIT_S
  for more (a lone frame's latency grows by that much). A network frame goes to the device with the
  fewest frames waiting and running.
- The CPU models' lane (classical solvers, null): CPU_THREADS threads of its own, so these frames never
  wait behind a busy device, and a slow solve (closed_form at HD) leaves the other threads to fast
  ones (null, difference).

Each lane has a bounded queue: a full one is refused at once (QueueFull: RESOURCE_EXHAUSTED) for
interactive requests, while sequence jobs wait for room. A frame whose deadline passed before it
started is dropped. On shutdown (`close`) the frames in flight finish and the waiting ones are cancelled.
"""
from __future__ import annotations

import os
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Hashable

from server.metrics import QUEUE_DEPTH

#: default number of frames that may wait per device (and for the CPU models' lane)
QUEUE_SIZE = 8
#: longest a device worker waits for more frames of the first one's key to batch with it
BATCH_WAIT_S = 0.004
#: most frames in one device batch
MAX_BATCH = 8
#: threads running CPU models at once
CPU_THREADS = 4
#: threads of the CPU stage
STAGE_THREADS = max(4, os.cpu_count() or 1)

#: runs a batch: fn(device, payloads) -> one result per payload, in order
BatchFn = Callable[[str, list], list]


class QueueFull(Exception):
    pass


class DeadlinePassed(Exception):
    pass


@dataclass(eq=False)
class Item:
    """One frame waiting in a lane. key: items with equal keys (not None) may run as one batch."""

    fn: BatchFn
    payload: object
    fut: Future
    deadline: float | None
    key: Hashable | None


class Lane:
    """The frames waiting for one device (or for the CPU models) and the threads that run them. Guarded
    by the scheduler's condition."""

    def __init__(self, device: str, threads: int, max_batch: int):
        self.device, self.threads, self.max_batch = device, threads, max_batch
        self.waiting: deque[Item] = deque()
        self.running = 0

    def load(self) -> int:
        return len(self.waiting) + self.running


class Scheduler:
    def __init__(self, queue_size: int = QUEUE_SIZE, devices: list[str] | None = None):
        """devices: the torch devices networks run on, one worker each (None: every visible CUDA GPU, or
        ["cpu"] when there is none)."""
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise ValueError(f"queue size {queue_size!r}: must be at least 1 (frames that may wait per device; "
                             f"default {QUEUE_SIZE}); a queue.Queue of size 0 or less would have no bound")
        if devices is None:
            from models.devices import accelerators
            devices = accelerators()
        devices = [devices] if isinstance(devices, str) else list(devices)
        if not devices or not all(isinstance(d, str) and d for d in devices) or len(set(devices)) != len(devices):
            raise ValueError(f"devices {devices!r}: name each torch device once, e.g. ['cuda:0', 'cuda:1'] or ['cpu']")
        self.queue_size = queue_size
        self.devices = devices
        self.cpu = Lane("cpu", CPU_THREADS, 1)
        self._lanes = [Lane(d, 1, MAX_BATCH) for d in devices]
        self._cond = threading.Condition()
        self._closed = False
        self._stage = ThreadPoolExecutor(STAGE_THREADS, thread_name_prefix="stage")
        self._threads = [threading.Thread(target=self._work, args=(lane,), name=f"worker-{lane.device}-{i}",
                                          daemon=True)
                         for lane in [self.cpu, *self._lanes] for i in range(lane.threads)]
        for t in self._threads:
            t.start()

    # -- the CPU stage ----------------------------------------------------------------------------

    def stage(self, fn: Callable, *args) -> Future:
        """Run fn(*args) in the CPU stage. Raises RuntimeError once the server is shutting down."""
        QUEUE_DEPTH.inc()

        def started():
            QUEUE_DEPTH.dec()
            return fn(*args)

        try:
            fut = self._stage.submit(started)
        except RuntimeError:
            QUEUE_DEPTH.dec()
            raise RuntimeError("the server is shutting down") from None
        fut.add_done_callback(lambda f: f.cancelled() and QUEUE_DEPTH.dec())  # cancelled ones never started
        return fut

    # -- the lanes ----------------------------------------------------------------------------------

    def submit(self, fn: BatchFn, payload, key: Hashable | None = None, cpu: bool = False,
               deadline: float | None = None, wait: Callable[[], bool] | None = None) -> Future:
        """Queue `payload` for fn(device, [payload, ...]), whose result for it the Future gets.

        cpu: a CPU model's frame (its own lane, never batched); else a network's, on the device with the
        fewest frames, batched with waiting frames of the same `key`. `deadline`: a time.monotonic()
        value. Without `wait`, a full queue raises QueueFull at once. With `wait` (a callable returning
        False when the caller gives up, e.g. a cancelled job) the call blocks until there is room, and
        returns a cancelled Future if the caller gave up. RuntimeError once the server is shutting down.
        """
        fut: Future = Future()
        item = Item(fn, payload, fut, deadline, key)
        lanes = [self.cpu] if cpu else self._lanes
        with self._cond:
            while True:
                if self._closed:
                    raise RuntimeError("the server is shutting down")
                open_ = [lane for lane in lanes if len(lane.waiting) < self.queue_size]
                if open_:
                    min(open_, key=Lane.load).waiting.append(item)
                    QUEUE_DEPTH.inc()
                    self._cond.notify_all()
                    return fut
                if wait is None:
                    names = ", ".join(lane.device for lane in lanes)
                    raise QueueFull(f"the {names} queue is full ({self.queue_size} frames waiting"
                                    f"{' on each' if len(lanes) > 1 else ''}); retry shortly or use path mode "
                                    "for sequences")
                if not wait():
                    fut.cancel()
                    return fut
                self._cond.wait(0.1)

    def _work(self, lane: Lane) -> None:
        while True:
            batch = self._take(lane)
            if batch is None:
                return
            try:
                _run(lane.device, batch)
            finally:
                with self._cond:
                    lane.running -= len(batch)
            # the items' references (inputs that may be views of a client's memory) die here, not when
            # the next frame comes
            del batch

    def _take(self, lane: Lane) -> list[Item] | None:
        """The next batch: the first waiting item and, for a key, those of the same key that wait or
        come within BATCH_WAIT_S while nothing else waits (at most lane.max_batch). None once closed
        and empty."""
        with self._cond:
            while not lane.waiting:
                if self._closed:
                    return None
                self._cond.wait()
            batch = [lane.waiting.popleft()]
            key = batch[0].key
            if key is not None and lane.max_batch > 1:
                until = time.monotonic() + BATCH_WAIT_S
                while True:
                    for item in [i for i in lane.waiting if i.key == key][:lane.max_batch - len(batch)]:
                        lane.waiting.remove(item)
                        batch.append(item)
                    left = until - time.monotonic()
                    # frames of other keys waiting: the device has work, company is not waited for
                    if len(batch) >= lane.max_batch or left <= 0 or self._closed or lane.waiting:
                        break
                    self._cond.wait(left)
            lane.running += len(batch)
            QUEUE_DEPTH.dec(len(batch))
            self._cond.notify_all()  # room for submitters that wait
            return batch

    def close(self) -> None:
        """Finish the frames in flight, cancel the waiting ones, stop the workers and the CPU stage."""
        with self._cond:
            self._closed = True
            for lane in [self.cpu, *self._lanes]:
                while lane.waiting:
                    lane.waiting.popleft().fut.cancel()
                    QUEUE_DEPTH.dec()
            self._cond.notify_all()
        for t in self._threads:
            t.join()
        self._stage.shutdown(wait=True, cancel_futures=True)


def _run(device: str, batch: list[Item]) -> None:
    """Run one batch on `device`: frames cancelled or past their deadline are left out; if the batch
    fails, each frame is run alone, so one bad frame fails only itself."""
    live = []
    for item in batch:
        if not item.fut.set_running_or_notify_cancel():
            continue
        if item.deadline is not None and time.monotonic() > item.deadline:
            item.fut.set_exception(DeadlinePassed("the deadline passed while the frame waited in the queue"))
            continue
        live.append(item)
    if not live:
        return
    try:
        results = live[0].fn(device, [item.payload for item in live])
    except BaseException as exc:  # handed to the waiting callers
        if len(live) == 1:
            live[0].fut.set_exception(exc)
            return
        for item in live:
            try:
                item.fut.set_result(item.fn(device, [item.payload])[0])
            except BaseException as one:
                item.fut.set_exception(one)
        return
    for item, result in zip(live, results):
        item.fut.set_result(result)
