"""The Mattebox panel in the sidebars (N) of the Compositor and the Movie Clip editor: server status,
model and the inputs it needs, source, plate (align), trimap (channel), frames, output (unmixed foreground),
Matte / Cancel, last error."""
from __future__ import annotations

import textwrap

import bpy

from .settings import chosen_model
from .state import STATE

_INPUT_NAMES = {"image": "image", "background": "clean plate", "trimap": "trimap"}


def _matte_button(layout, settings) -> None:
    """Matte, with the panel's choices as the operator's properties."""
    op = layout.operator("mattebox.matte", icon="PLAY")
    op.image = settings.image.name if settings.source == "IMAGE" and settings.image else ""
    op.clip = settings.clip.name if settings.source == "CLIP" and settings.clip else ""
    op.plate = settings.plate.name if settings.plate else ""
    op.trimap = settings.trimap.name if settings.trimap else ""
    op.model = chosen_model(settings)
    op.frame_start, op.frame_end = (0, -1) if settings.whole_source else (settings.frame_start, settings.frame_end)
    op.output_dir = settings.output_dir
    op.align_plate = settings.align_plate
    op.matte_channel = settings.matte_channel
    op.foreground = settings.foreground


class _MatteboxPanel:
    bl_region_type = "UI"
    bl_category = "Mattebox"
    bl_label = "Mattebox"

    def draw(self, context):
        layout, settings = self.layout, context.scene.mattebox
        row = layout.row()
        row.label(text=f"Server: {STATE.status}")
        row.operator("mattebox.refresh", text="", icon="FILE_REFRESH")

        layout.prop(settings, "model_choice")
        model = STATE.model(chosen_model(settings))
        if model is not None:
            col = layout.column(align=True)
            col.label(text=model["description"])
            col.label(text="Needs: " + ", ".join(_INPUT_NAMES.get(i, i) for i in model["inputs"]))

        layout.prop(settings, "source", expand=True)
        layout.prop(settings, "image" if settings.source == "IMAGE" else "clip")
        layout.prop(settings, "plate")
        if settings.plate and (model is None or "background" in model["inputs"]):
            layout.prop(settings, "align_plate")
        layout.prop(settings, "trimap")
        if settings.trimap and (model is None or "trimap" in model["inputs"]):
            layout.prop(settings, "matte_channel")
        layout.prop(settings, "whole_source")
        if not settings.whole_source:
            row = layout.row(align=True)
            row.prop(settings, "frame_start")
            row.prop(settings, "frame_end")
        layout.prop(settings, "output_dir")
        layout.prop(settings, "foreground")

        if STATE.run is not None:
            layout.label(text=STATE.run.describe())
            layout.operator("mattebox.cancel", icon="CANCEL")
        else:
            _matte_button(layout, settings)

        width = max(20, context.region.width // 7)
        if STATE.last_warnings:
            box = layout.box()
            for warning in STATE.last_warnings:
                for i, line in enumerate(textwrap.wrap(warning, width)):
                    box.label(text=line, icon="INFO" if i == 0 else "BLANK1")
        if STATE.last_error:
            box = layout.box()
            box.alert = True
            for i, line in enumerate(textwrap.wrap(STATE.last_error, width)):
                box.label(text=line, icon="ERROR" if i == 0 else "BLANK1")


class MATTEBOX_PT_compositor(_MatteboxPanel, bpy.types.Panel):
    bl_space_type = "NODE_EDITOR"

    @classmethod
    def poll(cls, context):
        return getattr(context.space_data, "tree_type", "") == "CompositorNodeTree"


class MATTEBOX_PT_clip(_MatteboxPanel, bpy.types.Panel):
    bl_space_type = "CLIP_EDITOR"


register, unregister = bpy.utils.register_classes_factory((MATTEBOX_PT_compositor, MATTEBOX_PT_clip))
