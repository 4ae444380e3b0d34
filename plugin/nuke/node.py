"""The MatteboxMatte node: a Group with inputs Source, Plate, Trimap and GT whose output is the Source
with the server's alpha in rgba.alpha (optionally premultiplied).

Inside: Input nodes, a Read of the alpha EXRs in the cache directory, a Copy of that alpha into the
Source stream (B = Source, A = alpha) and a Premult switched by the node's premultiply knob. The
buttons' commands import this package when pressed, so a saved script needs only init.py.
"""
import os

import nuke

from plugin.host import config

CLASS = "MatteboxMatte"
INPUTS = ("Source", "Plate", "Trimap", "GT")          # in input order: Source is input 0
SOURCE, PLATE, TRIMAP, GT = range(4)
#: model input name (as the server lists it) -> the node input that feeds it
MODEL_INPUTS = {"image": SOURCE, "background": PLATE, "trimap": TRIMAP}
ALPHA_FILE = "alpha.####.exr"
NO_MODELS = "(press Refresh models)"
READ, COPY, PREMULT = "MatteboxAlpha", "MatteboxCopy", "MatteboxPremult"


def _button(name, label, call, tooltip):
    knob = nuke.PyScript_Knob(name, label, "from plugin.nuke import actions; actions.%s(nuke.thisNode())" % call)
    knob.setTooltip(tooltip)
    return knob


def _knobs(cfg):
    """The user knobs, in panel order."""
    server = nuke.String_Knob("server", "server")
    server.setValue(cfg.server)
    server.setTooltip("host:port of the Mattebox server (default from the plugin settings)")
    model = nuke.Enumeration_Knob("model", "model", [NO_MODELS])
    model.setTooltip("the matting model; press Refresh models to list the server's models")
    frames = nuke.String_Knob("frames", "frame range")
    frames.setTooltip("frames to matte, A-B; empty: the Source input's range")
    steps = nuke.Int_Knob("steps", "recursion steps")
    steps.setTooltip("recursive refinement passes for bgm_excite; 0: the model's default")
    space = nuke.String_Knob("colour_space", "input colour space")
    space.setTooltip("colour space of Source and Plate files (any OpenColorIO name); empty: EXR and float "
                     "files scene_linear, integer files sRGB")
    cache = nuke.File_Knob("cache_dir", "cache directory")
    cache.setTooltip("folder of the alpha frames; empty: mattebox/<node name> next to the script")
    premult = nuke.Boolean_Knob("premultiply", "premultiply")
    premult.setTooltip("multiply the Source's colour by the new alpha")
    status = nuke.Text_Knob("status", "status", "ready")
    gt_frames = nuke.String_Knob("gt_frames", "GT frames")
    gt_frames.setTooltip("frames where the GT input has a finished matte, e.g. 1001,1010,1020; empty: the frames "
                         "of the GT Read's sequence on disk")
    ft_name = nuke.String_Knob("finetune_name", "new model name")
    ft_name.setTooltip("name of the fine-tuned model (lower-case letters, digits, - and _); empty: <model>_<node name>")
    ft_steps = nuke.Int_Knob("finetune_steps", "fine-tune steps")
    ft_steps.setValue(120)
    chunk = nuke.Int_Knob("farm_chunk", "frames per farm task")
    chunk.setValue(10)
    return [nuke.Tab_Knob("mattebox", "Mattebox"), server, model,
            _button("refresh", "Refresh models", "refresh", "ask the server for its models"),
            nuke.Text_Knob("models_info", "models", ""), frames, steps, space, cache, premult,
            _button("matte", "Matte", "matte", "matte the frames that are missing or out of date"),
            _button("cancel", "Cancel", "cancel", "stop this node's job; finished frames are kept"),
            status,
            nuke.Tab_Knob("finetune_tab", "Fine-tune and farm"), gt_frames, ft_name, ft_steps,
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
        nuke.nodes.Output().setInput(0, premult)
    return group


def config_for(node):
    """The plugin settings, with the node's server address."""
    cfg = config.load()
    server = node["server"].value().strip()
    if server:
        cfg.server = server
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
    parts = text.replace(" ", "").split("-")
    try:
        if len(parts) == 1:
            return int(parts[0]), int(parts[0])
        first, last = int(parts[0]), int(parts[1])
    except ValueError:
        first, last = 1, 0
    if len(parts) != 2 or last < first:
        raise ValueError("frame range %r is not A-B (for example 1001-1100): fix it, or empty it to use the "
                         "Source input's range" % text)
    return first, last


def set_status(node, text):
    node["status"].setValue(text)


def show_alpha(node, folder, first, last):
    """Point the internal Read at the alpha frames, reload them and copy them into the Source."""
    read, copy = node.node(READ), node.node(COPY)
    read["file"].setValue(os.path.join(folder, ALPHA_FILE).replace(os.sep, "/"))
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
