"""The Segment Photo panel's operators: cut an object out of a photo by a text prompt (plus optional point and box
prompts placed with the Image Editor's 2D cursor), then use the cut-out as a library search query or a restyle
style image, or turn the photo into a restyled library shape (Photo to 3D).

The photo is a file or an image open in Blender; the plain logic (cursor -> prompt pixels, the crop) is in
`photo.py`. The segment importer (`importers.import_segment`) packs the mask and the cut-out into the .blend and
makes the cut-out the panel's `segment_cutout`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

import bpy

from ..core import photo

from ..core.errors import AddonError
from ..core.kinds import SEGMENT_MAX_POINTS, photo_to_3d_params, search_params, segment_params
from ..core.meshpack import encode_png
from ..engine import session
from ..engine.settings import pref_text, user_dir
from .job_ops import JobOperator, _report_error, check_style_room, local_path, style_paths
from .library_ops import search_store
from .meshio import image_bytes, image_editor, image_pixels

CUTOUT_FOLDER = "cutouts"
"""The add-on's user sub-folder where "Use as Style Image" writes cut-outs (the Restyle list holds files)."""


# -- the photo ----------------------------------------------------------------------------------------------

def _file_size(path: str) -> tuple[int, int]:
    """(width, height) of an image file, read by Blender (any format it opens); AddonError when it cannot."""
    before = set(bpy.data.images)
    try:
        image = bpy.data.images.load(path, check_existing=True)
    except RuntimeError as exc:
        raise AddonError(f"the photo ({path}) cannot be opened: {exc}", "pick a PNG or JPEG file",
                         code="photo_unreadable") from exc
    try:
        width, height = image.size
    finally:
        if image not in before:
            bpy.data.images.remove(image)
    if width * height == 0:
        raise AddonError(f"the photo ({path}) has no pixels Blender can read", "pick a PNG or JPEG file",
                         code="photo_unreadable")
    return width, height


def photo_input(settings, need_size: bool) -> tuple[bytes, int, int]:
    """(the photo's encoded bytes, width, height) from the panel: its file, or the chosen Blender image. The size is
    (0, 0) for a file unless `need_size` (point and box prompts need it)."""
    if settings.segment_source == "IMAGE":
        image = settings.segment_image
        if image is None:
            raise AddonError("no image is chosen", "pick an image open in Blender in the Segment Photo panel, or "
                             "switch it to File", code="no_photo")
        data = image_bytes(image)
        width, height = image.size
        return data, width, height
    path = local_path(settings.segment_photo)
    data = photo.read_photo(path)
    return (data, *_file_size(path)) if need_size else (data, 0, 0)


def prompts(settings, width: int, height: int) -> tuple[list, tuple | None]:
    points = [(p.u, p.v, p.positive) for p in settings.segment_points]
    box = tuple(settings.segment_box) if settings.segment_use_box else None
    return photo.prompt_pixels(points, box, width, height)


# -- the cut-out --------------------------------------------------------------------------------------------

def cutout_png(settings) -> tuple[bytes, str]:
    """(PNG bytes of the panel's cut-out cropped around its object, the image's name); AddonError when there is no
    cut-out yet or it is empty."""
    image = settings.segment_cutout
    if image is None:
        raise AddonError("there is no cut-out yet", "segment a photo first (Segment Photo panel)", code="no_cutout")
    pixels = image_pixels(image)
    if pixels.shape[2] != 4:
        raise AddonError(f"the cut-out {image.name!r} has no alpha channel", "segment the photo again",
                         code="bad_cutout")
    rgba = np.clip(np.rint(pixels * 255.0), 0, 255).astype(np.uint8)
    return encode_png(photo.crop_to_alpha(rgba)), image.name


# -- operators ----------------------------------------------------------------------------------------------

class PhotoJobOperator(JobOperator):
    """A job that sends the panel's photo as blob "image": `params` reads it into `self._photo`."""

    def blobs(self, context) -> dict[str, bytes]:
        return {"image": self._photo}


class ATELIER_OT_segment_photo(PhotoJobOperator, bpy.types.Operator):
    """Cut the object the prompt names out of the photo: a mask and a cut-out, packed into the .blend"""
    bl_idname = "atelier.segment_photo"
    bl_label = "Segment Photo"
    bl_options = {"REGISTER"}
    kind = "segment"

    def params(self, context) -> dict:
        s = context.scene.atelier
        need_size = bool(len(s.segment_points)) or s.segment_use_box
        self._photo, width, height = photo_input(s, need_size)
        points, box = prompts(s, width, height) if need_size else ([], None)
        return segment_params(s.segment_prompt, clip=pref_text(context, "clip"), points=points or None,
                              box=list(box) if box else None, proposer=s.segment_proposer)

    def label(self, source: str) -> str:
        prompt = bpy.context.scene.atelier.segment_prompt.strip()
        return f"Segment photo: {prompt[:40]}" if prompt else "Segment photo"


class ATELIER_OT_photo_to_3d(PhotoJobOperator, bpy.types.Operator):
    """Cut the prompt's object out of the photo and turn it into a 3D object at the 3D cursor: the Search Library's
    closest shape restyled after the photo (Retrieve), or 3D Gaussians fitted to the photo and meshed with a baked
    texture (Reconstruct; Auto starts them from the closest shape)"""
    bl_idname = "atelier.photo_to_3d"
    bl_label = "Photo to 3D"
    bl_options = {"REGISTER"}
    kind = "photo_to_3d"

    def params(self, context) -> dict:
        s = context.scene.atelier
        method = s.photo3d_method
        db, store = search_store(context)
        if method == "retrieve":
            params = photo_to_3d_params(s.segment_prompt, db, s.search_k, s.search_category,
                                        s.photo3d_quality, s.photo3d_steps, proposer=s.segment_proposer, store=store)
        else:
            params = photo_to_3d_params(
                s.segment_prompt, db, s.search_k, s.search_category, steps=s.photo3d_recon_steps,
                proposer=s.segment_proposer, store=store, method=method, init=s.photo3d_init,
                texture_steps=s.photo3d_texture_steps, guidance=s.photo3d_guidance,
                zero123_model=local_path(s.photo3d_zero123), allow_clip_fallback=s.photo3d_clip_fallback,
                clip=pref_text(context, "clip"))
        self._photo = photo_input(s, need_size=False)[0]
        return params

    def label(self, source: str) -> str:
        s = bpy.context.scene.atelier
        prompt = s.segment_prompt.strip()
        verb = {"retrieve": "Photo to 3D", "reconstruct": "Reconstruct", "auto": "Reconstruct (auto)"}
        text = verb.get(s.photo3d_method, "Photo to 3D")
        return f"{text}: {prompt[:40]}" if prompt else text


class ATELIER_OT_search_cutout(JobOperator, bpy.types.Operator):
    """Search the library (Search Library's database, results and category) with the cut-out as a photo query;
    the hits show in the Search Library panel"""
    bl_idname = "atelier.search_cutout"
    bl_label = "Search Library with Cut-out"
    bl_options = {"REGISTER"}
    kind = "search"

    def params(self, context) -> dict:
        s = context.scene.atelier
        self._cutout = cutout_png(s)[0]
        db, store = search_store(context)
        return search_params(db, "", s.search_k, s.search_category, None, s.search_catalog, s.search_tag, store)

    def blobs(self, context) -> dict[str, bytes]:
        return {"photo": self._cutout}

    def label(self, source: str) -> str:
        return "Search library with cut-out"


def _is_photo(settings, image: bpy.types.Image) -> bool:
    if settings.segment_source == "IMAGE":
        return settings.segment_image == image
    photo_path = local_path(settings.segment_photo)
    return bool(photo_path) and bool(image.filepath) and \
        os.path.normpath(bpy.path.abspath(image.filepath, library=image.library)) == photo_path


def cursor_prompt(op: bpy.types.Operator, context) -> tuple[float, float] | None:
    """The Image Editor's 2D cursor as (u, v) on the photo (None after reporting why not). An Image Editor showing
    another image makes that image the photo (its earlier points are cleared: they were placed on the old one)."""
    s = context.scene.atelier
    try:
        space, image = image_editor(context)
        uv = photo.cursor_uv(tuple(space.cursor_location), image.size[0], image.size[1],
                             space.uv_editor.show_pixel_coords)
    except AddonError as exc:
        _report_error(op, exc)
        return None
    if not _is_photo(s, image):
        dropped = len(s.segment_points)
        s.segment_points.clear()
        s.segment_use_box = False
        s.segment_source, s.segment_image = "IMAGE", image
        op.report({"INFO"}, f"the photo is now {image.name!r}, the Image Editor's image"
                  + (f" ({dropped} points placed on the old photo were cleared)" if dropped else ""))
    return uv


class ATELIER_OT_segment_point_add(bpy.types.Operator):
    """Add the Image Editor's 2D cursor as a point prompt (Shift + right-click places the cursor)"""
    bl_idname = "atelier.segment_point_add"
    bl_label = "Add Point from 2D Cursor"
    bl_options = {"REGISTER", "UNDO"}

    positive: bpy.props.BoolProperty(name="On the object", default=True,
                                     description="On the object (include it) or off it (exclude it)")

    def execute(self, context):
        s = context.scene.atelier
        if len(s.segment_points) >= SEGMENT_MAX_POINTS:
            _report_error(self, AddonError(f"{SEGMENT_MAX_POINTS} points are placed, the most a job takes",
                                           "remove some first"))
            return {"CANCELLED"}
        uv = cursor_prompt(self, context)
        if uv is None:
            return {"CANCELLED"}
        point = s.segment_points.add()
        point.u, point.v, point.positive = uv[0], uv[1], self.positive
        session.tag_redraw()
        return {"FINISHED"}


class ATELIER_OT_segment_points_clear(bpy.types.Operator):
    """Remove point prompts (all of them, or the one given)"""
    bl_idname = "atelier.segment_points_clear"
    bl_label = "Clear Points"
    bl_options = {"REGISTER", "UNDO"}

    index: bpy.props.IntProperty(name="Index", default=-1, min=-1, options={"SKIP_SAVE"},
                                 description="Which point to remove (-1: all)")

    def execute(self, context):
        s = context.scene.atelier
        if self.index < 0:
            s.segment_points.clear()
        elif self.index < len(s.segment_points):
            s.segment_points.remove(self.index)
        else:
            self.report({"WARNING"}, "that point is gone")
            return {"CANCELLED"}
        session.tag_redraw()
        return {"FINISHED"}


class ATELIER_OT_segment_box_corner(bpy.types.Operator):
    """Set a corner of the box prompt at the Image Editor's 2D cursor (and turn the box on)"""
    bl_idname = "atelier.segment_box_corner"
    bl_label = "Box Corner from 2D Cursor"
    bl_options = {"REGISTER", "UNDO"}

    corner: bpy.props.IntProperty(name="Corner", default=0, min=0, max=1, description="0: the first, 1: the other")

    def execute(self, context):
        s = context.scene.atelier
        uv = cursor_prompt(self, context)
        if uv is None:
            return {"CANCELLED"}
        box = list(s.segment_box)
        box[2 * self.corner:2 * self.corner + 2] = uv
        s.segment_box, s.segment_use_box = box, True
        session.tag_redraw()
        return {"FINISHED"}


class ATELIER_OT_cutout_to_style(bpy.types.Operator):
    """Add the cut-out (cropped around the object, transparent around it) to the Restyle panel's style images"""
    bl_idname = "atelier.cutout_to_style"
    bl_label = "Use Cut-out as Style Image"
    bl_options = {"REGISTER", "UNDO"}

    directory: bpy.props.StringProperty(
        name="Folder", subtype="DIR_PATH", options={"SKIP_SAVE"},
        description="Where the cut-out PNG is written (empty: the add-on's user folder)")

    def execute(self, context):
        s = context.scene.atelier
        try:
            data, name = cutout_png(s)
            folder = Path(bpy.path.abspath(self.directory)) if self.directory else user_dir(CUTOUT_FOLDER)
            path = folder / f"{bpy.path.clean_name(name)}.png"
            if os.path.normpath(str(path)) not in style_paths(s):
                check_style_room(s)
            try:
                folder.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            except OSError as exc:
                raise AddonError(f"the cut-out cannot be written to {path}: {exc.strerror or exc}",
                                 "check the folder's permissions", code="cutout_unwritable") from exc
        except AddonError as exc:
            _report_error(self, exc)
            return {"CANCELLED"}
        path_text = os.path.normpath(str(path))
        if path_text in style_paths(s):
            self.report({"INFO"}, f"the cut-out {name!r} is already a style image (its file was updated)")
        else:
            s.restyle_styles.add().filepath = path_text
            s.restyle_style_index = len(s.restyle_styles) - 1
            self.report({"INFO"}, f"the cut-out {name!r} is style image {len(s.restyle_styles)} ({path_text})")
        session.tag_redraw()
        return {"FINISHED"}


SEGMENT_OPERATORS = (
    ATELIER_OT_segment_photo, ATELIER_OT_photo_to_3d, ATELIER_OT_search_cutout, ATELIER_OT_segment_point_add,
    ATELIER_OT_segment_points_clear, ATELIER_OT_segment_box_corner, ATELIER_OT_cutout_to_style,
)
"""Registered by `__init__.CLASSES` after `operators.OPERATORS`."""
