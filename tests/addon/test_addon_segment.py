"""The Segment Photo panel: a photo (file or Blender image) and a prompt, point and box prompts from the Image
Editor's 2D cursor, the Segment button (mask + cut-out packed), the cut-out as a library search query and as a
Restyle style image, and Photo to 3D; through a real backend (CPU, the `tiny` CLIP, superpixel proposals)."""

from __future__ import annotations

import time

import bpy
import numpy as np
import pytest

from addon_helpers import clear_scene, decode_png, finish, index_two_shapes, newest_job, panel_texts, running_backend
from blender_addon.core.meshpack import encode_png
from blender_addon.engine import session
from blender_addon.operators.meshio import image_bytes
from blender_addon.ui.panels import ATELIER_PT_library, ATELIER_PT_segment

SIZE = 96


def red_box_pixels() -> np.ndarray:
    """A red box (rows and columns 24..71) on grey, [H, W, 3] uint8, row 0 at the top."""
    pixels = np.full((SIZE, SIZE, 3), 128, np.uint8)
    pixels[24:72, 24:72] = (220, 30, 30)
    return pixels


@pytest.fixture
def settings(addon, tmp_path):
    clear_scene()
    s = bpy.context.scene.atelier
    (tmp_path / "photo.png").write_bytes(encode_png(red_box_pixels()))
    s.segment_source, s.segment_photo, s.segment_image = "FILE", str(tmp_path / "photo.png"), None
    s.segment_cutout = None
    s.segment_prompt, s.segment_proposer = "a red box", "superpixels"
    s.segment_points.clear()
    s.segment_use_box, s.segment_box = False, (0, 0, 1, 1)
    s.restyle_styles.clear()
    s.photo3d_quality, s.photo3d_steps, s.search_k, s.search_category = "draft", 2, 2, ""
    s.photo3d_method, s.photo3d_init, s.photo3d_recon_steps, s.photo3d_texture_steps = "retrieve", "sphere", 0, -1
    s.photo3d_guidance, s.photo3d_zero123, s.photo3d_clip_fallback = "clip", "", False
    return s


def refused(operator, words: str) -> str:
    """Runs an operator as a script would: it must refuse at once, its report naming the problem."""
    started = time.monotonic()
    with pytest.raises(RuntimeError) as info:
        operator()
    assert time.monotonic() - started < 1.0, "the operator blocked"
    assert words in str(info.value) and "Traceback" not in str(info.value)
    return str(info.value)


# -- no backend needed --------------------------------------------------------------------------------------

def test_the_panel_draws_its_fields_and_buttons(settings):
    shown = panel_texts(ATELIER_PT_segment)
    for words in ("Points (0)", "On", "Off", "Corner 1", "Corner 2", "Image Editor's 2D cursor",
                  "Photo to 3D (the Search Library's database)"):
        assert words in shown.replace("\n", " "), words
    settings.segment_points.add().u = 0.25
    settings.segment_use_box = True
    shown = panel_texts(ATELIER_PT_segment)
    assert "Points (1)" in shown and "on at (0.250, 0.000)" in shown and "Box (0.000, 0.000) to (1.000, 1.000)" in shown
    assert "Init" not in shown and "Texture steps" not in shown, "retrieve shows the restyle's fields"
    settings.library_db = ""
    settings.photo3d_method = "reconstruct"
    shown = panel_texts(ATELIER_PT_segment)
    assert "Init" in shown and "Texture steps" in shown and "Zero123 folder" not in shown
    assert "set the Search Library's database first" not in shown, "init sphere needs no database"
    settings.photo3d_init, settings.photo3d_guidance = "best", "zero123"
    shown = panel_texts(ATELIER_PT_segment)
    assert "Zero123 folder" in shown and "Allow CLIP fallback" in shown
    assert "set the Search Library's database first" in shown.replace("\n", " ")
    settings.photo3d_method = "auto"
    shown = panel_texts(ATELIER_PT_segment)
    assert "Init" not in shown and "Auto starts from the library's closest shape" in shown.replace("\n", " ")


def test_points_and_box_corners_come_from_the_image_editors_cursor(settings, image_editor):
    image = bpy.data.images.load(settings.segment_photo)
    image_editor.image = image
    image_editor.uv_editor.show_pixel_coords = True
    image_editor.cursor_location = (48, 72)  # pixels, origin at the bottom left
    assert bpy.ops.atelier.segment_point_add(positive=True) == {"FINISHED"}
    image_editor.uv_editor.show_pixel_coords = False
    image_editor.cursor_location = (0.125, 0.5)  # normalised
    assert bpy.ops.atelier.segment_point_add(positive=False) == {"FINISHED"}
    assert [(p.u, p.v, p.positive) for p in settings.segment_points] == [(0.5, 0.75, True), (0.125, 0.5, False)]
    assert settings.segment_source == "FILE", "the editor shows the photo's own file: it stays the photo"

    image_editor.cursor_location = (0.25, 0.75)
    assert bpy.ops.atelier.segment_box_corner(corner=0) == {"FINISHED"}
    image_editor.cursor_location = (0.75, 0.25)
    assert bpy.ops.atelier.segment_box_corner(corner=1) == {"FINISHED"}
    assert settings.segment_use_box and tuple(settings.segment_box) == pytest.approx((0.25, 0.75, 0.75, 0.25))

    assert bpy.ops.atelier.segment_points_clear(index=0) == {"FINISHED"}
    assert [p.positive for p in settings.segment_points] == [False]
    assert bpy.ops.atelier.segment_points_clear() == {"FINISHED"} and len(settings.segment_points) == 0

    # The editor shows another image: it becomes the photo, and points placed on the old one go.
    settings.segment_points.add()
    other = bpy.data.images.new("Other photo", 64, 32)
    image_editor.image = other
    image_editor.cursor_location = (0.5, 0.5)
    assert bpy.ops.atelier.segment_point_add() == {"FINISHED"}
    assert settings.segment_source == "IMAGE" and settings.segment_image == other
    assert len(settings.segment_points) == 1 and not settings.segment_use_box

    image_editor.cursor_location = (1.5, 0.5)
    refused(bpy.ops.atelier.segment_point_add, "the Image Editor's 2D cursor is outside the image")
    image_editor.image = None
    refused(bpy.ops.atelier.segment_point_add, "no Image Editor shows the photo")


def test_a_blender_image_is_sent_as_its_file_its_packed_data_or_its_pixels(settings, tmp_path):
    photo_png = (tmp_path / "photo.png").read_bytes()
    loaded = bpy.data.images.load(settings.segment_photo)
    assert image_bytes(loaded) == photo_png
    loaded.pack()
    assert image_bytes(loaded) == bytes(loaded.packed_file.data)
    generated = bpy.data.images.new("Painted", SIZE, SIZE)
    rgba = np.concatenate([red_box_pixels(), np.full((SIZE, SIZE, 1), 255, np.uint8)], axis=2)
    generated.pixels.foreach_set((rgba[::-1].reshape(-1) / 255.0).astype(np.float32))
    width, height, channels, decoded = decode_png(image_bytes(generated))
    assert (width, height, channels) == (SIZE, SIZE, 4)
    np.testing.assert_array_equal(decoded, rgba)


def test_bad_input_is_refused_before_anything_is_sent(settings):
    settings.segment_photo, settings.library_db = "", ""
    refused(bpy.ops.atelier.segment_photo, "no photo is chosen")
    record = newest_job()
    assert record.state == "failed" and record.code == "no_photo" and record.hint
    assert "no photo is chosen" in panel_texts(ATELIER_PT_segment).replace("\n", " ")
    settings.segment_source = "IMAGE"
    refused(bpy.ops.atelier.segment_photo, "no image is chosen")
    settings.segment_source, settings.segment_photo, settings.segment_prompt = "FILE", "/no/such/photo.png", "x"
    refused(bpy.ops.atelier.photo_to_3d, "the database folder is empty")
    refused(bpy.ops.atelier.search_cutout, "there is no cut-out yet")
    refused(bpy.ops.atelier.cutout_to_style, "there is no cut-out yet")
    # Photo to 3D: the database is needed only where the method (or its init) searches the library.
    for method, init, words in [("auto", "sphere", "Auto starts from the library's closest shape"),
                                ("reconstruct", "best", "Reconstruct from init best searches the library"),
                                ("reconstruct", "retrieve", "Reconstruct from init retrieve searches the library")]:
        settings.photo3d_method, settings.photo3d_init = method, init
        message = refused(bpy.ops.atelier.photo_to_3d, "the database folder is empty")
        assert words in message and "Reconstruct with Init Sphere" in message
        record = newest_job()
        assert record.state == "failed" and record.code == "no_database" and record.kind == "photo_to_3d"
        assert words in panel_texts(ATELIER_PT_segment).replace("\n", " ")
    settings.photo3d_method, settings.photo3d_init = "reconstruct", "sphere"
    refused(bpy.ops.atelier.photo_to_3d, "the photo (/no/such/photo.png) does not exist")  # past the db check
    settings.photo3d_method = "retrieve"
    settings.segment_cutout = bpy.data.images.new("Clear", 8, 8, alpha=True)  # all transparent
    settings.segment_cutout.pixels.foreach_set(np.zeros(8 * 8 * 4, np.float32))
    refused(bpy.ops.atelier.cutout_to_style, "the cut-out is empty (fully transparent)")
    assert len(settings.restyle_styles) == 0


# -- through the backend ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def library(addon, tmp_path_factory):
    """A running backend and a two-shape library indexed into the Search Library's database folder."""
    running_backend()
    return index_two_shapes(tmp_path_factory.mktemp("segment-library"))


def test_segment_with_a_point_then_search_and_restyle_with_the_cutout(library, settings, tmp_path):
    settings.library_db = library
    settings.segment_points.add()  # on the box's middle: u = v = 0.5
    point = settings.segment_points[0]
    point.u, point.v, point.positive = 0.5, 0.5, True
    assert bpy.ops.atelier.segment_photo() == {"FINISHED"}
    record = finish(newest_job(), 90)
    assert record.kind == "segment" and record.label == "Segment photo: a red box"
    assert record.params == {"prompt": "a red box", "clip": "tiny", "proposer": "superpixels",
                             "points": [[47.5, 47.5, 1]]}
    assert record.fields["method"].startswith("superpixels") and record.fields["area"] > 0
    mask, cutout = (bpy.data.images[name] for name in record.outputs)
    assert cutout.name == "Atelier a red box cutout" and mask.packed_file is not None and cutout.packed_file is not None
    assert settings.segment_cutout == cutout and tuple(cutout.size) == (SIZE, SIZE)
    shown = panel_texts(ATELIER_PT_segment)
    assert record.fields["method"] in shown

    # The cut-out as a style image: a PNG cropped around its opaque pixels, added to the Restyle list once.
    assert bpy.ops.atelier.cutout_to_style(directory=str(tmp_path / "cutouts")) == {"FINISHED"}
    assert bpy.ops.atelier.cutout_to_style(directory=str(tmp_path / "cutouts")) == {"FINISHED"}
    written = tmp_path / "cutouts" / "Atelier_a_red_box_cutout.png"
    assert [item.filepath for item in settings.restyle_styles] == [str(written)]
    width, height, channels, style = decode_png(written.read_bytes())
    assert channels == 4 and width <= SIZE and height <= SIZE and style[..., 3].max() == 255
    alpha = np.asarray(cutout.pixels[:]).reshape(SIZE, SIZE, 4)[..., 3]
    rows, cols = np.nonzero(alpha > 0)
    assert height >= rows.max() - rows.min() + 1 and width >= cols.max() - cols.min() + 1

    # The cut-out as a photo query of the Search Library's database: the grid shows in the Search Library panel.
    assert bpy.ops.atelier.search_cutout() == {"FINISHED"}
    search = finish(newest_job(), 90)
    assert search.kind == "search" and search.label == "Search library with cut-out"
    assert search.params == {"db": library, "k": 2} and search.fields["mode"] == "photo"
    assert len(search.fields["hits"]) == 2 and "2 results for photo" in panel_texts(ATELIER_PT_library)


def test_segment_a_blender_image_with_a_box(library, settings):
    image = bpy.data.images.load(settings.segment_photo)
    settings.segment_source, settings.segment_image = "IMAGE", image
    settings.segment_use_box, settings.segment_box = True, (0.25, 0.75, 0.75, 0.25)
    assert bpy.ops.atelier.segment_photo() == {"FINISHED"}
    record = finish(newest_job(), 90)
    assert record.params["box"] == [23.5, 23.5, 71.5, 71.5] and "points" not in record.params
    assert settings.segment_cutout is not None and settings.segment_cutout.name in record.outputs


def test_photo_to_3d_from_the_panel(library, settings):
    settings.library_db = library
    bpy.context.scene.cursor.location = (0.0, 0.0, 1.0)
    assert bpy.ops.atelier.photo_to_3d() == {"FINISHED"}
    record = finish(newest_job(), 180)
    assert record.params == {"prompt": "a red box", "db": library, "k": 2, "quality": "draft", "seed": 0,
                             "steps": 2, "proposer": "superpixels"}
    obj = bpy.data.objects[record.outputs[0]]
    assert obj.name.endswith(" from photo") and tuple(obj.location) == pytest.approx((0.0, 0.0, 1.0))


def test_reconstruct_from_the_panel_imports_a_textured_mesh(library, settings):
    """Method Reconstruct from a sphere, a tiny fit (3 Gaussian steps, 1 texture step): the GLB lands at the 3D
    cursor as "<prompt> reconstruction" with UVs and its baked texture wired; the job's preview came while it ran."""
    settings.library_db = library  # not needed by init sphere; when given it supplies the CLIP (the tiny one)
    settings.photo3d_method, settings.photo3d_init = "reconstruct", "sphere"
    settings.photo3d_recon_steps, settings.photo3d_texture_steps = 3, 1
    bpy.context.scene.cursor.location = (1.0, 2.0, 0.5)
    assert bpy.ops.atelier.photo_to_3d() == {"FINISHED"}
    record = newest_job()
    assert record.label == "Reconstruct: a red box"
    finish(record, 300)
    assert record.params == {"prompt": "a red box", "proposer": "superpixels", "db": library, "k": 2,
                             "method": "reconstruct", "init": "sphere", "seed": 0, "steps": 3, "texture_steps": 1}
    fields = record.fields
    assert fields["method"] == "reconstruct" and fields["init"] == "sphere" and fields["steps"] == 3
    assert fields["gaussians"] > 0 and fields["faces"] > 0
    assert record.preview is not None and record.preview.startswith(b"\x89PNG"), "the Gaussians' preview"
    assert isinstance(session.preview_icon(record), int)
    assert record.outputs == ["a red box reconstruction"]
    obj = bpy.data.objects[record.outputs[0]]
    assert obj.type == "MESH" and len(obj.data.polygons) == fields["faces"]
    assert tuple(obj.location) == pytest.approx((1.0, 2.0, 0.5))
    assert obj.data.uv_layers.active is not None and len(obj.data.uv_layers.active.data) == len(obj.data.loops)
    material = obj.material_slots[0].material
    images = [n.image for n in material.node_tree.nodes if n.type == "TEX_IMAGE" and n.image is not None]
    assert len(images) == 1 and images[0].packed_file is not None and min(images[0].size) > 1
    assert "Atelier style texture" not in material.node_tree.nodes
    bsdf = next(n for n in material.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    assert bsdf.inputs["Base Color"].is_linked, "the baked texture is the base colour"
    shown = panel_texts(ATELIER_PT_segment)
    assert f"{fields['gaussians']} Gaussians, {fields['faces']} faces" in shown


def test_auto_from_the_panel_starts_from_the_librarys_match(library, settings):
    settings.library_db = library
    settings.photo3d_method, settings.photo3d_recon_steps, settings.photo3d_texture_steps = "auto", 2, 0
    assert bpy.ops.atelier.photo_to_3d() == {"FINISHED"}
    record = finish(newest_job(), 300)
    assert record.params["method"] == "auto" and "init" not in record.params
    assert record.fields["init"] == "retrieve" and record.fields["prior"]
    obj = bpy.data.objects[record.outputs[0]]
    assert obj.name == "a red box reconstruction" and obj.data.uv_layers.active is not None
