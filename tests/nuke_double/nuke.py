"""A Nuke test double: the part of Nuke's Python API that the Mattebox plugin uses, behaving as Nuke does.

Every public name here exists in the types-nuke stubs (a test checks it). Behaviour the plugin relies
on is real: nodes with their usual knobs (an Enumeration saves its item's text), Groups with Input and
Output nodes and begin()/end(), node inputs, knob expressions of the form `parent.KNOB` and
`!parent.KNOB`, frame ranges, and `execute` of a Write that renders its input's pixels to EXR files
(Read, Dot, Grade, Copy, Premult, Group, Input and Output nodes are evaluated; pixels are raw, with no
colour management). Nuke's main thread is the thread that imported this module: `execute` must run
there, `executeInMainThread` must not (real Nuke hangs), and calls it queues run when the test pumps
them (tests/nuke_double/harness.py). ProgressTask cancellation is set by the test.

The double imports with the standard library alone, as the plugin must (tests/nuke/session.py runs it
under each Nuke release's Python with only Qt installed); its pixel engine (reading a Read's channels,
evaluating pixels, rendering a Write), the part real Nuke does in C++, loads numpy and OpenImageIO
when first used.
"""
import os
import queue
import re
import threading

TO_SCRIPT = 0x10
WRITE_NON_DEFAULT_ONLY = 0x20


class _State:
    def __init__(self):
        self.main = threading.current_thread()
        self.calls = queue.Queue()          # (call, args, kwargs, done event or None, result box)
        self.messages = []
        self.tasks = []
        self.renders = []                   # (Write file knob value, first, last) of each execute
        self.menus = {}
        self.panels = []
        self.plugin_paths = []
        self.this = []
        self.root = None
        self.context = []


_state = _State()


def _on_main():
    return threading.current_thread() is _state.main


# -- knobs ------------------------------------------------------------------------------------------------


class Knob:
    _default = ""

    def __init__(self, name="", label=None, *args):
        self._name = name
        self._label = label if label is not None else name
        self._value = self._default
        self._tooltip = ""
        self._expression = None
        self._node = None
        if args:
            self.setValue(args[0])

    def Class(self):
        return type(self).__name__

    def name(self):
        return self._name

    def label(self):
        return self._label

    def node(self):
        return self._node

    def tooltip(self):
        return self._tooltip

    def setTooltip(self, tooltip):
        self._tooltip = tooltip

    def setExpression(self, expression, index=0, view=None):
        self._expression = expression
        return True

    def hasExpression(self, index=0):
        return self._expression is not None

    def value(self):
        if self._expression is not None:
            return self._convert(_evaluate(self._expression, self._node))
        return self._value

    def getValue(self):
        return self.value()

    def setValue(self, val, *args):
        self._value = self._convert(val)
        return True

    def _convert(self, val):
        return val

    def toScript(self, quote=False, context=None):
        return str(self.value())


class Array_Knob(Knob):
    _default = 0.0

    def _convert(self, val):
        return float(val)


class Double_Knob(Array_Knob):
    pass


class Int_Knob(Array_Knob):
    _default = 0

    def _convert(self, val):
        return int(val)


class Boolean_Knob(Array_Knob):
    _default = False

    def _convert(self, val):
        return bool(val)


class Unsigned_Knob(Array_Knob):
    _default = 0

    def _convert(self, val):
        return int(val)


class Enumeration_Knob(Unsigned_Knob):
    """Items are text; the value saved (and returned by value()) is the item's text."""

    def __init__(self, name="", label=None, items=()):
        Knob.__init__(self, name, label)
        self._items = [str(i) for i in items]
        self._value = self._items[0] if self._items else ""

    def values(self):
        return list(self._items)

    def numValues(self):
        return len(self._items)

    def enumName(self, n):
        return self._items[n]

    def setValues(self, items):
        self._items = [str(i) for i in items]
        if self._value not in self._items:
            self._value = self._items[0] if self._items else ""

    def setValue(self, val, *args):
        if isinstance(val, int) and not isinstance(val, bool):
            val = self._items[val]
        if val not in self._items:
            raise ValueError("%s: %r is not one of %s" % (self._name, val, self._items))
        self._value = val
        return True

    def _convert(self, val):
        return val


class String_Knob(Knob):
    def _convert(self, val):
        return str(val)


class EvalString_Knob(String_Knob):
    pass


class File_Knob(EvalString_Knob):
    pass


class Text_Knob(Knob):
    def _convert(self, val):
        return str(val)


class Tab_Knob(Knob):
    pass


class Channel_Knob(Knob):
    def _convert(self, val):
        return str(val)


class ChannelMask_Knob(Channel_Knob):
    pass


class Script_Knob(String_Knob):
    """A button: execute() runs its Python command with nuke.thisNode() = the knob's node."""

    def __init__(self, name="", label=None, command=""):
        String_Knob.__init__(self, name, label)
        self._value = command

    def command(self):
        return self._value

    def execute(self):
        _state.this.append(self._node)
        try:
            exec(self._value, {"nuke": __import__("nuke")})
        finally:
            _state.this.pop()


class PyScript_Knob(Script_Knob):
    pass


_EXPRESSION = re.compile(r"(!?)parent\.(\w+)")


def _evaluate(expression, node):
    """`parent.KNOB` / `!parent.KNOB`; an Enumeration is its item's index in an expression, as in Nuke."""
    m = _EXPRESSION.fullmatch(expression.strip())
    if not m:
        raise NotImplementedError("the Nuke double evaluates only 'parent.KNOB' and '!parent.KNOB', not %r" % expression)
    knob = node.parent()[m.group(2)]
    value = knob.values().index(knob.value()) if isinstance(knob, Enumeration_Knob) else knob.value()
    return (not value) if m.group(1) else value


# -- nodes --------------------------------------------------------------------------------------------


_DISABLE = ("disable", Boolean_Knob, False)
#: colour space names a Read offers (nuke-default LUTs, defaults by file type, OCIO ACES/cg-config names)
_COLORSPACES = ["default", "default (linear)", "default (sRGB)", "default (Cineon)", "linear", "sRGB", "rec709",
                "Cineon", "Gamma1.8", "Gamma2.2", "Gamma2.4", "Panalog", "REDLog", "ViperLog", "AlexaV3LogC",
                "PLogLin", "SLog", "raw", "ACES - ACES2065-1", "ACES - ACEScg", "ACES - ACEScc", "ACES - ACEScct",
                "Utility - sRGB - Texture", "Utility - Raw", "ACEScg", "ACEScct", "ACES/ACEScct", "scene_linear"]
#: class -> its knobs (name, knob class, default; an Enumeration's default is its items)
_CLASSES = {
    "Read": [("file", File_Knob, ""), ("first", Int_Knob, 1), ("last", Int_Knob, 1), ("frame", String_Knob, ""),
             ("on_error", Enumeration_Knob, ["error", "black", "checkerboard", "nearest frame"]),
             ("colorspace", Enumeration_Knob, _COLORSPACES),
             ("raw", Boolean_Knob, False), ("reload", Script_Knob, ""), _DISABLE],
    "Write": [("file", File_Knob, ""), ("file_type", Enumeration_Knob, [" ", "dpx", "exr", "jpeg", "png", "tiff"]),
              ("channels", ChannelMask_Knob, "rgb"), ("raw", Boolean_Knob, False),
              ("datatype", Enumeration_Knob, ["16 bit half", "32 bit float"]), _DISABLE],
    "Copy": [("from0", Channel_Knob, "rgba.alpha"), ("to0", Channel_Knob, "rgba.alpha"), _DISABLE],
    "Premult": [_DISABLE],
    "Grade": [("multiply", Double_Knob, 1.0), _DISABLE],
    "Dot": [],
    "Switch": [("which", Int_Knob, 0), _DISABLE],
    "Input": [("number", Int_Knob, 0)],
    "Output": [],
    "Group": [],
    "Root": [("first_frame", Int_Knob, 1), ("last_frame", Int_Knob, 100),
             ("workingSpaceLUT", Enumeration_Knob, _COLORSPACES[4:]), ("floatLut", Enumeration_Knob, _COLORSPACES[4:]),
             ("int8Lut", Enumeration_Knob, _COLORSPACES[5:]), ("int16Lut", Enumeration_Knob, _COLORSPACES[5:]),
             ("logLut", Enumeration_Knob, _COLORSPACES[7:])],
}
_INPUTS = {"Read": 0, "Write": 1, "Copy": 2, "Premult": 1, "Grade": 1, "Dot": 1, "Switch": 64, "Input": 0,
           "Output": 1, "Root": 0}


class Node:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("make nodes with nuke.nodes.CLASS()")

    def _setup(self, cls, parent):
        self._class = cls
        self._parent = parent
        self._inputs = []
        self._knobs = {}
        self._defaults = {}
        self._name = ""
        self._children = []
        self.addKnob(String_Knob("name", "name"))
        for name, kind, default in _CLASSES[cls]:
            knob = kind(name, name, default) if kind is Enumeration_Knob else kind(name, name)
            if kind is not Enumeration_Knob:
                knob.setValue(default)
            self.addKnob(knob)
            self._defaults[name] = knob.toScript()

    def Class(self):
        return self._class

    def name(self):
        return self._knobs["name"].value()

    def setName(self, name, uncollide=False, updateExpressions=False):
        self._knobs["name"].setValue(name)

    def fullName(self):
        parent = self._parent
        return self.name() if parent is None or parent is _state.root else parent.fullName() + "." + self.name()

    def parent(self):
        return self._parent

    def addKnob(self, knob):
        knob._node = self
        self._knobs[knob.name()] = knob

    def knob(self, p):
        return self._knobs.get(p)

    def knobs(self):
        return dict(self._knobs)

    def __getitem__(self, name):
        if name not in self._knobs:
            raise NameError("knob %s does not exist" % name)
        return self._knobs[name]

    def writeKnobs(self, flags=0):
        """Knob values as `name value` lines (non-default ones when flags has WRITE_NON_DEFAULT_ONLY)."""
        lines = []
        for name, knob in self._knobs.items():
            text = knob.toScript()
            if flags & WRITE_NON_DEFAULT_ONLY and self._defaults.get(name) == text:
                continue
            lines.append("%s %s" % (name, text))
        return "\n".join(lines)

    def maxInputs(self):
        return _INPUTS[self._class]

    def inputs(self):
        return max([i + 1 for i, n in enumerate(self._inputs) if n is not None] or [0])

    def input(self, index):
        return self._inputs[index] if index < len(self._inputs) else None

    def setInput(self, i, node):
        if i >= self.maxInputs():
            return False
        self._inputs += [None] * (i + 1 - len(self._inputs))
        self._inputs[i] = node
        return True

    def firstFrame(self):
        return self._range()[0]

    def lastFrame(self):
        return self._range()[1]

    def _range(self):
        if self._class == "Read":
            return self["first"].value(), self["last"].value()
        if self._class == "Input":
            upstream = self._parent.input(self["number"].value())
        else:
            upstream = self.input(0)
        return upstream._range() if upstream is not None else (_state.root.firstFrame(), _state.root.lastFrame())

    def _disabled(self):
        knob = self._knobs.get("disable")
        return knob is not None and knob.value()

    def channels(self):
        """The channels this node outputs ("rgba.red", ...): a Read's file's, a Copy adds its target, the
        other nodes pass their first input's on (a Switch: the chosen input's)."""
        cls = self._class
        if cls == "Read":
            path = _frame_file(self["file"].value(), self["first"].value())
            import OpenImageIO as oiio

            spec = oiio.ImageInput.open(path) if os.path.isfile(path) else None
            if spec is None:
                return []
            names = spec.spec().channelnames
            spec.close()
            if len(names) == 1 and _channel(names[0]) != "rgba.alpha":
                return _ORDER[:3]  # a greyscale file is read into r, g and b
            return sorted({_channel(n) for n in names} - {None}, key=_ORDER.index)
        if cls == "Input":
            upstream = self._parent.input(self["number"].value())
        elif cls == "Switch":
            upstream = self.input(self["which"].value())
        else:
            upstream = self.input(0)
        found = set(upstream.channels()) if upstream is not None else set()
        if cls == "Copy" and not self._disabled():
            found.add(self["to0"].value())
        return sorted(found, key=_ORDER.index)


class Group(Node):
    def begin(self):
        _state.context.append(self)
        return self

    def end(self):
        _state.context.pop()

    def __enter__(self):
        return self.begin()

    def __exit__(self, type, value, traceback):
        self.end()

    def node(self, s):
        for n in self._children:
            if n.name() == s:
                return n
        return None

    def nodes(self):
        return list(self._children)

    def maxInputs(self):
        return len([n for n in self._children if n.Class() == "Input"])

    def _range(self):
        out = [n for n in self._children if n.Class() == "Output"]
        return out[0]._range() if out else Node._range(self)

    def channels(self):
        out = [n for n in self._children if n.Class() == "Output"]
        return out[0].channels() if out else []


class Root(Group):
    def firstFrame(self):
        return self["first_frame"].value()

    def lastFrame(self):
        return self["last_frame"].value()


class NodeConstructor:
    def __init__(self, cls):
        self._cls = cls

    def __call__(self, **knobs):
        parent = _state.context[-1]
        node = object.__new__(Group if self._cls == "Group" else Node)
        node._setup(self._cls, parent)
        if self._cls == "Input":
            node["number"].setValue(len([n for n in parent._children if n.Class() == "Input"]))
        taken = {n.name() for n in parent._children}
        count = 1
        while "%s%d" % (self._cls, count) in taken:
            count += 1
        node.setName("%s%d" % (self._cls, count))
        for name, value in knobs.items():
            node[name].setValue(value)
        parent._children.append(node)
        return node


class Nodes:
    def __getattr__(self, item):
        if item not in _CLASSES or item == "Root":
            raise RuntimeError("%s: unknown command (the Nuke double has %s)" % (item, sorted(_CLASSES)))
        return NodeConstructor(item)


nodes = Nodes()


def root():
    return _state.root


def _reset():
    """A fresh, untitled script (the harness calls it)."""
    r = object.__new__(Root)
    r._setup("Root", None)
    r.addKnob(File_Knob("name", "name"))
    r._knobs["name"].setValue("")
    _state.root = r
    _state.context = [r]


_reset()


def thisNode():
    return _state.this[-1] if _state.this else _state.context[-1]


def toNode(s):
    """The node called `s` in the current group (a dotted name goes down into groups)."""
    node = _state.context[-1]
    for part in s.split("."):
        node = node.node(part) if isinstance(node, Group) else None
    return node


def selectedNodes(filter=None):
    return []


def delete(n):
    n._parent._children.remove(n)
    for other in _all(_state.root):
        other._inputs = [None if i is n else i for i in other._inputs]


def _all(group):
    for n in group._children:
        yield n
        if isinstance(n, Group):
            yield from _all(n)


# -- pixels ---------------------------------------------------------------------------------------------


_TOKEN = re.compile(r"#+|%0(\d+)d|%d")


def _frame_file(pattern, frame):
    m = _TOKEN.search(pattern)
    if not m:
        return pattern
    width = len(m.group(0)) if m.group(0).startswith("#") else int(m.group(1) or 1)
    return pattern[:m.start()] + "%0*d" % (width, frame) + pattern[m.end():]


_ORDER = ["rgba.red", "rgba.green", "rgba.blue", "rgba.alpha"]


def _channel(name):
    """The Nuke channel a file channel is read into (None: not one of rgba)."""
    key = name.split(".")[-1].upper()
    return _ORDER["RGBA".index(key)] if key in ("R", "G", "B", "A") else None


def _read(path):
    """(H, W, 4) float32 rgba from a file: R, G, B and A channels by name (a lone channel is A if named so)."""
    import numpy as np
    import OpenImageIO as oiio

    buf = oiio.ImageBuf(path)
    if buf.has_error:
        raise RuntimeError("Read: %s" % buf.geterror())
    px = buf.get_pixels(oiio.FLOAT)
    names = buf.spec().channelnames
    out = np.zeros(px.shape[:2] + (4,), np.float32)
    for c, name in enumerate(names):
        key = name.split(".")[-1].upper()
        if key in "RGBA" and len(key) == 1:
            out[..., "RGBA".index(key)] = px[..., c]
        elif len(names) == 1:
            out[..., :3] = px[..., :1]
    return out


def _pixels(node, frame):
    """The (H, W, 4) float32 rgba of `node` at `frame` (None: black, from a missing input or frame)."""
    if node is None:
        return None
    cls = node.Class()
    if node._disabled() and cls != "Read":
        return _pixels(node.input(0), frame)
    if cls == "Read":
        path = _frame_file(node["file"].value(), frame)
        first, last = node["first"].value(), node["last"].value()
        if node._disabled() or not os.path.isfile(path) or not first <= frame <= last:
            if node._disabled() or node["on_error"].value() == "black":
                return None
            raise RuntimeError("Read: %s: no such file" % path)
        return _read(path)
    if cls == "Input":
        return _pixels(node._parent.input(node["number"].value()), frame)
    if cls == "Group":
        return _pixels([n for n in node._children if n.Class() == "Output"][0], frame)
    if cls == "Switch":
        return _pixels(node.input(min(max(node["which"].value(), 0), node.inputs() - 1)), frame)
    src = node.input(0)
    px = _pixels(src, frame) if src is not None else None
    if cls in ("Dot", "Output") or px is None:
        return px
    if cls == "Grade":
        out = px.copy()
        out[..., :3] *= node["multiply"].value()
        return out
    if cls == "Premult":
        out = px.copy()
        out[..., :3] *= out[..., 3:4]
        return out
    if cls == "Copy":
        a = _pixels(node.input(1), frame)
        channels = "rgba.red rgba.green rgba.blue rgba.alpha".split()
        out = px.copy()
        out[..., channels.index(node["to0"].value())] = 0 if a is None else a[..., channels.index(node["from0"].value())]
        return out
    raise NotImplementedError("the Nuke double cannot evaluate a %s" % cls)


_WRITE_CHANNELS = {"rgb": ("R", "G", "B"), "rgba": ("R", "G", "B", "A"), "alpha": ("A",)}


def execute(nameOrNode, start, end, incr=1, views=None, continueOnError=False):
    """Render a Write node's frames (main thread only, as in Nuke)."""
    if not _on_main():
        raise RuntimeError("nuke.execute must run on the main thread")
    import numpy as np
    import OpenImageIO as oiio

    w = toNode(nameOrNode) if isinstance(nameOrNode, str) else nameOrNode
    if w.Class() != "Write":
        raise RuntimeError("%s cannot be executed" % w.name())
    names = _WRITE_CHANNELS[w["channels"].value()]
    pick = ["RGBA".index(n) for n in names]
    half = w["datatype"].value() == "16 bit half"
    for frame in range(start, end + 1, incr):
        px = _pixels(w.input(0), frame)
        path = _frame_file(w["file"].value(), frame)
        if not os.path.isdir(os.path.dirname(path) or "."):
            raise RuntimeError("Write: %s: No such file or directory" % path)
        out = np.ascontiguousarray(px[..., pick])
        spec = oiio.ImageSpec(out.shape[1], out.shape[0], len(names), oiio.HALF if half else oiio.FLOAT)
        spec.channelnames = names
        o = oiio.ImageOutput.create(path)
        if o is None or not o.open(path, spec) or not o.write_image(out):
            raise RuntimeError("Write: %s: %s" % (path, oiio.geterror()))
        o.close()
    _state.renders.append((w["file"].value(), start, end))


# -- threads, progress and messages -----------------------------------------------------------------------


def executeInMainThread(call, args=(), kwargs={}):
    if _on_main():
        raise RuntimeError("executeInMainThread called from the main thread: real Nuke hangs")
    _state.calls.put((call, tuple(args), dict(kwargs), None, None))


def executeInMainThreadWithResult(call, args=(), kwargs={}):
    if _on_main():
        raise RuntimeError("executeInMainThreadWithResult called from the main thread: real Nuke hangs")
    done, box = threading.Event(), []
    _state.calls.put((call, tuple(args), dict(kwargs), done, box))
    done.wait()
    return box[0]


class ProgressTask:
    def __init__(self, name=""):
        self._name = name
        self._progress = 0
        self._message = ""
        self._cancelled = False
        _state.tasks.append(self)

    def setProgress(self, i):
        self._progress = int(i)

    def setMessage(self, s):
        self._message = s

    def isCancelled(self):
        return self._cancelled


def message(prompt):
    _state.messages.append(prompt)


# -- menus and plug-in paths ----------------------------------------------------------------------------


class MenuItem:
    def __init__(self, name, script="", icon=""):
        self._name, self._script, self._icon = name, script, icon

    def name(self):
        return self._name

    def script(self):
        return self._script

    def icon(self):
        return self._icon

    def invoke(self):
        exec(self._script, {"nuke": __import__("nuke")})


class Menu(MenuItem):
    def __init__(self, name, icon=""):
        MenuItem.__init__(self, name, "", icon)
        self._items = []

    def addMenu(self, name, icon=""):
        found = self.findItem(name)
        if found is None:
            found = Menu(name, icon)
            self._items.append(found)
        return found

    def addCommand(self, name, command="", shortcut="", icon=""):
        item = MenuItem(name, command, icon)
        self._items.append(item)
        return item

    def findItem(self, name):
        head, _, rest = name.partition("/")
        for item in self._items:
            if item.name() == head:
                return item.findItem(rest) if rest and isinstance(item, Menu) else item
        return None

    def items(self):
        return list(self._items)


class ToolBar(Menu):
    pass


def menu(name):
    return _state.menus.setdefault(name, Menu(name))


def toolbar(name, create=True):
    return _state.menus.setdefault("toolbar:" + name, ToolBar(name))


def pluginAddPath(args, addToSysPath=True):
    _state.plugin_paths.append(args)
    if addToSysPath:
        import sys
        sys.path.insert(0, args)
