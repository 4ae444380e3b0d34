"""Where model weights are found and installed: the one search path every part of Mattebox uses.

The path is `$MATTEBOX_WEIGHTS` (a studio folder, or several separated by os.pathsep) and then the
weights shipped with Mattebox (models/weights/; `$MATTEBOX_SHIPPED_WEIGHTS` moves them, for a packaged
install or a test that needs a machine without them). A file is taken from the first folder that holds
it, so a studio weights file with a shipped model's name (`mattebox train --model bgm --install`)
overrides the shipped one, and the shipped models stay listed beside the studio's fine-tunes.

New weights are installed in the first folder of the path: the studio's when MATTEBOX_WEIGHTS is set,
else the shipped folder. A model's files are `<name>.safetensors` and its card `<name>.json` (what
trained it: steps, data, validation figures, device; a fine-tune's names its `base` model).
The environment is read on every call, so a changed setting needs no restart.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path

SHIPPED = Path(__file__).resolve().parent / "weights"
WEIGHTS_SUFFIX, CARD_SUFFIX = ".safetensors", ".json"

_digests: dict[str, tuple[tuple[int, int, int], str]] = {}  # path -> (stamp, digest): one entry per file
_lock = threading.Lock()


def folders() -> list[Path]:
    """The search path, first folder first (folders that do not exist yet included)."""
    return list(_parse(os.environ.get("MATTEBOX_WEIGHTS", ""), os.environ.get("MATTEBOX_SHIPPED_WEIGHTS", "")))


@functools.lru_cache(maxsize=8)
def _parse(studio: str, shipped: str) -> tuple[Path, ...]:
    found = [Path(p).expanduser() for p in studio.split(os.pathsep) if p] + [Path(shipped or SHIPPED)]
    return tuple(dict.fromkeys(found))


def find(file_name: str) -> Path | None:
    """The file in the first folder of the search path that holds it, or None."""
    for folder in folders():
        path = folder / file_name
        if path.is_file():
            return path
    return None


def stamp(path: Path) -> tuple[int, int, int] | None:
    """(size, mtime_ns, inode) of a file, or None when it is gone: what tells a re-installed file apart
    (`install` renames a new file into place: a new inode even where mtimes are coarse)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ino


def digest(path: Path) -> str:
    """"sha256:<hex>" of a file's bytes, recomputed only when its stamp changed."""
    key = str(path)
    now = stamp(path)
    if now is None:
        raise FileNotFoundError(f"no weights file {path}")
    with _lock:
        cached = _digests.get(key)
    if cached is not None and cached[0] == now:
        return cached[1]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    value = f"sha256:{h.hexdigest()}"
    with _lock:
        _digests[key] = (now, value)
    return value


def install(name: str, weights: str | os.PathLike | Mapping, card: dict) -> Path:
    """Install a model's weights and card in the install folder; returns the weights' path.

    weights: a .safetensors file to copy, or a state dict (parameter name -> torch tensor) to save, with
    the card in its metadata under "mattebox". Each file is written to a temporary name and renamed,
    weights first: the card appearing is what lists a fine-tune, so a listed card always has its weights,
    and a server already serving `name` sees the new file whole (and reloads it on the next request)."""
    folder = folders()[0]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}{WEIGHTS_SUFFIX}"
    if isinstance(weights, Mapping):
        from safetensors.torch import save_file

        tensors = {k: v.detach().contiguous().cpu() for k, v in weights.items()}
        _atomic(path, lambda tmp: save_file(tensors, tmp, metadata={"mattebox": json.dumps(card)}))
    else:
        _atomic(path, lambda tmp: shutil.copyfile(weights, tmp))
    _atomic(folder / f"{name}{CARD_SUFFIX}", lambda tmp: Path(tmp).write_text(json.dumps(card, indent=2)))
    return path


def _atomic(path: Path, write) -> None:
    """write(tmp) into a temporary file beside `path`, then rename it over `path`."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the file from a server run by another user
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
