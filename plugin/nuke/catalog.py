"""The server's models, as `mattebox models --json` lists them, cached per server address."""
import threading

from plugin.host import client

_cache = {}            # server address -> [model dicts]
_lock = threading.Lock()


def fetch(cfg):
    """Ask the server (a subprocess: call it off the main thread); remembered for cached()."""
    models = client.models(cfg)
    with _lock:
        _cache[cfg.address()] = models
    return models


def cached(server):
    """The last list fetched from `server` ([] when none was)."""
    with _lock:
        return list(_cache.get(server, []))


def find(cfg, name):
    """The model dict called `name`: from the cache, else fetched; HostError when the server lacks it."""
    for models in (cached(cfg.address()), None):
        for m in models if models is not None else fetch(cfg):
            if m["name"] == name:
                return m
    names = ", ".join(m["name"] for m in cached(cfg.address()))
    raise client.HostError("the server at %s has no model %r (it has: %s): press Refresh models and pick one"
                           % (cfg.address(), name, names))


def missing_inputs(model, connected):
    """The model's required inputs (server names: image, background, trimap) not in `connected`."""
    return [i for i in model["inputs"] if i not in connected]
