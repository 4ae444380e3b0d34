"""The scene compositor, on Blender 5 and 4.x: colour + alpha sequence -> Set Alpha (Apply Mask) -> output.

Blender's compositor works in premultiplied RGBA, so the output is premultiplied: the colour times the
alpha, with the alpha as its alpha (Set Alpha's Apply Mask mode; its Replace Alpha mode would give
straight RGB, which an Alpha Over adds on top of the background: the whole plate shows). The colour
is the unmixed foreground the server wrote when there is one (straight RGB without the old
background's colour at soft edges), else the source.

Blender 5 keeps the tree in scene.compositing_node_group (a node group, created here when missing)
and outputs through a Group Output node with an "Image" socket; Blender 4.2-4.5 keep it in
scene.node_tree (scene.use_nodes) and output through the Composite node, and Set Alpha's mode is its
`mode` property ('APPLY' / 'REPLACE_ALPHA') instead of a "Type" socket. A 4.x tree this module turns
on starts, as in Blender 5, without the Render Layers node Blender puts in it. The nodes this module
adds are named "Mattebox ..." and reused when the same scene is matted again.
"""
from __future__ import annotations

import bpy

SOURCE, ALPHA, FOREGROUND, SET_ALPHA = "Mattebox Source", "Mattebox Alpha", "Mattebox Foreground", "Mattebox Set Alpha"
_BLENDER5 = bpy.app.version >= (5, 0, 0)


def tree(scene: bpy.types.Scene) -> bpy.types.NodeTree:
    """The scene's compositor node tree, created (and compositing turned on) when missing."""
    scene.render.use_compositing = True
    if not _BLENDER5:
        fresh = scene.node_tree is None
        scene.use_nodes = True
        if fresh:  # Blender's default tree: keep only its Composite node, as Blender 5 starts a tree empty
            _empty(scene.node_tree)
        return scene.node_tree
    if scene.compositing_node_group is None:
        scene.compositing_node_group = bpy.data.node_groups.new(f"{scene.name} Compositor", "CompositorNodeTree")
    return scene.compositing_node_group


def _empty(node_tree: bpy.types.NodeTree) -> None:
    """Remove the nodes of Blender 4.x's default compositor tree but the Composite node: its Render Layers
    node (4.5: with a Reroute and a Viewer) makes every render of the compositor render the 3D scene
    first, linked or not (17 s a frame for the default cube in bpy 4.2 on a CPU), for a picture that
    Mattebox's wiring replaces."""
    for node in list(node_tree.nodes):
        if node.bl_idname != "CompositorNodeComposite":
            node_tree.nodes.remove(node)


def discard(scene: bpy.types.Scene) -> None:
    """Remove a scene and (Blender 5) the compositor node group only it used."""
    group = scene.compositing_node_group if _BLENDER5 else None
    bpy.data.scenes.remove(scene)
    if group is not None and group.users == 0:
        bpy.data.node_groups.remove(group)


def output_socket(node_tree: bpy.types.NodeTree) -> bpy.types.NodeSocket:
    """The input that receives the final picture: Group Output "Image" (5) or Composite "Image" (4.x)."""
    if not _BLENDER5:
        return _node(node_tree, "CompositorNodeComposite").inputs["Image"]
    if not any(item.item_type == "SOCKET" and item.in_out == "OUTPUT" and item.name == "Image"
               for item in node_tree.interface.items_tree):
        node_tree.interface.new_socket(name="Image", in_out="OUTPUT", socket_type="NodeSocketColor")
    return _node(node_tree, "NodeGroupOutput").inputs["Image"]


def _node(node_tree, bl_idname: str, name: str = "") -> bpy.types.Node:
    """The node called `name` (or, unnamed, the first of its type), created when missing."""
    found = node_tree.nodes.get(name) if name else next((n for n in node_tree.nodes if n.bl_idname == bl_idname), None)
    if found is not None and found.bl_idname == bl_idname:
        return found
    if found is not None:
        node_tree.nodes.remove(found)
    node = node_tree.nodes.new(bl_idname)
    if name:
        node.name = node.label = name
    return node


def show_frames(node, first: int, last: int, at: int | None = None) -> None:
    """An Image node shows file (or movie) frames first..last from scene frame `at` on (default: file
    frame F at scene frame F)."""
    node.frame_start = first if at is None else at
    node.frame_offset = first - 1
    node.frame_duration = last - first + 1
    node.use_cyclic = False


def wire(scene: bpy.types.Scene, source, alpha: bpy.types.Image, first: int, last: int,
         clip_start: int = 1, foreground: bpy.types.Image | None = None) -> bpy.types.NodeTree:
    """Source (Image or MovieClip) times `alpha` (file frames first..last), premultiplied, to the
    compositor output; with `foreground` (the unmixed foreground frames, straight RGB) that instead of
    the source's colour. clip_start: the file frame a MovieClip shows as its frame 1."""
    node_tree = tree(scene)
    at = first
    if isinstance(source, bpy.types.MovieClip):
        src = _node(node_tree, "CompositorNodeMovieClip", SOURCE)
        src.clip = source
        at = first - clip_start + source.frame_start - source.frame_offset  # where the clip shows file `first`
    else:
        src = _node(node_tree, "CompositorNodeImage", SOURCE)
        src.image = source
        show_frames(src, first, last)
    matte = _node(node_tree, "CompositorNodeImage", ALPHA)
    matte.image = alpha
    show_frames(matte, first, last, at)
    colour = src
    if foreground is not None:
        foreground.alpha_mode = "NONE"  # RGB only: the alpha comes from the matte
        colour = _node(node_tree, "CompositorNodeImage", FOREGROUND)
        colour.image = foreground
        show_frames(colour, first, last, at)
    elif node_tree.nodes.get(FOREGROUND) is not None:  # an earlier run's: this one has no foreground
        node_tree.nodes.remove(node_tree.nodes[FOREGROUND])
    set_alpha = _node(node_tree, "CompositorNodeSetAlpha", SET_ALPHA)
    _apply_mask(set_alpha)
    node_tree.links.new(colour.outputs["Image"], set_alpha.inputs["Image"])
    node_tree.links.new(matte.outputs["Alpha"], set_alpha.inputs["Alpha"])
    node_tree.links.new(set_alpha.outputs["Image"], output_socket(node_tree))
    for i, node in enumerate((src, matte, colour if colour is not src else None)):
        if node is not None:
            node.location = (-600, 200 - 350 * i)
    set_alpha.location = (-250, 100)
    return node_tree


def _apply_mask(node) -> None:
    """Set Alpha multiplies the colour (RGB and A) by the alpha input: premultiplied RGB times the matte.
    Blender 5 has it as the "Type" menu socket ("Apply Mask" / "Replace Alpha"); 4.x as the node's
    `mode` property ('APPLY' / 'REPLACE_ALPHA')."""
    if "Type" in node.inputs:
        node.inputs["Type"].default_value = "Apply Mask"
    else:
        node.mode = "APPLY"
