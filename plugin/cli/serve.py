"""`mattebox serve`: run the matting server until SIGTERM / Ctrl-C."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from server import limits
from server.app import ConfigError, ServerConfig, default_roots, serve_forever
from server.scheduler import QUEUE_SIZE


def queue_size(text: str) -> int:
    """--queue-size: a whole number of at least 1 (0 or less would mean no bound at all)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n}: must be at least 1 (frames that may wait per device; "
                                         f"default {QUEUE_SIZE}); 0 or less would leave the queue unbounded")
    return n


def device_list(text: str) -> list[str]:
    """--devices: a comma-separated list ("cuda:0,cuda:1"); checked against this machine at start."""
    names = [d.strip() for d in text.split(",") if d.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give one or more devices, comma-separated: cpu or cuda:N")
    return names


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=50051, help="port (0: any free port; see --ready-file)")
    p.add_argument("--token", default=os.environ.get("MATTEBOX_TOKEN", ""),
                   help="require 'authorization: Bearer TOKEN' (default $MATTEBOX_TOKEN); needed off loopback")
    p.add_argument("--token-file", default="", help="read the token from this file")
    p.add_argument("--insecure-token", action="store_true",
                   help="accept a token without TLS off loopback (it crosses the network in clear: a trusted "
                        "network only; logged, and told to clients in ListModels)")
    p.add_argument("--tls-cert", default="", help="PEM certificate chain (enables TLS)")
    p.add_argument("--tls-key", default="", help="PEM private key for --tls-cert")
    p.add_argument("--tls-client-ca", default="", help="require client certificates signed by this CA")
    p.add_argument("--allow-root", action="append", default=[], metavar="DIR",
                   help="folder path-mode jobs may read and write (repeatable; default on loopback: home and temp)")
    p.add_argument("--queue-size", type=queue_size, default=QUEUE_SIZE,
                   help=f"frames that may wait per device (at least 1; default {QUEUE_SIZE})")
    p.add_argument("--devices", type=device_list, default=[], metavar="LIST",
                   help="devices the networks run on, one worker each, e.g. cuda:0,cuda:1 (default: every "
                        "visible GPU, else the CPU)")
    p.add_argument("--ready-file", default="", help="write {\"address\": ..., \"pid\": ...} here once serving "
                                                    "(and \"metrics\": its URL with --metrics-port)")
    m = p.add_argument_group("Prometheus metrics (off unless --metrics-port; no authentication)")
    m.add_argument("--metrics-port", type=int, default=0, metavar="N", help="serve Prometheus text at /metrics")
    m.add_argument("--metrics-host", default="", metavar="H",
                   help="address of the metrics endpoint (default: --host); off loopback only with --insecure-metrics")
    m.add_argument("--insecure-metrics", action="store_true",
                   help="serve the metrics off loopback: anyone who reaches the port reads the models and the load")
    g = p.add_argument_group("what one client may hold (a client is an IP address; this machine is one)")
    g.add_argument("--peer-calls", type=int, default=limits.PEER_CALLS,
                   help=f"Matte, MatteStream and MatteShared calls in flight per client (default {limits.PEER_CALLS})")
    g.add_argument("--peer-jobs", type=int, default=limits.PEER_JOBS,
                   help=f"RunJob and Finetune calls running per client (default {limits.PEER_JOBS})")
    g.add_argument("--peer-watches", type=int, default=limits.PEER_WATCHES,
                   help=f"health Watch and reflection streams open per client (default {limits.PEER_WATCHES})")
    g.add_argument("--threads", type=int, default=limits.THREADS,
                   help=f"RPC threads (default {limits.THREADS}); {limits.RESERVE} of them are kept for health, "
                        "listing and cancel")
    g.add_argument("--stream-idle-s", type=float, default=limits.STREAM_IDLE_S,
                   help=f"end a MatteStream whose next chunk takes longer (default {limits.STREAM_IDLE_S:g} s)")
    g.add_argument("--stream-memory-mb", type=int, default=limits.STREAM_MEMORY_MB,
                   help=f"MiB all MatteStream calls together may hold (default {limits.STREAM_MEMORY_MB})")


def run(args: argparse.Namespace) -> int:
    token = Path(args.token_file).read_text().strip() if args.token_file else args.token
    cfg = ServerConfig(host=args.host, port=args.port, token=token, tls_cert=args.tls_cert, tls_key=args.tls_key,
                       tls_client_ca=args.tls_client_ca, allow_roots=args.allow_root, queue_size=args.queue_size,
                       insecure_token=args.insecure_token, threads=args.threads, peer_calls=args.peer_calls,
                       peer_jobs=args.peer_jobs, peer_watches=args.peer_watches, stream_idle_s=args.stream_idle_s,
                       stream_memory_mb=args.stream_memory_mb, devices=args.devices,
                       metrics_port=args.metrics_port, metrics_host=args.metrics_host,
                       insecure_metrics=args.insecure_metrics)

    def ready(running) -> None:
        roots = ", ".join(default_roots(cfg)) or "none"
        print(f"mattebox: serving on {running.address} (path-mode roots: {roots}; "
              f"{'token required' if token else 'no token'}{', TLS' if cfg.tls_cert else ''}"
              f"{', client certificates required' if cfg.tls_client_ca else ''}"
              f"{', the token travels in clear (--insecure-token)' if running.servicer.warnings else ''}"
              f"{f'; metrics at {running.metrics.url}' if running.metrics else ''})",
              file=sys.stderr, flush=True)
        if args.ready_file:
            tmp = args.ready_file + ".tmp"
            with open(tmp, "w") as f:
                json.dump({"address": running.address, "pid": os.getpid(),
                           **({"metrics": running.metrics.url} if running.metrics else {})}, f)
            os.replace(tmp, args.ready_file)

    try:
        serve_forever(cfg, ready)
    except (ConfigError, OSError, RuntimeError) as err:
        print(f"mattebox serve: {err}", file=sys.stderr)
        return 2
    return 0
