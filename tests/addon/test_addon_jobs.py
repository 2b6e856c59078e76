"""The add-on's operators against a real backend it starts itself (CPU, the `tiny` CLIP, a few steps).

Tests run in file order and share one backend; the last one kills it and checks the restart.
"""

from __future__ import annotations

import json

import bpy
import numpy as np
import pytest

from addon_helpers import (CUBE_OBJ, TETRA_OBJ, add_object, clear_scene, decode_png, finish, newest_job, panel_texts,
                            pump_until, write_style_image)
from blender_addon.core.kinds import JOB_KINDS
from blender_addon.core.meshpack import from_array
from blender_addon.engine import session
from blender_addon.operators.importers import COLLECTION, IMPORTERS, STYLE_NODE, load_png_image
from blender_addon.ui.panels import ATELIER_PT_backend, ATELIER_PT_jobs, ATELIER_PT_restyle, ATELIER_PT_stylize


@pytest.fixture(scope="module")
def backend(addon):
    runtime = session.get_runtime()
    assert bpy.ops.atelier.backend_start() == {"FINISHED"}
    pump_until(lambda: runtime.state not in ("starting", "connecting"), 90, "the backend to start")
    assert runtime.ready, f"{runtime.message} ({runtime.hint}); log {runtime.log_path}"
    return runtime


@pytest.fixture
def scene(backend):
    clear_scene()
    settings = bpy.context.scene.atelier
    settings.stylize_prompt, settings.stylize_quality, settings.stylize_steps, settings.stylize_seed = \
        "a red box", "draft", 2, 0
    settings.render_views, settings.render_size = 2, 32
    settings.restyle_styles.clear()
    settings.restyle_quality, settings.restyle_steps, settings.restyle_seed = "draft", 2, 0
    settings.restyle_palette, settings.restyle_pattern_scale, settings.restyle_texture_size = "auto", 1.0, 64
    return settings


@pytest.fixture
def results(monkeypatch):
    """Every result message the importers receive, by job kind (the add-on drops them after import)."""
    seen: dict[str, list] = {}
    for kind, importer in list(IMPORTERS.items()):
        def keep(record, context, importer=importer):
            seen.setdefault(record.kind, []).append(record.result)
            return importer(record, context)
        monkeypatch.setitem(IMPORTERS, kind, keep)
    return seen


def test_the_wired_kinds_are_exactly_what_the_backend_offers(backend):
    assert set(backend.job_kinds) == set(JOB_KINDS) == set(IMPORTERS)
    for kind in JOB_KINDS.values():
        if kind.operator is None:  # wired without a UI yet
            assert kind.panel is None, kind
            continue
        module, name = kind.operator.split(".")
        assert hasattr(getattr(bpy.ops, module), name), kind.operator
        assert getattr(bpy.types, kind.panel, None) is not None, kind.panel
    shown = panel_texts(ATELIER_PT_backend)
    assert "Device: cpu" in shown and "Ready" in shown and backend.log_path in shown
    prefs = bpy.context.preferences.addons["blender_addon"].preferences
    assert f"Backend log: {backend.log_path}" in panel_texts(type(prefs), owner=prefs)


def test_free_gpu_memory_is_acknowledged(backend):
    releases = backend.releases
    assert bpy.ops.atelier.backend_release() == {"FINISHED"}
    pump_until(lambda: backend.releases == releases + 1, 10, "the release ack")


def test_render_views_imports_packed_images_with_the_returned_pixels(scene, results):
    add_object("cube", name="Box", location=(1, 2, 3))
    assert bpy.ops.atelier.render_views() == {"FINISHED"}
    record = finish(newest_job())
    result = results["render"][0]
    assert record.outputs == [f"Atelier Box {name}" for name in result.fields["names"]] and len(record.outputs) == 2
    for name, output in zip(result.fields["names"], record.outputs):
        image = bpy.data.images[output]
        assert tuple(image.size) == (32, 32) and image.packed_file is not None
        width, height, channels, expected = decode_png(result.blobs[name])
        pixels = np.empty(32 * 32 * image.channels, np.float32)
        image.pixels.foreach_get(pixels)
        got = np.rint(pixels.reshape(32, 32, image.channels)[::-1, :, :3] * 255)  # Blender's rows start at the bottom
        np.testing.assert_array_equal(got, expected[:, :, :3])
        assert expected[:, :, :3].std() > 0, "the view is blank"


def _nearest(points: np.ndarray, targets: np.ndarray) -> np.ndarray:
    distances = ((points[:, None, :] - targets[None, :, :]) ** 2).sum(-1)
    index = distances.argmin(1)
    assert np.sqrt(distances[np.arange(len(points)), index]).max() < 1e-4
    return index


def test_stylize_creates_the_result_at_the_source_transform(scene, results):
    source = add_object("cube", name="Box", subdivide=1, location=(1, -2, 0.5), rotation=(0.3, 0.2, 1.0),
                        scale=(1.5, 1, 0.5))
    depsgraph = bpy.context.evaluated_depsgraph_get()
    evaluated = source.evaluated_get(depsgraph).to_mesh()
    sent = np.array([v.co for v in evaluated.vertices], np.float32)  # modifiers applied: 26 vertices
    source.evaluated_get(depsgraph).to_mesh_clear()
    assert len(sent) == 26

    assert bpy.ops.atelier.stylize() == {"FINISHED"}
    record = newest_job()
    pump_until(lambda: record.step >= 1 or not record.active, 60, "the first progress")
    assert record.metrics.get("loss") is not None and record.total == 2
    finish(record)
    assert record.preview is not None and record.preview.startswith(b"\x89PNG")  # the last step's preview
    assert isinstance(session.preview_icon(record), int)
    result = results["stylize"][0]
    obj = bpy.data.objects[record.outputs[0]]

    assert obj.users_collection[0].name == COLLECTION
    assert len(obj.data.vertices) == result.fields["vertices"]
    np.testing.assert_allclose(np.array(obj.matrix_world), np.array(source.matrix_world), atol=1e-6)
    assert source.name in bpy.data.objects and source.hide_get() and source.hide_render

    basis = np.array([v.co for v in obj.data.vertices], np.float32)
    rows = _nearest(basis, sent)  # the result lies in the source's local space, vertex for vertex
    assert set(rows) == set(range(len(sent)))

    # Colours: a Color Attribute node feeds the Principled BSDF, and the attribute holds the returned colours.
    material = obj.active_material
    node = next(n for n in material.node_tree.nodes if n.type == "VERTEX_COLOR")
    bsdf = next(n for n in material.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    assert any(link.from_node == node and link.to_socket == bsdf.inputs["Base Color"] for link in material.node_tree.links)
    attribute = obj.data.color_attributes[node.layer_name]
    colors = from_array(result.arrays["colors"])
    corner_vertex = np.array([loop.vertex_index for loop in obj.data.loops])
    got = np.array([c.color[:3] for c in attribute.data])
    if attribute.domain == "POINT":
        corner_vertex = np.arange(len(obj.data.vertices))
    np.testing.assert_allclose(got, colors[rows[corner_vertex]], atol=0.02)

    # Displacement: the shape key "Text2Mesh", at full strength, moves each vertex by the returned offset.
    keys = obj.data.shape_keys.key_blocks
    assert keys["Text2Mesh"].value == 1.0
    moved = np.array([p.co for p in keys["Text2Mesh"].data]) - np.array([p.co for p in keys[0].data])
    np.testing.assert_allclose(moved, from_array(result.arrays["displacement"])[rows], atol=1e-5)
    assert np.abs(moved).max() > 0

    # The job travels with the object, for Run again / Variations.
    assert obj["atelier_kind"] == "stylize" and obj["atelier_source"] == "Box" and obj["atelier_seed"] == 0
    assert json.loads(obj["atelier_params"]) == {"prompt": "a red box", "quality": "draft", "steps": 2, "seed": 0,
                                                 "clip": "tiny", "subdivide": False, "subdivide_vertices": 10_000,
                                                 "bake_texture": False, "texture_size": 1024}
    assert "Run Again" in panel_texts(ATELIER_PT_stylize) and "Variation" in panel_texts(ATELIER_PT_stylize)
    shown = panel_texts(ATELIER_PT_jobs).replace("\n", " ")
    assert "Stylize Box - done" in shown and "'a red box'" in shown


def test_run_again_and_variation_reuse_the_stored_job(scene):
    add_object("cube", name="Box")
    assert bpy.ops.atelier.stylize() == {"FINISHED"}
    first = bpy.data.objects[finish(newest_job()).outputs[0]]
    assert bpy.context.active_object == first

    assert bpy.ops.atelier.run_again(variation=False) == {"FINISHED"}
    again = finish(newest_job())
    assert again.params == json.loads(first["atelier_params"]) and again.source == "Box"

    bpy.context.view_layer.objects.active = first
    assert bpy.ops.atelier.run_again(variation=True) == {"FINISHED"}
    variation = finish(newest_job())
    assert variation.params["seed"] != first["atelier_seed"]
    assert bpy.data.objects[variation.outputs[0]]["atelier_seed"] == variation.params["seed"]
    assert len(bpy.data.collections[COLLECTION].objects) == 3


def _image_pixels(image) -> np.ndarray:
    """[H, W, C] uint8 of a Blender image, row 0 at the top (as in its PNG)."""
    width, height = image.size
    pixels = np.empty(width * height * image.channels, np.float32)
    image.pixels.foreach_get(pixels)
    return np.rint(pixels.reshape(height, width, image.channels)[::-1] * 255).astype(np.uint8)


def test_restyle_imports_the_textured_object_and_the_style_texture(scene, results, tmp_path):
    style = write_style_image(tmp_path / "style.png")
    source = add_object("cube", name="Crate", location=(1, 2, 0.5), rotation=(0, 0, 0.7))
    assert bpy.ops.atelier.restyle_style_add(filepath=str(style)) == {"FINISHED"}
    assert [item.filepath for item in scene.restyle_styles] == [str(style)]

    assert bpy.ops.atelier.restyle() == {"FINISHED"}
    record = newest_job()
    assert record.label == "Restyle Crate" and record.meta["styles"] == [str(style)]
    finish(record, 90)
    assert record.total == 2 and record.metrics.get("loss") is not None
    result = results["restyle"][0]
    assert result.fields["styles"] == 1 and result.fields["texture_size"] == 64
    assert result.fields["unwrapped"] is False  # Blender's cube has UVs
    obj, image = bpy.data.objects[record.outputs[0]], bpy.data.images[record.outputs[1]]

    assert obj.name == "Crate restyled" and obj.users_collection[0].name == COLLECTION
    np.testing.assert_allclose(np.array(obj.matrix_world), np.array(source.matrix_world), atol=1e-6)
    assert source.hide_get() and source.hide_render and bpy.context.active_object == obj

    # The GLB's restyled texture stays wired to Base Color, as the glTF importer made it.
    material = obj.active_material
    tree = material.node_tree
    bsdf = next(n for n in tree.nodes if n.type == "BSDF_PRINCIPLED")
    base = bsdf.inputs["Base Color"]
    assert base.is_linked and base.links[0].from_node.type == "TEX_IMAGE"
    texture = base.links[0].from_node.image
    assert texture is not None and texture.packed_file is not None and tuple(texture.size) == (64, 64)

    # The style texture alone: a packed image in an unconnected Image Texture node of the same material.
    assert image.name == "Crate style texture" and image.packed_file is not None
    assert tuple(image.size) == (64, 64) and image.colorspace_settings.name == "Non-Color"
    node = tree.nodes[STYLE_NODE]
    assert node.type == "TEX_IMAGE" and node.image == image
    assert not any(link.from_node == node or link.to_node == node for link in tree.links)
    _, _, _, expected = decode_png(result.blobs["style_texture"])
    np.testing.assert_array_equal(_image_pixels(image)[:, :, :3], expected[:, :, :3])

    assert obj["atelier_kind"] == "restyle" and json.loads(obj["atelier_styles"]) == [str(style)]
    assert json.loads(obj["atelier_params"]) == {"quality": "draft", "steps": 2, "seed": 0, "palette": "auto",
                                                 "pattern_scale": 1.0, "texture_size": 64, "clip": "tiny-rn",
                                                 "palette_weight": 2000.0, "features": "clip"}
    assert "Run Again" in panel_texts(ATELIER_PT_restyle) and "Run Again" not in panel_texts(ATELIER_PT_stylize)
    shown = panel_texts(ATELIER_PT_jobs).replace("\n", " ")
    assert "Restyle Crate - done" in shown and "Loss " in shown and " -> " in shown
    assert "unwrapped" not in shown and "Palette (auto)" in shown


def test_restyle_of_a_mesh_without_uvs_with_a_palette_and_two_styles_runs_again(scene, tmp_path):
    styles = [write_style_image(tmp_path / f"style{i}.png", seed=i) for i in range(2)]
    bpy.ops.mesh.primitive_ico_sphere_add(subdivisions=1)
    source = bpy.context.active_object
    source.name = "Ball"
    source.data.uv_layers.remove(source.data.uv_layers[0])
    source.data.update()  # the depsgraph does not see a removed UV map until the mesh is tagged
    for style in styles:
        assert bpy.ops.atelier.restyle_style_add(filepath=str(style)) == {"FINISHED"}
    scene.restyle_palette = "#f00, #0000ff"

    assert bpy.ops.atelier.restyle() == {"FINISHED"}
    record = finish(newest_job(), 90)
    assert record.params["palette"] == "#ff0000,#0000ff"
    assert record.fields["unwrapped"] is True and record.fields["styles"] == 2
    assert record.fields["palette"] == ["#ff0000", "#0000ff"] and len(record.fields["neighbour_share"]) == 2
    first = bpy.data.objects[record.outputs[0]]
    assert first.data.uv_layers, "the unwrapped UVs came with the result"
    shown = panel_texts(ATELIER_PT_jobs).replace("\n", " ")
    assert "unwrapped automatically" in shown and "Loss " in shown

    # Run again reads the stored style images again, even after they left the panel's list.
    scene.restyle_styles.clear()
    bpy.context.view_layer.objects.active = first
    assert bpy.ops.atelier.run_again(variation=True) == {"FINISHED"}
    again = finish(newest_job(), 90)
    assert again.meta["styles"] == [str(s) for s in styles] and again.fields["styles"] == 2
    assert again.params == {**json.loads(first["atelier_params"]), "seed": again.params["seed"]}
    assert len(bpy.data.collections[COLLECTION].objects) == 2


def test_restyle_with_a_file_that_is_not_an_image_fails_with_the_backends_reason(scene, tmp_path):
    fake = tmp_path / "notes.png"
    fake.write_text("not an image")
    add_object("cube", name="Box")
    assert bpy.ops.atelier.restyle_style_add(filepath=str(fake)) == {"FINISHED"}
    assert bpy.ops.atelier.restyle() == {"FINISHED"}
    record = newest_job()
    pump_until(lambda: not record.active, 30, "the job to fail")
    assert record.state == "failed" and "style image 0" in record.message and record.hint
    assert "style image 0" in panel_texts(ATELIER_PT_jobs).replace("\n", " ")
    assert session.get_runtime().ready


def test_a_library_is_indexed_by_points_from_the_panel_and_searched(scene, tmp_path):
    """Descriptor "points" (issue 23): the panel's choice reaches the backend, which stores one point-encoder vector
    a shape (the shipped encoder of the domain CLIP); a search of that index needs nothing more."""
    from blender_addon.core import kinds

    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "box.obj").write_text(CUBE_OBJ)
    (tmp_path / "lib" / "tetra.obj").write_text(TETRA_OBJ)
    db = str(tmp_path / "db")
    settings = bpy.context.scene.atelier
    settings.library_descriptor = "points"
    try:
        params = kinds.index_params(str(tmp_path / "lib"), db, "domain", descriptor=settings.library_descriptor)
    finally:
        settings.library_descriptor = "views"  # the scene is shared with the module's other tests
    index = finish(session.get_runtime().submit("index", params, label="Index library"), 90)
    assert index.fields["descriptor"] == "points" and index.fields["points_encoder"].startswith("points:")
    assert index.fields["shapes"] == 2 and index.fields["failed"] == []
    search = finish(session.get_runtime().submit("search", kinds.search_params(db, "a box", k=2), label="Search"))
    assert sorted(h["name"] for h in search.fields["hits"]) == ["box", "tetra"]


def test_a_library_is_indexed_searched_and_a_shape_imported_at_the_cursor(scene, tmp_path):
    from blender_addon.core import kinds

    (tmp_path / "lib" / "boxes").mkdir(parents=True)
    (tmp_path / "lib" / "boxes" / "box.obj").write_text(CUBE_OBJ)
    (tmp_path / "lib" / "tetra.obj").write_text(TETRA_OBJ)
    db = str(tmp_path / "db")
    runtime = session.get_runtime()
    index = finish(runtime.submit("index", kinds.index_params(str(tmp_path / "lib"), db, "tiny", 2),
                                  label="Index library"), 90)
    assert index.outputs == [] and index.fields["shapes"] == 2 and index.fields["failed"] == []
    search = finish(runtime.submit("search", kinds.search_params(db, "a box", k=2), label="Search library"))
    hits = search.fields["hits"]
    assert search.outputs == [] and sorted(h["name"] for h in hits) == ["box", "tetra"]
    box = next(h for h in hits if h["name"] == "box")
    assert box["category"] == "boxes" and box["path"] == "boxes/box.obj"

    bpy.context.scene.cursor.location = (1.0, 2.0, 3.0)
    fetched = finish(runtime.submit("fetch_shape", kinds.fetch_shape_params(db, box["shape_id"]), label="Import"))
    obj = bpy.data.objects[fetched.outputs[0]]
    assert obj.name == "box" and tuple(obj.location) == pytest.approx((1.0, 2.0, 3.0))
    assert len(obj.data.polygons) == 12 and obj.name in bpy.data.collections[COLLECTION].objects
    assert obj["atelier_kind"] == "fetch_shape" and bpy.context.view_layer.objects.active == obj


def test_a_photo_is_segmented_and_its_mask_and_cutout_imported(scene, tmp_path):
    from blender_addon.core import kinds

    photo = write_style_image(tmp_path / "photo.png", size=48)  # random pixels: the tiny CLIP is plumbing here
    params = kinds.segment_params("a red pattern", clip="tiny")
    params.update(proposer="superpixels", relevance="dense-clip")
    record = finish(session.get_runtime().submit("segment", params, label="Segment photo",
                                                 blobs={"image": photo.read_bytes()}), 90)
    assert record.fields["method"] == "superpixels + dense-clip" and record.fields["proposals"] > 0
    mask, cutout = (bpy.data.images[name] for name in record.outputs)
    assert mask.name == "Atelier a red pattern mask" and cutout.name == "Atelier a red pattern cutout"
    assert mask.packed_file is not None and cutout.packed_file is not None
    assert tuple(mask.size) == tuple(cutout.size) == (record.fields["width"], record.fields["height"])


def _red_box_photo(size: int = 96) -> bytes:
    """A red box on a grey ground, as a PNG photo."""
    from blender_addon.core.meshpack import encode_png

    pixels = np.full((size, size, 3), 128, np.uint8)
    pixels[size // 4:3 * size // 4, size // 4:3 * size // 4] = (220, 30, 30)
    return encode_png(pixels)


def _png_size(data: bytes) -> tuple[int, int]:
    import struct

    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _index_library(tmp_path) -> str:
    from blender_addon.core import kinds

    (tmp_path / "lib" / "boxes").mkdir(parents=True)
    (tmp_path / "lib" / "boxes" / "box.obj").write_text(CUBE_OBJ)
    (tmp_path / "lib" / "tetra.obj").write_text(TETRA_OBJ)
    db = str(tmp_path / "db")
    index = finish(session.get_runtime().submit("index", kinds.index_params(str(tmp_path / "lib"), db, "tiny", 2),
                                                label="Index library"), 90)
    assert index.fields["shapes"] == 2 and index.fields["failed"] == []
    return db


def test_photo_to_3d_imports_the_chosen_shape_restyled_at_the_cursor(scene, results, tmp_path):
    db = _index_library(tmp_path)
    bpy.context.scene.cursor.location = (-1.0, 0.5, 2.0)
    params = {"db": db, "prompt": "a red box", "k": 2, "pick": 0, "steps": 2, "quality": "draft",
              "proposer": "superpixels"}
    record = finish(session.get_runtime().submit("photo_to_3d", params, label="Photo to 3D",
                                                 blobs={"image": _red_box_photo()}), 180)
    result = results["photo_to_3d"][0]
    fields = record.fields
    assert sorted(h["name"] for h in fields["hits"]) == ["box", "tetra"]
    assert [h["thumbnail"] for h in fields["hits"]] == ["thumb_000", "thumb_001"]
    assert fields["chosen"]["name"] == fields["hits"][0]["name"] and fields["category"] == fields["chosen"]["category"]
    assert fields["method"] == "retrieve" and fields["segmentation"].startswith("superpixels") and fields["steps"] == 2
    assert np.isfinite(fields["loss_first"]) and np.isfinite(fields["loss_last"])
    assert {"mesh", "style_texture", "mask", "cutout", "thumb_000", "thumb_001"} <= set(result.blobs)

    name = f"{fields['chosen']['name']} from photo"
    obj, image = bpy.data.objects[record.outputs[0]], bpy.data.images[record.outputs[1]]
    assert record.outputs == [name, f"{name} style texture"] and obj.name == name
    assert obj.name in bpy.data.collections[COLLECTION].objects and obj.users_collection[0].name == COLLECTION
    assert tuple(obj.location) == pytest.approx((-1.0, 0.5, 2.0)) and bpy.context.view_layer.objects.active == obj
    assert obj["atelier_kind"] == "photo_to_3d"

    # The restyled texture on Base Color (as the glTF importer wires it) ...
    tree = obj.active_material.node_tree
    bsdf = next(n for n in tree.nodes if n.type == "BSDF_PRINCIPLED")
    base = bsdf.inputs["Base Color"]
    assert base.is_linked and base.links[0].from_node.type == "TEX_IMAGE"
    texture = base.links[0].from_node.image
    assert texture is not None and texture.packed_file is not None
    # ... and the style texture alone, packed, in an unconnected node, with the returned PNG's pixels.
    node = tree.nodes[STYLE_NODE]
    assert node.type == "TEX_IMAGE" and node.image == image
    assert not any(link.from_node == node or link.to_node == node for link in tree.links)
    assert image.packed_file is not None and image.colorspace_settings.name == "Non-Color"
    style_png = result.blobs["style_texture"]
    assert tuple(image.size) == _png_size(style_png)
    reference = load_png_image("reference style", style_png)  # decoded independently of the importer's image
    try:
        np.testing.assert_array_equal(_image_pixels(image), _image_pixels(reference))
    finally:
        bpy.data.images.remove(reference)


def test_photo_to_3d_without_a_library_fails_with_the_backends_reason_and_imports_nothing(scene, tmp_path):
    images = set(bpy.data.images)
    params = {"db": str(tmp_path / "no-such-db"), "prompt": "a red box", "k": 2, "steps": 2,
              "proposer": "superpixels"}
    record = session.get_runtime().submit("photo_to_3d", params, label="Photo to 3D",
                                          blobs={"image": _red_box_photo()})
    pump_until(lambda: not record.active, 60, "the job to fail")
    assert record.state == "failed" and record.code == "invalid_input", record.error_text()
    assert record.message.startswith("no shape library database at ") and "no-such-db" in record.message
    assert "index a library first" in record.hint and record.outputs == []

    del params["db"]  # no library named at all
    unnamed = session.get_runtime().submit("photo_to_3d", params, label="Photo to 3D",
                                           blobs={"image": _red_box_photo()})
    pump_until(lambda: not unnamed.active, 60, "the job to fail")
    assert unnamed.state == "failed" and unnamed.code == "invalid_input", unnamed.error_text()
    assert unnamed.message == "method retrieve searches a library, and no database was given" and unnamed.hint
    assert unnamed.outputs == []
    assert set(bpy.data.images) == images
    assert COLLECTION not in bpy.data.collections or not bpy.data.collections[COLLECTION].objects
    assert session.get_runtime().ready


def _long_stylize(scene):
    add_object("cube", name="Box")
    scene.stylize_steps = 5000
    assert bpy.ops.atelier.stylize() == {"FINISHED"}
    record = newest_job()
    pump_until(lambda: record.state == "running" and record.step >= 1, 60, "the job to run")
    return record


def test_cancel_stops_a_running_job(scene):
    record = _long_stylize(scene)
    assert bpy.ops.atelier.cancel_job(job_id=record.id) == {"FINISHED"}
    pump_until(lambda: not record.active, 15, "the cancellation")
    assert record.state == "cancelled" and record.step < 5000
    assert COLLECTION not in bpy.data.collections or not bpy.data.collections[COLLECTION].objects
    assert session.get_runtime().ready


def test_a_killed_backend_fails_the_job_and_the_next_action_restarts_it(scene):
    runtime = session.get_runtime()
    record = _long_stylize(scene)
    old_pid = runtime.process.pid
    runtime.process.process.kill()
    pump_until(lambda: not record.active, 15, "the job to fail")
    assert record.state == "failed" and record.code == "backend_lost"
    assert "stopped unexpectedly" in record.message and runtime.log_path in record.error_text()
    assert runtime.state == "lost"
    shown = panel_texts(ATELIER_PT_jobs).replace("\n", " ")
    assert "stopped unexpectedly" in shown and "backend log" in shown

    scene.render_views = 1
    assert bpy.ops.atelier.render_views() == {"FINISHED"}  # the next action
    finish(newest_job(), timeout=90)
    assert runtime.ready and runtime.process.pid != old_pid
