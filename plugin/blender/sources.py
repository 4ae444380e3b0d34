"""Where the server finds a datablock's frames. In path mode the server reads image files, so:

- an image sequence on disk (Image or MovieClip) goes by its pattern, the frame number as ####;
- a single image file on disk goes by its path (one picture used for every frame);
- a movie file is not something the server reads: its frames are rendered to temporary EXRs
  through a throwaway compositor scene;
- an image that lives only in Blender (generated, painted, packed, Render Result) is saved to a
  temporary EXR first.

Colour pictures are written scene-linear (what the server assumes for float files); `data=True`
(trimaps) writes the stored values untouched, so a grey 0.5 stays 0.5.
"""
from __future__ import annotations

import array
import os
import re

import bpy

from . import compositor
from .host.client import HostError

_FRAME_NUMBER = re.compile(r"\d+(?=\D*$)")  # the last run of digits in a file name


def path_of(block) -> str:
    """The datablock's file, absolute ("" when it has none)."""
    return bpy.path.abspath(block.filepath, library=block.library) if block.filepath else ""


def is_sequence(block) -> bool:
    return block.source == "SEQUENCE"


def is_movie(block) -> bool:
    return block.source == "MOVIE"


def sequence_pattern(path: str) -> str:
    """/shots/a/plate.1001.exr -> /shots/a/plate.####.exr (the padding kept)."""
    folder, name = os.path.split(path)
    m = _FRAME_NUMBER.search(name)
    if m is None:
        raise HostError(f"{path} has no frame number in its name, so it is not an image sequence: set the "
                        f"image's source to Single Image, or rename the files name.1001.exr ...")
    return os.path.join(folder, name[:m.start()] + "#" * len(m.group()) + name[m.end():])


def frames_on_disk(pattern: str) -> list[int]:
    """Sorted frame numbers of the files that match a #### pattern."""
    folder, name = os.path.split(pattern)
    head, _, tail = name.partition("#" * name.count("#"))
    rx = re.compile(re.escape(head) + r"(\d+)" + re.escape(tail))
    try:
        names = os.listdir(folder or ".")
    except OSError:
        return []
    return sorted(int(m.group(1)) for m in map(rx.fullmatch, names) if m)


def clip_start(clip) -> int:
    """The file frame a MovieClip shows as its frame 1: a movie's first frame, or for a sequence the
    file it was loaded from."""
    if not is_sequence(clip):
        return 1
    return int(_FRAME_NUMBER.search(os.path.basename(clip.filepath)).group())


def frame_range(block) -> tuple[int, int]:
    """The frames the datablock itself has: a sequence's files on disk, a movie's frames 1..N, or 1-1."""
    if is_sequence(block):
        pattern = sequence_pattern(path_of(block))
        found = frames_on_disk(pattern)
        if not found:
            raise HostError(f"no files on disk match {pattern} ({block.name}): check the image's file path")
        return found[0], found[-1]
    if is_movie(block):
        return 1, block.frame_duration
    return 1, 1


def export(block, first: int, last: int, folder: str, data: bool = False) -> str:
    """A file or #### pattern the server can read for frames first..last of `block` (an Image or a
    MovieClip), writing temporary EXRs into `folder` when it has to."""
    if getattr(block, "source", "") == "TILED":
        raise HostError(f"{block.name} is a UDIM tiled image, which Mattebox cannot matte: use a single image "
                        f"or a sequence")
    path = path_of(block)
    if is_sequence(block):
        return sequence_pattern(path)
    if is_movie(block):
        if not os.path.isfile(path):
            raise HostError(f"the movie of {block.name} is not on disk at {path}: check its file path")
        return _render_movie(path, block.name, first, last, folder, data)
    if isinstance(block, bpy.types.Image) and os.path.isfile(path) and not block.packed_file and not block.is_dirty:
        return path
    return _save_still(block, folder, data)


def file_name(block_name: str) -> str:
    """A datablock's name as a file name stem: without the extension and frame number Blender names
    it after ("plate.1001.exr" -> "plate", "clip.mov" -> "clip"), safe characters ("Shot 010" -> "Shot_010")."""
    stem, extension = re.subn(r"\.[A-Za-z][A-Za-z0-9]{1,4}$", "", block_name)
    if extension:
        stem = re.sub(r"[._]\d+$", "", stem)
    return re.sub(r"[^\w.-]+", "_", stem).strip("._") or "image"


def _export_scene() -> bpy.types.Scene:
    """A scene that writes 32-bit float RGBA EXRs and renders only its compositor."""
    scene = bpy.data.scenes.new("Mattebox export")
    settings = scene.render.image_settings
    settings.file_format = "OPEN_EXR"
    settings.color_depth = "32"
    settings.color_mode = "RGBA"
    scene.render.resolution_percentage = 100
    scene.render.use_compositing = True
    scene.render.use_sequencer = False
    return scene


def _render_movie(path: str, name: str, first: int, last: int, folder: str, data: bool) -> str:
    movie = bpy.data.images.load(path, check_existing=False)
    scene = _export_scene()
    tree = compositor.tree(scene)
    tree.nodes.clear()  # Blender 4.x starts a tree with Render Layers, which would render the 3D scene
    try:
        if data:
            movie.colorspace_settings.name = "Non-Color"
        if movie.size[0] == 0:  # reading the size loads the movie
            raise HostError(f"Blender cannot read the movie {path} ({name}): convert it to an image sequence")
        scene.render.resolution_x, scene.render.resolution_y = movie.size
        node = tree.nodes.new("CompositorNodeImage")
        node.image = movie
        compositor.show_frames(node, first, last)
        tree.links.new(node.outputs["Image"], compositor.output_socket(tree))
        scene.frame_start, scene.frame_end = first, last
        pattern = os.path.join(folder, file_name(name) + ".####.exr")
        scene.render.filepath = pattern.removesuffix(".exr")
        scene.render.use_file_extension = True
        bpy.ops.render.render(animation=True, scene=scene.name)
    finally:
        compositor.discard(scene)
        bpy.data.images.remove(movie)
    missing = [f for f in range(first, last + 1) if not os.path.isfile(pattern.replace("####", f"{f:04d}"))]
    if missing:
        raise HostError(f"Blender did not render frames {missing[0]}-{missing[-1]} of the movie {path}: check that "
                        f"the clip has these frames")
    return pattern


def _save_still(image, folder: str, data: bool) -> str:
    if not isinstance(image, bpy.types.Image) or image.size[0] == 0:
        raise HostError(f"{image.name} has no pixels Blender can read (file missing?): reload or replace it")
    path = os.path.join(folder, file_name(image.name) + ".exr")
    scene = _export_scene()
    copy = _raw_copy(image) if data else None
    try:
        (copy or image).save_render(path, scene=scene)
    finally:
        compositor.discard(scene)
        if copy is not None:
            bpy.data.images.remove(copy)
    return path


def _raw_copy(image) -> bpy.types.Image:
    """A float Non-Color copy with the stored pixel values (no colour conversion on saving)."""
    width, height = image.size
    pixels = array.array("f", bytes(4 * 4 * width * height))
    image.pixels.foreach_get(pixels)
    copy = bpy.data.images.new(f"{image.name} (raw)", width, height, alpha=True, float_buffer=True, is_data=True)
    copy.pixels.foreach_set(pixels)
    return copy
