"""`mattebox bench transport`: move a 4K half-float RGB frame in and a half-float alpha out through a
real server (its own process) running the null model, by unary message, chunked stream and shared
memory, beside the memcpy floor measured in this process (one copy of the frame plus one of the
alpha: the least any transport must do). Figures are medians in milliseconds."""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from plugin.cli.connect import spawn_server
from plugin.client.connection import Client


def median_ms(fn, repeat: int) -> float:
    fn()  # warm-up: connection, region registration, first allocation
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def run(args: argparse.Namespace) -> int:
    width, height = (int(v) for v in (args.size or "3840x2160").lower().split("x"))
    repeat = args.repeat or 7
    frame = np.random.default_rng(0).random((height, width, 3), np.float32).astype(np.float16)
    alpha = np.zeros((height, width), np.float16)
    frame_copy, alpha_copy = np.empty_like(frame), np.empty_like(alpha)

    def memcpy():
        np.copyto(frame_copy, frame)
        np.copyto(alpha_copy, alpha)

    figures = {"memcpy_ms": median_ms(memcpy, repeat)}
    server = spawn_server() if not args.server else None
    address = server.__enter__() if server else args.server
    try:
        with Client(address) as c:
            # like the floor, shared memory copies the alpha into a buffer reused from frame to frame
            figures["shm_ms"] = median_ms(lambda: c.matte_shared("null", frame, colour_space="sRGB", out=alpha_copy),
                                          repeat)
            for key, send in (("stream_ms", c.matte_stream), ("unary_ms", c.matte)):
                figures[key] = median_ms(lambda: send("null", frame, colour_space="sRGB"), repeat)
    finally:
        if server:
            server.__exit__(None, None, None)
    figures = {k: round(v, 2) for k, v in figures.items()}
    if args.json:
        print(json.dumps({"size": f"{width}x{height}", **figures}))
        return 0
    floor = figures["memcpy_ms"]
    print(f"{width}x{height} float16 RGB in, float16 alpha out, null model, median of {repeat}:")
    for key, label in (("memcpy_ms", "memcpy floor"), ("shm_ms", "shared memory"), ("stream_ms", "chunked stream"),
                       ("unary_ms", "unary message")):
        print(f"  {label:<15} {figures[key]:8.1f} ms  ({figures[key] / floor:5.1f}x floor)")
    print(f"  stream is {figures['unary_ms'] / figures['stream_ms']:.1f}x faster than unary")
    return 0
