"""Sketch input from strokes: the viewport's annotation strokes and a Grease Pencil object's, projected to the view
(or the camera, or the front view), sent as the search job's `strokes`, searched through a real backend (CPU, the
`tiny` CLIP); and a sketch with no strokes refused at once with the reason in the panel."""

from __future__ import annotations

import math
import time

import bpy
import numpy as np
import pytest

from addon_helpers import clear_scene, finish, index_two_shapes, newest_job, panel_texts, running_backend
from blender_addon.core import sketch
from blender_addon.operators import sketch_input
from blender_addon.ui.panels import ATELIER_PT_library


STROKES = tuple(bpy.app.version) >= sketch_input.STROKES_SINCE
needs_strokes = pytest.mark.skipif(not STROKES, reason="the annotation API read here is Blender 5.0's "
                                                       "(4.x refuses a stroke sketch: test_before_5_0_stroke_sketches_"
                                                       "are_refused_with_the_fix)")


def _clear_strokes():
    if not STROKES:
        return
    for annotation in list(bpy.data.annotations):
        bpy.data.annotations.remove(annotation)
    for data in list(bpy.data.grease_pencils):
        bpy.data.grease_pencils.remove(data)


@pytest.fixture
def blank(addon):
    """An empty scene without annotations, Grease Pencil data or camera; the Search Library in sketch mode."""
    clear_scene()
    _clear_strokes()
    bpy.context.scene.frame_set(1)
    s = bpy.context.scene.atelier
    s.search_mode, s.search_text, s.search_image, s.search_k, s.search_category = "SKETCH", "", "", 2, ""
    s.sketch_source, s.sketch_object = "ANNOTATION", None
    yield s
    _clear_strokes()


def _view3d():
    window = bpy.context.window_manager.windows[0]
    area = next(a for a in window.screen.areas if a.type == "VIEW_3D")
    return window, area, next(r for r in area.regions if r.type == "WINDOW")


def draw_annotation(mouse: list[tuple[int, int]]) -> None:
    """One annotation stroke through these region pixels (x right, y up), as the Annotate tool draws it in the
    3D Viewport (placement "3D Cursor": the points lie at the cursor's depth)."""
    window, area, region = _view3d()
    stroke = [{"name": "", "location": (0, 0, 0), "mouse": xy, "mouse_event": xy, "pressure": 1.0, "size": 0,
               "time": i * 0.01, "is_start": i == 0, "x_tilt": 0.0, "y_tilt": 0.0} for i, xy in enumerate(mouse)]
    with bpy.context.temp_override(window=window, area=area, region=region, space_data=area.spaces.active):
        assert bpy.ops.gpencil.annotate(mode="DRAW", stroke=stroke, wait_for_input=False) == {"FINISHED"}


def grease_pencil_object(lines: list[list[tuple[float, float, float]]], location=(0, 0, 0)) -> bpy.types.Object:
    """A Grease Pencil (v3) object with these strokes (local points) on one layer at the current frame."""
    data = bpy.data.grease_pencils.new("Sketch")
    obj = bpy.data.objects.new("Sketch", data)
    bpy.context.scene.collection.objects.link(obj)
    obj.location = location
    drawing = data.layers.new("Lines").frames.new(bpy.context.scene.frame_current).drawing
    if lines:  # add_strokes([]) crashes Blender 5.0.1
        drawing.add_strokes([len(line) for line in lines])
    for stroke, line in zip(drawing.strokes, lines):
        for point, co in zip(stroke.points, line):
            point.position = co
    bpy.context.view_layer.update()
    return obj


def fitted_pixels(strokes: list[list[tuple[int, int]]]) -> list[list[list[float]]]:
    """What strokes through these region pixels should come out as: y flipped, fitted into [0, 1]² together."""
    _, _, region = _view3d()
    return sketch.fit_unit_square([np.array([(x, region.height - y) for x, y in line], float) for line in strokes])


RIGHT_ANGLE = [[(400, 300), (600, 300)], [(600, 300), (600, 400)]]
"""Two strokes in region pixels (y up): 200 px along the bottom, then 100 px up the right side. Two-point strokes,
because the Annotate tool smooths the inner points of longer ones."""


@needs_strokes
def test_annotation_strokes_are_projected_to_the_3d_view(blank):
    for stroke in RIGHT_ANGLE:
        draw_annotation(stroke)
    matrix, aspect, what = sketch_input.view_projection(bpy.context)
    _, _, region = _view3d()
    assert what == "view" and aspect == pytest.approx(region.width / region.height)
    bottom, side = sketch_input.sketch_strokes(bpy.context, "ANNOTATION")
    # Proportions kept (200 x 100 px -> 0.9 x 0.45), y down: the bottom edge is low on the page.
    np.testing.assert_allclose(bottom, [[0.05, 0.725], [0.95, 0.725]], atol=2e-3)
    np.testing.assert_allclose(side, [[0.95, 0.725], [0.95, 0.275]], atol=2e-3)
    np.testing.assert_allclose([bottom, side], fitted_pixels(RIGHT_ANGLE), atol=2e-3)


@needs_strokes
def test_without_a_3d_view_the_camera_then_the_front_view_is_used(blank):
    # A right angle in the XZ plane, 1 unit from the origin along each axis, on an object moved 10 along +X.
    obj = grease_pencil_object([[(-1, 0, -1), (1, 0, -1), (1, 0, 1)]], location=(10, 0, 0))
    (world,) = sketch_input.grease_pencil_polylines(obj)
    np.testing.assert_allclose(world, [[9, 0, -1], [11, 0, -1], [11, 0, 1]], atol=1e-6)
    front = [[0.05, 0.95], [0.95, 0.95], [0.95, 0.05]]  # world X right, Z up
    assert sketch_input.view_projection(bpy.context, views=False)[2] == "front"
    np.testing.assert_allclose(sketch_input.sketch_strokes(bpy.context, "GREASE_PENCIL", obj, views=False)[0],
                               front, atol=1e-4)
    # A camera 10 units in front, looking along +Y at the stroke, with a 2:1 frame: still a square right angle.
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    bpy.context.scene.collection.objects.link(camera)
    camera.location, camera.rotation_euler = (10, -10, 0), (math.pi / 2, 0, 0)
    bpy.context.scene.camera = camera
    bpy.context.scene.render.resolution_x, bpy.context.scene.render.resolution_y = 200, 100
    bpy.context.view_layer.update()
    matrix, aspect, what = sketch_input.view_projection(bpy.context, views=False)
    assert what == "camera" and aspect == pytest.approx(2.0)
    np.testing.assert_allclose(sketch_input.sketch_strokes(bpy.context, "GREASE_PENCIL", obj, views=False)[0],
                               front, atol=1e-4)
    # Behind the camera: nothing is seen.
    camera.rotation_euler = (-math.pi / 2, 0, 0)
    bpy.context.view_layer.update()
    with pytest.raises(Exception, match="has no strokes"):
        sketch_input.sketch_strokes(bpy.context, "GREASE_PENCIL", obj, views=False)


@needs_strokes
def test_hidden_layers_and_later_keyframes_are_not_read(blank):
    obj = grease_pencil_object([[(0, 0, 0), (1, 0, 0)]])
    assert len(sketch_input.grease_pencil_polylines(obj)) == 1
    obj.data.layers[0].hide = True
    assert sketch_input.grease_pencil_polylines(obj) == []
    draw_annotation(RIGHT_ANGLE[0])
    assert len(sketch_input.annotation_polylines(bpy.context)) == 1
    bpy.context.scene.frame_set(0)  # before the annotation's keyframe (1): not shown, not read
    assert sketch_input.annotation_polylines(bpy.context) == []


# -- through the backend ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def library(addon, tmp_path_factory):
    """A running backend and a two-shape library indexed into a database folder (the Search Library's)."""
    running_backend()
    return index_two_shapes(tmp_path_factory.mktemp("sketch-library"))


@needs_strokes
def test_a_sketch_from_annotations_searches_the_library(library, blank):
    blank.library_db = library
    draw_annotation([(400, 300), (600, 300), (600, 500), (400, 500), (400, 300)])  # a square
    expected = sketch_input.sketch_strokes(bpy.context, "ANNOTATION")
    assert bpy.ops.atelier.search_library() == {"FINISHED"}
    record = finish(newest_job())
    assert record.params == {"db": library, "k": 2, "strokes": expected}
    assert record.fields["mode"] == "sketch" and len(record.fields["hits"]) == 2
    assert "2 results for sketch" in panel_texts(ATELIER_PT_library)


@needs_strokes
def test_a_sketch_from_a_grease_pencil_object_with_a_text(library, blank):
    blank.library_db, blank.search_text = library, "a box"
    obj = grease_pencil_object([[(-1, 0, -1), (1, 0, -1), (1, 0, 1), (-1, 0, 1), (-1, 0, -1)]])
    blank.sketch_source, blank.sketch_object = "GREASE_PENCIL", obj
    assert bpy.ops.atelier.search_library() == {"FINISHED"}
    record = finish(newest_job())
    assert len(record.params["strokes"]) == 1 and len(record.params["strokes"][0]) == 5
    assert record.fields["mode"] == "sketch+text" and len(record.fields["hits"]) == 2


# -- bad input ----------------------------------------------------------------------------------------------

def _refused(words: str):
    """Runs the search operator as a script would; it must refuse at once with `words` in the report, the failed
    job and the Search Library panel."""
    started = time.monotonic()
    with pytest.raises(RuntimeError) as info:  # an operator's ERROR report reaches a script as RuntimeError
        bpy.ops.atelier.search_library()
    assert time.monotonic() - started < 1.0, "the operator blocked"
    report = str(info.value)
    assert words in report and "Traceback" not in report
    record = newest_job()
    assert record.state == "failed" and record.code == "empty_sketch" and words in record.message and record.hint
    assert words in panel_texts(ATELIER_PT_library).replace("\n", " ")
    return record


@needs_strokes
def test_a_sketch_with_no_strokes_is_refused_with_the_reason_in_the_panel(blank):
    blank.library_db = "/no/such/db"
    record = _refused("the annotation sketch has no strokes")
    assert "Annotate tool" in record.hint
    bpy.context.scene.annotation = bpy.data.annotations.new("Empty")
    bpy.context.scene.annotation.layers.new("Note").frames.new(1)  # a layer, a frame, no stroke
    _refused("the annotation sketch has no strokes")

    obj = grease_pencil_object([])
    blank.sketch_source, blank.sketch_object = "GREASE_PENCIL", obj
    _refused("the Grease Pencil sketch 'Sketch' has no strokes")
    blank.sketch_object = None
    bpy.context.view_layer.objects.active = None
    _refused("no Grease Pencil object is chosen")


@pytest.mark.skipif(STROKES, reason="Blender 5.0+ reads stroke sketches")
def test_before_5_0_stroke_sketches_are_refused_with_the_fix():
    from blender_addon.core.errors import AddonError

    for source in ("ANNOTATION", "GREASE_PENCIL"):
        with pytest.raises(AddonError, match="needs Blender 5.0 or newer") as err:
            sketch_input.sketch_strokes(bpy.context, source, None, views=False)
        assert "image" in err.value.hint
