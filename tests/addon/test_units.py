"""The add-on's bpy-free modules: packing, PNGs, params, job records, keys, the manifest, the vendored protocol."""

from __future__ import annotations

import ast
import importlib
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import zmq.auth

from addon_helpers import ROOT, decode_png

from blender_addon.core import kinds, meshpack
from blender_addon.core.errors import AddonError
from blender_addon.core.protocol import Accepted, Error, Progress, Result, Submit, from_frames, to_frames
from blender_addon.engine import curve
from blender_addon.engine.jobs import JobRecord, JobTracker

ADDON = ROOT / "blender_addon"
BPY_FREE = ("engine/client", "engine/curve", "core/errors", "engine/jobs", "core/kinds", "core/meshpack",
            "core/protocol", "engine/runtime", "engine/supervisor")
"""Modules that must not import bpy (paths under blender_addon/): they are the testable core."""


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("module", BPY_FREE)
def test_core_modules_do_not_import_bpy(module):
    assert not _imports(ADDON / f"{module}.py") & {"bpy", "mathutils", "addon_utils", "bmesh"}


def test_no_addon_module_imports_the_backend_or_torch():
    allowed = {"bpy", "mathutils", "addon_utils", "numpy", "zmq", "shared_protocol", "__future__"}
    stdlib = set(sys.stdlib_module_names)
    paths = sorted(ADDON.rglob("*.py"))
    assert len(paths) > 20 and ADDON / "engine" / "client.py" in paths  # the subpackages are searched
    for path in paths:
        extra = _imports(path) - allowed - stdlib
        assert not extra, f"{path.name} imports {extra}: the add-on may use only bpy, numpy, zmq and the stdlib"


def test_backend_import_fails_here():
    with pytest.raises(ImportError, match="Blender has no backend"):
        importlib.import_module("backend.server")


# -- meshpack -------------------------------------------------------------------------------------------

CUBE_V = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], np.float32)
CUBE_T = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                   [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]], np.int32)


def test_pack_mesh_round_trips_through_the_wire():
    uv = np.random.default_rng(0).random((36, 2)).astype(np.float32)
    matrix = [[1, 0, 0, 2], [0, 1, 0, 3], [0, 0, 1, 4], [0, 0, 0, 1]]
    payload = meshpack.pack_mesh("cube", CUBE_V, CUBE_T, uv, meshpack.encode_png(np.zeros((2, 2, 3), np.uint8)), matrix)
    msg = from_frames(to_frames(Submit(job="j1", kind="render", params={}, mesh=payload)))
    mesh = msg.mesh
    assert mesh.uv_domain == "corner"
    np.testing.assert_array_equal(meshpack.from_array(mesh.vertices), CUBE_V)
    np.testing.assert_array_equal(meshpack.from_array(mesh.faces), CUBE_T)
    np.testing.assert_array_equal(meshpack.from_array(mesh.uv), uv)
    assert mesh.transform[3] == 2.0 and mesh.transform[7] == 3.0 and mesh.transform[11] == 4.0


@pytest.mark.parametrize("vertices, triangles, match", [
    (CUBE_V, np.zeros((0, 3), np.int32), "has no faces"),
    (np.full((8, 3), np.nan, np.float32), CUBE_T, "infinite or NaN"),
    (CUBE_V[:4], CUBE_T, "missing vertices"),
])
def test_pack_mesh_refuses_what_no_job_can_use(vertices, triangles, match):
    with pytest.raises(AddonError, match=match) as info:
        meshpack.pack_mesh("thing", vertices, triangles)
    assert "'thing'" in info.value.message and info.value.hint


@pytest.mark.parametrize("extra_vertices, extra_triangles", [(1, 0), (0, 1)])
def test_check_size_refuses_a_mesh_over_the_protocol_limits(extra_vertices, extra_triangles):
    from blender_addon.core.protocol import limits

    meshpack.check_size("thing", limits.MAX_VERTICES, limits.MAX_FACES)  # at the limits: fine
    with pytest.raises(AddonError, match="over the limits") as info:
        meshpack.check_size("thing", limits.MAX_VERTICES + extra_vertices, limits.MAX_FACES + extra_triangles)
    assert info.value.code == "too_large" and "'thing'" in info.value.message and "decimate" in info.value.hint


def test_flat_matrix_accepts_rows_and_flat_lists_and_refuses_nan():
    rows = [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16]]
    assert meshpack.flat_matrix(rows) == tuple(float(v) for v in range(1, 17))
    assert meshpack.flat_matrix(list(range(16))) == tuple(float(v) for v in range(16))
    with pytest.raises(AddonError):
        meshpack.flat_matrix([[float("nan")] * 4] * 4)


def test_png_encoder_and_blender_pixel_order():
    image = np.arange(4 * 3 * 4, dtype=np.uint8).reshape(4, 3, 4) * 5
    width, height, channels, decoded = decode_png(meshpack.encode_png(image))
    assert (width, height, channels) == (3, 4, 4)
    np.testing.assert_array_equal(decoded, image)
    assert meshpack.png_size(meshpack.encode_png(image)) == (3, 4)
    # Blender's pixels start at the bottom row; PNG rows start at the top.
    pixels = (image[::-1].astype(np.float32) / 255.0).reshape(-1)
    _, _, _, flipped = decode_png(meshpack.pixels_to_png(pixels, 3, 4, 4))
    np.testing.assert_array_equal(flipped, image)


# -- job kinds and params -------------------------------------------------------------------------------

def test_stylize_params():
    # The backend's request with every default spelled out (StylizeRequest), steps 0 (the preset's) left out.
    assert kinds.stylize_params(" a red box ", "draft", 0, 3, clip="tiny") == \
        {"prompt": "a red box", "quality": "draft", "seed": 3, "clip": "tiny", "subdivide": False,
         "subdivide_vertices": 10_000, "bake_texture": False, "texture_size": 1024}
    assert kinds.stylize_params("x", steps=7, subdivide=True)["steps"] == 7
    with pytest.raises(AddonError, match="prompt is empty"):
        kinds.stylize_params("   ")
    with pytest.raises(AddonError, match="501 characters long, more than 500"):
        kinds.stylize_params("x" * 501)
    with pytest.raises(AddonError, match="quality"):
        kinds.stylize_params("x", quality="ultra")


def test_render_params_follow_the_protocol_limits():
    assert kinds.render_params(2, 32) == {"views": 2, "size": 32, "background": [1.0, 1.0, 1.0]}
    for views, size in ((0, 32), (65, 32), (2, 8), (2, 4096)):
        with pytest.raises(AddonError):
            kinds.render_params(views, size)


def test_restyle_params():
    defaults = {"palette_weight": 2000.0, "features": "clip"}
    assert kinds.restyle_params() == {"quality": "standard", "seed": 0, "palette": "auto", "pattern_scale": 1.0,
                                      **defaults}
    assert kinds.restyle_params("draft", 2, 7, " #F00, 00ff00 ,#abc", 0.5, 64, clip=" tiny-rn ") == {
        "quality": "draft", "steps": 2, "seed": 7, "palette": "#ff0000,#00ff00,#aabbcc", "pattern_scale": 0.5,
        "texture_size": 64, "clip": "tiny-rn", **defaults}
    assert kinds.restyle_params(palette="None")["palette"] == "none"
    assert kinds.restyle_params(palette="  ")["palette"] == "auto"
    for kwargs, match in (({"quality": "ultra"}, "quality"), ({"steps": 100_001}, "steps"),
                          ({"seed": -1}, "seed"), ({"pattern_scale": 0.1}, "'pattern_scale'"),
                          ({"pattern_scale": 9}, "'pattern_scale'"), ({"texture_size": 32}, "'texture_size'"),
                          ({"texture_size": 8192}, "'texture_size'"),
                          ({"palette": "#ff0000,,#00ff00"}, "palette colour 2 of 3 is empty"),
                          ({"palette": "red"}, "'red' is not a hex colour"),
                          ({"palette": ",".join(["#000"] * 17)}, "17 colours, over the 16 limit")):
        with pytest.raises(AddonError, match=match) as info:
            kinds.restyle_params(**kwargs)
        assert kwargs.get("palette") is None or info.value.hint


def test_read_style_images_names_blobs_in_order_and_refuses_bad_files(tmp_path):
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"s{i}.png")
        paths[-1].write_bytes(meshpack.encode_png(np.full((8, 8, 3), i, np.uint8)))
    blobs = kinds.read_style_images([str(p) for p in paths])
    assert list(blobs) == ["style_0", "style_1", "style_2"]
    assert [blobs[f"style_{i}"] for i in range(3)] == [p.read_bytes() for p in paths]
    frames = to_frames(Submit(job="j1", kind="restyle", params={}, blobs=blobs))
    assert from_frames(frames).blobs == blobs

    (tmp_path / "empty.png").write_bytes(b"")
    cases = [([], "no_style_images", "no style images are listed"),
             ([str(paths[0])] * 17, "too_many_styles", "17 style images are listed, over the 16 limit"),
             ([str(paths[0]), ""], "style_missing", "style image 2 of 2 has no file path"),
             ([str(tmp_path / "gone.png")], "style_missing", "does not exist"),
             ([str(tmp_path)], "style_missing", "is a folder"),
             ([str(tmp_path / "empty.png")], "style_unreadable", "is empty")]
    for listed, code, words in cases:
        with pytest.raises(AddonError, match=words) as info:
            kinds.read_style_images(listed)
        assert info.value.code == code and info.value.hint
    assert len(kinds.read_style_images([str(paths[0])] * kinds.MAX_STYLES)) == 16


def test_shape_library_params():
    assert kinds.index_params(" /srv/lib ", "/srv/db", " tiny ", 2) == \
        {"library": "/srv/lib", "db": "/srv/db", "clip": "tiny", "views": 2}
    assert kinds.index_params("/srv/lib", "/srv/db", descriptor="points")["descriptor"] == "points"
    assert kinds.search_params("/srv/db", " a red chair ", 5, " chair ") == \
        {"db": "/srv/db", "k": 5, "text": "a red chair", "category": "chair"}
    assert kinds.search_params("/srv/db", strokes=[[(0, 0.5), (1, 0.5)]])["strokes"] == [[[0.0, 0.5], [1.0, 0.5]]]
    assert kinds.fetch_shape_params("/srv/db", 3) == {"db": "/srv/db", "shape_id": 3}
    for call, words in ((lambda: kinds.index_params("", "/db"), "library folder is empty"),
                        (lambda: kinds.index_params("/lib", "/db", views=30), "views"),
                        (lambda: kinds.index_params("/lib", "/db", descriptor="cloud"), "descriptor must be one of"),
                        (lambda: kinds.search_params("/db", "x", k=0), "number of results"),
                        (lambda: kinds.search_params("/db", "x", k=kinds.SEARCH_MAX_K + 1), "number of results"),
                        (lambda: kinds.search_params("/db", "x" * 501), "over the 500 limit"),
                        (lambda: kinds.search_params("/db", strokes=[]), "no strokes"),
                        (lambda: kinds.fetch_shape_params("/db", 0), "shape_id")):
        with pytest.raises(AddonError, match=words):
            call()
    operators = {"index": "atelier.index_library", "search": "atelier.search_library",
                 "fetch_shape": "atelier.import_hit"}
    for name, operator in operators.items():
        kind = kinds.JOB_KINDS[name]
        assert kind.operator == operator and kind.panel == "ATELIER_PT_library" and not kind.needs_mesh


def test_library_search_request(tmp_path):
    image = tmp_path / "drawing.png"
    image.write_bytes(b"\x89PNG not really")
    assert kinds.library_search_request("/db", " a chair ", "TEXT", str(image), 3, " chairs ") == \
        ({"db": "/db", "k": 3, "text": "a chair", "category": "chairs"}, {})
    assert kinds.library_search_request("/db", "a chair", "SKETCH", str(image)) == \
        ({"db": "/db", "k": 10, "text": "a chair"}, {"sketch": image.read_bytes()})
    assert kinds.library_search_request("/db", "", "PHOTO", str(image), 2) == \
        ({"db": "/db", "k": 2}, {"photo": image.read_bytes()})
    (tmp_path / "empty.png").write_bytes(b"")
    for args, code, words in ((("", "a chair"), "invalid_input", "database folder is empty"),
                              (("/db", "  "), "empty_query", "search query is empty"),
                              (("/db", "", "SKETCH", ""), "search_image_missing", "no sketch image is chosen"),
                              (("/db", "", "PHOTO", str(tmp_path / "gone.png")), "search_image_missing",
                               "does not exist"),
                              (("/db", "", "PHOTO", str(tmp_path)), "search_image_missing", "is a folder"),
                              (("/db", "", "SKETCH", str(tmp_path / "empty.png")), "search_image_unreadable",
                               "is empty"),
                              (("/db", "a chair", "PHOTO", str(image)), "invalid_input", "photo search takes no text"),
                              (("/db", "a chair", "IMAGE"), "invalid_input", "search mode must be one of")):
        with pytest.raises(AddonError, match=words) as info:
            kinds.library_search_request(*args)
        assert info.value.code == code


def test_library_search_request_photo_cut_fields(tmp_path):
    """A photo search sends the segment prompt and the whole-photo option only when set, and only with a photo;
    the photo's bytes (an image open in Blender) stand in for the file."""
    image = tmp_path / "photo.png"
    image.write_bytes(b"\x89PNG not really")
    assert kinds.library_search_request("/db", "", "PHOTO", str(image), 2, prompt=" the red chair ") == \
        ({"db": "/db", "k": 2, "prompt": "the red chair"}, {"photo": image.read_bytes()})
    assert kinds.library_search_request("/db", "", "PHOTO", "", 2, photo=b"pixels", raw_photo=True) == \
        ({"db": "/db", "k": 2, "raw_photo": True}, {"photo": b"pixels"})
    assert kinds.library_search_request("/db", "a chair", "TEXT", prompt="ignored", raw_photo=True) == \
        ({"db": "/db", "k": 10, "text": "a chair"}, {})  # the photo fields are hidden outside Photo mode
    for kwargs, words in (({"prompt": "a chair", "raw_photo": True}, "prompt was given with the whole-photo option"),
                          ({"prompt": "x" * 501}, "photo prompt has 501 characters")):
        with pytest.raises(AddonError, match=words):
            kinds.library_search_request("/db", "", "PHOTO", str(image), **kwargs)


def test_segment_params_and_image_editor_points():
    assert kinds.segment_params(" the red chair ") == {"prompt": "the red chair"}
    params = kinds.segment_params("a chair", clip=" tiny ", sam_checkpoint=" /srv/sam_vit_b.pth ", sam_type="vit_b",
                                  points=[(10.0, 20.5, True), (3, 4, False)], box=(1, 2, 30.123, 40))
    assert params == {"prompt": "a chair", "clip": "tiny", "sam_checkpoint": "/srv/sam_vit_b.pth", "sam_type": "vit_b",
                      "points": [[10.0, 20.5, 1], [3.0, 4.0, 0]], "box": [1.0, 2.0, 30.12, 40.0]}
    # The Image Editor's (u, v) has its origin at the bottom left; the job's pixels have row 0 at the top.
    assert kinds.image_editor_pixel(0.0, 1.0, 200, 100) == (0.0, 0.0)
    assert kinds.image_editor_pixel(0.5, 0.5, 200, 100) == (99.5, 49.5)
    assert kinds.image_editor_pixel(1.2, -0.1, 200, 100) == (199.0, 99.0)  # clamped to the photo
    for call, words in ((lambda: kinds.segment_params("  "), "prompt is empty"),
                        (lambda: kinds.segment_params("x" * 501), "over the 500 limit"),
                        (lambda: kinds.segment_params("x", sam_type="vit_x"), "SAM type"),
                        (lambda: kinds.segment_params("x", points=[(1, 1, True)] * 65), "over the 64 limit"),
                        (lambda: kinds.segment_params("x", box=(5, 5, 5, 9)), "box is empty")):
        with pytest.raises(AddonError, match=words):
            call()
    segment = kinds.JOB_KINDS["segment"]
    assert segment.operator == "atelier.segment_photo" and segment.panel == "ATELIER_PT_segment"
    assert not segment.needs_mesh and not kinds.JOB_KINDS["photo_to_3d"].needs_mesh


def test_generate_params():
    assert kinds.generate_params(" a chair ", " /srv/gen.pt ") == {
        "prompt": "a chair", "checkpoint": "/srv/gen.pt", "samples": 1, "refine": 0, "resolution": 64,
        "threshold": 0.5, "temperature": 0.5, "seed": 0}
    styled = kinds.generate_params("a chair made of oak", "/g.pt", 4, 20, style=True, style_steps=2,
                                   threshold=0.30000001192092896, seed=7)
    assert styled["style"] == "auto" and styled["style_quality"] == "draft" and styled["style_steps"] == 2
    assert styled["threshold"] == 0.3 and (styled["samples"], styled["refine"], styled["seed"]) == (4, 20, 7)
    assert kinds.generate_params("a chair", "/g.pt", style=True, style_text=" made of oak ")["style"] == "made of oak"
    assert "style" not in kinds.generate_params("a chair", "/g.pt", style_text="ignored without Style it")
    assert kinds.generate_label("a chair") == "Generate 'a chair'" and kinds.generate_label("x" * 60).endswith("...'")
    for kwargs, code, words in (({"prompt": "  "}, "empty_prompt", "the prompt is empty"),
                                ({"prompt": "x" * 501}, "invalid_input", "over the 500 limit"),
                                ({"checkpoint": "/" + "x" * 4096}, "invalid_input", "checkpoint path is over"),
                                ({"samples": 0}, "invalid_input", "samples must be in [1, 16]"),
                                ({"samples": 17}, "invalid_input", "samples must be in [1, 16]"),
                                ({"refine": 501}, "invalid_input", "refine steps must be in [0, 500]"),
                                ({"resolution": 16}, "invalid_input", "resolution"),
                                ({"threshold": 1.0}, "invalid_input", "threshold"),
                                ({"temperature": 4}, "invalid_input", "temperature"),
                                ({"seed": -1}, "invalid_input", "seed"),
                                ({"style": True, "style_quality": "ultra"}, "invalid_input", "style quality")):
        with pytest.raises(AddonError) as info:
            kinds.generate_params(**{"prompt": "a chair", "checkpoint": "/g.pt", **kwargs})
        assert info.value.code == code and words in info.value.message, info.value
    # No checkpoint named: none is sent, and the backend uses its shipped generator.
    for empty in ("", "  ", None):
        assert kinds.generate_params("a chair", empty) == {
            "prompt": "a chair", "samples": 1, "refine": 0, "resolution": 64, "threshold": 0.5, "temperature": 0.5,
            "seed": 0}
    # From a picture (blob "image"): the prompt may be empty (left out), "auto" style then has nothing to split.
    assert "prompt" not in kinds.generate_params("  ", "/g.pt", picture=True)
    assert kinds.generate_params("a chair", "/g.pt", picture=True)["prompt"] == "a chair"
    assert kinds.generate_params("", "/g.pt", style=True, style_text="oak", picture=True)["style"] == "oak"
    with pytest.raises(AddonError) as info:
        kinds.generate_params("", "/g.pt", style=True, picture=True)
    assert info.value.code == "empty_style" and "style text" in info.value.hint
    assert kinds.picture_name({"file": "/photos/my chair.png"}) == "my chair"
    assert kinds.picture_name({"file": "C:\\photos\\chair.jpg"}) == "chair"
    assert kinds.picture_name({"image": "chair.png"}) == "chair" and kinds.picture_name(None) == ""
    assert kinds.generate_label("", "chair") == "Generate from chair"
    assert kinds.generate_label("a chair", "chair") == "Generate 'a chair' from chair"
    kind = kinds.JOB_KINDS["generate"]
    assert kind.operator == "atelier.generate" and kind.panel == "ATELIER_PT_generate" and not kind.needs_mesh
    assert "generate" in kinds.PARAMS_ONLY_KINDS


def test_kind_registry_refuses_duplicates():
    kind = kinds.JOB_KINDS["render"]
    with pytest.raises(ValueError, match="wired twice"):
        kinds.build_registry([kind, kind])


# -- job records ----------------------------------------------------------------------------------------

def test_job_tracker_follows_a_job_through_its_messages():
    tracker = JobTracker()
    job_id = tracker.new_id("stylize")
    record = tracker.add(JobRecord(id=job_id, kind="stylize", label="Stylize Cube",
                                   params={"prompt": "a red box", "steps": 3}))
    assert record.state == "waiting" and record.active
    tracker.apply(Accepted(job=job_id, position=2))
    assert (record.state, record.position) == ("queued", 2)
    tracker.apply(Progress(job=job_id, stage="stylize", step=1, total=4, eta_s=3.0, metrics={"loss": -0.2},
                           preview=meshpack.encode_png(np.zeros((2, 2, 3), np.uint8))))
    assert record.state == "running" and record.fraction == 0.25 and record.loss == -0.2
    assert record.preview_serial == 1
    tracker.apply(Result(job=job_id, kind="stylize", fields={"steps": 3}))
    assert record.state == "importing" and record.fraction == 1.0 and record.fields == {"steps": 3}
    assert "'a red box'" in record.summary() and "steps 3" in record.summary()
    assert tracker.apply(Progress(job="someone-else", step=1, total=2)) is None


def test_job_errors_name_the_fix_and_the_log():
    tracker = JobTracker()
    failing = tracker.add(JobRecord(id="a1", kind="render", label="Render"))
    tracker.apply(Error(code="invalid_input", message="bad mesh", hint="fix it", job="a1"), log_path="/tmp/b.log")
    assert failing.state == "failed"
    assert failing.error_text() == "bad mesh (fix it) [backend log: /tmp/b.log]"
    cancelled = tracker.add(JobRecord(id="a2", kind="render", label="Render"))
    tracker.apply(Error(code="cancelled", message="job 'a2' was cancelled", job="a2"))
    assert cancelled.state == "cancelled"


def test_history_keeps_the_newest_finished_jobs():
    tracker = JobTracker(history=3)
    for i in range(6):
        tracker.add(JobRecord(id=f"j{i}", kind="render", label="R")).fail("x", "boom")
    assert [j.id for j in tracker.all()] == ["j5", "j4", "j3"]
    tracker.add(JobRecord(id="live", kind="render", label="R"))
    tracker.clear_finished()
    assert [j.id for j in tracker.all()] == ["live"]


# -- CurveZMQ keys --------------------------------------------------------------------------------------

def test_client_keys_load_and_missing_keys_say_how_to_make_them(tmp_path):
    with pytest.raises(AddonError, match="does not exist") as info:
        curve.load_client_keys(tmp_path / "nowhere")
    assert "atelier keys" in info.value.hint
    zmq.auth.create_certificates(tmp_path, "client")
    with pytest.raises(AddonError, match="server.key is missing"):
        curve.load_client_keys(tmp_path)
    zmq.auth.create_certificates(tmp_path, "server")
    client_public, client_secret, server_public = curve.load_client_keys(tmp_path)
    assert len(client_public) == len(client_secret) == len(server_public) == 40
    (tmp_path / "client.key_secret").write_text("garbage")
    with pytest.raises(AddonError):
        curve.load_client_keys(tmp_path)


# -- the manifest and the vendored protocol --------------------------------------------------------------

def test_manifest_has_what_blender_requires():
    manifest = tomllib.loads((ADDON / "blender_manifest.toml").read_text())
    for key in ("schema_version", "id", "version", "name", "tagline", "maintainer", "type", "license",
                "blender_version_min", "permissions"):
        assert key in manifest, key
    assert manifest["id"] == "atelier" and manifest["type"] == "add-on"
    assert set(manifest["permissions"]) == {"network", "files"}
    for text in (manifest["tagline"], *manifest["permissions"].values()):
        assert len(text) <= 64 and (text[-1].isalnum() or text[-1] == ")"), f"Blender's limits: {text!r}"


def blender_validate(path: Path) -> str:
    """Blender's own manifest validator (the `blender --command extension validate` code) on a folder or zip."""
    import subprocess

    import bpy

    cli = Path(bpy.utils.system_resource("SCRIPTS")) / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"
    done = subprocess.run([sys.executable, str(cli), "validate", str(path)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_blender_validates_the_source_manifest():
    assert "Success" in blender_validate(ADDON)


def test_build_manifest_sets_each_builds_blender_range_and_wheels():
    sys.path.insert(0, str(ROOT))
    from tools import build_extension as be

    text = be.build_manifest(be.BUILDS["cp311"], ["linux-x64"], ["pyzmq-27.3.0-cp311-cp311-manylinux_2_28_x86_64.whl"])
    manifest = tomllib.loads(text)
    assert manifest["blender_version_min"] == "4.2.4" and manifest["blender_version_max"] == "5.1.0"
    assert manifest["wheels"] == ["./wheels/pyzmq-27.3.0-cp311-cp311-manylinux_2_28_x86_64.whl"]
    assert manifest["platforms"] == ["linux-x64"] and "build" not in manifest
    later = tomllib.loads(be.build_manifest(be.BUILDS["cp312-abi3"], ["linux-x64"], []))
    assert later["blender_version_min"] == "5.1.0" and "blender_version_max" not in later
    assert be.wheel_platforms("pyzmq-27.3.0-cp311-cp311-macosx_10_15_universal2.whl") == {"macos-arm64", "macos-x64"}
    assert be.wheel_matches("pyzmq-27.3.0-cp312-abi3-win_arm64.whl", be.BUILDS["cp312-abi3"], "windows-arm64")
    assert not be.wheel_matches("pyzmq-27.3.0-cp312-cp312-win_arm64.whl", be.BUILDS["cp312-abi3"], "windows-arm64")


def test_vendored_protocol_is_self_contained(tmp_path):
    from tools import build_extension as be

    package = tmp_path / "atelier_vendor_test"
    package.mkdir()
    (package / "__init__.py").write_text("")
    be.vendor_protocol(package / "shared_protocol")
    sys.path.insert(0, str(tmp_path))
    try:
        vendored = importlib.import_module("atelier_vendor_test.shared_protocol")
        import shared_protocol

        assert vendored.Hello is not shared_protocol.Hello  # its own modules, not the checkout's
        assert vendored.messages.Submit.__module__ == "atelier_vendor_test.shared_protocol.messages"
        frames = vendored.to_frames(vendored.Hello(client="x"))
        assert isinstance(vendored.from_frames(frames), vendored.Hello)
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.startswith("atelier_vendor_test")]:
            del sys.modules[name]


def test_build_refuses_a_package_that_imports_torch(tmp_path):
    from tools import build_extension as be

    (tmp_path / "ok.py").write_text("import zmq\nfrom . import x\n")
    be.check_imports(tmp_path)
    (tmp_path / "bad.py").write_text("def f():\n    import torch.nn\n")
    with pytest.raises(be.BuildError, match="bad.py imports torch"):
        be.check_imports(tmp_path)
