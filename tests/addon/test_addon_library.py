"""The Search Library panel against a real backend (CPU, the `tiny` CLIP): index a two-shape library, search it
by text, sketch and photo, see the hits' thumbnails in the previews collection and the panel, import a hit."""

from __future__ import annotations

import struct

import bpy
import numpy as np
import pytest

from addon_helpers import CUBE_OBJ, TETRA_OBJ, clear_scene, finish, newest_job, panel_texts, running_backend
from blender_addon.engine import session
from blender_addon.operators.importers import COLLECTION, IMPORTERS
from blender_addon.ui.panels import ATELIER_PT_library


@pytest.fixture(scope="module")
def backend(addon):
    return running_backend()


@pytest.fixture(scope="module")
def indexed(backend, tmp_path_factory):
    """A library of a box (category "boxes") and a tetrahedron, indexed through the panel's operator."""
    clear_scene()
    root = tmp_path_factory.mktemp("library")
    (root / "lib" / "boxes").mkdir(parents=True)
    (root / "lib" / "boxes" / "box.obj").write_text(CUBE_OBJ)
    (root / "lib" / "tetra.obj").write_text(TETRA_OBJ)
    s = bpy.context.scene.atelier
    s.library_folder, s.library_db, s.library_views = str(root / "lib"), str(root / "db"), 2
    assert bpy.ops.atelier.index_library() == {"FINISHED"}
    record = finish(newest_job(), 90)
    assert record.kind == "index" and record.params["clip"] == "tiny" and record.params["views"] == 2
    assert record.fields["shapes"] == 2 and record.fields["failed"] == [] and record.outputs == []
    assert "Indexed 2 shapes" in panel_texts(ATELIER_PT_library)
    return root


@pytest.fixture
def thumbnails(monkeypatch):
    """The search results' thumbnail blobs by job id (the add-on drops the blobs after import)."""
    seen: dict[str, dict[str, bytes]] = {}
    importer = IMPORTERS["search"]

    def keep(record, context):
        seen[record.id] = dict(record.result.blobs)
        return importer(record, context)

    monkeypatch.setitem(IMPORTERS, "search", keep)
    return seen


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def search(mode: str = "TEXT", text: str = "", image: str = "", k: int = 2, category: str = ""):
    s = bpy.context.scene.atelier
    s.search_mode, s.search_text, s.search_image, s.search_k, s.search_category = mode, text, image, k, category
    assert bpy.ops.atelier.search_library() == {"FINISHED"}
    return finish(newest_job())


def assert_hits_shown(record, blobs) -> list[dict]:
    """The record keeps the hits; each thumbnail is in the previews collection at its PNG's size; the panel
    shows each hit's name and score with an Import button."""
    hits = record.fields["hits"]
    assert record.kind == "search" and record.outputs == [] and record.result is None
    for number, hit in enumerate(hits):
        preview = session.hit_preview(record.id, number)
        assert preview is not None, f"no preview for hit {number}"
        assert tuple(preview.image_size) == png_size(blobs[hit["thumbnail"]])
        assert len(preview.image_pixels) == preview.image_size[0] * preview.image_size[1]
    shown = panel_texts(ATELIER_PT_library)
    assert f"{len(hits)} results for" in shown and shown.count("Import") == len(hits)
    for hit in hits:
        assert hit["name"] in shown and f"{hit['score']:.3f}" in shown
    return hits


def test_a_text_search_shows_the_hits_and_imports_one_at_the_cursor(indexed, thumbnails):
    record = search("TEXT", "a box", k=2)
    assert record.params == {"db": str(indexed / "db"), "k": 2, "text": "a box"}
    hits = assert_hits_shown(record, thumbnails[record.id])
    assert sorted(h["name"] for h in hits) == ["box", "tetra"]
    assert "results for a box" in panel_texts(ATELIER_PT_library)

    number = next(i for i, h in enumerate(hits) if h["name"] == "box")
    bpy.context.scene.cursor.location = (1.0, 2.0, 3.0)
    assert bpy.ops.atelier.import_hit(job_id=record.id, index=number) == {"FINISHED"}
    fetched = finish(newest_job())
    assert fetched.kind == "fetch_shape" and fetched.label == "Import library shape box"
    assert fetched.params == {"db": str(indexed / "db"), "shape_id": hits[number]["shape_id"]}
    obj = bpy.data.objects[fetched.outputs[0]]
    assert obj.name == "box" and tuple(obj.location) == pytest.approx((1.0, 2.0, 3.0))
    assert len(obj.data.polygons) == 12 and obj.name in bpy.data.collections[COLLECTION].objects
    assert bpy.context.view_layer.objects.active == obj
    # The search's grid stays after the import (the newest search is what the panel shows).
    assert "results for a box" in panel_texts(ATELIER_PT_library)


def test_a_category_filter_and_a_newer_search_replace_the_grid(indexed, thumbnails):
    first = search("TEXT", "a box", k=2)
    second = search("TEXT", "a box", k=1, category="boxes")
    assert [h["name"] for h in assert_hits_shown(second, thumbnails[second.id])] == ["box"]
    assert session.hit_preview(first.id, 0) is not None  # kept while the job is in the list
    session.get_runtime().jobs.clear_finished()
    third = search("TEXT", "a tetrahedron", k=1)
    assert session.hit_preview(first.id, 0) is None and session.hit_preview(second.id, 0) is None, \
        "thumbnails of cleared jobs must leave the previews collection"
    assert session.hit_preview(third.id, 0) is not None


def test_a_sketch_and_a_photo_search(indexed, thumbnails, tmp_path):
    from blender_addon.core.meshpack import encode_png

    drawing = np.full((64, 64, 3), 255, np.uint8)
    drawing[16:48, 16] = drawing[16:48, 47] = drawing[16, 16:48] = drawing[47, 16:48] = 0  # a square
    (tmp_path / "sketch.png").write_bytes(encode_png(drawing))
    sketched = search("SKETCH", "", str(tmp_path / "sketch.png"), k=2)
    assert sketched.fields["mode"] == "sketch" and "text" not in sketched.params
    assert len(assert_hits_shown(sketched, thumbnails[sketched.id])) == 2
    with_text = search("SKETCH", "a box", str(tmp_path / "sketch.png"), k=2)
    assert with_text.fields["mode"] == "sketch+text"

    photo = np.full((96, 96, 3), 128, np.uint8)
    photo[24:72, 24:72] = (220, 30, 30)
    (tmp_path / "photo.png").write_bytes(encode_png(photo))
    photographed = search("PHOTO", "", str(tmp_path / "photo.png"), k=2)
    assert photographed.fields["mode"] == "photo"
    assert len(assert_hits_shown(photographed, thumbnails[photographed.id])) == 2


def test_a_photo_search_from_the_image_editor_cuts_the_object_out(indexed, thumbnails, image_editor, tmp_path):
    """Photo mode with an image open in Blender: the Image Editor's image is sent; the object is cut out by
    saliency, by the prompt (sent as `prompt`), or not at all (`raw_photo`), and the panel says which."""
    from blender_addon.core.meshpack import encode_png

    pixels = np.full((96, 96, 3), 128, np.uint8)
    pixels[24:72, 32:64] = (220, 30, 30)
    (tmp_path / "editor_photo.png").write_bytes(encode_png(pixels))
    image_editor.image = bpy.data.images.load(str(tmp_path / "editor_photo.png"))
    s = bpy.context.scene.atelier
    s.search_photo_source, s.search_photo_image = "IMAGE", None
    s.search_photo_prompt, s.search_raw_photo = "", False
    try:
        salient = search("PHOTO", "", "/no/such/file.png", k=2)  # the file is not read: the image is the photo
        assert s.search_photo_image == image_editor.image, "the Image Editor's image becomes the chosen photo"
        assert salient.params == {"db": str(indexed / "db"), "k": 2} and salient.fields["mode"] == "photo"
        cut = salient.fields["cut"]
        assert cut["method"] == "saliency" and cut["box"] is not None
        x0, y0, x1, y1 = cut["box"]
        assert abs(x0 - 32) <= 4 and abs(y0 - 24) <= 4 and abs(x1 - 64) <= 4 and abs(y1 - 72) <= 4, cut
        assert len(assert_hits_shown(salient, thumbnails[salient.id])) == 2
        assert "Photo cut: saliency" in panel_texts(ATELIER_PT_library)

        s.search_photo_prompt = "  a red box "
        named = search("PHOTO", "", "", k=2)
        assert named.params == {"db": str(indexed / "db"), "k": 2, "prompt": "a red box"}
        # The tiny random CLIP may find nothing the prompt names: then the whole photo, and the note says why.
        assert named.fields["cut"]["method"] in ("prompt", "raw")
        if named.fields["cut"]["method"] == "raw":
            assert "whole photo" in named.fields["cut"]["note"]
        assert len(named.fields["hits"]) == 2

        s.search_photo_prompt, s.search_raw_photo = "", True
        whole = search("PHOTO", "", "", k=2)
        assert whole.params == {"db": str(indexed / "db"), "k": 2, "raw_photo": True}
        assert whole.fields["cut"] == {"method": "raw", "box": None, "area_fraction": 1.0, "segmenter": "",
                                       "note": ""}
        assert "Photo cut: raw" in panel_texts(ATELIER_PT_library)
    finally:
        s.search_photo_source, s.search_photo_image, s.search_raw_photo = "FILE", None, False


def test_photo_search_bad_input_is_refused_before_sending(indexed, image_editor):
    s = bpy.context.scene.atelier
    s.search_mode, s.search_text, s.search_k = "PHOTO", "", 2
    s.search_photo_source, s.search_photo_image = "IMAGE", None
    try:
        image_editor.image = None
        with pytest.raises(RuntimeError, match="no photo image is chosen and no Image Editor shows one"):
            bpy.ops.atelier.search_library()
        image_editor.image = bpy.data.images.new("Search photo", 32, 32)
        s.search_photo_prompt, s.search_raw_photo = "a red box", True
        with pytest.raises(RuntimeError, match="a photo prompt was given with the whole-photo option"):
            bpy.ops.atelier.search_library()
        s.search_raw_photo, s.search_text = False, "a box"
        with pytest.raises(RuntimeError, match="a photo search takes no text"):
            bpy.ops.atelier.search_library()
    finally:
        s.search_photo_source, s.search_photo_image, s.search_raw_photo = "FILE", None, False
        s.search_photo_prompt, s.search_text = "", ""
