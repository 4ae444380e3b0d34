"""The MatteboxMatte node: a Group with inputs Source, Plate, Trimap and GT whose output is, by its
output mode, the Source with the server's alpha in rgba.alpha (optionally premultiplied), or the
unmixed foreground the server wrote beside the alpha, premultiplied by it (rgba).

Inside: Input nodes, Reads of the alpha and foreground EXRs in the cache directory, a Copy of the alpha
into the Source stream (B = Source, A = alpha) and a Premult switched by the node's premultiply knob;
a Copy of the alpha into the foreground and a Premult; a Switch on the output mode. The buttons'
commands import this package when pressed, so a saved script needs only init.py.
"""
import os

import nuke

from models import sequence
from plugin.host import config

CLASS = "MatteboxMatte"
INPUTS = ("Source", "Plate", "Trimap", "GT")          # in input order: Source is input 0
SOURCE, PLATE, TRIMAP, GT = range(4)
#: model input name (as the server lists it) -> the node input that feeds it
MODEL_INPUTS = {"image": SOURCE, "background": PLATE, "trimap": TRIMAP}
ALPHA_FILE = "alpha.####.exr"
FOREGROUND_FILE = "foreground.####.exr"
NO_MODELS = "(press Refresh models)"
READ, COPY, PREMULT = "MatteboxAlpha", "MatteboxCopy", "MatteboxPremult"
FG_READ, FG_COPY, FG_PREMULT, SWITCH = "MatteboxForeground", "MatteboxFgCopy", "MatteboxFgPremult", "MatteboxOutput"
#: matte channel knob item -> the channel name `mattebox --matte-channel` takes ("" = the file's alpha
#: if it has one, else its only channel, else luminance)
CHANNELS = {"auto": "", "alpha": "A", "red": "R", "green": "G", "blue": "B", "luminance": "Y"}
#: output mode knob items, in Switch input order
SOURCE_ALPHA, UNMIXED = "source with alpha", "unmixed RGBA (premultiplied)"
OUTPUT_MODES = (SOURCE_ALPHA, UNMIXED)


def _button(name, label, call, tooltip):
    knob = nuke.PyScript_Knob(name, label, "from plugin.nuke import actions; actions.%s(nuke.thisNode())" % call)
    knob.setTooltip(tooltip)
    return knob


def _knobs(cfg):
    """The user knobs, in panel order."""
    server = nuke.String_Knob("server", "server")
    server.setValue(cfg.address())
    server.setTooltip("host:port of the Mattebox server, or host:port,host:port to balance over several "
                      "(default from the plugin settings)")
    model = nuke.Enumeration_Knob("model", "model", [NO_MODELS])
    model.setTooltip("the matting model; press Refresh models to list the server's models")
    frames = nuke.String_Knob("frames", "frame range")
    frames.setTooltip("frames to matte, A-B; empty: the Source input's range")
    steps = nuke.Int_Knob("steps", "recursion steps")
    steps.setTooltip("recursive refinement passes for bgm_excite; 0: the model's default")
    space = nuke.String_Knob("colour_space", "input colour space")
    space.setTooltip("colour space of the Source and Plate files (an OpenColorIO name such as ACEScg or "
                     "ACEScct); empty: each Read's colorspace knob (an input Nuke renders first is in the "
                     "script's working space)")
    trimap_channel = nuke.Enumeration_Knob("trimap_channel", "trimap channel", list(CHANNELS))
    trimap_channel.setTooltip("channel of the Trimap input that holds the trimap; auto: its alpha if it has "
                              "one, else its only channel, else luminance")
    align = nuke.Boolean_Knob("align_plate", "align plate")
    align.setTooltip("align a hand-held clean plate to each frame before matting; frames where it fails are "
                     "named in the status")
    mode = nuke.Enumeration_Knob("output_mode", "output", list(OUTPUT_MODES))
    mode.setTooltip("source with alpha: the Source with the new alpha (premultiply optional); unmixed RGBA: "
                    "the foreground colour the server unmixes from the old background, premultiplied by the "
                    "new alpha (no fringe of the old background at soft edges)")
    cache = nuke.File_Knob("cache_dir", "cache directory")
    cache.setTooltip("folder of the alpha frames; empty: mattebox/<node name> next to the script")
    premult = nuke.Boolean_Knob("premultiply", "premultiply")
    premult.setTooltip("source with alpha: multiply the Source's colour by the new alpha")
    status = nuke.Text_Knob("status", "status", "ready")
    gt_frames = nuke.String_Knob("gt_frames", "GT frames")
    gt_frames.setTooltip("frames where the GT input has a finished matte, e.g. 1001,1010,1020; empty: the frames "
                         "of the GT Read's sequence on disk")
    gt_channel = nuke.Enumeration_Knob("gt_channel", "GT channel", list(CHANNELS))
    gt_channel.setTooltip("channel of the GT input that holds the finished matte; auto: its alpha if it has "
                          "one, else its only channel, else luminance")
    ft_name = nuke.String_Knob("finetune_name", "new model name")
    ft_name.setTooltip("name of the fine-tuned model (lower-case letters, digits, - and _); empty: <model>_<node name>")
    ft_steps = nuke.Int_Knob("finetune_steps", "fine-tune steps")
    ft_steps.setValue(120)
    chunk = nuke.Int_Knob("farm_chunk", "frames per farm task")
    chunk.setValue(10)
    return [nuke.Tab_Knob("mattebox", "Mattebox"), server, model,
            _button("refresh", "Refresh models", "refresh", "ask the server for its models"),
            nuke.Text_Knob("models_info", "models", ""), frames, steps, space, trimap_channel, align, mode,
            cache, premult,
            _button("matte", "Matte", "matte", "matte the frames that are missing or out of date"),
            _button("cancel", "Cancel", "cancel", "stop this node's job; finished frames are kept"),
            status,
            nuke.Tab_Knob("finetune_tab", "Fine-tune and farm"), gt_frames, gt_channel, ft_name, ft_steps,
            _button("finetune", "Fine-tune on GT frames", "finetune",
                    "train a copy of the model on the GT frames, as a job on the server"),
            chunk, _button("farm", "Submit to farm", "farm",
                           "write an Open Job Description template that mattes this shot on a render farm")]


def create():
    """A new MatteboxMatte node in the current group, wired to the selected node when there is one."""
    cfg = config.load()
    group = nuke.nodes.Group(name=CLASS + "1")
    for knob in _knobs(cfg):
        group.addKnob(knob)
    with group:
        ins = [nuke.nodes.Input(name=name) for name in INPUTS]
        read = nuke.nodes.Read(name=READ, on_error="black", disable=True)
        copy = nuke.nodes.Copy(name=COPY, from0="rgba.alpha", to0="rgba.alpha", disable=True)
        copy.setInput(0, ins[SOURCE])
        copy.setInput(1, read)
        premult = nuke.nodes.Premult(name=PREMULT)
        premult["disable"].setExpression("!parent.premultiply")
        premult.setInput(0, copy)
        fg_read = nuke.nodes.Read(name=FG_READ, on_error="black", disable=True)
        fg_copy = nuke.nodes.Copy(name=FG_COPY, from0="rgba.alpha", to0="rgba.alpha", disable=True)
        fg_copy.setInput(0, fg_read)
        fg_copy.setInput(1, read)
        fg_premult = nuke.nodes.Premult(name=FG_PREMULT)
        fg_premult.setInput(0, fg_copy)
        switch = nuke.nodes.Switch(name=SWITCH)
        switch["which"].setExpression("parent.output_mode")  # an enumeration is its index in an expression
        switch.setInput(0, premult)
        switch.setInput(1, fg_premult)
        nuke.nodes.Output().setInput(0, switch)
    return group


def value(node, name, default):
    """A knob's value, or `default` on a node made by an older Mattebox that lacks the knob."""
    knob = node.knob(name)
    return default if knob is None else knob.value()


def matte_channel(node, name):
    """The channel name (CHANNELS' values) that the knob `name` (trimap_channel, gt_channel) picks."""
    return CHANNELS.get(value(node, name, "auto"), "")


def unmixed(node):
    """Whether the node outputs the unmixed foreground (the job also writes it)."""
    return value(node, "output_mode", SOURCE_ALPHA) == UNMIXED


def config_for(node):
    """The plugin settings, with the node's server address."""
    cfg = config.load()
    server = node["server"].value().strip()
    if server and server != cfg.address():
        cfg.server, cfg.servers = server, []  # the node's address (one, or a:1,b:2) replaces the settings'
    return cfg


def cache_dir(node):
    """The node's alpha folder: its cache directory knob, else mattebox/<node name> next to the script."""
    folder = node["cache_dir"].value().strip()
    if folder:
        return os.path.abspath(os.path.expanduser(folder))
    script = nuke.root()["name"].value()
    if not script:
        raise ValueError("save the script first (the alpha frames go next to it), or set the cache directory")
    return os.path.join(os.path.dirname(os.path.abspath(script)), "mattebox", node.name())


def frame_range(node):
    """(first, last) from the frame range knob, else the Source input's range."""
    text = node["frames"].value().strip()
    if not text:
        src = node.input(SOURCE)
        return int(src.firstFrame()), int(src.lastFrame())
    try:
        return sequence.parse_range(text)
    except ValueError:
        raise ValueError("frame range %r is not A-B (for example 1001-1100, or -5--1 for negative frames): fix "
                         "it, or empty it to use the Source input's range" % text)


def set_status(node, text):
    node["status"].setValue(text)


def show_alpha(node, folder, first, last, foreground=False):
    """Point the internal Reads at the alpha (and foreground) frames, reload them and copy the alpha into
    the Source (and the foreground)."""
    shown = [(READ, COPY, ALPHA_FILE)] + ([(FG_READ, FG_COPY, FOREGROUND_FILE)] if foreground else [])
    for read_name, copy_name, pattern in shown:
        read, copy = node.node(read_name), node.node(copy_name)
        if read is None or copy is None:
            continue  # a node made by an older Mattebox
        read["file"].setValue(os.path.join(folder, pattern).replace(os.sep, "/"))
        read["first"].setValue(first)
        read["last"].setValue(last)
        read["disable"].setValue(False)
        read["reload"].execute()
        copy["disable"].setValue(False)


def set_models(node, models):
    """Fill the model enumeration (keeping the chosen model) and the list of descriptions and inputs."""
    knob = node["model"]
    chosen = knob.value()
    names = [m["name"] for m in models] or [NO_MODELS]
    knob.setValues(names)
    if chosen in names:
        knob.setValue(chosen)
    lines = ["%s (needs %s): %s" % (m["name"], ", ".join(input_label(i) for i in m["inputs"]), m["description"])
             for m in models]
    node["models_info"].setValue("\n".join(lines))
    knob.setTooltip("\n".join(lines) or "press Refresh models")


def input_label(model_input):
    """The node input that feeds a model input ("trimap" -> "Trimap")."""
    index = MODEL_INPUTS.get(model_input)
    return model_input if index is None else INPUTS[index]
