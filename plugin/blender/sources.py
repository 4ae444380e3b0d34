"""Where the server finds a datablock's frames, and in which colour space. In path mode the server reads
image files, so:

- an image sequence on disk (Image or MovieClip) goes by its pattern, the frame number as ####;
- a single image file on disk goes by its path (one picture used for every frame);
- a movie file is not something the server reads: its frames are rendered to temporary EXRs
  through a throwaway compositor scene, one frame per step (Input.write) so Blender stays usable;
- an image that lives only in Blender (generated, painted, packed, Render Result) is saved to a
  temporary EXR first;
- a file whose colour space the server does not know (AgX Log, Filmic Log, ...) is rendered to
  temporary EXRs too: Blender converts it to its scene-linear working space on the way.

Colour pictures are written scene-linear (Blender's working space, passed as --colour-space);
`data=True` (trimaps) writes the stored values untouched, so a grey 0.5 stays 0.5.

File patterns and frame numbers come from sequence.py, a copy of the project's models/sequence.py
put into the extension zip when it is built.
"""
from __future__ import annotations

import array
import hashlib
import os
import re
from dataclasses import dataclass, field

import bpy

from . import compositor, sequence
from .host.client import HostError


#: Blender colour space (image.colorspace_settings.name) -> the OpenColorIO name the server knows.
#: Not here (Blender's own log and display encodings: AgX Log, Filmic Log, Filmic sRGB, AgX Base ...,
#: Rec.2020, Rec.2100-PQ/HLG, Linear CIE-XYZ E, Linear FilmLight E-Gamut): Blender converts those.
SPACES = {
    "Linear Rec.709": "lin_rec709_scene",
    "Linear": "lin_rec709_scene",  # Blender before 4.0
    "sRGB": "sRGB",
    "ACEScg": "ACEScg",
    "ACES2065-1": "ACES2065-1",
    "ACEScc": "ACEScc",
    "ACEScct": "ACEScct",
    "Linear Rec.2020": "lin_rec2020_scene",
    "Linear DCI-P3 D65": "lin_p3d65_scene",
    "Linear CIE-XYZ D65": "lin_ciexyzd65_scene",
    "Display P3": "sRGB Encoded P3-D65",
    "Rec.1886": "Gamma 2.4 Encoded Rec.709",
    "Non-Color": "Raw",
}


def path_of(block) -> str:
    """The datablock's file, absolute ("" when it has none)."""
    return bpy.path.abspath(block.filepath, library=block.library) if block.filepath else ""


def is_sequence(block) -> bool:
    return block.source == "SEQUENCE"


def is_movie(block) -> bool:
    return block.source == "MOVIE"


def sequence_pattern(block) -> str:
    """The #### pattern of an image sequence datablock's files."""
    path = path_of(block)
    try:
        return sequence.pattern_of_file(path)[0]
    except ValueError as err:
        raise HostError(f"{err}: set the image's source to Single Image, or rename the files "
                        f"name.1001.exr ...") from None


def clip_start(clip) -> int:
    """The file frame a MovieClip shows as its frame 1: a movie's first frame, or for a sequence the
    file it was loaded from."""
    if not is_sequence(clip):
        return 1
    return sequence.pattern_of_file(clip.filepath)[1]


def frame_range(block) -> tuple[int, int]:
    """The frames the datablock itself has: a sequence's files on disk, a movie's frames 1..N, or 1-1."""
    if is_sequence(block):
        pattern = sequence_pattern(block)
        found = sequence.frames_on_disk(pattern)
        if not found:
            raise HostError(f"no files on disk match {pattern} ({block.name}): check the image's file path")
        return found[0], found[-1]
    if is_movie(block):
        return 1, block.frame_duration
    return 1, 1


def file_name(block_name: str) -> str:
    """A datablock's name as a file name stem: without the extension and frame number Blender names
    it after ("plate.1001.exr" -> "plate", "clip.mov" -> "clip"), safe characters ("Shot 010" -> "Shot_010")."""
    stem, extension = re.subn(r"\.[A-Za-z][A-Za-z0-9]{1,4}$", "", block_name)
    if extension:
        stem = re.sub(r"[._]\d+$", "", stem)
    return re.sub(r"[^\w.-]+", "_", stem).strip("._") or "image"


# -- colour spaces --------------------------------------------------------------------------------------


def working_space() -> str:
    """The server's name for Blender's scene-linear working space, the space of the EXRs Blender writes
    (Blender 5: chosen per .blend file; 4.x: Linear Rec.709)."""
    settings = getattr(bpy.data, "colorspace", None)  # Blender 5
    name = getattr(settings, "working_space", "") or "Linear Rec.709"
    if name in SPACES:
        return SPACES[name]
    interop = getattr(settings, "working_space_interop_id", "")  # an OpenColorIO alias, e.g. lin_rec709_scene
    if interop:
        return interop
    raise HostError(f"Mattebox does not know Blender's working colour space {name!r}: set the working space "
                    f"to Linear Rec.709, Linear Rec.2020 or ACEScg (Render Properties > Color Management)")


def colour_space(block) -> str | None:
    """The server's name for the colour space of the datablock's own files; None when the server has
    no such space (Blender then writes the frames in its working space)."""
    name = block.colorspace_settings.name
    if name == "scene_linear":
        return working_space()
    return SPACES.get(name)


# -- inputs of a job ------------------------------------------------------------------------------------


@dataclass
class Input:
    """One input of a job (source, plate or trimap): what the server reads and how it gets there.

    export: "" when the server reads the datablock's own files; "movie", "still" or "sequence" when
    Blender writes them first (write()). path and space are what to pass to the command (path is
    known once write() has run); channel: the trimap channel the user picked ("" = the server's
    choice: the file's alpha, else its only channel, else luminance)."""
    block: object
    first: int
    last: int
    data: bool = False
    channel: str = ""
    export: str = ""
    path: str = ""
    space: str = ""
    _hashes: dict = field(default_factory=dict, repr=False)

    def rgb_only(self) -> bool:
        """A trimap Blender writes gets no alpha channel unless its alpha means something: the server reads
        a file's alpha first, and a painted trimap's alpha is all 1."""
        if not self.data or self.channel in ("A", "a"):
            return False
        return self.export != "still" or _alpha_is_opaque(self.block)

    def convert(self) -> None:
        """Have Blender write the frames in its working space (a colour space the server lacks, or one the
        other inputs must share)."""
        if not self.export:
            self.export = "sequence" if is_sequence(self.block) else "still"
        self.space = working_space()

    def write(self, folder: str):
        """Write the frames the server needs into `folder` (nothing when it reads the datablock's files);
        a generator that yields after each frame, so that a timer can step it."""
        if self.export in ("movie", "sequence"):
            self.path = yield from _render_frames(self, folder)
        elif self.export == "still":
            self.path = _save_still(self.block, folder, self.data, self.rgb_only())
            yield

    def frame_file(self, frame: int) -> str:
        return sequence.frame_path(self.path, frame) if sequence.has_frame_token(self.path) else self.path

    def fingerprint(self, frame: int) -> list:
        """What the matte of `frame` depends on in this input: its file's size and time (the datablock's own
        files, a movie), or the content of the file Blender wrote."""
        if self.export in ("", "movie"):
            file = path_of(self.block) if self.export == "movie" else self.frame_file(frame)
            try:
                st = os.stat(file)
            except OSError:
                return [file, None]
            return [file, st.st_size, st.st_mtime_ns, self.block.colorspace_settings.name, self.space]
        file = self.frame_file(frame)
        if file not in self._hashes:
            with open(file, "rb") as f:
                self._hashes[file] = hashlib.sha1(f.read()).hexdigest()
        return [self._hashes[file], self.space]


def plan(block, first: int, last: int, data: bool = False, channel: str = "") -> Input:
    """How frames first..last of `block` (an Image or a MovieClip) reach the server."""
    if getattr(block, "source", "") == "TILED":
        raise HostError(f"{block.name} is a UDIM tiled image, which Mattebox cannot matte: use a single image "
                        f"or a sequence")
    inp = Input(block, first, last, data, channel)
    path = path_of(block)
    if is_sequence(block):
        inp.path = sequence_pattern(block)
    elif is_movie(block):
        if not os.path.isfile(path):
            raise HostError(f"the movie of {block.name} is not on disk at {path}: check its file path")
        inp.export = "movie"
    elif isinstance(block, bpy.types.Image) and os.path.isfile(path) and not block.packed_file and not block.is_dirty:
        inp.path = path
    else:
        inp.export = "still"
    if data:
        return inp  # values, not colours: never converted
    space = colour_space(block) if not inp.export else working_space()
    if space is None:
        inp.convert()
    else:
        inp.space = space
    return inp


def share_space(source: Input, plate: Input | None) -> None:
    """The command takes one colour space for the source and the plate: when theirs differ, Blender writes
    the plate (and the source, when it is not in the working space either) in its working space."""
    if plate is None or plate.space == source.space:
        return
    plate.convert()
    if source.space != plate.space:
        source.convert()


def _alpha_is_opaque(image) -> bool:
    if not isinstance(image, bpy.types.Image) or image.size[0] == 0:
        return True
    pixels = _pixels(image)
    return min(pixels[3::4], default=1.0) >= 1.0


def _export_scene(rgb_only: bool = False) -> bpy.types.Scene:
    """A scene that writes 32-bit float EXRs (RGBA, or RGB) and renders only its compositor."""
    scene = bpy.data.scenes.new("Mattebox export")
    settings = scene.render.image_settings
    settings.file_format = "OPEN_EXR"
    settings.color_depth = "32"
    settings.color_mode = "RGB" if rgb_only else "RGBA"
    scene.render.resolution_percentage = 100
    scene.render.use_compositing = True
    scene.render.use_sequencer = False
    return scene


def _render_frames(inp: Input, folder: str):
    """Frames first..last of a movie or an image sequence, rendered to EXRs in `folder` one per step
    (yields after each); returns their #### pattern."""
    block, name, first, last = inp.block, inp.block.name, inp.first, inp.last
    own = inp.export == "movie" or not isinstance(block, bpy.types.Image)  # a clip: its file as an Image
    image = bpy.data.images.load(path_of(block), check_existing=False) if own else block
    if own and is_sequence(block):
        image.source = "SEQUENCE"
    scene = _export_scene(inp.rgb_only())
    tree = compositor.tree(scene)  # empty but for the output (no Render Layers: no 3D render)
    pattern = os.path.join(folder, file_name(name) + ".####.exr")
    try:
        if own and (inp.data or block.colorspace_settings.name):
            image.colorspace_settings.name = "Non-Color" if inp.data else block.colorspace_settings.name
        if image.size[0] == 0:  # reading the size loads the movie
            raise HostError(f"Blender cannot read {path_of(block)} ({name}): convert it to an image sequence")
        scene.render.resolution_x, scene.render.resolution_y = image.size
        node = tree.nodes.new("CompositorNodeImage")
        node.image = image
        compositor.show_frames(node, first, last)
        tree.links.new(node.outputs["Image"], compositor.output_socket(tree))
        scene.render.filepath = pattern.removesuffix(".exr")
        scene.render.use_file_extension = True
        for frame in range(first, last + 1):
            scene.frame_start = scene.frame_end = frame
            bpy.ops.render.render(animation=True, scene=scene.name)
            yield
    finally:
        compositor.discard(scene)
        if own:
            bpy.data.images.remove(image)
    missing = [f for f in range(first, last + 1) if not os.path.isfile(sequence.frame_path(pattern, f))]
    if missing:
        raise HostError(f"Blender did not render frames {missing[0]}-{missing[-1]} of {path_of(block)}: check "
                        f"that {name} has these frames")
    return pattern


def _save_still(image, folder: str, data: bool, rgb_only: bool) -> str:
    if not isinstance(image, bpy.types.Image) or image.size[0] == 0:
        raise HostError(f"{image.name} has no pixels Blender can read (file missing?): reload or replace it")
    path = os.path.join(folder, file_name(image.name) + ".exr")
    scene = _export_scene(rgb_only)
    copy = _raw_copy(image) if data else None
    try:
        (copy or image).save_render(path, scene=scene)
    finally:
        compositor.discard(scene)
        if copy is not None:
            bpy.data.images.remove(copy)
    return path


def _pixels(image) -> array.array:
    width, height = image.size
    pixels = array.array("f", bytes(4 * 4 * width * height))
    image.pixels.foreach_get(pixels)
    return pixels


def _raw_copy(image) -> bpy.types.Image:
    """A float Non-Color copy with the stored pixel values (no colour conversion on saving)."""
    width, height = image.size
    copy = bpy.data.images.new(f"{image.name} (raw)", width, height, alpha=True, float_buffer=True, is_data=True)
    copy.pixels.foreach_set(_pixels(image))
    return copy
