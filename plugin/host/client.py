"""The `mattebox` client command, run in a subprocess for a host plugin.

A host never talks gRPC itself: it runs `mattebox matte|finetune ... --progress json` and reads one
JSON object per line (events documented in plugin/cli/progress.py and plugin/cli/train.py):
    job = Job(cfg, ["matte", "--model", "bgm", "--input", src, "--output", out])
    while job.running: for event in job.poll(): ...      (a timer, modal step or thread)
    job.cancel()    SIGTERM: the client cancels the server's job, finished frames stay on disk
    job.warnings()  what the user should see besides errors: the job's notices (e.g. "the server may
                    not read /mnt/x: sending the pixels through shared memory") and the frames whose
                    clean plate could not be aligned (--align-plate)

Every command gets the settings' server(s) as --server (Config.address(): "a:1,b:2" is balanced
round-robin by the client), --tls-ca and --tls-cert/--tls-key when set, and the token in $MATTEBOX_TOKEN (never on the command
line, where any user's `ps` would show it).
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
from pathlib import Path

from .config import Config


class HostError(RuntimeError):
    """Something a host shows the user as is: what went wrong and what to do."""


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise HostError(f"server address {address!r} is not host:port (for example 127.0.0.1:50051): fix it "
                        f"in the plugin's settings")
    return host.strip("[]"), int(port)


def _each(address: str) -> list[str]:
    """The host:port addresses of "a:1" or "a:1,b:2"."""
    return [a.strip() for a in address.split(",") if a.strip()] or [address]


def is_local(address: str) -> bool:
    """Whether `address` is ONE address on this machine (a list of servers is never a local server)."""
    parts = _each(address)
    if len(parts) != 1:
        return False
    host, _ = _split(parts[0])
    return host in ("localhost", "::1") or host.startswith("127.")


def reachable(address: str, timeout: float = 1.0) -> bool:
    """Whether something listens at host:port, or at any of "a:1,b:2" (a TCP connect; no gRPC needed)."""
    for one in _each(address):
        try:
            with socket.create_connection(_split(one), timeout=timeout):
                return True
        except OSError:
            continue
    return False


def _env(cfg: Config) -> dict | None:
    """The client command's environment: ours, plus the token (None: ours unchanged)."""
    if not cfg.token:
        return None
    env = dict(os.environ)
    env["MATTEBOX_TOKEN"] = cfg.token
    return env


def _connection(cfg: Config) -> list[str]:
    """--server, --tls-ca and --tls-cert/--tls-key arguments for the settings."""
    out = ["--server", cfg.address()]
    for flag, value in (("--tls-ca", cfg.tls_ca), ("--tls-cert", cfg.tls_cert), ("--tls-key", cfg.tls_key)):
        if value:
            out += [flag, os.path.expanduser(value)]
    return out


def local_roots(cfg: Config) -> list[str]:
    """Folders a local server started by a host may read and write: the home and temp folders (what
    `mattebox serve` allows on loopback when given no --allow-root; server/app.py default_roots) and the
    settings' allowed_roots."""
    out = []
    for folder in [str(Path.home()), tempfile.gettempdir(), *cfg.roots()]:
        if folder not in out:
            out.append(folder)
    return out


def _no_window() -> dict:
    """Popen options: no console window on Windows, own process group elsewhere (a host's Ctrl-C is ours)."""
    return {"creationflags": 0x08000000} if os.name == "nt" else {"start_new_session": True}


def models(cfg: Config, timeout: float = 60.0) -> list[dict]:
    """The server's models: [{"name", "description", "inputs", "params", "gflops_512", "weights", "device"}]."""
    try:
        r = subprocess.run([cfg.executable(), "models", *_connection(cfg), "--json"], capture_output=True,
                           text=True, timeout=timeout, env=_env(cfg), **_no_window())
    except subprocess.TimeoutExpired as err:
        raise HostError(f"the Mattebox server at {cfg.address()} did not list its models within {timeout:.0f} s: "
                        f"check that it is running and not overloaded") from err
    if r.returncode != 0:
        raise HostError(_last_line(r.stderr) or f"`mattebox models` failed with code {r.returncode}")
    return json.loads(r.stdout)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1].removeprefix("mattebox models: ") if lines else ""


class Job:
    """A `mattebox` command with `--server ADDRESS [--tls-ca CA] --progress json` (and the token in its
    environment), in a subprocess. Its stdout events are read on a thread; poll() hands them over
    without blocking. Attributes kept up to date by poll(): percent (0-100), errors (messages),
    notices (messages of "notice" events, each once), misaligned (frame -> why its plate alignment
    failed), summary (the final "done" event or None)."""

    def __init__(self, cfg: Config, args: list[str]):
        self.command = [cfg.executable(), *args, *_connection(cfg), "--progress", "json"]
        self.proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     bufsize=1, env=_env(cfg), **_no_window())
        self._events: queue.Queue = queue.Queue()
        self._log: deque = deque(maxlen=20)
        self.percent = 0.0
        self.errors: list[str] = []
        self.notices: list[str] = []
        self.misaligned: dict[int, str] = {}
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
            kind = event["event"]
            if kind == "error":
                self.errors.append(event["message"] if event.get("frame") is None
                                   else f"frame {event['frame']}: {event['message']}")
            elif kind == "notice":
                if event.get("message") and event["message"] not in self.notices:
                    self.notices.append(event["message"])
            elif kind == "frame":
                alignment = event.get("alignment")
                if isinstance(alignment, dict) and not alignment.get("ok", True):
                    self.misaligned[event["frame"]] = alignment.get("message") or "no trustworthy alignment"
            elif kind == "done":
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

    def warnings(self) -> list[str]:
        """What the user should see besides errors, one line each: the notices, then the frames whose
        clean plate could not be aligned (they were matted with the plate as given)."""
        return warning_lines(self.notices, self.misaligned)

    def failure(self) -> str:
        """Why the command failed, for the user ("" when it did not)."""
        code = self.returncode
        if code in (None, 0) or self.cancelled:
            return ""
        if self.errors:
            return self.errors[0] if len(self.errors) == 1 else f"{len(self.errors)} errors, first: {self.errors[0]}"
        return (self._log[-1] if self._log else "") or f"`mattebox {self.command[1]}` exited with code {code}"


def warning_lines(notices: list[str], misaligned: dict[int, str]) -> list[str]:
    """Job.warnings() for notices and misaligned frames gathered from one or several jobs."""
    out = list(notices)
    if misaligned:
        frames = sorted(misaligned)
        out.append("the clean plate could not be aligned on %s %s (%s): %s matted with the plate as given"
                   % ("frame" if len(frames) == 1 else "frames", _frame_list(frames), misaligned[frames[0]],
                      "it was" if len(frames) == 1 else "they were"))
    return out


def _frame_list(frames: list[int], most: int = 8) -> str:
    """"3, 7, 9" (at most `most`, then "and N more")."""
    text = ", ".join(str(f) for f in frames[:most])
    return text + (" and %d more" % (len(frames) - most) if len(frames) > most else "")


class LocalServer:
    """`mattebox serve` on this machine, at the loopback port of cfg.address(), started by a host. It may
    read and write local_roots(cfg) (one --allow-root each)."""

    def __init__(self, cfg: Config, timeout: float = 120.0):
        if not is_local(cfg.address()):
            raise HostError(f"{cfg.address()} is not one address on this machine: a local server listens on "
                            f"127.0.0.1:PORT")
        host, port = _split(cfg.address())
        self.roots = local_roots(cfg)
        self._tmp = tempfile.TemporaryDirectory(prefix="mattebox-host-")
        ready = os.path.join(self._tmp.name, "ready.json")
        roots = [a for r in self.roots for a in ("--allow-root", r)]
        self.command = [cfg.executable(), "serve", "--host", host, "--port", str(port), "--ready-file", ready, *roots]
        self.proc = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     **_no_window())
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
    """Make sure a server answers at cfg.address() (any one of a list): start a local one when allowed
    (returned: the caller stops it), else raise HostError saying what to do."""
    address = cfg.address()
    if reachable(address):
        return None
    if cfg.start_server and is_local(address):
        return LocalServer(cfg)
    raise HostError(f"no Mattebox server answers at {address}: start one with `mattebox serve`"
                    + ("" if is_local(address) else " on that machine")
                    + ", or turn on 'start a local server' in the plugin's settings")
