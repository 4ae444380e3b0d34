"""`mattebox bench load`: many clients at once against a real server in its own process.

For every model (default null and difference) and transport (unary, stream, shared memory), N clients
(own channels, own threads) send M frames each at once; every alpha is compared with the model run
in this process on the same frame. Then an overload: `--overload` clients at once on the null model
by every transport, past what one peer may hold (mattebox serve --peer-calls, 8) and past the device
queue, counting the calls refused with RESOURCE_EXHAUSTED and timing ListModels from one more client
meanwhile (the threads kept for listing, health and cancel). The server's RSS is read before the first
frame, at its peak (VmHWM) and after the last (once it has been quiet for a moment).

Prints frames/s, p50/p99 latency per call, correct/total frames, refusals by status, and the load of
the machine (other processes share it) before and after. A benchmark: nothing here is a timed test.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import threading
import time
from dataclasses import dataclass, field

import grpc
import numpy as np

from plugin.client.connection import Client

TRANSPORTS = ("unary", "stream", "shm")


@dataclass
class Run:
    model: str
    transport: str
    clients: int
    frames: int
    seconds: float = 0.0
    latencies_ms: list = field(default_factory=list)
    correct: int = 0
    wrong: int = 0
    refused: collections.Counter = field(default_factory=collections.Counter)
    why: dict = field(default_factory=dict)  # status name -> the first refusal's message

    def figures(self) -> dict:
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        answered = self.correct + self.wrong
        return {"model": self.model, "transport": self.transport, "clients": self.clients, "frames": self.frames,
                "frames_per_s": round(answered / self.seconds, 1) if self.seconds else 0.0,
                "p50_ms": round(float(np.percentile(lat, 50)), 2), "p99_ms": round(float(np.percentile(lat, 99)), 2),
                "correct": self.correct, "answered": answered, "sent": self.clients * self.frames,
                "refused": dict(self.refused), "why": self.why}


def frames_for(model: str, size: tuple[int, int], count: int, seed: int = 0) -> list[dict]:
    """`count` distinct frames (uint8 sRGB image, and the trimap or plate the model takes), each with the
    model's alpha computed in this process: [{"kw": {...}, "want": alpha}]."""
    from models.base import BACKGROUND, TRIMAP, Sample
    from models.colour import SRGB
    from models.registry import Registry
    from training.synthetic import make_shot, trimap_from_alpha

    width, height = size
    shot = make_shot(width=width, height=height, frames=count, seed=seed)
    m = Registry().get(model)
    out = []
    for i in range(count):
        kw = {"image": np.ascontiguousarray(np.rint(shot.image[i] * 255).astype(np.uint8))}
        if TRIMAP in m.inputs:
            kw["trimap"] = trimap_from_alpha(shot.alpha[i], band=max(2, width // 64))
        if BACKGROUND in m.inputs:
            kw["background"] = np.ascontiguousarray(np.rint(shot.plate * 255).astype(np.uint8))
        sample = Sample(image=kw["image"], trimap=kw.get("trimap"), background=kw.get("background"), colour_space=SRGB,
                        background_space=SRGB, display_space=SRGB)
        out.append({"kw": kw, "want": np.asarray(m.run([m.prepare(sample)])[0]).astype(np.float16)})
    return out


def load(address: str, model: str, transport: str, clients: int, frames: int, pool: list[dict],
         connect: dict) -> Run:
    """`clients` threads with a Client each send `frames` frames at once (after one warm-up frame each)."""
    run = Run(model, transport, clients, frames)
    lock = threading.Lock()
    conns = [Client(address, **connect) for _ in range(clients)]
    start = threading.Barrier(clients + 1)

    def send(c: Client, frame: dict):
        return c.matte_frame(transport, model, timeout=120, **frame["kw"]).alpha

    def work(k: int) -> None:
        c = conns[k]
        try:
            send(c, pool[k % len(pool)])  # connection, region registration
        except grpc.RpcError:
            pass
        start.wait()
        for j in range(frames):
            frame = pool[(k + j) % len(pool)]
            t = time.perf_counter()
            try:
                alpha = send(c, frame)
            except grpc.RpcError as err:
                with lock:
                    run.refused[err.code().name] += 1
                    run.why.setdefault(err.code().name, err.details())
                continue
            ms = (time.perf_counter() - t) * 1000
            ok = alpha.shape == frame["want"].shape and np.array_equal(alpha, frame["want"])
            with lock:
                run.latencies_ms.append(ms)
                run.correct += ok
                run.wrong += not ok

    threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(clients)]
    try:
        for t in threads:
            t.start()
        start.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        run.seconds = time.perf_counter() - t0
    finally:
        for c in conns:
            c.close()
    return run


def listing_while(address: str, connect: dict, busy: threading.Event) -> list[float]:
    """ListModels latencies (ms) from one more client while `busy` is set (a failure counts as inf)."""
    out = []
    with Client(address, **connect) as c:
        c.models(timeout=60)
        while busy.is_set():
            t = time.perf_counter()
            try:
                c.models(timeout=10)
                out.append((time.perf_counter() - t) * 1000)
            except grpc.RpcError:
                out.append(float("inf"))
            time.sleep(0.02)
    return out


def rss_mib(pid: int | None, key: str = "VmRSS") -> float | None:
    if pid is None or not os.path.exists(f"/proc/{pid}/status"):
        return None
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    return None


def run(args: argparse.Namespace) -> int:
    from plugin.cli.connect import connection, server_process

    width, height = (int(v) for v in (args.size or "256x256").lower().split("x"))
    models = [m for m in (args.models or "null,difference").split(",") if m]
    transports = [t for t in (args.transports or ",".join(TRANSPORTS)).split(",") if t]
    clients, frames, overload = args.clients, args.frames, args.overload
    connect = connection(args)
    load_before = os.getloadavg()
    pools = {m: frames_for(m, (width, height), 8) for m in dict.fromkeys(models + ["null"])}
    report: dict = {"size": f"{width}x{height}", "clients": clients, "frames": frames, "runs": [],
                    "loadavg_before": [round(v, 2) for v in load_before]}
    with server_process() if not args.server else _running(args.server) as info:
        address, pid = info["address"], info.get("pid")
        with Client(address, **connect) as c:
            c.models(timeout=120)  # the first listing imports every model
        report["rss_mib_before"] = rss_mib(pid)
        for model in models:
            for transport in transports:
                report["runs"].append(load(address, model, transport, clients, frames, pools[model],
                                           connect).figures())
        if overload:
            busy = threading.Event()
            busy.set()
            lat: list[float] = []
            lister = threading.Thread(target=lambda: lat.extend(listing_while(address, connect, busy)), daemon=True)
            lister.start()
            over = []
            try:
                for transport in transports:
                    over.append(load(address, "null", transport, overload, max(2, frames // 4), pools["null"],
                                     connect).figures())
            finally:
                busy.clear()
                lister.join(30)
            finite = [v for v in lat if v != float("inf")]
            report["overload"] = {"clients": overload, "runs": over, "listings": len(lat),
                                  "listing_failures": len(lat) - len(finite),
                                  "listing_max_ms": round(max(finite), 1) if finite else None}
        report["rss_mib_peak"] = rss_mib(pid, "VmHWM")
        time.sleep(2.0)  # the server gives freed memory back once quiet (server/limits.py QUIET_S)
        report["rss_mib_after"] = rss_mib(pid)
    report["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
    report["cpus"] = os.cpu_count()
    if args.json:
        print(json.dumps(report))
    else:
        print(_table(report))
    runs = report["runs"] + report.get("overload", {}).get("runs", [])
    return 0 if all(r["correct"] == r["answered"] for r in runs) else 1


class _running:
    """A server given by --server: its address, and no pid (its RSS is not read)."""

    def __init__(self, address: str):
        self.info = {"address": address}

    def __enter__(self) -> dict:
        return self.info

    def __exit__(self, *exc) -> None:
        return None


def _table(r: dict) -> str:
    lines = [f"{r['clients']} clients x {r['frames']} frames at once, {r['size']} uint8 RGB, server in its own "
             f"process; {r['cpus']} CPUs, load average {r['loadavg_before'][0]:.2f} before, "
             f"{r['loadavg_after'][0]:.2f} after",
             f"  {'model':<21} {'transport':<9} {'frames/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'correct':>9}  refused"]
    rows = [("", x) for x in r["runs"]]
    if "overload" in r:
        rows += [("overload ", x) for x in r["overload"]["runs"]]
    total = answered = 0
    for tag, x in rows:
        refused = ", ".join(f"{k} {v}" for k, v in sorted(x["refused"].items())) or "-"
        lines.append(f"  {tag + x['model']:<21} {x['transport']:<9} {x['frames_per_s']:>9.0f} {x['p50_ms']:>8.1f} "
                     f"{x['p99_ms']:>8.1f} {x['correct']:>4}/{x['answered']:<4}  {refused}"
                     + (f"  ({x['clients']} clients x {x['frames']})" if tag else ""))
        total += x["correct"]
        answered += x["answered"]
    if "overload" in r:
        o = r["overload"]
        whys = {why for x in o["runs"] for why in x["why"].values()}
        lines += [f"  refused: {why}" for why in sorted(whys)]
        lines.append(f"  during the overload ListModels answered {o['listings'] - o['listing_failures']}/"
                     f"{o['listings']} times, slowest {o['listing_max_ms']} ms")
    lines.append(f"  {total}/{answered} answered frames equal the model run in-process")
    if r.get("rss_mib_before") is not None:
        lines.append(f"  server RSS {r['rss_mib_before']:.0f} MiB before, peak {r['rss_mib_peak']:.0f} MiB, "
                     f"{r['rss_mib_after']:.0f} MiB after")
    return "\n".join(lines)
