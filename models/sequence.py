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
#: widest frame token, in digits (an int64 frame number has at most 19; shots use 4 to 8)
MAX_WIDTH = 10
#: longest pattern, in characters (PATH_MAX on Linux)
MAX_LENGTH = 4096


def has_frame_token(pattern: str) -> bool:
    return _TOKEN.search(pattern) is not None


def check_pattern(pattern: str) -> str:
    """`pattern` itself when a path can be made of it: a frame token at most MAX_WIDTH digits wide, at
    most MAX_LENGTH characters. Else ValueError saying which (a request's %10000000d would otherwise
    make 10 MB paths)."""
    m = _TOKEN.search(pattern)
    if m is not None:
        _width(m)
    if len(pattern) > MAX_LENGTH:
        raise ValueError(f"a {len(pattern)}-character pattern ({pattern[:60]}...) is longer than a path may be "
                         f"({MAX_LENGTH})")
    return pattern


def _width(m: re.Match) -> int:
    """The width in digits of a frame token match; ValueError past MAX_WIDTH."""
    text = m.group(0)
    digits = m.group(1) or m.group(2) or ""
    if text.startswith("#"):
        width = len(text)
    elif len(digits) > 3:
        width = MAX_WIDTH + 1  # too wide, and a number not worth parsing (%10000000d)
    else:
        width = int(digits or 1)
    if width > MAX_WIDTH:
        shown = text if len(text) <= 16 else text[:12] + "..."
        raise ValueError(f"frame token {shown!r} is wider than {MAX_WIDTH} digits: use #### (one # per digit), "
                         f"%04d or $F4, at most {MAX_WIDTH} digits")
    return width


def frame_path(pattern: str, frame: int) -> str:
    """The file name of `frame` in `pattern`; `pattern` itself when it has no frame token. A token wider
    than MAX_WIDTH digits raises ValueError.

    >>> frame_path("shot.####.exr", 7), frame_path("a_%03d.png", 12), frame_path("p.$F4.exr", -3)
    ('shot.0007.exr', 'a_012.png', 'p.-003.exr')
    """

    m = _TOKEN.search(pattern)
    if m is None:
        return pattern
    return f"{pattern[:m.start()]}{frame:0{_width(m)}d}{pattern[m.end():]}"


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


def held_back(mattes: str, train, frames: tuple[int, int] | None = None) -> list[int]:
    """The frames a fine-tune holds back when none are named: of the matte files of `mattes` on disk
    (within frames = (first, last) when given) that are not trained on, the first and the last, both
    ends of the shot; [] for a pattern without a frame token or when there are none."""
    if not has_frame_token(mattes):
        return []
    found = frames_on_disk(mattes)
    if frames is not None:
        found = [f for f in found if frames[0] <= f <= frames[1]]
    others = [f for f in found if f not in set(train)]
    return sorted({others[0], others[-1]}) if others else []


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


def check_distinct(reads: dict[str, str], writes: dict[str, str], first: int, last: int) -> None:
    """Refuse (ValueError naming both patterns) a job that could write over a file it reads, or write two
    of its outputs to one file, for any frame of first..last.

    reads, writes: patterns by role ({"input": ..., "trimap": ..., "background": ...}, {"output": ...,
    "foreground": ...}; "" = unused; a pattern without a frame token is one file for every frame).
    Files are compared as a writer reaches them, not as they are spelled: folders by identity (device
    and inode: the same folder through a symlink, a bind mount, "//" or "/./"), file names without
    case (a case-insensitive share), a file that is a symlink by its target (the server writes
    through it); every frame of the range against every other (a.###.exr and a.%d.exr meet from frame
    1000 on). Each folder is resolved and listed once, so a 100 000-frame range costs string work, not
    a system call per frame.
    """
    folders: dict[str, tuple[str, tuple]] = {}  # folder as spelled -> (resolved folder, identity)
    listings: dict[str, dict[str, bool]] = {}   # resolved folder -> {name: is a symlink}

    def place(folder: str) -> tuple[str, tuple]:
        got = folders.get(folder)
        if got is None:
            real = os.path.realpath(folder)
            try:
                st = os.stat(real)
                ident: tuple = (st.st_dev, st.st_ino)
            except OSError:
                ident = ("missing", real)  # not there yet: nothing in it can be read
            got = folders[folder] = (real, ident)
        return got

    def key(path: str) -> tuple:
        folder, name = os.path.split(path)
        real, ident = place(folder)
        if real not in listings:
            try:
                with os.scandir(real) as entries:
                    listings[real] = {e.name: e.is_symlink() for e in entries}
            except OSError:
                listings[real] = {}
        if listings[real].get(name):
            target_folder, name = os.path.split(os.path.realpath(os.path.join(real, name)))
            ident = place(target_folder)[1]
        return ident, name.casefold()

    def files(pattern: str):
        """(frame, absolute path) of every file the pattern names in the range (one for a still)."""
        pattern = os.path.abspath(check_pattern(pattern))
        m = _TOKEN.search(pattern)
        if m is None:
            yield first, pattern
            return
        head, tail, width = pattern[:m.start()], pattern[m.end():], _width(m)
        for f in range(first, last + 1):
            yield f, f"{head}{f:0{width}d}{tail}"

    read: dict[tuple, tuple[str, str, int, str]] = {}
    for role, pattern in reads.items():
        if pattern:
            for f, path in files(pattern):
                read.setdefault(key(path), (role, pattern, f, path))
    written: dict[tuple, tuple[str, str, int, str]] = {}
    for role, pattern in writes.items():
        if not pattern:
            continue
        for f, path in files(pattern):
            k = key(path)
            if k in read:
                other, other_pattern, other_frame, other_path = read[k]
                where = f"{path}, frame {f}" + ("" if path == other_path else f", is {other_path}")
                if other_frame != f and has_frame_token(other_pattern):
                    where += f", frame {other_frame} of the {other}"
                raise ValueError(f"the {role} {pattern} would write over the {other}'s files ({other_pattern}): "
                                 f"{where}; write the {role} to another folder or under another name")
            if k in written and written[k][0] != role:
                other, other_pattern, other_frame, other_path = written[k]
                raise ValueError(f"the {role} {pattern} and the {other} {other_pattern} name the same file "
                                 f"({path}, frame {f}); give them different names")
            written.setdefault(k, (role, pattern, f, path))
