"""The Segment Photo panel's plain logic: Image Editor cursor -> prompt coordinates, the photo file, the cut-out's
crop. No bpy (the operators in `segment_ops.py` feed it Blender's values).

Point and box prompts are kept in the Image Editor's normalised image coordinates (u, v in [0, 1], origin at the
bottom left) and turned into the photo's pixels (`kinds.image_editor_pixel`) only when the job is sent, so they
stay right whatever the photo's size.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .errors import AddonError
from .kinds import SEGMENT_MAX_POINTS, image_editor_pixel, read_input_file

CUTOUT_MARGIN = 0.05
"""Transparent border kept around the cut-out's object when it is cropped (a share of the object's longer side)."""


def cursor_uv(cursor: Sequence[float], width: int, height: int, pixel_coords: bool) -> tuple[float, float]:
    """The Image Editor's 2D cursor (`SpaceImageEditor.cursor_location`) -> (u, v) in the image's normalised
    coordinates. Blender gives the cursor in pixels when the editor shows pixel coordinates
    (`uv_editor.show_pixel_coords`, the default) and in [0, 1] otherwise. AddonError for an image with no size
    or a cursor outside the image."""
    if width <= 0 or height <= 0:
        raise AddonError("the Image Editor's image has no pixels", "open the photo in the Image Editor",
                         code="no_photo")
    x, y = float(cursor[0]), float(cursor[1])
    u, v = (x / width, y / height) if pixel_coords else (x, y)
    if not (0.0 <= u <= 1.0 and 0.0 <= v <= 1.0):
        raise AddonError("the Image Editor's 2D cursor is outside the image",
                         "place it on the object with Shift + right-click in the Image Editor", code="cursor_outside")
    return u, v


def prompt_pixels(points: Sequence[tuple[float, float, bool]], box: Sequence[float] | None, width: int,
                  height: int) -> tuple[list[tuple[float, float, bool]], tuple[float, float, float, float] | None]:
    """Prompts in normalised image coordinates -> the segment job's pixel coordinates (row 0 at the top).

    points: [(u, v, positive), ...]; box: (u0, v0, u1, v1), two opposite corners in any order, or None.
    Returns (points [(x, y, positive)], box (x0, y0, x1, y1) with x0 < x1, y0 < y1, or None). AddonError for too
    many points or a box with no area."""
    if len(points) > SEGMENT_MAX_POINTS:
        raise AddonError(f"{len(points)} points are placed, over the {SEGMENT_MAX_POINTS} limit", "clear some points")
    pixels = [(*image_editor_pixel(u, v, width, height), bool(positive)) for u, v, positive in points]
    if box is None:
        return pixels, None
    (ax, ay), (bx, by) = (image_editor_pixel(box[0], box[1], width, height),
                          image_editor_pixel(box[2], box[3], width, height))
    x0, x1, y0, y1 = min(ax, bx), max(ax, bx), min(ay, by), max(ay, by)
    if not (x1 - x0 >= 1.0 and y1 - y0 >= 1.0):
        raise AddonError("the box has no area", "set its two corners at opposite corners of the object",
                         code="empty_box")
    return pixels, (x0, y0, x1, y1)


def read_photo(path_text: str) -> bytes:
    """The photo file's bytes; AddonError, before anything is sent, for no path, a folder, a missing, empty,
    unreadable or over-large file. Whether it decodes is the backend's check."""
    hint = "pick the photo in the Segment Photo panel (a file, or an image open in Blender)"
    if not (path_text or "").strip():
        raise AddonError("no photo is chosen", hint, code="no_photo")
    return read_input_file(path_text, "the photo", hint, "no_photo", "photo")

def crop_to_alpha(rgba: np.ndarray, margin: float = CUTOUT_MARGIN) -> np.ndarray:
    """A cut-out [H, W, 4] uint8 (row 0 at the top, alpha 0 off the object) -> the part around its opaque pixels,
    with `margin` of the object's longer side kept on each side (clamped to the image). AddonError when nothing
    is opaque (an empty cut-out is no query and no style)."""
    rgba = np.asarray(rgba)
    if rgba.ndim != 3 or rgba.shape[2] != 4:
        raise AddonError(f"the cut-out must be an RGBA image, got shape {tuple(rgba.shape)}",
                         "segment the photo again", code="bad_cutout")
    rows, cols = np.nonzero(rgba[:, :, 3] > 0)
    if not len(rows):
        raise AddonError("the cut-out is empty (fully transparent)", "segment the photo again with another prompt",
                         code="bad_cutout")
    pad = int(round(margin * max(rows.max() - rows.min() + 1, cols.max() - cols.min() + 1)))
    top, bottom = max(rows.min() - pad, 0), min(rows.max() + pad + 1, rgba.shape[0])
    left, right = max(cols.min() - pad, 0), min(cols.max() + pad + 1, rgba.shape[1])
    return np.ascontiguousarray(rgba[top:bottom, left:right])
