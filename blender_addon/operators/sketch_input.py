"""Sketch strokes from Blender for the `search` job: the scene's annotation strokes or a Grease Pencil object's,
projected to a view and fitted into [0, 1]² (y down). The math is in `sketch.py` (no bpy).

The view, the first of these that applies:
1. the 3D Viewport the operator runs in (the Search Library panel's own), else the first 3D Viewport of the
   window: its `region_3d.perspective_matrix` and its main region's width / height, i.e. what you see;
2. the scene's camera: its projection at the render resolution;
3. a fixed front orthographic view (world X to the right, world Z up: `sketch.FRONT_ORTHO`).
A 3D Viewport is skipped when its region has no size or its matrix is singular (a Blender that never drew it).
Annotation strokes are read as 3D points, as the Annotate tool's "3D Cursor" (its default) and "Surface" placements
store them; the "View" placement keeps screen coordinates that Blender's Python API does not flag, so draw
sketches with one of the other two. Grease Pencil strokes are taken from the frame each visible layer shows at
the current frame, in world space (object and layer transforms applied, modifiers not).
"""

from __future__ import annotations

import numpy as np

import bpy

from ..core import sketch
from ..core.errors import AddonError

STROKE_SOURCES = ("ANNOTATION", "GREASE_PENCIL")
"""Where `sketch_strokes` reads strokes from (the Search Library panel's "Sketch from" besides an image file)."""


def _rows(matrix) -> np.ndarray:
    return np.array([list(row) for row in matrix], dtype=np.float64)


def _view3d_areas(context):
    """(area, space) of the 3D Viewport the context is in, then the window's other 3D Viewports."""
    seen = []
    if context.area is not None and context.area.type == "VIEW_3D" and context.space_data is not None:
        seen.append(context.area)
        yield context.area, context.space_data
    window = context.window
    if window is None and context.window_manager is not None and context.window_manager.windows:
        window = context.window_manager.windows[0]
    if window is None or window.screen is None:
        return
    for area in window.screen.areas:
        if area.type == "VIEW_3D" and area not in seen:
            yield area, area.spaces.active


def view_projection(context, views: bool = True) -> tuple[np.ndarray, float, str]:
    """(view-projection [4, 4] row-major, aspect width / height, "view" | "camera" | "front"): the view strokes are
    seen through (see the module docstring). views False skips the 3D Viewports (the camera, then the front view)."""
    if views:
        for area, space in _view3d_areas(context):
            region = next((r for r in area.regions if r.type == "WINDOW"), None)
            rv3d = getattr(space, "region_3d", None)
            if region is None or rv3d is None or region.width < 2 or region.height < 2:
                continue
            matrix = _rows(rv3d.perspective_matrix)
            if np.isfinite(matrix).all() and abs(np.linalg.det(matrix)) > 1e-12:
                return matrix, region.width / region.height, "view"
    scene = context.scene
    camera = scene.camera
    if camera is not None and camera.type == "CAMERA":
        render = scene.render
        width = render.resolution_x * render.pixel_aspect_x
        height = render.resolution_y * render.pixel_aspect_y
        projection = camera.calc_matrix_camera(context.evaluated_depsgraph_get(), x=render.resolution_x,
                                               y=render.resolution_y, scale_x=render.pixel_aspect_x,
                                               scale_y=render.pixel_aspect_y)
        return _rows(projection) @ _rows(camera.matrix_world.inverted()), width / height, "camera"
    return sketch.FRONT_ORTHO.copy(), 1.0, "front"


STROKES_SINCE = (5, 0, 0)
"""The first Blender with the annotation and Grease Pencil v3 APIs this module reads."""


def _shown_frame(frames, current: int):
    """The keyframe a layer shows at frame `current`: the last one at or before it (None: nothing shown yet)."""
    shown = None
    for frame in frames:
        if frame.frame_number <= current and (shown is None or frame.frame_number > shown.frame_number):
            shown = frame
    return shown


def annotation_polylines(context) -> list[np.ndarray]:
    """The visible annotation strokes at the current frame, [N, 3] world points each: the context's annotation
    data (`context.annotation_data` in an editor), else the scene's (`scene.annotation`)."""
    data = getattr(context, "annotation_data", None) or context.scene.annotation
    if data is None:
        return []
    lines = []
    for layer in data.layers:
        if layer.annotation_hide:
            continue
        frame = _shown_frame(layer.frames, context.scene.frame_current)
        for stroke in frame.strokes if frame is not None else ():
            points = np.empty(len(stroke.points) * 3, np.float32)
            stroke.points.foreach_get("co", points)
            if len(points):
                lines.append(points.reshape(-1, 3).astype(np.float64))
    return lines


def grease_pencil_polylines(obj: bpy.types.Object) -> list[np.ndarray]:
    """The strokes of a Grease Pencil object's visible layers at the current frame, [N, 3] world points each."""
    lines = []
    for layer in obj.data.layers:
        if layer.hide:
            continue
        frame = layer.current_frame()
        drawing = frame.drawing if frame is not None else None
        if drawing is None or "position" not in drawing.attributes:
            continue
        positions = drawing.attributes["position"]
        if not len(positions.data):  # an empty drawing (its curve offsets cannot be read then)
            continue
        points = np.empty(len(positions.data) * 3, np.float32)
        positions.data.foreach_get("vector", points)
        offsets = np.empty(len(drawing.curve_offsets), np.int32)
        drawing.curve_offsets.foreach_get("value", offsets)
        to_world = _rows(obj.matrix_world @ layer.matrix_local)
        world = np.concatenate([points.reshape(-1, 3), np.ones((len(points) // 3, 1))], axis=1) @ to_world.T
        lines.extend(world[start:end, :3] for start, end in zip(offsets[:-1], offsets[1:]) if end > start)
    return lines


def sketch_strokes(context, source: str, obj: bpy.types.Object | None = None,
                   views: bool = True) -> list[list[list[float]]]:
    """The search job's `strokes` from the annotations ("ANNOTATION") or a Grease Pencil object ("GREASE_PENCIL":
    `obj`, else the active object), seen through `view_projection`. AddonError with the fix for a missing object
    and for a sketch with no strokes (code "empty_sketch")."""
    if tuple(bpy.app.version) < STROKES_SINCE:
        # The annotation data this reads (scene.annotation, bpy.data.annotations) is 5.0's, and Grease Pencil v3
        # objects arrived in 4.3: the 4.2 and 4.5 LTS APIs differ, so a drawn sketch comes from an image there.
        raise AddonError("a sketch from strokes needs Blender 5.0 or newer",
                         f"in Blender {bpy.app.version_string} draw the sketch as an image and pick Sketch image in "
                         "the Search Library panel", code="empty_sketch")
    if source == "ANNOTATION":
        lines, what = annotation_polylines(context), "the annotation sketch"
    elif source == "GREASE_PENCIL":
        obj = obj or context.active_object
        hint = "pick the Grease Pencil object to read the sketch from in the Search Library panel"
        if obj is None:
            raise AddonError("no Grease Pencil object is chosen", hint, code="empty_sketch")
        if obj.type != "GREASEPENCIL":
            raise AddonError(f"the active object {obj.name!r} is not a Grease Pencil object", hint, code="empty_sketch")
        lines, what = grease_pencil_polylines(obj), f"the Grease Pencil sketch {obj.name!r}"
    else:
        raise AddonError(f"strokes come from one of {', '.join(STROKE_SOURCES)}, not {source!r}")
    matrix, aspect, _ = view_projection(context, views)
    return sketch.project_strokes(lines, matrix, aspect, what)
