"""The local Mattebox server that this Nuke session started (at most one; stopped when Nuke exits)."""
import atexit
import threading

from plugin.host import client

_lock = threading.Lock()
_server = None       # client.LocalServer


def ensure(cfg):
    """Make sure a server answers at cfg.address(), starting a local one when the settings allow it;
    client.HostError says what to do otherwise. Slow when it starts one: call off the main thread."""
    global _server
    with _lock:
        started = client.ensure_server(cfg)
        if started is not None:
            stop_locked()
            _server = started


def start(cfg):
    """Start a local server at cfg.address() (a loopback address) unless one answers there already."""
    if not client.is_local(cfg.address()):
        raise client.HostError("%s is not an address on this machine: a local server listens on 127.0.0.1:PORT"
                               % cfg.address())
    global _server
    with _lock:
        if not client.reachable(cfg.address()):
            stop_locked()
            _server = client.LocalServer(cfg)


def running():
    """Whether this session started a server that is still running."""
    return _server is not None and _server.proc.poll() is None


def stop():
    with _lock:
        stop_locked()


def stop_locked():
    global _server
    if _server is not None:
        _server.stop()
        _server = None


atexit.register(stop)
