"""Options every client command shares (--server, --token, --tls-ca, --tls-cert/--tls-key), and the
private server a command starts for itself when no --server is given."""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Iterator

import grpc

from plugin.client.connection import Client


def add_server_arguments(p: argparse.ArgumentParser, server_help: str = "") -> None:
    p.add_argument("--server", default=os.environ.get("MATTEBOX_SERVER", ""),
                   help="host:port of a running server (or host:port,host:port,... for round-robin; port 50051 when "
                        "none is given); "
                        + (server_help or "default $MATTEBOX_SERVER, else a private server started for this command"))
    p.add_argument("--token", default=os.environ.get("MATTEBOX_TOKEN", ""),
                   help="bearer token for a remote server (default $MATTEBOX_TOKEN)")
    p.add_argument("--tls-ca", default="", help="PEM file of the CA that signed the server's certificate")
    p.add_argument("--tls-cert", default="",
                   help="PEM certificate (chain) of this client, for a server that requires client certificates "
                        "(mattebox serve --tls-client-ca); with --tls-key")
    p.add_argument("--tls-key", default="", help="PEM private key of --tls-cert")


def connection(args: argparse.Namespace) -> dict:
    """The Client keyword arguments (token and TLS) that add_server_arguments' options give (those set)."""
    given = {k: getattr(args, k, "") for k in ("token", "tls_ca", "tls_cert", "tls_key")}
    return {k: v for k, v in given.items() if v}


@contextlib.contextmanager
def spawn_server(*extra: str, timeout: float = 60.0) -> Iterator[str]:
    """Start `mattebox serve` on a free loopback port in its own process; yield its address; stop it
    with SIGTERM (graceful) at the end. Its output goes to stderr, so our stdout stays clean JSON."""
    with server_process(*extra, timeout=timeout) as info:
        yield info["address"]


@contextlib.contextmanager
def server_process(*extra: str, timeout: float = 60.0, **popen) -> Iterator[dict]:
    """As spawn_server, yielding {"address": ..., "pid": ..., "process": the subprocess.Popen} (the
    server's own process, e.g. for its RSS). popen: more subprocess.Popen arguments (env, stderr, ...)."""
    with tempfile.TemporaryDirectory(prefix="mattebox-") as tmp:
        ready = os.path.join(tmp, "ready.json")
        popen.setdefault("stdout", sys.stderr)
        proc = subprocess.Popen([sys.executable, "-m", "plugin.cli.main", "serve", "--port", "0",
                                 "--ready-file", ready, *extra], **popen)
        try:
            deadline = time.monotonic() + timeout
            while not os.path.exists(ready):
                if proc.poll() is not None:
                    raise RuntimeError(f"the matting server exited at start-up (code {proc.returncode})")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the matting server did not start within {timeout:.0f} s")
                time.sleep(0.05)
            with open(ready) as f:
                yield {**json.load(f), "process": proc}
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextlib.contextmanager
def client(args: argparse.Namespace, roots: list[str] | None = None) -> Iterator[Client]:
    """A Client for --server, or for a private server started (and stopped) around the command.
    roots: folders the private server may read and write in path mode (the job's own; default:
    the server's default roots)."""
    with contextlib.ExitStack() as stack:
        extra = [a for root in roots or [] for a in ("--allow-root", root)]
        address = args.server or stack.enter_context(spawn_server(*extra))
        c = stack.enter_context(Client(address, **connection(args)))
        yield c


def explain(err: grpc.RpcError, server: str) -> str:
    """A failed call as one line that says what went wrong and what to do (host plugins show it as is)."""
    if err.code() == grpc.StatusCode.UNAVAILABLE:
        return (f"UNAVAILABLE: no Mattebox server answers at {server or 'the private server'}: start one with "
                f"`mattebox serve` (or let the plugin start a local server) and check the server address")
    return f"{err.code().name}: {err.details()}"
