"""The host plugins' settings: where the `mattebox` client command is, which server it talks to, and
whether the plugin may start a local server. install.py writes them; the plugins read them.

File: $MATTEBOX_CONFIG, else ~/.config/mattebox/client.json (%APPDATA%\\mattebox\\client.json on Windows):
    {"client": "/path/to/.venv/bin/mattebox", "server": "127.0.0.1:50051", "start_server": true}
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, fields
from pathlib import Path

DEFAULT_SERVER = "127.0.0.1:50051"


class ConfigError(ValueError):
    """The settings file cannot be used; the message says which file and how to fix it."""


@dataclass
class Config:
    client: str = ""                 # the `mattebox` executable ("" = find it on PATH)
    server: str = DEFAULT_SERVER     # host:port of the matting server
    start_server: bool = True        # start a local server when none answers at a loopback address

    def executable(self) -> str:
        """The client command's path; raises ConfigError when there is none."""
        found = self.client if self.client and os.path.isfile(self.client) else shutil.which(self.client or "mattebox")
        if not found:
            raise ConfigError(f"the Mattebox client command {self.client or 'mattebox'!r} was not found: run "
                              f"`python3 install.py` in the Mattebox checkout, or set its path in the plugin's settings")
        return found


def path() -> Path:
    if os.environ.get("MATTEBOX_CONFIG"):
        return Path(os.environ["MATTEBOX_CONFIG"])
    if os.name == "nt" and os.environ.get("APPDATA"):
        return Path(os.environ["APPDATA"]) / "mattebox" / "client.json"
    return Path.home() / ".config" / "mattebox" / "client.json"


def load(file: Path | None = None) -> Config:
    """The settings in `file` (default path()); defaults for a missing file or missing keys."""
    file = file or path()
    if not file.exists():
        return Config()
    try:
        data = json.loads(file.read_text())
        known = {f.name for f in fields(Config)}
        return Config(**{k: v for k, v in data.items() if k in known})
    except (ValueError, TypeError, AttributeError) as err:
        raise ConfigError(f"{file} is not a valid Mattebox settings file ({err}): fix it, or delete it and run "
                          f"`python3 install.py` again") from err


def save(cfg: Config, file: Path | None = None) -> Path:
    """Write the settings atomically; returns the file."""
    file = file or path()
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    os.replace(tmp, file)
    return file
