"""The `mattebox` client command, run in a subprocess for a host plugin.

A host never talks gRPC itself: it runs `mattebox matte|finetune ... --progress json` and reads one
JSON object per line (events documented in plugin/cli/progress.py and plugin/cli/train.py):
    job = Job(cfg, ["matte", "--model", "bgm", "--input", src, "--output", out])
    while job.running: for event in job.poll(): ...      (a timer, modal step or thread)
    job.cancel()    SIGTERM: the client cancels the server's job, finished frames stay on disk
"""
from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import tempfile
import threading
import time
from collections import deque

from .config import Config


class HostError(RuntimeError):
    """Something a host shows the user as is: what went wrong and what to do."""


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise HostError(f"server address {address!r} is not host:port (for example 127.0.0.1:50051): fix it "
                        f"in the plugin's settings")
    return host.strip("[]"), int(port)


def is_local(address: str) -> bool:
    host, _ = _split(address)
    return host in ("localhost", "::1") or host.startswith("127.")


def reachable(address: str, timeout: float = 1.0) -> bool:
    """Whether something listens at host:port (a TCP connect; no gRPC needed)."""
    try:
        with socket.create_connection(_split(address), timeout=timeout):
            return True
    except OSError:
        return False


def _no_window() -> dict:
    """Popen options: no console window on Windows, own process group elsewhere (a host's Ctrl-C is ours)."""
    return {"creationflags": 0x08000000} if os.name == "nt" else {"start_new_session": True}


def models(cfg: Config, timeout: float = 60.0) -> list[dict]:
    """The server's models: [{"name", "description", "inputs", "params", "gflops_512", "weights", "device"}]."""
    try:
        r = subprocess.run([cfg.executable(), "models", "--server", cfg.server, "--json"], capture_output=True,
                           text=True, timeout=timeout, **_no_window())
    except subprocess.TimeoutExpired as err:
        raise HostError(f"the Mattebox server at {cfg.server} did not list its models within {timeout:.0f} s: "
                        f"check that it is running and not overloaded") from err
    if r.returncode != 0:
        raise HostError(_last_line(r.stderr) or f"`mattebox models` failed with code {r.returncode}")
    return json.loads(r.stdout)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1].removeprefix("mattebox models: ") if lines else ""


class Job:
    """A `mattebox` command with `--server cfg.server --progress json`, in a subprocess. Its stdout
    events are read on a thread; poll() hands them over without blocking. Attributes kept up to date
    by poll(): percent (0-100), errors (messages), summary (the final "done" event or None)."""

    def __init__(self, cfg: Config, args: list[str]):
        self.command = [cfg.executable(), *args, "--server", cfg.server, "--progress", "json"]
        self.proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     bufsize=1, **_no_window())
        self._events: queue.Queue = queue.Queue()
        self._log: deque = deque(maxlen=20)
        self.percent = 0.0
        self.errors: list[str] = []
        self.summary: dict | None = None
        self.cancelled = False
        self._readers = [threading.Thread(target=self._read_events, daemon=True),
                         threading.Thread(target=self._read_log, daemon=True)]
        for t in self._readers:
            t.start()

    def _read_events(self) -> None:
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                self._log.append(line.rstrip())
                continue
            if isinstance(event, dict) and "event" in event:
                self._events.put(event)

    def _read_log(self) -> None:
        for line in self.proc.stderr:
            if line.strip():
                self._log.append(line.rstrip())

    @property
    def running(self) -> bool:
        """True until the process has exited and every event line has been read (poll() may still have some)."""
        return self.proc.poll() is None or self._readers[0].is_alive()

    def poll(self) -> list[dict]:
        """The events that arrived since the last call (never blocks)."""
        out = []
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return out
            if "percent" in event:
                self.percent = float(event["percent"])
            if event["event"] == "error":
                self.errors.append(event["message"] if event.get("frame") is None
                                   else f"frame {event['frame']}: {event['message']}")
            elif event["event"] == "done":
                self.summary = event
            out.append(event)

    def wait(self, timeout: float | None = None) -> int:
        """Block until the command ends; its exit code (0 ok, 1 failures, 130 cancelled)."""
        code = self.proc.wait(timeout)
        for t in self._readers:
            t.join(timeout)
        return code

    def cancel(self) -> None:
        """Stop the job: the client cancels it on the server; frames already written are kept."""
        self.cancelled = True
        if self.proc.poll() is None:
            self.proc.terminate()

    @property
    def returncode(self) -> int | None:
        return None if self.running else self.proc.returncode

    def failure(self) -> str:
        """Why the command failed, for the user ("" when it did not)."""
        code = self.returncode
        if code in (None, 0) or self.cancelled:
            return ""
        if self.errors:
            return self.errors[0] if len(self.errors) == 1 else f"{len(self.errors)} errors, first: {self.errors[0]}"
        return (self._log[-1] if self._log else "") or f"`mattebox {self.command[1]}` exited with code {code}"


class LocalServer:
    """`mattebox serve` on this machine, at the loopback port of cfg.server, started by a host."""

    def __init__(self, cfg: Config, timeout: float = 120.0):
        host, port = _split(cfg.server)
        self._tmp = tempfile.TemporaryDirectory(prefix="mattebox-host-")
        ready = os.path.join(self._tmp.name, "ready.json")
        self.proc = subprocess.Popen([cfg.executable(), "serve", "--host", host, "--port", str(port),
                                      "--ready-file", ready], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, **_no_window())
        deadline = time.monotonic() + timeout
        while not os.path.exists(ready):
            if self.proc.poll() is not None:
                self._tmp.cleanup()
                raise HostError(f"the local Mattebox server exited at start-up (code {self.proc.returncode}): "
                                f"is port {port} taken? Run `mattebox serve --port {port}` in a terminal to see why")
            if time.monotonic() > deadline:
                self.stop()
                raise HostError(f"the local Mattebox server did not start within {timeout:.0f} s")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._tmp.cleanup()


def ensure_server(cfg: Config) -> LocalServer | None:
    """Make sure a server answers at cfg.server: start a local one when allowed (returned: the caller
    stops it), else raise HostError saying what to do."""
    if reachable(cfg.server):
        return None
    if cfg.start_server and is_local(cfg.server):
        return LocalServer(cfg)
    raise HostError(f"no Mattebox server answers at {cfg.server}: start one with `mattebox serve`"
                    + ("" if is_local(cfg.server) else " on that machine")
                    + ", or turn on 'start a local server' in the plugin's settings")
