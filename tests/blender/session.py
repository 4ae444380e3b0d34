"""A user's session in real Blender (bpy 4.2, 4.5 or 5.0 as a module, run by tests/test_blender.py): install the
Mattebox extension from its zip, set its preferences, load a shot, matte it in several ways (image
sequence, painted trimap, movie, clip), with the options (unmixed foreground, plate alignment, trimap
channel, colour spaces), hit the errors a user can hit, draw the panel, drive a run's step logic
directly (progress, cancel, continuing a stopped run), refresh on a worker thread, turn the add-on off
and on, and let it start a local server.

    python session.py PARAMS.json     PARAMS: zip, server, dead_server, shot paths, output folders
Prints one JSON object (the last stdout line) with what it saw; the test checks it and the files.
"""
from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
import types

import bpy
import numpy as np

with open(sys.argv[1]) as params:
    P = json.load(params)
SEEN: dict = {}
ADDON = "bl_ext.user_default.mattebox"
BLENDER5 = bpy.app.version >= (5, 0, 0)  # the compositor's API changed in 5.0; 4.2 and 4.5 share the old one


def prefs():
    return bpy.context.preferences.addons[ADDON].preferences


def ext(module: str):
    return importlib.import_module(f"{ADDON}.{module}")


def matte(*args, **kw) -> dict:
    """Call the operator as a script would; {"result": ...} or {"error": the reported message}. The
    command it started (if any) goes to SEEN["commands"][output folder's name]."""
    state = ext("state").STATE
    state.last_command = []
    try:
        got = {"result": sorted(bpy.ops.mattebox.matte(*args, **kw))}
    except RuntimeError as err:
        got = {"error": str(err), "last_error": state.last_error}
    if state.last_command and "output_dir" in kw:
        SEEN["commands"][os.path.basename(kw["output_dir"])] = state.last_command
    return got


REPORTS: list = []  # [level, text] of the runs started with start()


def report(level, text) -> None:
    REPORTS.append([sorted(level)[0], text])


def follow(run, stop_after_first: bool = False) -> dict:
    """Step a run as the modal operator's timer does, recording its stages; cancel after the first frame."""
    state = ext("state").STATE
    percents, stages, result = [], [], None
    while result is None:
        result = run.step(bpy.context)
        stages.append(run.stage + (" waiting" if run.waiting else ""))
        percents.append(run.percent)
        if stop_after_first and run.frames and not run.job.cancelled:
            run.cancel()
        if run.waiting:
            time.sleep(0.02)
    SEEN["commands"][os.path.basename(os.path.dirname(run.output))] = run.job.command if run.job else []
    return {"result": sorted(result), "percents": percents, "frames": run.frames, "kept": run.kept,
            "idle": state.run is None,
            "scratch_left": bool(run.scratch) and os.path.exists(run.scratch),
            "stages": [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s],
            "export_steps": sum(1 for s in stages if s == "export"), "warnings": list(state.last_warnings)}


def start(**kw):
    """A run of the extension's own step logic (what the modal operator drives), reports to REPORTS."""
    return ext("matting").start(bpy.context, ext("matting").Request(**kw), report)


def install() -> None:
    result = bpy.ops.extensions.package_install_files(filepath=P["zip"], repo="user_default", enable_on_install=True)
    module = sys.modules.get(ADDON)
    p = prefs()
    SEEN["install"] = {"result": sorted(result), "enabled": ADDON in bpy.context.preferences.addons,
                       "file": module.__file__ if module else "", "operators": hasattr(bpy.ops.mattebox, "matte"),
                       "panels": [hasattr(bpy.types, n) for n in ("MATTEBOX_PT_compositor", "MATTEBOX_PT_clip")],
                       "prefs_from_file": [p.server, p.client, p.start_server]}


def load_shot() -> None:
    src = bpy.data.images.load(P["source_first"])
    src.name, src.source = "shot", "SEQUENCE"
    bpy.data.images.load(P["plate"]).name = "plate"
    # the shot and its plate from an ACES pipeline; Blender's guess, then the user's setting
    aces = bpy.data.images.load(P["aces_first"])
    aces.name, aces.source = "shot_aces", "SEQUENCE"
    plate_aces = bpy.data.images.load(P["plate_aces"])
    plate_aces.name = "plate_aces"
    SEEN["aces_guessed"] = [aces.colorspace_settings.name, plate_aces.colorspace_settings.name]
    aces.colorspace_settings.name = plate_aces.colorspace_settings.name = "ACEScg"
    bpy.data.images.load(P["flat_plate"]).name = "flat plate"
    bpy.data.images.load(P["roto_red"]).name = "roto red"     # trimap in red, something else in alpha
    bpy.data.images.load(P["trimap_png"]).name = "trimap png"  # trimap in the alpha of an RGBA PNG
    SEEN["spaces"] = {i.name: i.colorspace_settings.name for i in bpy.data.images}
    bpy.data.images.load(P["source_first"], check_existing=False).name = "still"  # one file, every frame
    # a trimap painted in Blender: an 8-bit sRGB image that exists only in memory
    tri = np.load(P["trimap_npy"]).astype(np.float32)
    h, w = tri.shape
    painted = bpy.data.images.new("painted trimap", w, h)
    rgba = np.repeat(tri[::-1, :, None], 4, axis=2)
    rgba[..., 3] = 1.0
    painted.pixels.foreach_set(rgba.ravel())


def compositor_tree(scene):
    """The scene's compositor tree: Blender 5's node group, 4.x's scene.node_tree."""
    return scene.compositing_node_group if BLENDER5 else scene.node_tree


def output_node(tree):
    """The node that takes the final picture: Blender 5's Group Output, 4.x's Composite node."""
    return next(n for n in tree.nodes if n.bl_idname == ("NodeGroupOutput" if BLENDER5 else "CompositorNodeComposite"))


def set_alpha_type(node) -> str:
    """Set Alpha's mode as the UI names it: Blender 5's "Type" menu socket, 4.x's `mode` enum property."""
    if BLENDER5:
        return node.inputs["Type"].default_value
    return node.bl_rna.properties["mode"].enum_items[node.mode].name


def wiring(scene) -> dict:
    tree = compositor_tree(scene)
    outputs = ([i.name for i in tree.interface.items_tree if getattr(i, "in_out", "") == "OUTPUT"] if BLENDER5
               else [s.name for s in output_node(tree).inputs if s.is_linked])
    return {"tree": tree.name if tree else None,
            "use_compositing": scene.render.use_compositing and (BLENDER5 or scene.use_nodes),
            "nodes": sorted(f"{n.name}:{n.bl_idname}" for n in tree.nodes),
            "links": sorted(f"{l.from_node.name}.{l.from_socket.name}->{l.to_node.name}.{l.to_socket.name}"
                            for l in tree.links),
            "output": f"{output_node(tree).name}:{output_node(tree).bl_idname}", "outputs": outputs,
            "set_alpha_type": set_alpha_type(tree.nodes["Mattebox Set Alpha"]),
            "images": {n.name: n.image.name for n in tree.nodes if n.bl_idname == "CompositorNodeImage"}}


def render_over(scene, frame: int, path: str, colour) -> None:
    """The Mattebox output put over a flat colour with an Alpha Over node (the user's next step)."""
    tree = compositor_tree(scene)
    out = output_node(tree)
    set_alpha = tree.nodes["Mattebox Set Alpha"]
    rgb = tree.nodes.new("CompositorNodeRGB")
    rgb.outputs[0].default_value = (*colour, 1.0)
    over = tree.nodes.new("CompositorNodeAlphaOver")
    # Blender 5 names the image inputs and has the mode as sockets; 4.x has two inputs called "Image"
    # (background, then foreground) and the mode as properties (premul 0: Over; no convert: premultiplied)
    background, foreground = (over.inputs["Background"], over.inputs["Foreground"]) if BLENDER5 \
        else (over.inputs[1], over.inputs[2])
    tree.links.new(rgb.outputs[0], background)
    tree.links.new(set_alpha.outputs["Image"], foreground)
    tree.links.new(over.outputs["Image"], out.inputs["Image"])
    SEEN["alpha_over"] = ({"straight": over.inputs["Straight Alpha"].default_value,
                           "type": over.inputs["Type"].default_value} if BLENDER5
                          else {"straight": over.use_premultiply, "type": "Over" if over.premul == 0 else over.premul})
    try:
        render_compositor(scene, frame, path)
    finally:
        tree.nodes.remove(over)
        tree.nodes.remove(rgb)
        tree.links.new(set_alpha.outputs["Image"], out.inputs["Image"])


def render_compositor(scene, frame: int, path: str) -> None:
    scene.frame_set(frame)
    scene.render.resolution_x, scene.render.resolution_y = bpy.data.images["plate"].size
    scene.render.resolution_percentage = 100
    settings = scene.render.image_settings
    settings.file_format, settings.color_depth, settings.color_mode = "OPEN_EXR", "32", "RGBA"
    scene.render.filepath = path
    bpy.ops.render.render(write_still=True)


def make_movie(path: str) -> None:
    """The shot's EXR frames encoded losslessly (FFV1) into a movie file, by Blender's sequencer."""
    scene = bpy.data.scenes.new("movie maker")
    scene.render.resolution_x, scene.render.resolution_y = bpy.data.images["plate"].size
    scene.render.resolution_percentage = 100
    scene.view_settings.view_transform = "Standard"
    scene.frame_start, scene.frame_end = 1, len(P["frames"])
    first = os.path.basename(P["source_first"])
    editor = scene.sequence_editor_create()
    strips = editor.strips if BLENDER5 else editor.sequences  # 4.x: sequences
    strip = strips.new_image("shot", P["source_first"], 1, 1)
    for f in P["frames"][1:]:
        strip.elements.append(first.replace(str(P["frames"][0]), str(f)))
    settings = scene.render.image_settings
    if BLENDER5:
        settings.media_type = "VIDEO"  # 4.x: no media type, the file format alone
    settings.file_format = "FFMPEG"
    scene.render.ffmpeg.format, scene.render.ffmpeg.codec = "MKV", "FFV1"
    scene.render.filepath = path
    bpy.ops.render.render(animation=True, scene=scene.name)
    bpy.data.scenes.remove(scene)


def user_runs() -> None:
    scene = bpy.context.scene
    # the panel's model list: Refresh fills it, the enum stores the name
    SEEN["model_before_refresh"] = scene.mattebox.model_choice
    bpy.ops.mattebox.refresh()
    scene.mattebox.model_choice = "difference"
    SEEN["panel_model"] = [scene.mattebox.model, ext("settings").chosen_model(scene.mattebox),
                           ext("state").STATE.status]
    # a plate model on an EXR sequence; INVOKE_DEFAULT in background mode runs to the end
    SEEN["difference"] = matte("INVOKE_DEFAULT", image="shot", plate="plate", model="difference",
                               output_dir=P["out_difference"])
    alpha = bpy.data.images.get("shot alpha")
    SEEN["alpha_image"] = alpha and {"source": alpha.source, "filepath": bpy.path.abspath(alpha.filepath)}
    SEEN["wiring"] = wiring(scene)
    render_compositor(scene, P["frames"][1], P["render"])
    render_over(scene, P["frames"][1], P["render_over"], P["over_colour"])
    # a trimap model with a trimap painted in Blender, one frame
    f = P["frames"][0]
    SEEN["closed_form"] = matte(image="shot", trimap="painted trimap", model="closed_form", frame_start=f,
                                frame_end=f, output_dir=P["out_closed_form"])
    # a movie clip: its frames go to the server as temporary EXRs
    make_movie(P["movie"])
    clip = bpy.data.movieclips.load(P["movie"])
    SEEN["movie"] = follow(start(clip=clip.name, plate="plate", model="difference", output_dir=P["out_movie"]))
    SEEN["movie_wiring"] = wiring(scene)
    # the shot as a movie clip (an image sequence) that the user moved to start at scene frame 5
    clip = bpy.data.movieclips.load(P["source_first"])
    clip.frame_start = 5
    SEEN["clip_sequence"] = matte(clip=clip.name, plate="plate", model="difference", output_dir=P["out_clip_sequence"])
    render_compositor(scene, 6, P["render_clip"])


def errors() -> None:
    SEEN["no_plate"] = matte(image="shot", model="difference", output_dir=P["out_refused"])
    SEEN["refused_wrote"] = os.path.exists(P["out_refused"])
    SEEN["unknown_model"] = matte(image="shot", plate="plate", model="no_such_model", output_dir=P["out_refused"])
    prefs().server, prefs().start_server = P["dead_server"], False
    SEEN["server_down"] = matte(image="shot", plate="plate", model="difference", output_dir=P["out_refused"])
    prefs().server = P["server"]
    # one frame past the end of the sequence: that frame fails, the others are kept and wired
    SEEN["frame_failure"] = matte(image="shot", plate="plate", model="difference", frame_start=P["frames"][0],
                                  frame_end=P["frames"][-1] + 1, output_dir=P["out_partial"])
    SEEN["partial_wiring"] = wiring(bpy.context.scene)


def options() -> None:
    """The panel's options reach the command, and what they make is wired and reported."""
    scene, f = bpy.context.scene, P["frames"][0]
    # the unmixed foreground, with a (steady) plate aligned: Foreground x Alpha in the compositor
    SEEN["foreground"] = matte(image="shot", plate="plate", model="difference", align_plate=True, foreground=True,
                               output_dir=P["out_foreground"])
    SEEN["foreground_wiring"] = wiring(scene)
    render_compositor(scene, P["frames"][1], P["render_foreground"])
    # a plate that cannot be aligned (nothing to match): reported, not swallowed
    SEEN["misaligned"] = follow(start(image="shot", plate="flat plate", model="difference", align_plate=True,
                                      frame_start=f, frame_end=f, output_dir=P["out_misaligned"]))
    # the trimap's channel: picked (red; the alpha holds something else), and automatic (a PNG's alpha)
    SEEN["channel_red"] = matte(image="shot", trimap="roto red", model="closed_form", matte_channel="RED",
                                frame_start=f, frame_end=f, output_dir=P["out_channel_red"])
    SEEN["channel_auto"] = matte(image="shot", trimap="trimap png", model="closed_form", frame_start=f,
                                 frame_end=f, output_dir=P["out_channel_auto"])
    # colour spaces: an ACEScg shot and plate go as they are; with a Rec.709 plate Blender converts both
    SEEN["aces"] = matte(image="shot_aces", plate="plate_aces", model="difference", output_dir=P["out_aces"])
    SEEN["mixed"] = follow(start(image="shot_aces", plate="plate", model="difference", output_dir=P["out_mixed"]))
    # a server that may not read the shot's folder: the client sends the pixels itself and says so
    prefs().server = P["strict_server"]
    try:
        SEEN["notice"] = follow(start(image="shot", plate="plate", model="difference", frame_start=f, frame_end=f,
                                      output_dir=P["out_notice"]))
    finally:
        prefs().server = P["server"]
    SEEN["option_reports"] = list(REPORTS)


def steps() -> None:
    """The modal operator's step logic, called directly: progress, finish, cancel, and continuing."""
    os.makedirs(os.path.dirname(P["blend"]), exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=P["blend"])  # no output folder given: mattebox/ next to the .blend
    REPORTS.clear()
    SEEN["steps"] = follow(start(image="still", plate="plate", model="difference", frame_start=1, frame_end=5))
    SEEN["cancel"] = follow(start(image="still", plate="plate", model="difference", frame_start=1,
                                  frame_end=P["long"], output_dir=P["out_cancel"]), stop_after_first=True)
    SEEN["step_reports"] = list(REPORTS)

    def on_disk(folder: str) -> dict:
        return {n: os.stat(os.path.join(folder, n)).st_mtime_ns for n in os.listdir(folder) if n.endswith(".exr")}

    # the stopped run again, a few frames further: what it reported stays, the rest is matted
    SEEN["before_continue"] = on_disk(P["out_cancel"])
    done = len(SEEN["cancel"]["frames"])
    SEEN["continue"] = follow(start(image="still", plate="plate", model="difference", frame_start=1,
                                    frame_end=done + 3, output_dir=P["out_cancel"]))
    SEEN["after_continue"] = on_disk(P["out_cancel"])
    # the same again: nothing to do; other settings (plate alignment): everything again
    SEEN["again"] = follow(start(image="still", plate="plate", model="difference", frame_start=1,
                                 frame_end=done + 3, output_dir=P["out_cancel"]))
    SEEN["changed"] = follow(start(image="still", plate="plate", model="difference", align_plate=True,
                                   frame_start=1, frame_end=done + 3, output_dir=P["out_cancel"]))


def threads() -> None:
    """Refresh on its worker thread, as the panel's button runs it: Blender's main thread is free while
    the server lists its models (counted here), and a second Refresh meanwhile is refused."""
    state, cfg = ext("state").STATE, ext("preferences").settings()
    task = state.refresh_task(cfg)
    try:
        state.refresh_task(cfg)
        second = "accepted"
    except ext("host.client").HostError as err:
        second = str(err)
    spins = 0
    while not task.done:
        spins += 1
        time.sleep(0.005)
    state.finish_refresh(cfg, task)
    SEEN["threaded_refresh"] = {"spins": spins, "status": state.status, "second": second,
                                "refreshing": state.refreshing is not None}


def set_prefs() -> None:
    prefs().server, prefs().client, prefs().start_server = P["server"], P["client"], False


class Layout:
    """Panels are drawn only in a window, and bpy as a module has none: this stands in for
    bpy.types.UILayout, checks every property, operator (and its properties) and icon the draw code
    names against Blender's real RNA, and records what the panel would show."""
    ICONS = set(bpy.types.UILayout.bl_rna.functions["prop"].parameters["icon"].enum_items.keys())

    def __init__(self, shown: list):
        self.shown, self.alert = shown, False

    def row(self, **_):
        return self

    column = box = row

    def label(self, text: str = "", icon: str = "NONE") -> None:
        assert icon in self.ICONS, icon
        self.shown.append(text)

    def prop(self, data, name: str, **_) -> None:
        assert name in data.bl_rna.properties.keys(), f"{data} has no property {name}"
        self.shown.append(f"[{name}]")

    def operator(self, idname: str, text: str = "", icon: str = "NONE"):
        assert icon in self.ICONS, icon
        group, name = idname.split(".")
        self.shown.append(f"({idname})")
        return _OperatorProperties(getattr(getattr(bpy.ops, group), name).get_rna_type(), self.shown)


class _OperatorProperties:
    def __init__(self, rna, shown: list):
        object.__setattr__(self, "_names", set(rna.properties.keys()))
        object.__setattr__(self, "_shown", shown)

    def __setattr__(self, name, value):
        assert name in self._names, f"the operator has no property {name}"
        self._shown.append(f"{name}={value}")


def panel() -> None:
    """The compositor panel's draw code, with a chosen shot and the last error from errors()."""
    settings = bpy.context.scene.mattebox
    settings.image, settings.plate = bpy.data.images["shot"], bpy.data.images["plate"]
    settings.model_choice = "difference"
    settings.align_plate = settings.foreground = True
    ext("state").STATE.last_warnings = ["a notice from the last run"]
    shown: list = []
    context = types.SimpleNamespace(scene=bpy.context.scene, region=types.SimpleNamespace(width=280))
    bpy.types.MATTEBOX_PT_compositor.draw(types.SimpleNamespace(layout=Layout(shown)), context)
    SEEN["panel"] = shown


def toggle() -> None:
    """Turning the add-on off and on again (unregister, register) keeps its preferences."""
    bpy.ops.preferences.addon_disable(module=ADDON)
    SEEN["disabled"] = not hasattr(bpy.types.Scene, "mattebox") and ADDON not in bpy.context.preferences.addons
    bpy.ops.preferences.addon_enable(module=ADDON)
    SEEN["reenabled_prefs"] = [prefs().server, prefs().client]


def local_server() -> None:
    """No server answers and the preferences allow it: Refresh starts one (left running: quitting stops it)."""
    prefs().server, prefs().start_server = P["dead_server"], True
    state = ext("state").STATE
    bpy.ops.mattebox.refresh()
    SEEN["local_server"] = {"status": state.status, "models": len(state.models), "pid": state.server.proc.pid}


SEEN["crashed"], SEEN["seconds"], SEEN["commands"] = {}, {}, {}
SEEN["blender"] = list(bpy.app.version)
for phase in (install, set_prefs, load_shot, user_runs, options, errors, panel, steps, threads, toggle, local_server):
    t0 = time.monotonic()
    try:
        phase()
    except Exception:  # the phases after it still run; the test shows this traceback
        SEEN["crashed"][phase.__name__] = traceback.format_exc()
    SEEN["seconds"][phase.__name__] = round(time.monotonic() - t0, 2)
print(json.dumps(SEEN))
