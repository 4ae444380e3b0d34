"""`mattebox bench transport`: move a 4K half-float RGB frame in and a half-float alpha out through a
real server (its own process) running the null model, by unary message, chunked stream and shared
memory, beside the memcpy floor measured in this process (one copy of the frame plus one of the
alpha: the least any transport must do), timed once right after each shared-memory frame so
that a busy machine slows both alike. Shared memory twice: by a sealed memfd, which the server
maps (the client library's default), and by a file in /dev/shm, which it copies in and out (the
fallback). Figures are medians in milliseconds; each transport's ratio to the floor beside it (the
goal for shared memory: 2x or less)."""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from plugin.cli.connect import spawn_server
from plugin.client.connection import Client


def median_ms(fn, repeat: int, then=lambda: None) -> float:
    """fn's median time in ms over `repeat` calls after a warm-up; `then` is called (untimed) after each."""
    fn()  # warm-up: connection, region registration, first allocation
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        then()
    return statistics.median(times) * 1000


def run(args: argparse.Namespace) -> int:
    width, height = (int(v) for v in (args.size or "3840x2160").lower().split("x"))
    repeat = args.repeat or 7
    frame = np.random.default_rng(0).random((height, width, 3), np.float32).astype(np.float16)
    alpha = np.zeros((height, width), np.float16)
    frame_copy, alpha_copy = np.empty_like(frame), np.empty_like(alpha)

    floor_ms: list[float] = []

    def memcpy():
        t = time.perf_counter()
        np.copyto(frame_copy, frame)
        np.copyto(alpha_copy, alpha)
        floor_ms.append((time.perf_counter() - t) * 1000)

    memcpy()  # warm-up: the copies' pages
    figures = {}
    server = spawn_server() if not args.server else None
    address = server.__enter__() if server else args.server
    try:
        memfd_used = False
        for key, memfd in (("shm_file_ms", False), ("shm_ms", True)):
            with Client(address) as c:
                c.shm_memfd = memfd
                # like the floor, shared memory copies the alpha into a buffer reused from frame to frame
                figures[key] = median_ms(lambda: c.matte_shared("null", frame, colour_space="sRGB", out=alpha_copy),
                                         repeat, then=memcpy)
                memfd_used = memfd_used or c.shm_memfd  # False: no memfd here, or the server refused it
        with Client(address) as c:
            for key, send in (("stream_ms", c.matte_stream), ("unary_ms", c.matte)):
                figures[key] = median_ms(lambda: send("null", frame, colour_space="sRGB"), repeat)
    finally:
        if server:
            server.__exit__(None, None, None)
    figures = {k: round(v, 2) for k, v in {"memcpy_ms": statistics.median(floor_ms[1:]), **figures}.items()}
    floor = figures["memcpy_ms"]
    if args.json:
        print(json.dumps({"size": f"{width}x{height}", **figures, "shm_memfd": memfd_used,
                          "shm_floor_ratio": round(figures["shm_ms"] / floor, 2)}))
        return 0
    print(f"{width}x{height} float16 RGB in, float16 alpha out, null model, median of {repeat}:")
    for key, label in (("memcpy_ms", "memcpy floor"),
                       ("shm_ms", "shared memory, sealed memfd" if memfd_used else
                        "shared memory, memfd refused: a file"),
                       ("shm_file_ms", "shared memory, /dev/shm file"),
                       ("stream_ms", "chunked stream"), ("unary_ms", "unary message")):
        print(f"  {label:<32} {figures[key]:8.1f} ms  ({figures[key] / floor:5.1f}x floor)")
    print(f"  stream is {figures['unary_ms'] / figures['stream_ms']:.1f}x faster than unary")
    return 0
