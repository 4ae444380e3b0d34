"""Operators: mattebox.matte (modal with a UI: timer-driven steps and progress, ESC cancels;
synchronous in background mode, where no timer ticks), mattebox.cancel and mattebox.refresh (modal with
a UI: the models are listed, and a local server started, on a worker thread; in background mode the
same thread, joined).

Problems are reported with self.report({'ERROR'}, ...) and kept as the panel's last error; an
unexpected one also prints its traceback to the system console.
"""
from __future__ import annotations

import dataclasses
import time
import traceback

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty

from . import matting, preferences, settings
from .host.client import HostError
from .host.config import ConfigError
from .state import STATE

#: failures with a message meant for the user (render and file errors included)
USER_ERRORS = (HostError, ConfigError, OSError, RuntimeError)


def _fail(op, err: BaseException) -> set:
    if not isinstance(err, USER_ERRORS):
        traceback.print_exc()
        err = f"unexpected {type(err).__name__}: {err} (traceback in Blender's system console)"
    STATE.last_error = str(err)
    op.report({"ERROR"}, f"Mattebox: {err}")
    return {"CANCELLED"}


def _redraw(context) -> None:
    for area in context.screen.areas if context.screen else ():
        area.tag_redraw()


class MATTEBOX_OT_matte(bpy.types.Operator):
    bl_idname = "mattebox.matte"
    bl_label = "Matte"
    bl_description = "Matte the source on the Mattebox server and wire the alpha into the compositor"
    bl_options = {"REGISTER", "UNDO"}

    image: StringProperty(name="Image", description="Source image datablock (a sequence or a single image)")
    clip: StringProperty(name="Movie clip", description="Source movie clip datablock (instead of an image)")
    plate: StringProperty(name="Clean plate", description="Clean plate image datablock, for plate models")
    trimap: StringProperty(name="Trimap", description="Trimap image datablock, for trimap models")
    model: StringProperty(name="Model", description="Model name on the server")
    frame_start: IntProperty(name="Start", default=0, description="First frame")
    frame_end: IntProperty(name="End", default=-1, description="Last frame (before Start: every frame of the source)")
    output_dir: StringProperty(name="Output", subtype="DIR_PATH",
                               description="Folder for the alpha frames (empty: mattebox/ next to the .blend)")
    align_plate: BoolProperty(name="Align plate", description=settings.ALIGN_PLATE)
    matte_channel: EnumProperty(name="Trimap channel", items=settings.CHANNEL_ITEMS, default="AUTO",
                                description=settings.MATTE_CHANNEL)
    foreground: BoolProperty(name="Unmixed foreground", description=settings.FOREGROUND)

    def _start(self, context) -> matting.Run:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(matting.Request)}
        return matting.start(context, matting.Request(**fields), self.report)

    def execute(self, context):
        """Run to the end (background mode, or a script calling the operator)."""
        try:
            run = self._start(context)
        except Exception as err:
            return _fail(self, err)
        try:
            while (result := run.step(context)) is None:
                if run.waiting:
                    time.sleep(0.05)
        except BaseException as err:
            run.abandon()
            if not isinstance(err, Exception):
                raise
            return _fail(self, err)
        return result

    def invoke(self, context, event):
        if bpy.app.background or context.window is None:
            return self.execute(context)
        try:
            self._run = self._start(context)
        except Exception as err:
            return _fail(self, err)
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.1, window=context.window)  # a step each: one exported frame, or a poll
        self._shown = ""
        wm.modal_handler_add(self)
        wm.progress_begin(0, 100)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC" and event.value == "PRESS":
            self._run.cancel()
            return {"RUNNING_MODAL"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        try:
            result = self._run.step(context)
        except Exception as err:
            self._run.abandon()
            self._end(context)
            return _fail(self, err)
        if result is None:
            shown = self._run.describe()
            if shown != self._shown:  # redraw what changed only
                self._shown = shown
                context.window_manager.progress_update(int(self._run.percent))
                context.workspace.status_text_set(shown)
                _redraw(context)
            return {"RUNNING_MODAL"}
        self._end(context)
        return result

    def cancel(self, context):
        """Blender ends the modal run from outside (a file is loaded, the window closes): stop the job."""
        self._run.abandon()
        self._end(context)

    def _end(self, context) -> None:
        wm = context.window_manager
        wm.event_timer_remove(self._timer)
        wm.progress_end()
        if context.workspace is not None:  # None while Blender loads a file
            context.workspace.status_text_set(None)
        _redraw(context)


class MATTEBOX_OT_cancel(bpy.types.Operator):
    bl_idname = "mattebox.cancel"
    bl_label = "Cancel"
    bl_description = "Stop the Mattebox run; the frames already finished are kept"

    @classmethod
    def poll(cls, context):
        return STATE.run is not None

    def execute(self, context):
        STATE.run.cancel()
        return {"FINISHED"}


class MATTEBOX_OT_refresh(bpy.types.Operator):
    bl_idname = "mattebox.refresh"
    bl_label = "Refresh"
    bl_description = "Ask the Mattebox server for its models (starting a local server when allowed)"

    def _begin(self, context):
        self._cfg = preferences.settings(context)
        self._task = STATE.refresh_task(self._cfg)

    def execute(self, context):
        """Background mode or a script: the same worker thread, waited for."""
        try:
            self._begin(context)
        except Exception as err:
            return _fail(self, err)
        self._task.join()
        return self._done(context)

    def invoke(self, context, event):
        if bpy.app.background or context.window is None:
            return self.execute(context)
        try:
            self._begin(context)
        except Exception as err:
            return _fail(self, err)
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.modal_handler_add(self)
        _redraw(context)  # the panel says it is asking
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type != "TIMER" or not self._task.done:
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        return self._done(context)

    def cancel(self, context):
        context.window_manager.event_timer_remove(self._timer)  # the thread ends on its own

    def _done(self, context) -> set:
        """Main thread: keep the models the thread fetched, report how it went."""
        try:
            STATE.finish_refresh(self._cfg, self._task)
        except Exception as err:
            result = _fail(self, err)
        else:
            STATE.last_error = ""
            self.report({"INFO"}, f"Mattebox: {STATE.status}")
            result = {"FINISHED"}
        _redraw(context)
        return result


_CLASSES = (MATTEBOX_OT_matte, MATTEBOX_OT_cancel, MATTEBOX_OT_refresh)
register, unregister = bpy.utils.register_classes_factory(_CLASSES)
