"""Path-mode safety: the server reads and writes only under allowed roots."""
from __future__ import annotations

import os
from pathlib import Path

import grpc

from server.frames import RequestError


class AllowedRoots:
    """Folders path-mode jobs may touch. Symlinks are resolved before the check; `..` is refused."""

    def __init__(self, roots: list[str]):
        self.roots = [Path(r).expanduser().resolve() for r in roots]

    def check(self, path: str) -> Path:
        """The resolved path, or RequestError(PERMISSION_DENIED) when it is outside every root."""
        p = Path(path).expanduser()
        if not p.is_absolute():
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"{path}: path mode needs absolute paths (the server has its own working folder)")
        if ".." in p.parts:
            raise RequestError(grpc.StatusCode.PERMISSION_DENIED, f"{path}: '..' is not allowed in path mode")
        real = Path(os.path.realpath(p))
        if not any(real == r or r in real.parents for r in self.roots):
            where = ", ".join(map(str, self.roots)) or "none"
            raise RequestError(grpc.StatusCode.PERMISSION_DENIED,
                               f"{path} is outside the server's allowed roots ({where}): start the server with "
                               f"`mattebox serve --allow-root {_top(real)}` (repeatable), or, for the local server "
                               f"a Nuke or Blender plugin starts, add that folder to \"allowed_roots\" in the "
                               f"Mattebox settings file (~/.config/mattebox/client.json)")
        return real


def _top(path: Path) -> Path:
    """The folder to suggest as a root for `path`: its first two levels (/mnt/projects for
    /mnt/projects/show/plate.exr), or its folder when it is shallower."""
    parts = path.parts
    return Path(*parts[:3]) if len(parts) > 3 else path.parent
