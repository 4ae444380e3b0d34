"""Pixels out of Nuke, as files the server reads itself (path mode).

A Source, Plate, Trimap or GT that is a plain Read of image files the server can open is handed over
by its file pattern, with no render. Anything else is rendered to EXR (raw, no colour conversion) by
an internal Write with `nuke.execute` on the main thread, into <cache directory>/inputs/.
"""
import os

import nuke

from models import sequence
from plugin.nuke import node as mnode

#: file types the server reads (OpenImageIO); Nuke's other Read formats (movies, raw) are rendered
READABLE = (".exr", ".png", ".tif", ".tiff", ".jpg", ".jpeg", ".dpx")
#: channels written for a rendered input: the trimap and the ground truth are mattes (alpha)
CHANNELS = {"Source": "rgb", "Plate": "rgb", "Trimap": "alpha", "GT": "alpha"}


class Feed:
    """One connected input of the node: its name (Source, ...), the file pattern the server reads and
    whether that pattern must first be rendered from the node graph."""

    def __init__(self, name, upstream, folder):
        self.name = name
        self.upstream = upstream
        read = plain_read(upstream)
        self.render = not read
        self.pattern = read or os.path.join(folder, "inputs", name.lower() + ".####.exr")

    def describe(self, frame):
        """What this input's pixels depend on at `frame` (for the cache key); call on the main thread."""
        return describe(self.upstream, frame)


def plain_read(node):
    """The file pattern of a Read whose files the server can use as they are, else ""."""
    if node.Class() != "Read" or node["disable"].value():
        return ""
    path = node["file"].value()
    if not path or "[" in path or str(node["frame"].value()).strip():
        return ""  # a TCL expression or a frame offset: only Nuke knows which file a frame is
    return path if os.path.splitext(path)[1].lower() in READABLE else ""


def feeds(group, folder, names):
    """Feed for each of `names` (input names) that is connected."""
    out = {}
    for name in names:
        upstream = group.input(mnode.INPUTS.index(name))
        if upstream is not None:
            out[name] = Feed(name, upstream, folder)
    return out


def describe(node, frame):
    """Text that changes when the pixels of `node` at `frame` may change: a Read's frame file (name,
    size, time) or, for other nodes, their class, knob values and inputs, recursively."""
    if node.Class() == "Read" and plain_read(node):
        path = sequence.frame_path(node["file"].value(), frame)
        try:
            st = os.stat(path)
            return "Read %s %d %d" % (path, st.st_size, st.st_mtime_ns)
        except OSError:
            return "Read %s missing" % path
    parts = [node.Class(), node.writeKnobs(nuke.WRITE_NON_DEFAULT_ONLY | nuke.TO_SCRIPT)]
    for i in range(node.inputs()):
        upstream = node.input(i)
        parts.append("-" if upstream is None else describe(upstream, frame))
    return "\n".join(parts)


def runs(frames):
    """Sorted frames as contiguous (first, last) runs: [1, 2, 3, 7] -> [(1, 3), (7, 7)]."""
    out = []
    for f in sorted(frames):
        if out and f == out[-1][1] + 1:
            out[-1] = (out[-1][0], f)
        else:
            out.append((f, f))
    return out


def render(group, feed, frames):
    """Render `feed` at `frames` to its pattern with an internal Write (main thread only)."""
    os.makedirs(os.path.dirname(feed.pattern), exist_ok=True)
    with group:
        write = nuke.nodes.Write(file=feed.pattern.replace(os.sep, "/"), file_type="exr", raw=True,
                                 channels=CHANNELS[feed.name])
        write.setInput(0, group.node(feed.name))
        try:
            for first, last in runs(frames):
                nuke.execute(write, first, last)
        finally:
            nuke.delete(write)


def render_all(group_name, feeds_, frames):
    """Render every feed that needs it; called on the main thread from a job's thread. Returns an error
    text for the user ("" when all went well)."""
    group = nuke.toNode(group_name)
    if group is None:
        return "the node %s was deleted" % group_name
    for feed in feeds_.values():
        if feed.render:
            try:
                render(group, feed, frames)
            except (RuntimeError, OSError) as err:
                return "rendering the %s input failed: %s" % (feed.name, err)
    return ""
