"""The bpy-free halves of sketch input (`sketch.py`: projection, fitting, limits) and the Segment Photo panel
(`photo.py`: cursor -> prompts, photo file, cut-out crop), and the params builders they feed (`kinds.py`)."""

from __future__ import annotations

import ast

import numpy as np
import pytest

from addon_helpers import ROOT
from blender_addon.core import kinds, photo, sketch
from blender_addon.core.protocol import requests
from blender_addon.core.errors import AddonError


@pytest.mark.parametrize("module", ["sketch", "photo"])
def test_the_logic_modules_do_not_import_bpy(module):
    tree = ast.parse((ROOT / "blender_addon" / "core" / f"{module}.py").read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree)
              if isinstance(n, ast.ImportFrom) and n.module and not n.level}
    assert not names & {"bpy", "mathutils", "bmesh", "addon_utils"}


def _perspective(fov_deg: float = 90.0, aspect: float = 1.0, near: float = 0.1, far: float = 100.0) -> np.ndarray:
    """OpenGL-style projection (what Blender's window_matrix is), eye at the origin looking down -z, y up."""
    f = 1.0 / np.tan(np.radians(fov_deg) / 2)
    return np.array([[f / aspect, 0, 0, 0], [0, f, 0, 0],
                     [0, 0, (far + near) / (near - far), 2 * far * near / (near - far)], [0, 0, -1, 0]])


def test_project_maps_the_view_to_view_units_with_y_down():
    matrix = _perspective()
    # On the view axis: the middle; up (+y) is towards the top (small y); right (+x) is to the right.
    centre, up, right = sketch.project(np.array([[0, 0, -5], [0, 5, -5], [5, 0, -5]]), matrix)[0]
    assert centre == pytest.approx([0.5, 0.5]) and up == pytest.approx([0.5, 0.0])
    assert right == pytest.approx([1.0, 0.5])
    # A wide view stretches x to [0, aspect]: a 45-degree point still lands at the right edge.
    assert sketch.project(np.array([[10, 0, -5]]), _perspective(aspect=2.0), aspect=2.0)[0][0] == \
        pytest.approx([2.0, 0.5])


def test_project_splits_a_stroke_where_it_passes_behind_the_eye():
    line = np.array([[-1, 0, -5], [1, 0, -5], [1, 0, 5], [1, 1, 5], [-1, 1, -5], [-1, 2, -5]], float)
    pieces = sketch.project(line, _perspective())
    assert [len(p) for p in pieces] == [2, 2]
    assert sketch.project(np.zeros((0, 3)), _perspective()) == []


def test_front_ortho_draws_world_x_right_and_z_up():
    pieces = sketch.project(np.array([[0, 0, 0], [1, 7, 0], [0, -3, 1]], float), sketch.FRONT_ORTHO)
    (origin, right, top), = pieces
    assert right[0] > origin[0] and right[1] == origin[1]  # world x: to the right; depth (y) ignored
    assert top[1] < origin[1] and top[0] == origin[0]  # world z: up the page (y down)


def test_fit_unit_square_keeps_proportions_and_centres():
    wide = [np.array([[10, 5], [30, 5], [30, 15]], float)]  # 20 x 10 units
    (fitted,) = sketch.fit_unit_square(wide, margin=0.1)
    np.testing.assert_allclose(fitted, [[0.1, 0.3], [0.9, 0.3], [0.9, 0.7]])
    # A dot lands in the middle; non-finite points and repeats go; empty lines vanish.
    assert sketch.fit_unit_square([np.array([[3, 4], [3, 4]], float)]) == [[[0.5, 0.5]]]
    assert sketch.fit_unit_square([np.array([[np.nan, 1], [0, 0], [1, 1]], float), np.zeros((0, 2))], 0.0) == \
        [[[0.0, 0.0], [1.0, 1.0]]]
    assert sketch.fit_unit_square([]) == []


def test_limit_keeps_the_longest_strokes_and_thins_evenly():
    lines = [np.zeros((n, 2)) + i for i, n in enumerate([3, 50, 2, 40])]
    kept = sketch.limit(lines, max_strokes=2)
    assert [len(x) for x in kept] == [50, 40] and kept[0][0, 0] == 1 and kept[1][0, 0] == 3  # order kept
    line = np.stack([np.arange(1000.0), np.zeros(1000)], axis=1)
    (thinned,) = sketch.limit([line], max_points=100)
    assert 2 <= len(thinned) <= 100 and thinned[0, 0] == 0 and thinned[-1, 0] == 999
    many = sketch.limit([line] * 10, max_points=100)
    assert sum(len(x) for x in many) <= 100 and all(len(x) >= 2 for x in many)


def test_project_strokes_gives_the_search_param_or_a_clear_error():
    square = np.array([[-1, 0, -1], [1, 0, -1], [1, 0, 1], [-1, 0, 1], [-1, 0, -1]], float)
    (strokes,) = sketch.project_strokes([square], sketch.FRONT_ORTHO)
    assert strokes == [[0.05, 0.95], [0.95, 0.95], [0.95, 0.05], [0.05, 0.05], [0.05, 0.95]]
    params = kinds.search_params("/db", k=3, strokes=[strokes])
    assert params["strokes"] == [strokes]
    with pytest.raises(AddonError) as info:
        sketch.project_strokes([], sketch.FRONT_ORTHO)
    assert info.value.code == "empty_sketch" and "has no strokes" in info.value.message
    assert "Annotate" in info.value.hint
    behind = np.array([[0, 0, 5], [1, 0, 5]], float)  # all behind the eye
    with pytest.raises(AddonError, match="has no strokes"):
        sketch.project_strokes([behind], _perspective())


def test_library_search_request_with_strokes_sends_no_blob():
    params, blobs = kinds.library_search_request("/db", "a chair", "SKETCH", "", 4, strokes=[[[0.1, 0.2], [0.3, 0.4]]])
    assert blobs == {} and params == {"db": "/db", "k": 4, "text": "a chair", "strokes": [[[0.1, 0.2], [0.3, 0.4]]]}
    with pytest.raises(AddonError, match="not a photo query"):
        kinds.library_search_request("/db", "", "PHOTO", "", 4, strokes=[[[0.1, 0.2]]])
    with pytest.raises(AddonError, match="the sketch has no strokes"):
        kinds.library_search_request("/db", "", "SKETCH", "", 4, strokes=[])


def test_cursor_uv_reads_pixels_or_normalised_coordinates():
    assert photo.cursor_uv((50, 25), 200, 100, pixel_coords=True) == (0.25, 0.25)
    assert photo.cursor_uv((0.25, 0.75), 200, 100, pixel_coords=False) == (0.25, 0.75)
    with pytest.raises(AddonError, match="outside the image") as info:
        photo.cursor_uv((250, 25), 200, 100, pixel_coords=True)
    assert "Shift" in info.value.hint
    with pytest.raises(AddonError, match="no pixels"):
        photo.cursor_uv((0, 0), 0, 0, pixel_coords=True)


def test_prompt_pixels_flip_v_and_order_the_box():
    points, box = photo.prompt_pixels([(0.25, 0.75, True), (1.0, 0.0, False)], (0.75, 0.25, 0.25, 0.75), 200, 100)
    assert points == [(49.5, 24.5, True), (199.0, 99.0, False)]
    assert box == (49.5, 24.5, 149.5, 74.5)
    assert photo.prompt_pixels([], None, 10, 10) == ([], None)
    with pytest.raises(AddonError, match="box has no area"):
        photo.prompt_pixels([], (0.5, 0.5, 0.5, 0.9), 100, 100)
    with pytest.raises(AddonError, match="over the 64 limit"):
        photo.prompt_pixels([(0.5, 0.5, True)] * 65, None, 10, 10)
    params = kinds.segment_params("a chair", points=points, box=list(box), proposer="superpixels")
    assert params == {"prompt": "a chair", "points": [[49.5, 24.5, 1], [199.0, 99.0, 0]],
                      "box": [49.5, 24.5, 149.5, 74.5], "proposer": "superpixels"}
    with pytest.raises(AddonError, match="proposer"):
        kinds.segment_params("a chair", proposer="magic")


def test_photo_to_3d_params():
    assert kinds.photo_to_3d_params("a red box", "/db", k=3, quality="draft", steps=2, seed=1,
                                    proposer="superpixels", category=" boxes ") == {
        "prompt": "a red box", "db": "/db", "k": 3, "quality": "draft", "steps": 2, "seed": 1,
        "proposer": "superpixels", "category": "boxes"}
    assert kinds.photo_to_3d_params("x", "/db") == {"prompt": "x", "db": "/db", "k": 5, "quality": "draft", "seed": 0}
    for kwargs, words in [({"db": ""}, "database folder is empty"), ({"k": 0}, "number of results"),
                          ({"quality": "best"}, "quality"), ({"prompt": " "}, "prompt is empty")]:
        with pytest.raises(AddonError, match=words):
            kinds.photo_to_3d_params(**{"prompt": "x", "db": "/db", **kwargs})


def test_photo_to_3d_params_reconstruct():
    # Reconstruct from a sphere: no database needed, none sent; init sent, quality (the restyle's) not.
    assert kinds.photo_to_3d_params("a red box", "", method="reconstruct", init="sphere", steps=3,
                                    texture_steps=1, proposer="superpixels", preview_every=1) == {
        "prompt": "a red box", "proposer": "superpixels", "method": "reconstruct", "init": "sphere", "seed": 0,
        "steps": 3, "texture_steps": 1, "preview_every": 1}
    # A database, when given, goes along (it supplies the CLIP); texture steps 0 (bake only) is sent.
    assert kinds.photo_to_3d_params("x", "/db", k=2, method="reconstruct", init="generate", texture_steps=0,
                                    store="milvus") == {
        "prompt": "x", "db": "/db", "store": "milvus", "k": 2, "method": "reconstruct", "init": "generate",
        "seed": 0, "texture_steps": 0}
    # Auto starts from retrieval: no init is sent. Zero123 guidance sends its folder and the fallback switch.
    assert kinds.photo_to_3d_params("x", "/db", method="auto", init="generate", guidance="zero123",
                                    zero123_model=" /w/zero123 ", allow_clip_fallback=True, category="box") == {
        "prompt": "x", "db": "/db", "k": 5, "method": "auto", "seed": 0, "guidance": "zero123",
        "zero123_model": "/w/zero123", "allow_clip_fallback": True, "category": "box"}
    # CLIP guidance: the Zero123 fields are not sent.
    assert "zero123_model" not in kinds.photo_to_3d_params("x", "", method="reconstruct", zero123_model="/w")
    # Every params set the builder makes, the protocol's own request takes (requires() included).
    for params in (kinds.photo_to_3d_params("x", "", method="reconstruct", init="generate", steps=3),
                   kinds.photo_to_3d_params("x", "/db", method="auto", guidance="zero123"),
                   kinds.photo_to_3d_params("x", "/db", k=2, steps=2)):
        requests.PhotoTo3DRequest(**params).requires({"image"})


@pytest.mark.parametrize("method, init", [("retrieve", "sphere"), ("auto", "sphere"), ("reconstruct", "retrieve"),
                                          ("reconstruct", "best")])
def test_photo_to_3d_without_a_database_is_refused_where_the_library_is_searched(method, init):
    with pytest.raises(AddonError, match="the database folder is empty") as info:
        kinds.photo_to_3d_params("x", " ", method=method, init=init)
    assert info.value.code == "no_database" and "Reconstruct with Init Sphere" in info.value.hint
    assert kinds.photo_to_3d_needs_db(method, init)
    assert not kinds.photo_to_3d_needs_db("reconstruct", "sphere")
    assert not kinds.photo_to_3d_needs_db("reconstruct", "generate")


@pytest.mark.parametrize("kwargs, words", [
    ({"method": "dream"}, "method must be one of"), ({"init": "cube"}, "init must be one of"),
    ({"guidance": "dreams"}, "guidance must be one of"), ({"texture_steps": -2}, "texture steps"),
    ({"steps": -1}, "steps must be"), ({"preview_every": -1}, "preview every"),
    ({"guidance": "zero123", "zero123_model": "x" * 5000}, "Zero123 weights path is over"),
    ({"prompt": ""}, "prompt is empty")])
def test_photo_to_3d_reconstruct_bad_values(kwargs, words):
    with pytest.raises(AddonError, match=words):
        kinds.photo_to_3d_params(**{"prompt": "x", "db": "", "method": "reconstruct", **kwargs})


def test_read_photo_refuses_what_cannot_be_sent(tmp_path):
    (tmp_path / "p.png").write_bytes(b"\x89PNG....")
    assert photo.read_photo(str(tmp_path / "p.png")) == b"\x89PNG...."
    (tmp_path / "empty.png").write_bytes(b"")
    for path, words in [("", "no photo is chosen"), (str(tmp_path), "is a folder"),
                        (str(tmp_path / "missing.png"), "does not exist"), (str(tmp_path / "empty.png"), "is empty")]:
        with pytest.raises(AddonError, match=words):
            photo.read_photo(path)


def test_crop_to_alpha_keeps_the_object_and_a_margin():
    rgba = np.zeros((100, 80, 4), np.uint8)
    rgba[20:40, 30:50] = (200, 10, 10, 255)  # a 20 x 20 object
    cropped = photo.crop_to_alpha(rgba, margin=0.1)
    assert cropped.shape == (24, 24, 4) and cropped[2:22, 2:22, 3].min() == 255 and cropped[0, 0, 3] == 0
    assert photo.crop_to_alpha(rgba, margin=10).shape == (100, 80, 4)  # clamped to the image
    with pytest.raises(AddonError, match="fully transparent"):
        photo.crop_to_alpha(np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(AddonError, match="RGBA"):
        photo.crop_to_alpha(np.zeros((4, 4, 3), np.uint8))


def test_a_reconstruction_without_a_database_sends_the_preferred_clip():
    params = kinds.photo_to_3d_params("a chair", "", method="reconstruct", init="sphere", clip="domain")
    assert params["clip"] == "domain" and "db" not in params
    requests.PhotoTo3DRequest.from_params(params, ["image"])  # the backend's own request accepts it
    with_db = kinds.photo_to_3d_params("a chair", "/db", method="reconstruct", init="sphere", clip="domain")
    assert "clip" not in with_db and with_db["db"] == "/db"  # the database's CLIP decides
