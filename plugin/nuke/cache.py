"""Which alpha frames are up to date: a key per frame (a hash of what its inputs depend on, of the
matting settings and of the model's digest as the server lists it), kept in mattebox-cache.json beside
the alpha frames.

A frame is redone when one of its files (the alpha, and the foreground in the unmixed output mode) is
missing or its key changed, so a shot resumes after a crash or a cancel and a changed setting or input
redoes exactly the frames it touches; a model re-trained under the same name (a new digest) redoes
every frame. A key is recorded only after the server reported the frame written (output files are
written atomically).

Keys are computed on a job's thread (a Matte press reads the node graph through the main thread, then
stats the frame files off it): see plugin.nuke.pixels.graph and describe.
"""
import hashlib
import json
import os

from models import sequence
from plugin.nuke.node import ALPHA_FILE

MANIFEST = "mattebox-cache.json"


def key(settings, inputs, digest):
    """The key of one frame: `settings` (model, steps, ...), `inputs` (input name -> description) and
    `digest`, the model's weights digest in the server's list ("" for a model without weights)."""
    text = json.dumps({"settings": settings, "inputs": inputs, "digest": digest}, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Manifest:
    """The recorded keys of a cache folder's alpha frames."""

    def __init__(self, folder):
        self.folder = folder
        self.path = os.path.join(folder, MANIFEST)
        try:
            with open(self.path) as f:
                self.keys = json.load(f)
        except (OSError, ValueError):
            self.keys = {}  # none yet, or unreadable: every frame is redone

    def alpha(self, frame):
        return self.file(ALPHA_FILE, frame)

    def file(self, pattern, frame):
        """The file of `frame` for a pattern in the folder (ALPHA_FILE, FOREGROUND_FILE)."""
        return sequence.frame_path(os.path.join(self.folder, pattern), frame)

    def stale(self, keys, patterns=(ALPHA_FILE,)):
        """Frames of `keys` (frame -> key) with a file of `patterns` missing, or made from other
        inputs/settings."""
        return [f for f, k in sorted(keys.items())
                if self.keys.get(str(f)) != k or not all(os.path.isfile(self.file(p, f)) for p in patterns)]

    def record(self, frame, key_):
        """Remember that `frame`'s alpha on disk was made with `key_` (written atomically)."""
        self.keys[str(frame)] = key_
        os.makedirs(self.folder, exist_ok=True)
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.keys, f, indent=0, sort_keys=True)
        os.replace(tmp, self.path)
