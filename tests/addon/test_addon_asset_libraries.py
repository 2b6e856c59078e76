"""Blender asset libraries in the Search Library panel: the libraries registered in the Preferences listed with a
tick each and indexed one database each; search filters and a hit's catalog, tags and scores; a .blend hit appended
or linked from a real .blend this test writes with bpy (an object asset with a material and a modifier stack, a
collection asset of two objects); the GLB fallback when the .blend is not on this computer; bad input.

Search results are fed in as the backend would send them (a `Result` through `atelier.import_result`, as the timer
does); jobs that would go to the backend are caught at `Runtime.submit` (no backend runs), except in the last test,
which indexes and searches a registered library of OBJ files through a real backend."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import bpy
import pytest

from addon_helpers import (CUBE_OBJ, TETRA_OBJ, clear_scene, finish, newest_job, panel_texts, pump_until,
                           running_backend)
from blender_addon.core.assetlib import library_db, library_key
from blender_addon.core.protocol import Result
from blender_addon.engine import session
from blender_addon.engine.jobs import JobRecord
from blender_addon.operators.importers import COLLECTION
from blender_addon.ui.panels import ATELIER_PT_jobs, ATELIER_PT_library

CURSOR = (1.5, -2.0, 0.75)


def write_asset_blend(path: Path) -> Path:
    """A .blend holding the object asset "Chair_Oak" (a mesh, material "Oak", Bevel then Subdivision) and the
    collection asset "Table_Set" (two objects), written with `bpy.data.libraries.write`; the current file keeps
    none of it."""
    mesh = bpy.data.meshes.new("ChairMesh")
    mesh.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1)], [], [(0, 1, 2), (0, 1, 3), (0, 2, 3), (1, 2, 3)])
    material = bpy.data.materials.new("Oak")
    mesh.materials.append(material)
    chair = bpy.data.objects.new("Chair_Oak", mesh)
    chair.modifiers.new("Bevel", "BEVEL")
    chair.modifiers.new("Subdivision", "SUBSURF").levels = 2
    chair.asset_mark()
    chair.asset_data.tags.new("wood")
    table = bpy.data.collections.new("Table_Set")
    for index in range(2):
        part = bpy.data.objects.new(f"Table_Part{index}", mesh)
        part.location = (index * 2.0, 0.0, 0.0)
        table.objects.link(part)
    table.asset_mark()
    path.parent.mkdir(parents=True, exist_ok=True)
    bpy.data.libraries.write(str(path), {chair, table}, fake_user=True)
    clear_scene()
    return path


@pytest.fixture(scope="module")
def blend(addon, tmp_path_factory) -> Path:
    """The asset .blend, in a folder whose name has a space and a non-ASCII letter."""
    return write_asset_blend(tmp_path_factory.mktemp("assets") / "Asset Lib ü" / "chairs.blend")


def clean() -> None:
    clear_scene()
    for library in list(bpy.data.libraries):
        bpy.data.libraries.remove(library)
    session.get_runtime().jobs.clear_finished()


@pytest.fixture
def submitted(addon, monkeypatch):
    """Jobs the add-on sends, as (kind, params, label): `Runtime.submit` records them and queues nothing."""
    runtime, sent = session.get_runtime(), []

    def submit(kind, params, mesh=None, *, label, source="", meta=None, blobs=None):
        sent.append((kind, params, label))
        record = JobRecord(id=runtime.jobs.new_id(kind), kind=kind, label=label, params=params, meta=meta or {})
        record.state = "queued"
        return runtime.jobs.add(record)

    monkeypatch.setattr(runtime, "submit", submit)
    clean()
    s = bpy.context.scene.atelier
    s.blend_import_mode, s.search_library, s.search_catalog, s.search_tag = "AUTO", "", "", ""
    s.asset_libraries_chosen.clear()
    s.library_views, s.asset_blend_objects, s.asset_workers = 0, "assets", 0
    bpy.context.scene.cursor.location = CURSOR
    yield sent
    clean()


def searched(hits: list[dict], db: str = "/srv/db") -> JobRecord:
    """A finished search job whose result held `hits`, imported as the timer imports it."""
    runtime = session.get_runtime()
    record = runtime.jobs.add(JobRecord(id=runtime.jobs.new_id("search"), kind="search", label="Search library",
                                        params={"db": db, "k": 10, "text": "a chair"}, state="importing"))
    record.result = Result(job=record.id, kind="search", fields={"hits": hits, "mode": "text"})
    assert bpy.ops.atelier.import_result(job_id=record.id) == {"FINISHED"}
    assert record.state == "done"
    return record


def blend_hit(blend: Path | str, datablock: str, name: str, shape_id: int = 7, **more) -> dict:
    return {"shape_id": shape_id, "name": name, "score": 0.9, "category": "", "format": "blend",
            "source": {"file": str(blend), "datablock": datablock, "name": name}, **more}


def import_hit(record: JobRecord, index: int = 0) -> tuple[set[str], str]:
    """Runs the Import button; an ERROR report comes back as RuntimeError (a status-bar line in the UI)."""
    try:
        return bpy.ops.atelier.import_hit(job_id=record.id, index=index), ""
    except RuntimeError as exc:
        return {"CANCELLED"}, str(exc)


def assert_placed(obj) -> None:
    """At the 3D cursor, in the Atelier collection, selected and active."""
    assert tuple(obj.location) == pytest.approx(CURSOR)
    assert obj.name in bpy.data.collections[COLLECTION].objects
    assert bpy.context.view_layer.objects.active == obj and obj.select_get()


def same_file(a: str, b: Path) -> bool:
    return os.path.normpath(bpy.path.abspath(a)) == os.path.normpath(str(b))


# -- importing a .blend hit -----------------------------------------------------------------------------------

def test_an_object_asset_is_appended_with_its_material_and_modifier_stack(blend, submitted):
    record = searched([blend_hit(blend, "Object", "Chair_Oak")])
    assert import_hit(record) == ({"FINISHED"}, "")
    assert submitted == [], "a .blend on this computer is appended, not fetched from the backend"
    obj = bpy.data.objects["Chair_Oak"]
    assert obj.library is None and obj.override_library is None and obj.asset_data is None
    assert [slot.material.name for slot in obj.material_slots] == ["Oak"]
    assert [(m.name, m.type) for m in obj.modifiers] == [("Bevel", "BEVEL"), ("Subdivision", "SUBSURF")]
    assert obj.modifiers["Subdivision"].levels == 2
    assert_placed(obj)
    done = newest_job()
    assert done.kind == "fetch_shape" and done.state == "done" and done.outputs == ["Chair_Oak"]
    assert done.fields["import"] == "append" and "appended Chair_Oak from chairs.blend" in done.message
    assert obj["atelier_kind"] == "fetch_shape"


def test_a_collection_asset_is_linked_as_an_instance_from_the_library_file(blend, submitted):
    record = searched([blend_hit(blend, "Collection", "Table_Set")])
    assert import_hit(record) == ({"FINISHED"}, "")
    empty = bpy.data.objects[newest_job().outputs[0]]
    assert empty.type == "EMPTY" and empty.instance_type == "COLLECTION"
    linked = empty.instance_collection
    assert linked.name == "Table_Set" and linked.library is not None and same_file(linked.library.filepath, blend)
    assert sorted(o.name for o in linked.objects) == ["Table_Part0", "Table_Part1"]
    assert_placed(empty)
    assert submitted == [] and newest_job().fields["import"] == "link"


def test_a_linked_object_is_a_library_override_of_the_file(blend, submitted):
    bpy.context.scene.atelier.blend_import_mode = "LINK"
    record = searched([blend_hit(blend, "Object", "Chair_Oak")])
    assert import_hit(record) == ({"FINISHED"}, "")
    obj = bpy.data.objects[newest_job().outputs[0]]
    assert obj.override_library is not None and obj.library is None
    reference = obj.override_library.reference
    assert reference.name == "Chair_Oak" and same_file(reference.library.filepath, blend)
    assert [slot.material.name for slot in obj.material_slots] == ["Oak"]
    assert [m.type for m in obj.modifiers] == ["BEVEL", "SUBSURF"]
    assert_placed(obj)


def test_an_appended_collection_lands_at_the_cursor(blend, submitted):
    bpy.context.scene.atelier.blend_import_mode = "APPEND"
    record = searched([blend_hit(blend, "Collection", "Table_Set")])
    assert import_hit(record) == ({"FINISHED"}, "")
    table = bpy.data.collections["Table_Set"]
    assert table.library is None and table.name in bpy.data.collections[COLLECTION].children
    first, second = bpy.data.objects["Table_Part0"], bpy.data.objects["Table_Part1"]
    assert tuple(first.location) == pytest.approx(CURSOR)
    assert tuple(second.location) == pytest.approx((CURSOR[0] + 2.0, CURSOR[1], CURSOR[2]))
    assert bpy.context.view_layer.objects.active == first and first.select_get() and second.select_get()


def test_a_blend_that_is_not_on_this_computer_is_fetched_as_the_indexed_glb(blend, submitted, tmp_path):
    record = searched([blend_hit(tmp_path / "remote" / "chairs.blend", "Object", "Chair_Oak", shape_id=7),
                       {"shape_id": 8, "name": "box", "score": 0.5}])  # a loose mesh file / an older backend
    objects = len(bpy.data.objects)
    assert import_hit(record, 0) == ({"FINISHED"}, "")
    assert import_hit(record, 1) == ({"FINISHED"}, "")
    assert [(kind, params) for kind, params, _ in submitted] == [
        ("fetch_shape", {"db": "/srv/db", "shape_id": 7}), ("fetch_shape", {"db": "/srv/db", "shape_id": 8})]
    assert submitted[0][2] == "Import library shape Chair_Oak"
    assert len(bpy.data.objects) == objects and not bpy.data.libraries


# -- bad input ---------------------------------------------------------------------------------------------

def assert_refused_in_panel(outcome, report, code: str, words: str) -> None:
    assert outcome == {"CANCELLED"} and words in report and "Traceback" not in report
    failed = newest_job()
    assert failed.state == "failed" and failed.code == code and words in failed.message and failed.hint
    assert words in panel_texts(ATELIER_PT_library).replace("\n", " ")
    assert words in panel_texts(ATELIER_PT_jobs).replace("\n", " ")


def test_a_hit_whose_datablock_is_gone_from_the_blend(blend, submitted):
    record = searched([blend_hit(blend, "Object", "Chair_Walnut"), blend_hit(blend, "Object", "Chair_Oak")])
    objects, meshes = set(bpy.data.objects), set(bpy.data.meshes)
    outcome, report = import_hit(record, 0)
    assert_refused_in_panel(outcome, report, "asset_missing", "has no object named 'Chair_Walnut' any more")
    assert "index it again" in newest_job().hint
    assert set(bpy.data.objects) == objects and set(bpy.data.meshes) == meshes and not bpy.data.libraries
    assert submitted == []
    assert import_hit(record, 1) == ({"FINISHED"}, ""), "the add-on keeps working after the failure"
    assert "Chair_Oak" in bpy.data.objects


def test_a_damaged_blend_file(submitted, tmp_path):
    damaged = tmp_path / "broken.blend"
    damaged.write_bytes(b"BLENDER-v405" + b"\0" * 40)
    record = searched([blend_hit(damaged, "Collection", "Table_Set")])
    outcome, report = import_hit(record)
    assert_refused_in_panel(outcome, report, "blend_unreadable", "Blender cannot read")
    assert not bpy.data.libraries and submitted == []


# -- the panel: hits, filters, registered libraries ---------------------------------------------------------

def test_each_hit_shows_its_catalog_tags_and_scores(blend, submitted):
    searched([blend_hit(blend, "Object", "Chair_Oak", catalog="Furniture/Chairs", tags=["wood", "oak"],
                        clip_score=0.3125, keyword_score=0.8),
              {"shape_id": 8, "name": "box", "score": 0.5}])  # an older backend's hit: none of the new fields
    shown = panel_texts(ATELIER_PT_library)
    assert "Furniture/Chairs" in shown and "wood, oak" in shown and "clip 0.312  kw 0.800" in shown
    assert "box" in shown and shown.count("Import") == 2
    assert ".blend assets:" in shown, "the Append / Link choice shows for .blend hits"


def add_library(path: Path, name: str):
    """Registers an asset library in the Preferences (the operator in bpy 4.2 to 5.0), renamed to `name`."""
    libraries = bpy.context.preferences.filepaths.asset_libraries
    path.mkdir(parents=True, exist_ok=True)
    assert bpy.ops.preferences.asset_library_add(directory=str(path)) == {"FINISHED"}
    library = libraries[len(libraries) - 1]
    library.name = name
    return library


@pytest.fixture
def libraries(submitted, tmp_path, addon):
    """Three registrations: "Props" and "Props" again (two folders named props), and the first folder once more
    under another name; index databases under tmp_path/indexes."""
    prefs = bpy.context.preferences.addons["blender_addon"].preferences
    prefs.library_index_dir = str(tmp_path / "indexes")
    registered = bpy.context.preferences.filepaths.asset_libraries
    before = len(registered)
    made = [add_library(tmp_path / "a" / "props", "Props"), add_library(tmp_path / "b" / "props", "Props"),
            add_library(tmp_path / "a" / "props", "Props again")]
    yield [library_key(str(tmp_path / "a" / "props")), library_key(str(tmp_path / "b" / "props"))]
    for library in reversed(made):
        index = next(i for i, item in enumerate(registered) if item == library)
        bpy.ops.preferences.asset_library_remove(index=index)
    assert len(registered) == before
    prefs.library_index_dir = ""


def test_registered_libraries_are_listed_and_each_indexes_into_its_own_database(libraries, submitted, tmp_path):
    s = bpy.context.scene.atelier
    names = [library.name for library in bpy.context.preferences.filepaths.asset_libraries][-3:]
    assert names[0] == "Props" and names[1] != "Props", "Blender keeps registered names unique"
    shown = panel_texts(ATELIER_PT_library).split("\n")
    assert names[0] in shown and names[1] in shown and names[2] not in shown, \
        "one folder registered twice is one library"
    for path in libraries:
        assert bpy.ops.atelier.asset_library_toggle(path=path) == {"FINISHED"}
    s.asset_blend_objects, s.asset_workers = "all", 3
    assert bpy.ops.atelier.index_asset_libraries() == {"FINISHED"}
    assert [kind for kind, _, _ in submitted] == ["index", "index"]
    params = [p for _, p, _ in submitted]
    assert [p["library"] for p in params] == libraries
    dbs = [p["db"] for p in params]
    assert len(set(dbs)) == 2 and all(Path(db).parent == tmp_path / "indexes" for db in dbs)
    assert dbs == [library_db(str(tmp_path / "indexes"), path) for path in libraries]
    assert all(p["blend_objects"] == "all" and p["workers"] == 3 and p["clip"] == "tiny" for p in params)
    assert [label for _, _, label in submitted] == [f"Index library {names[0]}", f"Index library {names[1]}"]
    shown = panel_texts(ATELIER_PT_library)
    assert shown.count("indexing 0%") == 2, "each library's row shows its index job"
    # Renaming a library keeps its index; defaults leave the new params out (older backends refuse them).
    bpy.context.preferences.filepaths.asset_libraries[-3].name = "Props renamed"
    s.asset_blend_objects, s.asset_workers = "assets", 0
    bpy.ops.atelier.asset_library_toggle(path=libraries[1])
    assert bpy.ops.atelier.index_asset_libraries() == {"FINISHED"}
    assert submitted[-1][1] == {"library": libraries[0], "db": dbs[0], "clip": "tiny"}
    assert submitted[-1][2] == "Index library Props renamed"


def test_a_search_in_a_library_with_filters(libraries, submitted):
    s = bpy.context.scene.atelier
    s.search_mode, s.search_text, s.search_k, s.search_category = "TEXT", "oak chair", 5, ""
    assert bpy.ops.atelier.asset_library_search_in(path=libraries[1]) == {"FINISHED"}
    s.search_catalog, s.search_tag = " Furniture/Chairs/ ", "wood"
    assert bpy.ops.atelier.search_library() == {"FINISHED"}
    kind, params, _ = submitted[-1]
    assert kind == "search" and params == {"db": library_db(bpy.context.preferences.addons["blender_addon"]
                                                             .preferences.library_index_dir, libraries[1]),
                                           "k": 5, "text": "oak chair", "catalog": "Furniture/Chairs",
                                           "tag": "wood"}
    bpy.ops.atelier.asset_library_search_in(path="")
    s.library_db, s.search_catalog, s.search_tag = "/srv/db", "", ""
    assert bpy.ops.atelier.search_library() == {"FINISHED"}
    assert submitted[-1][1] == {"db": "/srv/db", "k": 5, "text": "oak chair"}, "no filter: no new params"


def test_indexing_with_no_library_ticked_or_searching_one_no_longer_registered(libraries, submitted):
    try:
        outcome, report = bpy.ops.atelier.index_asset_libraries(), ""
    except RuntimeError as exc:
        outcome, report = {"CANCELLED"}, str(exc)
    assert_refused_in_panel(outcome, report, "no_library_chosen", "no asset library is ticked")
    s = bpy.context.scene.atelier
    s.search_mode, s.search_text, s.search_library = "TEXT", "a chair", "/gone/library"
    assert "no longer registered" in panel_texts(ATELIER_PT_library)
    try:
        outcome, report = bpy.ops.atelier.search_library(), ""
    except RuntimeError as exc:
        outcome, report = {"CANCELLED"}, str(exc)
    assert_refused_in_panel(outcome, report, "library_gone", "is no longer registered in Preferences")
    assert submitted == []


# -- through a real backend ----------------------------------------------------------------------------------

def test_a_registered_library_indexed_and_searched_through_the_backend(addon, tmp_path):
    """A registered library of two OBJ files (what every backend indexes) through the real job machinery."""
    running_backend()
    clean()
    prefs = bpy.context.preferences.addons["blender_addon"].preferences
    prefs.library_index_dir = str(tmp_path / "indexes")
    library = add_library(tmp_path / "My Props", "My Props")
    try:
        (tmp_path / "My Props" / "box.obj").write_text(CUBE_OBJ)
        (tmp_path / "My Props" / "tetra.obj").write_text(TETRA_OBJ)
        s = bpy.context.scene.atelier
        s.asset_libraries_chosen.clear()
        s.library_views, s.asset_blend_objects, s.asset_workers = 2, "assets", 0
        path = library_key(str(tmp_path / "My Props"))
        bpy.ops.atelier.asset_library_toggle(path=path)
        assert bpy.ops.atelier.index_asset_libraries() == {"FINISHED"}
        indexed = finish(newest_job(), 90)
        assert indexed.label == "Index library My Props" and indexed.fields["shapes"] == 2
        assert "2 shapes" in panel_texts(ATELIER_PT_library)
        bpy.ops.atelier.asset_library_search_in(path=path)
        s.search_mode, s.search_text, s.search_k, s.search_category = "TEXT", "a box", 2, ""
        assert bpy.ops.atelier.search_library() == {"FINISHED"}
        found = finish(newest_job())
        assert found.params["db"] == library_db(str(tmp_path / "indexes"), path)
        assert sorted(hit["name"] for hit in found.fields["hits"]) == ["box", "tetra"]
    finally:
        registered = bpy.context.preferences.filepaths.asset_libraries
        bpy.ops.preferences.asset_library_remove(index=next(i for i, x in enumerate(registered) if x == library))
        prefs.library_index_dir = ""
        bpy.context.scene.atelier.search_library = ""


def test_a_registered_blend_library_indexed_searched_appended_and_linked_through_the_backend(addon, blend, tmp_path):
    """The whole path with a real backend and its Blender workers: a registered asset library holding a .blend
    is indexed, searched, and one hit is appended (own material and modifiers), another linked (an instance
    of the collection from the source file)."""
    running_backend()
    clean()
    bpy.context.scene.cursor.location = CURSOR
    prefs = bpy.context.preferences.addons["blender_addon"].preferences
    prefs.library_index_dir = str(tmp_path / "indexes")
    folder = tmp_path / "Blend Assets"
    folder.mkdir()
    shutil.copyfile(blend, folder / "chairs.blend")
    library = add_library(folder, "Blend Assets")
    try:
        s = bpy.context.scene.atelier
        s.asset_libraries_chosen.clear()
        s.library_views, s.asset_blend_objects, s.asset_workers = 2, "assets", 1
        path = library_key(str(folder))
        bpy.ops.atelier.asset_library_toggle(path=path)
        assert bpy.ops.atelier.index_asset_libraries() == {"FINISHED"}
        indexed = finish(newest_job(), 180)
        assert indexed.state == "done", indexed.message
        assert indexed.fields["shapes"] == 2 and indexed.fields["failed"] == [], indexed.fields
        bpy.ops.atelier.asset_library_search_in(path=path)
        s.search_mode, s.search_text, s.search_k, s.search_category = "TEXT", "oak chair", 2, ""
        assert bpy.ops.atelier.search_library() == {"FINISHED"}
        found = finish(newest_job())
        hits = found.fields["hits"]
        assert [h["name"] for h in hits] == ["Chair_Oak", "Table_Set"]  # the name words put the chair first
        assert hits[0]["keyword_score"] == 1.0 and hits[0]["tags"] == ["wood"]
        assert hits[0]["source"] == {"file": str(folder / "chairs.blend"), "datablock": "Object", "name": "Chair_Oak"}
        bpy.context.scene.atelier.blend_import_mode = "AUTO"
        assert import_hit(found, 0) == ({"FINISHED"}, "")
        chair = bpy.data.objects[newest_job().outputs[0]]
        assert chair.library is None and [slot.material.name for slot in chair.material_slots] == ["Oak"]
        assert [(m.name, m.type) for m in chair.modifiers] == [("Bevel", "BEVEL"), ("Subdivision", "SUBSURF")]
        assert_placed(chair)
        assert import_hit(found, 1) == ({"FINISHED"}, "")
        empty = bpy.data.objects[newest_job().outputs[0]]
        assert empty.instance_type == "COLLECTION" and empty.instance_collection.name == "Table_Set"
        assert same_file(empty.instance_collection.library.filepath, folder / "chairs.blend")
        assert_placed(empty)
    finally:
        registered = bpy.context.preferences.filepaths.asset_libraries
        bpy.ops.preferences.asset_library_remove(index=next(i for i, x in enumerate(registered) if x == library))
        prefs.library_index_dir = ""
        bpy.context.scene.atelier.search_library = ""
        bpy.context.scene.atelier.blend_import_mode = "AUTO"


def test_the_blender_for_indexing_is_passed_to_a_local_backend(addon):
    from blender_addon.engine.settings import current_settings

    prefs = bpy.context.preferences.addons["blender_addon"].preferences
    try:
        prefs.index_blender = "/opt/blender 5/blender"
        args = current_settings().server_args()
        assert args[-2:] == ("--blender", "/opt/blender 5/blender")
        prefs.index_blender = ""
        # Empty: this Blender's own executable; the bpy module has none, so the backend keeps its default.
        assert ("--blender" in current_settings().server_args()) == bool(bpy.app.binary_path)
    finally:
        prefs.index_blender = ""


# -- the team library (a Milvus store) --------------------------------------------------------------------------

@pytest.mark.parametrize("text, words", [
    ("", "no team library is set"), ("ftp://milvus:19530", "scheme 'ftp'"), ("http://:19530", "names no host"),
    ("http://milvus:port", "bad port"), ("http://user:pw@milvus:19530", "user or password"),
    ("http://milvus:19530/db?x=1", "path or query"), ("team.db", "neither a server URL"),
    ("/shared/team.sqlite", "neither a server URL")])
def test_a_bad_team_library_uri_is_refused_with_the_fix(text, words):
    from blender_addon.core.assetlib import team_store_uri
    from blender_addon.core.errors import AddonError

    with pytest.raises(AddonError, match=words) as caught:
        team_store_uri(text)
    assert caught.value.hint


def test_team_library_uris_are_normalised():
    from blender_addon.core.assetlib import team_store_uri

    assert team_store_uri(" HTTP://Milvus.Studio:19530 ") == "http://milvus.studio:19530"
    assert team_store_uri("https://milvus") == "https://milvus:19530"
    assert team_store_uri("/shared/atelier.db") == "/shared/atelier.db"


def test_the_team_library_is_searched_and_imported_through_the_backend(addon, tmp_path):
    """A Milvus Lite file indexed with `atelier index --store milvus` is the team library: the panel searches it
    and imports a hit (store "milvus" travels with both jobs); an unreachable server is a clear error, fast."""
    import subprocess

    from addon_helpers import backend_python
    from blender_addon.core.assetlib import TEAM_LIBRARY

    library = tmp_path / "meshes"
    library.mkdir()
    (library / "box.obj").write_text(CUBE_OBJ)
    (library / "tetra.obj").write_text(TETRA_OBJ)
    team = tmp_path / "team.db"
    indexed = subprocess.run([str(backend_python()), "-m", "backend.cli", "index", str(library), "--db", str(team),
                              "--store", "milvus", "--clip", "tiny", "--views", "2", "--device", "cpu"],
                             capture_output=True, text=True, timeout=300)
    assert indexed.returncode == 0, indexed.stderr[-2000:]
    running_backend()
    clean()
    bpy.context.scene.cursor.location = CURSOR
    prefs = bpy.context.preferences.addons["blender_addon"].preferences
    s = bpy.context.scene.atelier
    try:
        prefs.team_library = str(team)
        assert "Team library: " + str(team) in panel_texts(ATELIER_PT_library)
        bpy.ops.atelier.asset_library_search_in(path=TEAM_LIBRARY)
        s.search_mode, s.search_text, s.search_k, s.search_category = "TEXT", "a box", 2, ""
        assert bpy.ops.atelier.search_library() == {"FINISHED"}
        found = finish(newest_job(), 120)
        assert found.params["store"] == "milvus" and found.params["db"] == str(team)
        assert sorted(hit["name"] for hit in found.fields["hits"]) == ["box", "tetra"]
        assert import_hit(found, 0) == ({"FINISHED"}, "")
        fetched = finish(newest_job(), 120)
        assert fetched.kind == "fetch_shape" and fetched.params["store"] == "milvus"
        assert_placed(bpy.data.objects[fetched.outputs[0]])
        prefs.team_library = "http://127.0.0.1:1"
        started = time.monotonic()
        assert bpy.ops.atelier.search_library() == {"FINISHED"}
        failed = newest_job()
        pump_until(lambda: failed.state in ("done", "failed"), 30, "the unreachable team library's search")
        assert failed.state == "failed" and "127.0.0.1:1" in failed.error_text(), failed.error_text()
        assert time.monotonic() - started < 10
    finally:
        prefs.team_library = ""
        s.search_library = ""
