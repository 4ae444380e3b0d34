"""One matting run: check the request, hand the files to `mattebox matte`, follow its progress, and
load and wire the alpha (and unmixed foreground) frames it wrote.

    run = start(context, Request(image="shot", model="difference", plate="plate"), report)
    while (result := run.step(context)) is None: ...     (a timer: the modal operator; a loop: background)
    run.cancel()                                        (ESC or the Cancel button; finished frames stay)

A run goes through stages, one small piece of work per step() so that Blender's UI stays live: "server"
(a worker thread makes sure a server answers, starting a local one when allowed, and lists its models),
"export" (Blender writes the frames the server cannot read itself, one frame a step), "job" (the client
command runs; its JSON events arrive on its reader threads) and the end (load and wire the frames).
`run.waiting` is True when a step only waited for another thread or process (a loop may sleep then).

`report(level, text)` is the operator's report (levels 'INFO', 'WARNING', 'ERROR'). A problem the user
can fix raises HostError (ConfigError: the settings file) saying what to do, before anything is written
where it can be known then. The job's notices (report INFO, as they arrive) and the frames whose plate could not be aligned (report
WARNING, at the end; the status line counts them meanwhile) are reported too.

Re-runs continue where a stopped run ended: the output folder keeps a small record of the frames matted
with which settings and inputs (.<name>.mattebox.json); frames on disk that match the request are kept
(--skip-existing), others (other settings, changed input files) are matted again.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass

import bpy

from . import compositor, preferences, sequence, sources
from .host import client
from .state import STATE, Task

#: input the server names -> (Request field, panel label, what it is)
_INPUTS = {"background": ("plate", "Clean plate", "a clean plate (the set without the subject)"),
           "trimap": ("trimap", "Trimap", "a trimap (black background, grey unknown, white foreground)")}

#: the panel's trimap channel -> the command's --matte-channel ("" = the server's choice)
CHANNELS = {"AUTO": "", "ALPHA": "A", "RED": "R", "GREEN": "G", "BLUE": "B", "LUMINANCE": "Y"}

_RECORD_VERSION = 1


@dataclass
class Request:
    """What to matte: datablock names (image or clip is the source), the model, the frames
    (frame_end < frame_start: every frame of the source), the output folder ("" = default), and the
    options: align a hand-held plate, the trimap's channel (a CHANNELS key), also write the unmixed
    foreground."""
    image: str = ""
    clip: str = ""
    plate: str = ""
    trimap: str = ""
    model: str = ""
    frame_start: int = 0
    frame_end: int = -1
    output_dir: str = ""
    align_plate: bool = False
    matte_channel: str = "AUTO"
    foreground: bool = False


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


def _ask_server(cfg, name: str) -> list[dict] | None:
    """Worker thread: a server answers (started when allowed); its models when `name` is not known with
    weights from it yet (None: what STATE has will do)."""
    STATE.ensure_server(cfg)
    model = STATE.model(name) if STATE.address == cfg.address() else None
    if model is not None and model["weights"]:
        return None
    return client.models(cfg)  # not known yet, or maybe trained since: ask the server


def _check_model(cfg, req: Request) -> dict:
    """The model's description (from STATE); refuses unknown models and missing inputs."""
    model = STATE.model(req.model)
    if model is None:
        raise client.HostError(f"the server at {cfg.address()} has no model {req.model!r}; it has "
                               f"{', '.join(m['name'] for m in STATE.models) or 'none'}: pick one of those")
    if not model["weights"]:
        raise client.HostError(f"model {req.model!r} has no trained weights on the server: train or install them "
                               f"(README: training), or pick another model")
    for name in model["inputs"]:
        field, label, text = _INPUTS.get(name, (None, "", ""))
        if field and not getattr(req, field):
            raise client.HostError(f"model {req.model!r} needs {text}: choose one under {label} in the "
                                   f"Mattebox panel, or pick another model")
    if req.matte_channel not in CHANNELS:
        raise client.HostError(f"unknown trimap channel {req.matte_channel!r}: use one of {', '.join(CHANNELS)}")
    return model


def _output_dir(req: Request, source) -> str:
    if req.output_dir:
        return bpy.path.abspath(req.output_dir)
    base = bpy.path.abspath("//") if bpy.data.filepath else tempfile.gettempdir()
    return os.path.join(base, "mattebox", sources.file_name(source.name))


def start(context, req: Request, report) -> Run:
    """Check what can be checked at once and start the run (its first step asks the server)."""
    if STATE.run is not None:
        raise client.HostError("a Mattebox run is already going: wait for it or press Cancel")
    cfg = preferences.settings(context)
    source = _source(req)
    plate = _block(bpy.data.images, req.plate, "plate image")
    trimap = _block(bpy.data.images, req.trimap, "trimap image")
    if not req.model:
        raise client.HostError("no model chosen: press Refresh in the Mattebox panel and pick one")
    run = Run(context.scene, cfg, req, source, plate, trimap, report)
    STATE.run, STATE.last_warnings = run, []
    return run


class Run:
    """A run in progress; step() moves it on and, at the end, loads and wires what the command wrote."""

    def __init__(self, scene, cfg, req: Request, source, plate, trimap, report):
        self.scene, self.cfg, self.req, self.report = scene, cfg, req, report
        self.source, self.plate, self.trimap = source, plate, trimap
        name = sources.file_name(source.name)
        self.name = name
        self.output = self.foreground = ""   # patterns, known after the server stage
        self.first = self.last = 0
        self.scratch = ""
        self.job: client.Job | None = None
        self.stage = "server"               # server, export, job, done
        self.exported = [0, 0]              # frames written by Blender for the server / to write
        self.frames: list[int] = []         # frames written (or kept) so far
        self.kept: list[int] = []           # of those, kept from an earlier run (--skip-existing)
        self.notices: list[str] = []        # the job's notices reported so far
        self.alpha: bpy.types.Image | None = None
        self.waiting = False
        self._stop = False
        self._record: dict = {}
        self._record_file = ""
        self._prints: dict[int, list] = {}  # frame -> the inputs' fingerprints
        self._steps = self._go()

    # -- what the operator sees ---------------------------------------------------------------------

    @property
    def percent(self) -> float:
        return self.job.percent if self.job is not None else 0.0

    def describe(self) -> str:
        if self.stage == "server":
            return f"Mattebox: reaching the server at {self.cfg.address()}..., ESC cancels"
        if self.stage == "export":
            return f"Mattebox: writing frames for the server ({self.exported[0]}/{self.exported[1]}), ESC cancels"
        total = self.last - self.first + 1
        kept = f", {len(self.kept)} kept" if self.kept else ""
        bad = f", {len(self.misaligned)} not aligned" if self.misaligned else ""
        return f"Mattebox: {self.percent:.0f}% ({len(self.frames)}/{total} frames{kept}{bad}), ESC cancels"

    def cancel(self) -> None:
        self._stop = True
        if self.job is not None:
            self.job.cancel()

    def step(self, context) -> set | None:
        """One piece of work; None while the run goes on, else the operator's result: {'FINISHED'} when
        every frame came back, {'CANCELLED'} on cancel or failure. Raises what the user must fix."""
        self.waiting = False
        if self._stop and self.job is None:  # cancelled before the command started
            self._release()
            self.report({"WARNING"}, "Mattebox: cancelled before the server started on the frames")
            return {"CANCELLED"}
        try:
            next(self._steps)
            return None
        except StopIteration as end:
            self._release()
            return end.value
        except BaseException:
            self.abandon()
            raise

    def abandon(self) -> None:
        """Stop after an error on this side (or when Blender ends the operator): cancel the job and free
        the temporary files."""
        if self.job is not None:
            self.job.cancel()
        self._release()

    def _release(self) -> None:
        self._steps.close()  # a render in progress discards its scene
        if STATE.run is self:
            STATE.run = None
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)

    # -- the stages ---------------------------------------------------------------------------------

    def _go(self):
        req, cfg = self.req, self.cfg
        task = Task(_ask_server, cfg, req.model)
        while not task.done:
            self.waiting = True
            yield
        models = task.result()
        if models is not None:
            STATE.set_models(cfg, models)
        model = _check_model(cfg, req)

        source = self.source
        first, last = (req.frame_start, req.frame_end) if req.frame_end >= req.frame_start \
            else sources.frame_range(source)
        self.first, self.last = first, last
        inputs = {"input": sources.plan(source, first, last)}
        if self.plate is not None and "background" in model["inputs"]:
            inputs["background"] = sources.plan(self.plate, first, last)
        if self.trimap is not None and "trimap" in model["inputs"]:
            inputs["trimap"] = sources.plan(self.trimap, first, last, data=True, channel=CHANNELS[req.matte_channel])
        sources.share_space(inputs["input"], inputs.get("background"))

        out_dir = _output_dir(req, source)  # nothing is written before the request is known to be good
        os.makedirs(out_dir, exist_ok=True)
        self.output = os.path.join(out_dir, f"{self.name}_alpha.####.exr")
        self.foreground = os.path.join(out_dir, f"{self.name}_foreground.####.exr") if req.foreground else ""
        self.scratch = tempfile.mkdtemp(prefix="mattebox-blender-")

        self.stage = "export"
        self.exported[1] = sum(1 if i.export == "still" else last - first + 1 for i in inputs.values() if i.export)
        for inp in inputs.values():
            for _ in inp.write(self.scratch):
                self.exported[0] += 1
                yield  # a cancel in between: step() ends the run

        options = ["--model", model["name"], "--colour-space", inputs["input"].space]
        if "background" in inputs and req.align_plate:
            options += ["--align-plate"]
        if "trimap" in inputs and CHANNELS[req.matte_channel]:
            options += ["--matte-channel", CHANNELS[req.matte_channel]]
        args = ["matte", *options, "--output", self.output, f"--frames={first}-{last}"]  # "=": negative frames
        for flag, inp in inputs.items():
            args += [f"--{flag}", inp.path]
        if self.foreground:
            args += ["--foreground", self.foreground]
        args += self._resume(options + sorted(inputs) + [bool(self.foreground)], inputs, out_dir)

        self.stage = "job"
        self.job = client.Job(cfg, args)
        STATE.last_command = list(self.job.command)
        while True:
            running = self.job.running  # read before poll(): no event can arrive after a False
            self._take(self.job.poll())
            if not running:
                break
            self.waiting = True
            yield
        self.stage = "done"
        return self._finish()

    # -- resuming a stopped run ---------------------------------------------------------------------

    def _resume(self, settings: list, inputs: dict, out_dir: str) -> list[str]:
        """["--skip-existing"]: frames on disk that an earlier run matted with these settings and inputs are
        kept; any other output file of the range (other settings, changed inputs, a frame nobody reported)
        is removed first, so the server mattes it again. The record (settings, and per frame the inputs'
        fingerprints) is written before the command starts and after each frame it reports."""
        self._record_file = os.path.join(out_dir, f".{self.name}.mattebox.json")
        try:
            with open(self._record_file) as f:
                old = json.load(f)
        except (OSError, ValueError):
            old = {}
        same = old.get("version") == _RECORD_VERSION and old.get("settings") == settings
        done = old.get("frames", {}) if same else {}
        self._prints = {f: [inp.fingerprint(f) for inp in inputs.values()] for f in range(self.first, self.last + 1)}
        for frame, prints in self._prints.items():
            if done.get(str(frame)) != prints:
                done.pop(str(frame), None)
                for pattern in filter(None, (self.output, self.foreground)):
                    try:
                        os.remove(sequence.frame_path(pattern, frame))
                    except FileNotFoundError:
                        pass
        self._record = {"version": _RECORD_VERSION, "settings": settings, "frames": done}
        self._save_record()
        return ["--skip-existing"]

    def _save_record(self) -> None:
        if not self._record_file:
            return
        tmp = self._record_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self._record, f)
        os.replace(tmp, self._record_file)

    # -- events and the end -------------------------------------------------------------------------

    def _take(self, events: list[dict]) -> None:
        """Frames written (or kept), the record of what they were matted from, the job's new notices."""
        new = False
        for e in events:
            if e["event"] == "frame":
                self.frames.append(e["frame"])
                if e.get("skipped"):
                    self.kept.append(e["frame"])
                if e["frame"] in self._prints:
                    self._record["frames"][str(e["frame"])] = self._prints[e["frame"]]
                    new = True
        if new:
            self._save_record()
        for message in self.job.notices[len(self.notices):]:
            self.notices.append(message)
            self.report({"INFO"}, f"Mattebox: {message}")

    @property
    def misaligned(self) -> dict[int, str]:
        """Frames whose clean plate could not be aligned -> why (matted with the plate as given)."""
        return self.job.misaligned if self.job is not None else {}

    def _finish(self) -> set:
        self.job.wait()
        self._take(self.job.poll())
        if self.frames:
            first, last = min(self.frames), max(self.frames)
            self.alpha = load_sequence(self.output, first, last, f"{self.name} alpha")
            foreground = None
            if self.foreground:
                foreground = load_sequence(self.foreground, first, last, f"{self.name} foreground")
            clip_start = sources.clip_start(self.source) if isinstance(self.source, bpy.types.MovieClip) else 1
            compositor.wire(self.scene, self.source, self.alpha, first, last, clip_start, foreground)
        where = os.path.dirname(self.output)
        STATE.last_warnings = list(self.notices)
        if self.misaligned:
            line = client.warning_lines([], self.misaligned)[0] + ": check those frames"
            STATE.last_warnings.append(line)
            self.report({"WARNING"}, f"Mattebox: {line}")
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
        kept = f" ({len(self.kept)} kept from an earlier run)" if self.kept else ""
        fg = " and unmixed foreground" if self.foreground else ""
        count = f"{len(self.frames)} frame{'s' if len(self.frames) != 1 else ''}"
        self.report({"INFO"}, f"Mattebox: {count} of alpha{fg} in {where}{kept}, wired into "
                              f"the compositor")
        return {"FINISHED"}


def load_sequence(pattern: str, first: int, last: int, name: str) -> bpy.types.Image:
    """Frames first..last of a #### pattern as an image datablock `name` (a sequence when there are
    several), reused on re-runs."""
    path = sequence.frame_path(pattern, first)
    image = bpy.data.images.get(name)
    if image is None:
        image = bpy.data.images.load(path, check_existing=False)
        image.name = name
    else:
        image.filepath = path
    image.source = "SEQUENCE" if last > first else "FILE"
    image.reload()
    return image

