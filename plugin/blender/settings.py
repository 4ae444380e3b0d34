"""The panel's choices, saved with each scene (scene.mattebox): source, plate, trimap, model, frame
range, output folder and the options (align a hand-held plate, the trimap's channel, the unmixed
foreground). The Matte button hands them to the mattebox.matte operator."""
from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, PointerProperty, StringProperty

from .state import STATE

ALIGN_PLATE = ("The clean plate was shot hand-held: align it to each frame before matting (frames where "
               "that fails are reported, and matted with the plate as it is)")
MATTE_CHANNEL = "Channel of the trimap image that holds the trimap"
FOREGROUND = ("Also write the unmixed foreground (straight RGB without the old background's colour at soft "
              "edges) and composite it instead of the source")
CHANNEL_ITEMS = [("AUTO", "Auto", "The file's alpha if it has one, else its only channel, else luminance"),
                 ("ALPHA", "Alpha", "The alpha channel"), ("RED", "Red", "The red channel"),
                 ("GREEN", "Green", "The green channel"), ("BLUE", "Blue", "The blue channel"),
                 ("LUMINANCE", "Luminance", "The luminance of the RGB channels")]


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
    align_plate: BoolProperty(name="Align plate (hand-held)", default=False, description=ALIGN_PLATE)
    matte_channel: EnumProperty(name="Trimap channel", items=CHANNEL_ITEMS, default="AUTO", description=MATTE_CHANNEL)
    foreground: BoolProperty(name="Unmixed foreground", default=False, description=FOREGROUND)


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

