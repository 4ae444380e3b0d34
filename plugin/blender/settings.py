"""The panel's choices, saved with each scene (scene.mattebox): source, plate, trimap, model, frame
range and output folder. The Matte button hands them to the mattebox.matte operator."""
from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, PointerProperty, StringProperty

from .state import STATE


def _model_items(self, context):
    return STATE.model_items or [("NONE", "No models yet: press Refresh", "Ask the server for its models")]


def _get_model(self) -> int:
    names = [item[0] for item in STATE.model_items]
    return names.index(self.model) if self.model in names else 0


def _set_model(self, index: int) -> None:
    if index < len(STATE.model_items):
        self.model = STATE.model_items[index][0]


class MatteboxSettings(bpy.types.PropertyGroup):
    source: EnumProperty(name="Source", items=[("IMAGE", "Image", "An image or image sequence datablock"),
                                               ("CLIP", "Movie Clip", "A movie clip datablock")])
    image: PointerProperty(name="Image", type=bpy.types.Image, description="The image or sequence to matte")
    clip: PointerProperty(name="Clip", type=bpy.types.MovieClip, description="The movie clip to matte")
    plate: PointerProperty(name="Clean plate", type=bpy.types.Image,
                           description="The set without the subject, for plate models")
    trimap: PointerProperty(name="Trimap", type=bpy.types.Image,
                            description="Black background, grey unknown, white foreground, for trimap models")
    model: StringProperty(name="Model", description="The model's name on the server")
    model_choice: EnumProperty(name="Model", items=_model_items, get=_get_model, set=_set_model,
                               description="Models the server offers (Refresh asks it again)")
    whole_source: BoolProperty(name="All frames of the source", default=True)
    frame_start: IntProperty(name="Start", default=1)
    frame_end: IntProperty(name="End", default=1)
    output_dir: StringProperty(name="Output", subtype="DIR_PATH",
                               description="Folder for the alpha frames (empty: mattebox/ next to the .blend)")


def chosen_model(settings: MatteboxSettings) -> str:
    """The model the panel shows: the saved name when the server list is not known yet."""
    if not STATE.model_items:
        return settings.model
    return STATE.model_items[_get_model(settings)][0]


def register() -> None:
    bpy.utils.register_class(MatteboxSettings)
    bpy.types.Scene.mattebox = PointerProperty(type=MatteboxSettings)


def unregister() -> None:
    del bpy.types.Scene.mattebox
    bpy.utils.unregister_class(MatteboxSettings)

