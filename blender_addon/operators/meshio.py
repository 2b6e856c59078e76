"""Blender data out: the selected object's evaluated mesh (modifiers applied), triangulated, as a `MeshPayload`;
images open in Blender as encoded files for the backend (photos, pictures), and the Image Editor showing one."""

from __future__ import annotations

import os
from pathlib import Path

import bpy
import numpy as np

from ..core import photo
from ..core.errors import AddonError
from ..core.meshpack import check_size, encode_png, pack_mesh, pixels_to_png
from ..core.protocol import MeshPayload

_SELECT_HINT = "select a mesh object in the 3D Viewport (click it), then run the job again"


def selected_mesh_object(context) -> bpy.types.Object:
    """The active object if it is selected, else the one selected object; AddonError saying what to do."""
    active = context.active_object
    selected = list(context.selected_objects)
    obj = active if active is not None and active in selected else (selected[0] if len(selected) == 1 else None)
    if obj is None:
        if len(selected) > 1:
            raise AddonError(f"{len(selected)} objects are selected and none is active",
                             "click the one to use so it is active", code="no_selection")
        raise AddonError("no object is selected", _SELECT_HINT, code="no_selection")
    if obj.type != "MESH":
        raise AddonError(f"'{obj.name}' is a {obj.type.lower().replace('_', ' ')} object, not a mesh",
                         "select a mesh object, or convert this one (Object > Convert > Mesh)", code="not_a_mesh")
    return obj


def mesh_payload(obj: bpy.types.Object, depsgraph=None, with_texture: bool = True) -> MeshPayload:
    """The object's evaluated mesh in object-local space (Z up), triangulated, UVs per triangle corner,
    its base-colour image (PNG) when it has one, and its `matrix_world`."""
    depsgraph = depsgraph or bpy.context.evaluated_depsgraph_get()
    evaluated = obj.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    try:
        if mesh is None or len(mesh.polygons) == 0:
            raise AddonError(f"'{obj.name}' has no faces", "a job needs a mesh with faces: add geometry or pick "
                                                           "another object", code="empty_mesh")
        mesh.calc_loop_triangles()
        n_vertices, n_triangles = len(mesh.vertices), len(mesh.loop_triangles)
        check_size(obj.name, n_vertices, n_triangles)
        vertices = np.empty(n_vertices * 3, np.float32)
        mesh.vertices.foreach_get("co", vertices)
        triangles = np.empty(n_triangles * 3, np.int32)
        mesh.loop_triangles.foreach_get("vertices", triangles)
        corner_uv = None
        uv_layer = mesh.uv_layers.active
        if uv_layer is not None:
            loops = np.empty(n_triangles * 3, np.int32)
            mesh.loop_triangles.foreach_get("loops", loops)
            uv = np.empty(len(mesh.loops) * 2, np.float32)
            uv_layer.uv.foreach_get("vector", uv)
            corner_uv = uv.reshape(-1, 2)[loops]
    finally:
        evaluated.to_mesh_clear()
    texture = base_color_png(obj) if with_texture else None
    return pack_mesh(obj.name, vertices, triangles, corner_uv, texture, obj.matrix_world)


def base_color_image(obj: bpy.types.Object) -> bpy.types.Image | None:
    """The image feeding the first material's Principled BSDF Base Color (through any nodes), if any."""
    for slot in obj.material_slots:
        material = slot.material
        if material is None or material.node_tree is None:
            continue
        for node in material.node_tree.nodes:
            if node.type == "BSDF_PRINCIPLED":
                image = _upstream_image(node.inputs["Base Color"])
                if image is not None:
                    return image
    return None


def _upstream_image(socket, depth: int = 0):
    if depth > 16 or not socket.is_linked:
        return None
    node = socket.links[0].from_node
    if node.type == "TEX_IMAGE":
        return node.image
    for upstream in node.inputs:
        image = _upstream_image(upstream, depth + 1)
        if image is not None:
            return image
    return None


def image_png(image: bpy.types.Image) -> bytes | None:
    """An image as PNG bytes: its packed or on-disk PNG as it is, else its pixels encoded (None if empty)."""
    if image.packed_file is not None and image.file_format == "PNG":
        return bytes(image.packed_file.data)
    if image.source == "FILE" and image.filepath and image.file_format == "PNG":
        path = Path(bpy.path.abspath(image.filepath, library=image.library))
        if path.is_file():
            return path.read_bytes()
    width, height = image.size
    if width == 0 or height == 0:
        return None
    channels = image.channels
    pixels = np.empty(width * height * channels, np.float32)
    image.pixels.foreach_get(pixels)
    return pixels_to_png(pixels, width, height, channels)


def base_color_png(obj: bpy.types.Object) -> bytes | None:
    image = base_color_image(obj)
    return None if image is None else image_png(image)


# -- images sent as inputs (photos, pictures) ------------------------------------------------------------

def _linear_to_srgb(values: np.ndarray) -> np.ndarray:
    values = np.clip(values, 0.0, 1.0)
    return np.where(values <= 0.0031308, values * 12.92, 1.055 * np.power(values, 1 / 2.4) - 0.055)


def image_pixels(image: bpy.types.Image) -> np.ndarray:
    """A Blender image's pixels as [H, W, C] float32 in [0, 1], row 0 at the top, sRGB-encoded (float images,
    which Blender keeps linear, are encoded). AddonError for an image with no pixels (a missing file)."""
    width, height = image.size
    channels = image.channels
    if width * height == 0 or not channels:
        raise AddonError(f"the image {image.name!r} has no pixels (is its file missing?)",
                         "reload it in the Image Editor or pick another photo", code="no_photo")
    flat = np.empty(width * height * channels, np.float32)
    image.pixels.foreach_get(flat)
    pixels = flat.reshape(height, width, channels)[::-1]
    if image.is_float:
        pixels = pixels.copy()
        pixels[..., :3] = _linear_to_srgb(pixels[..., :3])
    return np.ascontiguousarray(pixels)


def image_bytes(image: bpy.types.Image) -> bytes:
    """An image open in Blender as an encoded file for the backend: its packed file, its file on disk (both
    untouched since loading), else its pixels as a PNG (a generated or painted image)."""
    if not image.is_dirty:
        if image.packed_file is not None:
            return bytes(image.packed_file.data)
        if image.source == "FILE" and image.filepath:
            path = os.path.normpath(bpy.path.abspath(image.filepath, library=image.library))
            if os.path.isfile(path):
                return photo.read_photo(path)
    return encode_png(np.clip(np.rint(image_pixels(image) * 255.0), 0, 255).astype(np.uint8))


def image_editor(context):
    """(space, image) of the Image Editor the operator runs in, else the window's first one showing an image."""
    space = context.space_data
    if space is not None and space.type == "IMAGE_EDITOR" and space.image is not None:
        return space, space.image
    window = context.window
    if window is None and context.window_manager is not None and context.window_manager.windows:
        window = context.window_manager.windows[0]
    for area in (window.screen.areas if window is not None and window.screen is not None else ()):
        if area.type == "IMAGE_EDITOR" and area.spaces.active.image is not None:
            return area.spaces.active, area.spaces.active.image
    raise AddonError("no Image Editor shows the photo",
                     "open the photo in an Image Editor and place its 2D cursor on the object (Shift + right-click)",
                     code="no_image_editor")
