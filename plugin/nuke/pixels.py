"""Pixels out of Nuke, as files the server reads itself (path mode).

A Source, Plate, Trimap or GT that is a plain Read of image files the server can open is handed over
by its file pattern, with no render. Anything else is rendered to EXR (raw, no colour conversion: the
script's working space) by an internal Write with `nuke.execute` on the main thread, into
<cache directory>/inputs/. So is a plain Read whose colour space the server does not know (Cineon and
the camera logs of nuke-default: Nuke converts them while rendering), and a plain Read whose colour
space differs from the other picture's (the server takes one colour space for Source and Plate).

Mattes (Trimap, GT) are sent from the channel the node's knob picks: `--matte-channel` for a plain
Read; a rendered one has that channel written as its alpha (luminance: written as RGB, read as Y).

Cache keys: a job's thread walks the graph upstream of each input (graph(); each node's knobs are
read on the main thread through nuke.executeInMainThreadWithResult) and describes each frame (a Read's
file name, size and time: describe()), so Nuke's main thread never waits on files.
"""
import os

import nuke

from models import sequence
from plugin.nuke import colour
from plugin.nuke import node as mnode

#: file types the server reads (OpenImageIO); Nuke's other Read formats (movies, raw) are rendered
READABLE = (".exr", ".png", ".tif", ".tiff", ".jpg", ".jpeg", ".dpx")
PICTURES = ("Source", "Plate")          # colour pictures: one colour space for both
MATTES = {"Trimap": "trimap_channel", "GT": "gt_channel"}   # matte inputs and their channel knobs


class Feed:
    """One connected input of the node: its name (Source, ...), the file pattern the server reads and
    whether that pattern must first be rendered from the node graph. Pictures have `space` (the
    server's name of their colour space once handed over); mattes have `channel` (the --matte-channel
    name the server reads them from, "" = its default)."""

    def __init__(self, name, upstream, folder, channel=""):
        self.name = name
        self.upstream = upstream
        self.folder = folder
        self.read = plain_read(upstream)
        self.space = ""
        self.flag = ""                      # --colour-space for the pictures ("" = the server's default)
        self.pick = channel                 # the channel the user picked (a CHANNELS value)
        self.channel = channel
        self.write_channels = "alpha"
        self._set_render(not self.read)

    def _set_render(self, render):
        self.render = render
        self.pattern = os.path.join(self.folder, "inputs", self.name.lower() + ".####.exr") if render else self.read
        if self.name in MATTES and render:
            self.channel, self.write_channels = _rendered_matte(self.upstream, self.pick)

    def describe_head(self):
        """What the handing over adds to the pixels' description (path or render, space, channel)."""
        how = "render %s" % self.write_channels if self.render else "path"
        return "%s %s space=%s/%s channel=%s" % (self.name, how, self.space, self.flag, self.channel)


def _rendered_matte(upstream, pick):
    """(--matte-channel, Write channels) of a matte rendered from the graph: the picked channel is
    written as alpha (luminance: RGB, read as Y); auto: the alpha when the input has one, else luminance."""
    if pick == "" and "rgba.alpha" not in upstream.channels():
        pick = "Y"
    if pick == "Y":
        return "Y", "rgb"
    return "A", "alpha"


def plain_read(node):
    """The file pattern of a Read whose files the server can use as they are, else ""."""
    if node.Class() != "Read" or node["disable"].value():
        return ""
    path = node["file"].value()
    if not path or "[" in path or str(node["frame"].value()).strip():
        return ""  # a TCL expression or a frame offset: only Nuke knows which file a frame is
    return path if os.path.splitext(path)[1].lower() in READABLE else ""


def feeds(group, folder, names, override=""):
    """Feed for each of `names` (input names) that is connected, with the pictures' colour spaces made
    one (see colour_space) and the mattes' channels from the node's knobs."""
    out = {}
    for name in names:
        upstream = group.input(mnode.INPUTS.index(name))
        if upstream is not None:
            channel = mnode.matte_channel(group, MATTES[name]) if name in MATTES else ""
            out[name] = Feed(name, upstream, folder, channel)
    colour_space(out, override)
    return out


def colour_space(feeds_, override=""):
    """Give the pictures among `feeds_` one colour space and return the --colour-space value (also each
    picture's `flag`; "" when every picture is a plain Read with Nuke's default colour space for its
    file type: the server applies the same defaults, and a file's own colour space first).

    A rendered picture is in the script's working space; a plain Read in its colorspace knob's space
    (`override`, the node's input colour space knob, replaces the knob). A Read in a space the server
    lacks is rendered; when the pictures' spaces still differ, every Read not in the working space is
    rendered too."""
    pictures = [f for f in feeds_.values() if f.name in PICTURES]
    if not pictures:
        return ""
    root = nuke.root()
    working = colour.working_space(root)
    for f in pictures:
        if not f.render:
            f.space = override or colour.read_space(f.upstream, root)
            if f.space is None:
                f._set_render(True)
        if f.render:
            f.space = working
    if len({f.space for f in pictures}) > 1:
        for f in pictures:
            if f.space != working:
                f._set_render(True)
                f.space = working
    defaults = not override and all(not f.render and colour.is_default(f.upstream) for f in pictures)
    flag = "" if defaults else pictures[0].space
    for f in pictures:
        f.flag = flag
    return flag


# -- cache keys ---------------------------------------------------------------------------------------


def node_info(node):
    """One node as the cache key sees it (main thread: knob reads): (full name, plain Read pattern or
    "", class and non-default knobs as text, inputs)."""
    read = plain_read(node) if node.Class() == "Read" else ""
    text = "" if read else "%s\n%s" % (node.Class(), node.writeKnobs(nuke.WRITE_NON_DEFAULT_ONLY | nuke.TO_SCRIPT))
    return node.fullName(), read, text, [] if read else [node.input(i) for i in range(node.inputs())]


def _direct(call, *args):
    return call(*args)


def graph(node, on_main=_direct, seen=None):
    """What the pixels of `node` depend on: a plain Read's file pattern, or another node's class,
    non-default knobs and inputs, recursively. {"read": PATTERN} or {"text": TEXT, "inputs": [graph or
    None, ...]}. The walk runs on the caller's thread; on_main(call, *args) runs each node's knob reads
    (node_info) on Nuke's main thread (a job's Task.on_main; the default calls directly)."""
    seen = {} if seen is None else seen
    name, read, text, ups = on_main(node_info, node)
    if name not in seen:
        seen[name] = {"read": read} if read else {
            "text": text, "inputs": [None if u is None else graph(u, on_main, seen) for u in ups]}
    return seen[name]


def graphs(feeds_, on_main=_direct):
    """graph() of every feed's upstream node, with the feed's handing over (path/render, space, channel)."""
    seen = {}
    return {name: {"text": f.describe_head(), "inputs": [graph(f.upstream, on_main, seen)]}
            for name, f in feeds_.items()}


def describe(tree, frame):
    """Text that changes when the pixels described by `tree` (from graph()) may change at `frame`: a
    Read's frame file (name, size, time), and the knobs of the other nodes. Off the main thread."""
    if tree is None:
        return "-"
    if "read" in tree:
        path = sequence.frame_path(tree["read"], frame)
        try:
            st = os.stat(path)
            return "Read %s %d %d" % (path, st.st_size, st.st_mtime_ns)
        except OSError:
            return "Read %s missing" % path
    return "\n".join([tree["text"]] + [describe(t, frame) for t in tree["inputs"]])


# -- rendering ----------------------------------------------------------------------------------------


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
    """Render `feed` at `frames` to its pattern with an internal Write (main thread only). A matte's
    picked colour channel is copied into alpha first."""
    os.makedirs(os.path.dirname(feed.pattern), exist_ok=True)
    made = []
    with group:
        source = group.node(feed.name)
        if feed.name in MATTES and feed.pick in ("R", "G", "B"):
            picked = nuke.nodes.Copy(from0="rgba." + {"R": "red", "G": "green", "B": "blue"}[feed.pick],
                                     to0="rgba.alpha")
            picked.setInput(0, source)
            picked.setInput(1, source)
            made.append(picked)
            source = picked
        channels = feed.write_channels if feed.name in MATTES else "rgb"
        write = nuke.nodes.Write(file=feed.pattern.replace(os.sep, "/"), file_type="exr", raw=True, channels=channels)
        write.setInput(0, source)
        made.append(write)
        try:
            for first, last in runs(frames):
                nuke.execute(write, first, last)
        finally:
            for n in reversed(made):
                nuke.delete(n)


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
