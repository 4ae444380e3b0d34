"""One matting run: check the request, hand the files to `mattebox matte`, follow its progress, and
load and wire the alpha frames it wrote.

    run = start(context, Request(image="shot", model="difference", plate="plate"), report)
    while (result := run.step(context)) is None: ...     (a timer: the modal operator; a loop: background)
    run.cancel()                                        (ESC or the Cancel button; finished frames stay)

`report(level, text)` is the operator's report (levels 'INFO', 'WARNING', 'ERROR'). A problem the user
can fix raises HostError (ConfigError: the settings file) saying what to do, before anything runs
where it can be known then.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass

import bpy

from . import compositor, preferences, sources
from .host import client
from .state import STATE

#: input the server names -> (Request field, panel label, what it is)
_INPUTS = {"background": ("plate", "Clean plate", "a clean plate (the set without the subject)"),
           "trimap": ("trimap", "Trimap", "a trimap (black background, grey unknown, white foreground)")}


@dataclass
class Request:
    """What to matte: datablock names (image or clip is the source), the model, the frames
    (frame_end < frame_start: every frame of the source) and the output folder ("" = default)."""
    image: str = ""
    clip: str = ""
    plate: str = ""
    trimap: str = ""
    model: str = ""
    frame_start: int = 0
    frame_end: int = -1
    output_dir: str = ""


def _block(collection, name: str, what: str):
    if not name:
        return None
    block = collection.get(name)
    if block is None:
        raise client.HostError(f"there is no {what} called {name!r} in this .blend file: pick one in the "
                               f"Mattebox panel")
    return block


def _source(req: Request):
    if req.image and req.clip:
        raise client.HostError("give either an image or a movie clip to matte, not both")
    source = _block(bpy.data.images, req.image, "image") or _block(bpy.data.movieclips, req.clip, "movie clip")
    if source is None:
        raise client.HostError("nothing to matte: choose a source image, image sequence or movie clip")
    return source


def _check_model(cfg, req: Request) -> dict:
    """The model's description from the server; refuses unknown models and missing inputs."""
    if not req.model:
        raise client.HostError("no model chosen: press Refresh in the Mattebox panel and pick one")
    STATE.ensure_server(cfg)
    model = STATE.model(req.model) if STATE.address == cfg.server else None
    if model is None or not model["weights"]:  # not known yet, or maybe trained since: ask the server
        STATE.refresh(cfg)
        model = STATE.model(req.model)
    if model is None:
        raise client.HostError(f"the server at {cfg.server} has no model {req.model!r}; it has "
                               f"{', '.join(m['name'] for m in STATE.models) or 'none'}: pick one of those")
    if not model["weights"]:
        raise client.HostError(f"model {req.model!r} has no trained weights on the server: train or install them "
                               f"(README: training), or pick another model")
    for name in model["inputs"]:
        field, label, text = _INPUTS.get(name, (None, "", ""))
        if field and not getattr(req, field):
            raise client.HostError(f"model {req.model!r} needs {text}: choose one under {label} in the "
                                   f"Mattebox panel, or pick another model")
    return model


def _output_dir(req: Request, source) -> str:
    if req.output_dir:
        return bpy.path.abspath(req.output_dir)
    base = bpy.path.abspath("//") if bpy.data.filepath else tempfile.gettempdir()
    return os.path.join(base, "mattebox", sources.file_name(source.name))


def start(context, req: Request, report) -> Run:
    """Check everything, write temporary frames where needed and start the client command."""
    if STATE.run is not None:
        raise client.HostError("a Mattebox run is already going: wait for it or press Cancel")
    cfg = preferences.settings(context)
    source = _source(req)
    plate = _block(bpy.data.images, req.plate, "plate image")
    trimap = _block(bpy.data.images, req.trimap, "trimap image")
    model = _check_model(cfg, req)
    first, last = (req.frame_start, req.frame_end) if req.frame_end >= req.frame_start else sources.frame_range(source)
    out_dir = _output_dir(req, source)
    os.makedirs(out_dir, exist_ok=True)
    output = os.path.join(out_dir, f"{sources.file_name(source.name)}_alpha.####.exr")
    scratch = tempfile.mkdtemp(prefix="mattebox-blender-")
    try:
        args = ["matte", "--model", model["name"], "--input", sources.export(source, first, last, scratch),
                "--output", output, "--frames", f"{first}-{last}"]
        if plate is not None and "background" in model["inputs"]:
            args += ["--background", sources.export(plate, first, last, scratch)]
        if trimap is not None and "trimap" in model["inputs"]:
            args += ["--trimap", sources.export(trimap, first, last, scratch, data=True)]
        job = client.Job(cfg, args)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    run = Run(context.scene, source, job, output, first, last, scratch, report)
    STATE.run = run
    return run


class Run:
    """A started job; step() moves it on and, at the end, loads and wires what it wrote."""

    def __init__(self, scene, source, job: client.Job, output: str, first: int, last: int, scratch: str, report):
        self.scene, self.source, self.job, self.output = scene, source, job, output
        self.first, self.last, self.scratch, self.report = first, last, scratch, report
        self.frames: list[int] = []   # frames written so far
        self.alpha: bpy.types.Image | None = None

    @property
    def percent(self) -> float:
        return self.job.percent

    def describe(self) -> str:
        return f"Mattebox: {self.percent:.0f}% ({len(self.frames)}/{self.last - self.first + 1} frames), ESC cancels"

    def cancel(self) -> None:
        self.job.cancel()

    def step(self, context) -> set | None:
        """Take the new progress events; None while the job runs, else the operator's result:
        {'FINISHED'} when every frame came back, {'CANCELLED'} on cancel or failure."""
        running = self.job.running  # read before poll(): no event can arrive after a False
        self._take(self.job.poll())
        if running:
            return None
        try:
            return self._finish(context)
        finally:
            self._release()

    def abandon(self) -> None:
        """Stop after an error on this side: cancel the job and free the temporary files."""
        self.job.cancel()
        self._release()

    def _release(self) -> None:
        STATE.run = None
        shutil.rmtree(self.scratch, ignore_errors=True)

    def _take(self, events: list[dict]) -> None:
        self.frames += [e["frame"] for e in events if e["event"] == "frame"]

    def _finish(self, context) -> set:
        self.job.wait()
        if self.frames:
            name = f"{sources.file_name(self.source.name)} alpha"
            self.alpha = load_alpha(self.output, min(self.frames), max(self.frames), name)
            clip_start = sources.clip_start(self.source) if isinstance(self.source, bpy.types.MovieClip) else 1
            compositor.wire(self.scene, self.source, self.alpha, min(self.frames), max(self.frames), clip_start)
        where = os.path.dirname(self.output)
        if self.job.cancelled:
            self.report({"WARNING"}, f"Mattebox: cancelled; the {len(self.frames)} finished frames are in {where}")
            return {"CANCELLED"}
        failure = self.job.failure()
        if failure:
            kept = f"; the {len(self.frames)} finished frames are in {where}" if self.frames else ""
            STATE.last_error = f"{failure}{kept}"
            self.report({"ERROR"}, f"Mattebox: {STATE.last_error}")
            return {"CANCELLED"}
        STATE.last_error = ""
        self.report({"INFO"}, f"Mattebox: {len(self.frames)} frames of alpha in {where}, wired into the compositor")
        return {"FINISHED"}


def load_alpha(pattern: str, first: int, last: int, name: str) -> bpy.types.Image:
    """The alpha frames as an image datablock `name` (a sequence when there are several), reused on re-runs."""
    path = pattern.replace("####", f"{first:04d}")
    image = bpy.data.images.get(name)
    if image is None:
        image = bpy.data.images.load(path, check_existing=False)
        image.name = name
    else:
        image.filepath = path
    image.source = "SEQUENCE" if last > first else "FILE"
    image.reload()
    return image
