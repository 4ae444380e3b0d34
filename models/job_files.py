"""The files of one sequence job, frame by frame: read a frame's inputs lined up with the image,
tell whether its outputs are already complete on disk, and write them.

One module for both places that read shots: the server in path mode (paths checked against its
allowed roots by `check`) and the `mattebox matte` command when it reads the frames itself (stream,
unary or shared-memory transport; `check` is the identity there).

Rules (see models/images.py for the channel, data-window and colour-space rules of one file):
- the image is read as RGB; the trimap from `matte_channel` ("" = the file's alpha, else its only
  channel, else luminance); the plate as RGB;
- a trimap or plate whose data window differs from the image's is cropped or padded into the
  image's data window (a Nuke bbox against a full-frame plate); a trimap is background outside its
  own window, a plate must cover the image's (there is nothing to key against elsewhere);
- a pattern without a frame token (a still plate, one trimap) is read once per job (`stills`);
- outputs (alpha, and the foreground when asked) keep the image's data and display windows;
- trimap values between background, unknown and foreground (an antialiased roto) are snapped to the
  nearest level by the models, and the frame's notes say so;
- a job never writes over what it reads (check_distinct, before any frame runs).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from models import images, pixels, sequence
from models.base import BACKGROUND, IMAGE, TRIMAP

#: a path check: takes a path, returns the path to use (the server resolves it against its roots)
Check = Callable[[str], str]


@dataclass(frozen=True)
class FrameInputs:
    """One frame's pixels as read. arrays by role: image (H, W, 3), trimap (H, W), background (H, W, 3),
    in the files' dtypes, all on the image's data window; spaces: each picture's colour space (the job's
    override, else what the file says, else float scene-linear / integer sRGB); window: the image's;
    notes: things the frame's reader should tell the user, the frame still goes on."""

    arrays: dict[str, np.ndarray]
    spaces: dict[str, str]
    window: images.Window
    notes: tuple[str, ...] = ()  # what the user should know (a trimap snapped to its three levels)


@dataclass(frozen=True)
class JobFiles:
    """File patterns of a job (frame tokens ####, %04d, $F4; no token: one file for every frame).
    input, output: required; trimap, background, foreground: "" when not used."""

    input: str
    output: str
    trimap: str = ""
    background: str = ""
    foreground: str = ""
    matte_channel: str = ""
    colour_space: str = ""
    trimap_notes: bool = True  # say when a trimap is snapped to its levels (not for fine-tuning mattes)
    stills: dict = field(default_factory=dict, compare=False, repr=False)

    def check_distinct(self, first: int, last: int) -> None:
        """Refuse (ValueError naming both patterns) a job whose output or foreground could be one of its
        input, trimap or plate files, or each other, for a frame of first..last; see
        sequence.check_distinct (the `mattebox matte` command calls that directly: it does not load
        the image readers this module needs)."""
        sequence.check_distinct({"input": self.input, "trimap": self.trimap, "background": self.background},
                                {"output": self.output, "foreground": self.foreground}, first, last)

    def outputs(self, frame: int) -> list[str]:
        """The files a frame writes: its alpha, then its foreground when the job writes one."""
        return [sequence.frame_path(p, frame) for p in (self.output, self.foreground) if p]

    def read(self, frame: int, check: Check = str) -> FrameInputs:
        """Read a frame's inputs. Raises FileNotFoundError / ValueError saying which file and why."""
        src = self._read(IMAGE, self.input, frame, check)
        arrays = {IMAGE: src.pixels}
        spaces = {IMAGE: self.colour_space or src.colour_space}
        notes = []
        for role, pattern in ((TRIMAP, self.trimap), (BACKGROUND, self.background)):
            if pattern:
                img = self._read(role, pattern, frame, check)
                name = f"the {role} {sequence.frame_path(pattern, frame)}"
                if role == BACKGROUND and not _covers(img.window, src.window):
                    raise ValueError(f"{name} has a data window (bbox) {_box(img.window)} that does not cover the "
                                     f"image's {_box(src.window)}: render the clean plate full frame")
                placed = images.fit(img, src.window, name)
                arrays[role] = placed[..., 0] if role == TRIMAP else placed
                spaces[role] = self.colour_space or img.colour_space
                if role == TRIMAP and self.trimap_notes:
                    notes.append(pixels.trimap_note(arrays[role], name))
        for role, a in arrays.items():
            if not pixels.all_finite(a):
                raise ValueError(f"frame {frame}: the {role} has NaN or Inf pixels; clamp or fix the source")
        return FrameInputs(arrays, spaces, src.window, tuple(filter(None, notes)))

    def _read(self, role: str, pattern: str, frame: int, check: Check) -> images.Image:
        path = check(sequence.frame_path(pattern, frame))
        if sequence.has_frame_token(pattern):
            return self._read_file(role, path)
        if path not in self.stills:
            self.stills[path] = self._read_file(role, path)
        return self.stills[path]

    def _read_file(self, role: str, path: str) -> images.Image:
        if role == TRIMAP:
            return images.read(path, 1, channel=self.matte_channel)
        return images.read(path, 3)

    def complete(self, frame: int, check: Check = str) -> bool:
        """Whether every output of `frame` is on disk, readable to the end and on the image's data
        window (writes are atomic, so a file that reads whole is one a finished run wrote)."""
        try:
            window = images.window(check(sequence.frame_path(self.input, frame)))
            return all(images.read(check(path)).window == window for path in self.outputs(frame))
        except (OSError, ValueError):
            return False

    def write(self, frame: int, alpha: np.ndarray, fgr: np.ndarray | None, window: images.Window,
              check: Check = str) -> list[str]:
        """Write alpha (H, W) in [0, 1] and, when the job has a foreground pattern, the foreground
        (H, W, 3) straight RGB in the input's colour space. Returns the files written."""
        paths = [check(p) for p in self.outputs(frame)]
        images.write_alpha(paths[0], alpha, window)
        if self.foreground:
            if fgr is None:
                raise ValueError(f"frame {frame}: no foreground came back for {paths[1]}")
            images.write_rgb(paths[1], fgr, window)
        return paths


def _covers(outer: images.Window, inner: images.Window) -> bool:
    return (outer.x <= inner.x and outer.y <= inner.y and outer.x + outer.width >= inner.x + inner.width
            and outer.y + outer.height >= inner.y + inner.height)


def _box(w: images.Window) -> str:
    return f"{w.width}x{w.height}+{w.x}+{w.y}"
