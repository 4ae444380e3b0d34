"""The host plugins' settings: where the `mattebox` client command is, which server(s) it talks to and
how (token, TLS), whether the plugin may start a local server and which folders that server may use.
install.py writes them; the plugins read them (Nuke and Blender alike).

File: $MATTEBOX_CONFIG, else ~/.config/mattebox/client.json (%APPDATA%\\mattebox\\client.json on Windows):
    {"client": "/path/to/.venv/bin/mattebox", "server": "127.0.0.1:50051", "start_server": true,
     "servers": [], "allowed_roots": [], "token": "", "tls_ca": "", "tls_cert": "", "tls_key": ""}

Keys (every one optional; a missing key takes the default shown above, unknown keys are ignored):
- client: the `mattebox` command ("" = find it on PATH).
- server: host:port of the matting server.
- servers: several studio servers, host:port each (names or IPv4/IPv6 addresses: "gpu1:50051",
  "[fd00::5]:50051"). When the list is not empty it replaces `server`: every command goes to all of
  them, balanced round-robin (the client is given "a:1,b:2"; a server that does not answer is skipped;
  a job, its cancel and a shared-memory region stay on one server), and `server` is not used. Config.address() is the one value to use: `servers` joined with commas, else
  `server`.
- start_server: when nothing answers at the address and it is ONE loopback address (127.x, localhost,
  ::1), the plugin starts `mattebox serve` there and stops it when the host quits.
- allowed_roots: folders that local server may read and write in path mode (the shots' and outputs'
  folders: "/mnt/projects", "D:/shows"), in addition to the home and temp folders it always allows.
  A studio server has its own (`mattebox serve --allow-root DIR`).
- token: bearer token the servers require. The plugins give it to the client command in the
  MATTEBOX_TOKEN environment variable, never on its command line (where `ps` would show it).
- tls_ca: PEM file of the CA that signed the servers' certificates (passed as --tls-ca); "" = plain
  connection (loopback or a trusted network).
- tls_cert, tls_key: PEM files of this machine's (or artist's) client certificate and its private key,
  for servers that require client certificates (`mattebox serve --tls-client-ca`); passed as
  --tls-cert/--tls-key. Both or neither.

load() checks the types (ConfigError names the file, the key and what it should be).
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import List

DEFAULT_SERVER = "127.0.0.1:50051"


class ConfigError(ValueError):
    """The settings file cannot be used; the message says which file and how to fix it."""


@dataclass
class Config:
    client: str = ""                 # the `mattebox` executable ("" = find it on PATH)
    server: str = DEFAULT_SERVER     # host:port of the matting server
    start_server: bool = True        # start a local server when none answers at a loopback address
    servers: List[str] = field(default_factory=list)        # studio servers (round-robin); replace `server`
    allowed_roots: List[str] = field(default_factory=list)  # folders the local server may read and write
    token: str = ""                  # bearer token, given to the client as $MATTEBOX_TOKEN
    tls_ca: str = ""                 # CA certificate (PEM) of the servers, passed as --tls-ca
    tls_cert: str = ""               # client certificate (PEM), passed as --tls-cert (with tls_key)
    tls_key: str = ""                # its private key (PEM), passed as --tls-key

    def __post_init__(self):
        problems = check(self, addresses=False)
        if problems:
            raise ConfigError("Mattebox settings: " + "; ".join(problems))

    def address(self) -> str:
        """The server value for the client command: `servers` joined with commas (round-robin) when the
        list is not empty, else `server`."""
        return ",".join(s.strip() for s in self.servers) if self.servers else self.server.strip()

    def addresses(self) -> list:
        """address() as a list of host:port."""
        return [a.strip() for a in self.address().split(",") if a.strip()]

    def roots(self) -> list:
        """allowed_roots as absolute folders (~ expanded), in order, without repeats."""
        out = []
        for r in self.allowed_roots:
            folder = os.path.abspath(os.path.expanduser(r))
            if folder not in out:
                out.append(folder)
        return out

    def executable(self) -> str:
        """The client command's path; raises ConfigError when there is none."""
        found = self.client if self.client and os.path.isfile(self.client) else shutil.which(self.client or "mattebox")
        if not found:
            raise ConfigError(f"the Mattebox client command {self.client or 'mattebox'!r} was not found: run "
                              f"`python3 install.py` in the Mattebox checkout, or set its path in the plugin's settings")
        return found


#: key -> (type, what it should be, for the message)
_TYPES = {
    "client": (str, 'a text: the path of the mattebox command, e.g. "/opt/mattebox/.venv/bin/mattebox"'),
    "server": (str, 'a text "host:port", e.g. "127.0.0.1:50051"'),
    "start_server": (bool, "true or false"),
    "servers": (list, 'a list of "host:port" texts, e.g. ["gpu1:50051", "gpu2:50051"]'),
    "allowed_roots": (list, 'a list of folders, e.g. ["/mnt/projects"]'),
    "token": (str, "a text (the servers' bearer token)"),
    "tls_ca": (str, 'a text: the path of a PEM file, e.g. "/etc/mattebox/ca.pem"'),
    "tls_cert": (str, 'a text: the path of a PEM file, e.g. "/etc/mattebox/client.pem"'),
    "tls_key": (str, 'a text: the path of a PEM file, e.g. "/etc/mattebox/client.key"'),
}


def _host_port(text: str) -> bool:
    host, _, port = text.strip().rpartition(":")
    return bool(host) and port.isdigit()


def check(cfg: Config, addresses: bool = True) -> list:
    """What is wrong with the settings, one text per problem ([] when they can be used): the types of
    every key, and (addresses) that the server addresses are host:port."""
    problems = []
    for name, (kind, want) in _TYPES.items():
        value = getattr(cfg, name)
        ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
        if ok and kind is list:
            ok = all(isinstance(v, str) and v.strip() for v in value)
        if not ok:
            problems.append(f"{name!r} is {json.dumps(value)}, it must be {want}")
    if not problems and bool(cfg.tls_cert) != bool(cfg.tls_key):
        problems.append("'tls_cert' and 'tls_key' go together: give both (the client certificate and its key) "
                        "or neither")
    if addresses and not problems:
        for name, values in (("server", [cfg.server] if not cfg.servers else []), ("servers", cfg.servers)):
            bad = [v for v in values if not _host_port(v)]
            if bad:
                problems.append(f"{name!r} has {', '.join(map(repr, bad))}, which is not host:port "
                                f"(e.g. 127.0.0.1:50051)")
    return problems


def path() -> Path:
    if os.environ.get("MATTEBOX_CONFIG"):
        return Path(os.environ["MATTEBOX_CONFIG"])
    if os.name == "nt" and os.environ.get("APPDATA"):
        return Path(os.environ["APPDATA"]) / "mattebox" / "client.json"
    return Path.home() / ".config" / "mattebox" / "client.json"


def load(file: Path | None = None) -> Config:
    """The settings in `file` (default path()); defaults for a missing file or missing keys. ConfigError
    for a file that is not JSON or a value of the wrong type."""
    file = file or path()
    if not file.exists():
        return Config()
    try:
        data = json.loads(file.read_text())
        if not isinstance(data, dict):
            raise ValueError("it is not a JSON object {...}")
    except (OSError, ValueError) as err:
        raise ConfigError(f"{file} is not a valid Mattebox settings file ({err}): fix it, or delete it and run "
                          f"`python3 install.py` again") from err
    known = {f.name for f in fields(Config)}
    try:
        cfg = Config(**{k: v for k, v in data.items() if k in known})
        problems = check(cfg)
    except ConfigError as err:
        problems = [str(err).replace("Mattebox settings: ", "")]
    if problems:
        raise ConfigError(f"{file}: {'; '.join(problems)}: fix it in that file")
    return cfg


def save(cfg: Config, file: Path | None = None) -> Path:
    """Write the settings atomically; returns the file."""
    file = file or path()
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    os.replace(tmp, file)
    return file
