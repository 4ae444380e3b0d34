"""Image sequence file patterns and frame ranges, in the spellings compositors use.

Frame tokens: "####" (one digit per #, Nuke), "%04d" / "%d" (printf, Nuke and Blender), "$F4" / "$F"
(Houdini). A pattern without a token names one file used for every frame.
"""
from __future__ import annotations

import glob
import os
import re

_TOKEN = re.compile(r"#+|%0?(\d*)d|\$F(\d?)")
#: a file name's frame number: its last run of digits (with a minus sign right before it)
_NUMBER = re.compile(r"-?\d+(?=\D*$)")


def has_frame_token(pattern: str) -> bool:
    return _TOKEN.search(pattern) is not None


def frame_path(pattern: str, frame: int) -> str:
    """The file name of `frame` in `pattern`; `pattern` itself when it has no frame token.

    >>> frame_path("shot.####.exr", 7), frame_path("a_%03d.png", 12), frame_path("p.$F4.exr", -3)
    ('shot.0007.exr', 'a_012.png', 'p.-003.exr')
    """

    def pad(m: re.Match) -> str:
        text = m.group(0)
        width = len(text) if text.startswith("#") else int(m.group(1) or m.group(2) or 1)
        return f"{frame:0{width}d}"

    return _TOKEN.sub(pad, pattern, count=1)


def pattern_of_file(path: str) -> tuple[str, int]:
    """The #### pattern of one file of a sequence, and its frame number: the last run of digits in the
    file name, its padding kept, as Blender and Nuke read it. Raises ValueError for a name without one.

    >>> pattern_of_file("/shots/a/plate.1001.exr"), pattern_of_file("roto_v2.-003.png")
    (('/shots/a/plate.####.exr', 1001), ('roto_v2.####.png', -3))
    """
    folder, name = os.path.split(path)
    m = _NUMBER.search(name)
    if m is None:
        raise ValueError(f"{path} has no frame number in its name, so it is not one file of a sequence")
    return os.path.join(folder, name[:m.start()] + "#" * len(m.group()) + name[m.end():]), int(m.group())


def frames_on_disk(pattern: str) -> list[int]:
    """Sorted frame numbers of the files on disk that match `pattern` (which has a frame token)."""
    m = _TOKEN.search(pattern)
    head, tail = pattern[:m.start()], pattern[m.end():]
    rx = re.compile(re.escape(head) + r"(-?\d+)" + re.escape(tail))
    found = (rx.fullmatch(f) for f in glob.glob(glob.escape(head) + "*" + glob.escape(tail)))
    return sorted(int(f.group(1)) for f in found if f)


def parse_range(text: str) -> tuple[int, int]:
    """"A-B" or "A" -> (first, last). Negative frames are written "-5--1"."""
    m = re.fullmatch(r"\s*(-?\d+)\s*(?:-\s*(-?\d+)\s*)?", text)
    if not m:
        raise ValueError(f"frame range {text!r} is not 'A-B' or 'A' (e.g. 1001-1100)")
    first = int(m.group(1))
    last = int(m.group(2)) if m.group(2) is not None else first
    if last < first:
        raise ValueError(f"frame range {text!r} ends before it starts")
    return first, last
