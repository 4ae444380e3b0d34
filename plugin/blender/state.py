"""What the extension knows while Blender runs, never saved in a .blend file: the server's status
and models, the last error, the matting run in progress and a local server it started."""
from __future__ import annotations

from .host import client
from .host.config import Config


class State:
    def __init__(self):
        self.status = "not checked yet: press Refresh"
        self.models: list[dict] = []
        self.address = ""                   # the server the models came from
        self.model_items: list[tuple] = []  # EnumProperty items; Blender needs them kept alive
        self.last_error = ""
        self.run = None                     # matting.Run in progress
        self.server: client.LocalServer | None = None

    def model(self, name: str) -> dict | None:
        return next((m for m in self.models if m["name"] == name), None)

    def ensure_server(self, cfg: Config) -> None:
        """A server answers at cfg.server afterwards, started here when allowed; else HostError."""
        if self.server is not None and self.server.proc.poll() is not None:
            self.stop()  # it died: forget it
        started = client.ensure_server(cfg)
        if started is not None:
            self.stop()
            self.server = started

    def refresh(self, cfg: Config) -> None:
        """Ask the server for its models (starting a local one when allowed); the status says how it went."""
        try:
            self.ensure_server(cfg)
            models = client.models(cfg)
        except client.HostError:
            self.status = f"no server at {cfg.server}"
            raise
        self.models, self.address = models, cfg.server
        self.model_items = [(m["name"], m["name"], m["description"]) for m in models]
        started = " (started here)" if self.server else ""
        self.status = f"online at {cfg.server}{started}, {len(models)} models"

    def stop(self) -> None:
        """Stop the local server this extension started, if any."""
        if self.server is not None:
            self.server.stop()
            self.server = None


STATE = State()
