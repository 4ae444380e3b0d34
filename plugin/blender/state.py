"""What the extension knows while Blender runs, never saved in a .blend file: the server's status
and models, the last error, the matting run in progress and a local server it started; and Task, the
worker thread that keeps slow calls (listing models, starting a local server) off Blender's main thread.

Threads never touch bpy, nor the model list Blender's enum reads: a Task returns what it fetched and
the main thread stores it (set_models) when it sees the task done.
"""
from __future__ import annotations

import threading

from .host import client
from .host.config import Config


class Task:
    """fn(*args) on a daemon thread. The main thread polls `done` (a timer, a modal step) or join()s
    (background mode), then takes result(), which raises what fn raised."""

    def __init__(self, fn, *args):
        self._result, self._error = None, None
        self._thread = threading.Thread(target=self._run, args=(fn, args), name="mattebox", daemon=True)
        self._thread.start()

    def _run(self, fn, args) -> None:
        try:
            self._result = fn(*args)
        except BaseException as err:  # handed to the main thread by result()
            self._error = err

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def result(self):
        if self._error is not None:
            raise self._error
        return self._result


class State:
    def __init__(self):
        self.status = "not checked yet: press Refresh"
        self.models: list[dict] = []
        self.address = ""                   # the server the models came from
        self.model_items: list[tuple] = []  # EnumProperty items; Blender needs them kept alive
        self.last_error = ""
        self.last_warnings: list[str] = []  # the last run's notices and plate alignment failures
        self.last_command: list[str] = []   # the last `mattebox matte` command line started
        self.run = None                     # matting.Run in progress
        self.refreshing: Task | None = None  # a Refresh in progress
        self.server: client.LocalServer | None = None
        self._server_lock = threading.Lock()  # one start (and stop) of the local server at a time

    def model(self, name: str) -> dict | None:
        return next((m for m in self.models if m["name"] == name), None)

    def ensure_server(self, cfg: Config) -> None:
        """A server answers at cfg.address() afterwards, started here when allowed; else HostError.
        Safe on a worker thread (it may wait for a start of up to two minutes: keep it off the main one)."""
        with self._server_lock:
            if self.server is not None and self.server.proc.poll() is not None:
                self._stop()  # it died: forget it
            started = client.ensure_server(cfg)
            if started is not None:
                self._stop()
                self.server = started

    def fetch_models(self, cfg: Config) -> list[dict]:
        """The server's models, starting a local server when allowed (worker thread; stores nothing)."""
        self.ensure_server(cfg)
        return client.models(cfg)

    def set_models(self, cfg: Config, models: list[dict]) -> None:
        """Main thread: keep what fetch_models returned; the status says so."""
        self.models, self.address = models, cfg.address()
        self.model_items = [(m["name"], m["name"], m["description"]) for m in models]
        started = " (started here)" if self.server else ""
        self.status = f"online at {cfg.address()}{started}, {len(models)} models"

    def set_offline(self, cfg: Config) -> None:
        self.status = f"no server at {cfg.address()}"

    def refresh_task(self, cfg: Config) -> Task:
        """Start listing the models on a thread; finish_refresh(task) when it is done."""
        if self.refreshing is not None and not self.refreshing.done:
            raise client.HostError("Mattebox is already asking the server for its models: wait a moment")
        self.status = f"asking {cfg.address()} for its models..."
        self.refreshing = Task(self.fetch_models, cfg)
        return self.refreshing

    def finish_refresh(self, cfg: Config, task: Task) -> None:
        """Main thread: store a finished refresh_task's models, or raise its HostError (status: offline)."""
        if self.refreshing is task:
            self.refreshing = None
        try:
            models = task.result()
        except client.HostError:
            self.set_offline(cfg)
            raise
        self.set_models(cfg, models)

    def refresh(self, cfg: Config) -> None:
        """Ask the server for its models now (the thread, joined): for background mode and scripts."""
        task = self.refresh_task(cfg)
        task.join()
        self.finish_refresh(cfg, task)

    def _stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def stop(self) -> None:
        """Stop the local server this extension started, if any (waits for a start in progress to end,
        so that Blender quitting never leaves a server behind)."""
        with self._server_lock:
            self._stop()


STATE = State()
