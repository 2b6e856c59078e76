"""Indexing and searching a real Blender asset library (built with the bpy module, read by Blender workers):
every asset once with its catalog and tags, bad files reported while the run goes on, `--blend-objects all`,
hybrid name search, catalog filters, the domain CLIP finding a red chair, incremental re-indexing, a run
killed with SIGKILL, and no Blender at all."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from library_helpers import one_thread
from backend.geometry import blender_pool
from backend.geometry.glb import export_glb
from backend.models.clip import load_clip
from backend.retrieve.database import LibraryDB
from backend.retrieve.indexer import IndexConfig, index_library
from backend.retrieve.query import QueryEncoder
from backend.retrieve.search import search
from backend.retrieve.views import IndexViewConfig
from backend.world.shape import make_shape
from tests.assets.asset_library import BAD_INPUTS, _asset, build_asset_library

pytestmark = pytest.mark.timeout(600)
ROOT = Path(__file__).resolve().parents[2]
SMALL = IndexViewConfig(views=2, thumbnail_size=32)
"""Two views per shape where a test checks bookkeeping, not retrieval quality."""


@pytest.fixture(scope="module")
def library(tmp_path_factory, bpy_python):
    return build_asset_library(tmp_path_factory.mktemp("assetlib"), bpy_python, extras=True)


@pytest.fixture(scope="module")
def domain():
    return QueryEncoder(load_clip("domain"))


@pytest.fixture(scope="module")
def indexed(library, domain, tmp_path_factory):
    """The whole library indexed with the domain CLIP and 2 Blender workers: (report, database folder)."""
    db = tmp_path_factory.mktemp("assetdb")
    with one_thread():
        report = index_library(library.root, db, domain, IndexConfig(workers=2))
    return report, db


def _entries(db_dir) -> dict[str, object]:
    with LibraryDB.open(db_dir) as db:
        records = db.shapes()
    relpaths = [r.relpath for r in records]
    assert len(relpaths) == len(set(relpaths))
    return {r.relpath: r for r in records}


def test_every_asset_once_with_catalog_and_tags_and_bad_files_reported(library, indexed):
    report, db = indexed
    entries = _entries(db)
    print(json.dumps({k: v for k, v in report.as_dict().items() if k != "failed"}, indent=1))
    for path, reason in report.failed:
        print(f"failed: {path}: {reason}")
    for (relpath, datablock, name), spec in library.assets.items():
        record = entries.pop(f"{relpath}/{datablock}/{name}")
        assert record.source == {"file": relpath, "datablock": datablock, "name": name}
        assert (record.catalog, record.tags, record.description) == (spec["catalog"], spec["tags"], spec["description"])
        assert (record.author, record.license, record.format) == ("Atelier Tests", "CC-BY-4.0", "blend")
        assert record.mesh and (db / record.mesh).is_file()
    for relpath in library.exports:
        record = entries.pop(relpath)
        assert record.asset is None and record.format == relpath.rsplit(".", 1)[1]
    assert entries == {}, f"unexpected entries: {sorted(entries)}"  # no unmarked mesh, nothing twice
    assert len(library.assets) >= 20 and len({s["catalog"] for s in library.assets.values()}) >= 3
    failed = dict(report.failed)
    assert set(failed) == {*library.corrupt, BAD_INPUTS["newer"], BAD_INPUTS["truncated"], BAD_INPUTS["encrypted"]}
    assert "9.9" in failed[BAD_INPUTS["newer"]] or "newer" in failed[BAD_INPUTS["newer"]]
    assert "truncated" in failed[BAD_INPUTS["truncated"]]
    assert any(BAD_INPUTS["empty"] in w and "no assets" in w for w in report.warnings), report.warnings
    assert report.indexed == len(library.assets) + len(library.exports)
    with LibraryDB.open(db) as opened:
        assert opened.file_states()[BAD_INPUTS["empty"]].entries == 0  # remembered: not re-read next run
        assert opened.shape_ids().size == report.shapes


def test_asset_previews_are_the_thumbnails(indexed, library):
    from PIL import Image
    import io

    _, db = indexed
    with LibraryDB.open(db) as opened:
        record = next(r for r in opened.shapes() if r.name == "Vase_Blue")
        thumbnail = opened.shape(record.id).thumbnail
    pixels = Image.open(io.BytesIO(thumbnail)).convert("RGB")
    centre = pixels.getpixel((pixels.width // 2, pixels.height // 2))
    blue = library.assets[("props/lighting.blend", "Object", "Vase_Blue")]["preview"]
    assert max(range(3), key=lambda c: centre[c]) == max(range(3), key=lambda c: blue[c])  # its own preview's colour


def test_a_name_word_finds_the_asset_first_and_catalog_filters_a_subtree(indexed, domain):
    _, db = indexed
    with LibraryDB.open(db) as opened, one_thread():
        for word, name in [("bookend", "Bookend_Pair"), ("monkey", "Monkey_Bust"), ("walnut chair", "Chair_Walnut"),
                           ("Stuhl aus Möbel", "Stuhl_Möbel")]:
            hits = search(opened, domain, text=word, k=5)
            print(word, [(h.name, round(h.clip_score, 3), h.keyword_score) for h in hits])
            assert hits[0].name == name and hits[0].keyword_score > 0
        chairs = search(opened, domain, text="a chair", k=50, catalog="Furniture/Chairs")
        assert chairs and {h.record.catalog for h in chairs} == {"Furniture/Chairs"}
        props = search(opened, domain, text="a lamp", k=50, catalog="Props")
        assert {h.record.catalog for h in props} == {"Props/Lighting/Lamps", "Props/Decor"}
        tagged = search(opened, domain, text="a lamp", k=50, tag="BRASS")
        assert sorted(h.name for h in tagged) == ["Lamp_Brass"]
        assert {h.record.format for h in search(opened, domain, text="a shape", k=50, format="fbx")} == {"fbx"}


def test_the_domain_clip_finds_the_red_chair_among_colours_and_categories(tmp_path, bpy_python, domain):
    """Assets with neutral names (no keyword help): world chairs, tables and lamps in several colours."""
    meshes = tmp_path / "meshes"
    meshes.mkdir()
    assets = []
    for number, (category, colour) in enumerate([("chair", "red"), ("chair", "blue"), ("chair", "green"),
                                                  ("table", "red"), ("lamp", "red"), ("table", "blue"),
                                                  ("lamp", "yellow"), ("chair", "yellow")]):
        shape = make_shape(100 + number, category, colour=colour, pattern="plain")
        path = meshes / f"{number}.glb"
        path.write_bytes(export_glb(shape.mesh))
        assets.append(_asset(f"Item_{number:02d}", "World", ["item"], "", source=f"glb:{path}",
                             modifiers=[], preview=None, material=None))
    library = build_asset_library(tmp_path / "lib", bpy_python, spec={"catalogs": ["World"], "blends": [
        {"path": "world.blend", "assets": assets}]})
    with one_thread():
        report = index_library(library.root, tmp_path / "db", domain, IndexConfig(workers=1))
        assert report.indexed == 8 and not report.failed, report
        with LibraryDB.open(tmp_path / "db") as db:
            clip_only = search(db, domain, text="a red chair", k=8, keyword_weight=0.0)
            fused = search(db, domain, text="a red chair", k=3)
    print([(h.name, round(h.clip_score, 3)) for h in clip_only])
    assert clip_only[0].name == "Item_00" and fused[0].name == "Item_00"


def test_blend_objects_all_adds_the_unmarked_mesh_only(library, tmp_path):
    encoder = QueryEncoder(load_clip("tiny"))
    with one_thread():
        first = index_library(library.root, tmp_path / "db", encoder, IndexConfig(views=SMALL, workers=2))
        names = {r.name for r in _entries(tmp_path / "db").values()}
        assert "Rock_Scan" not in names
        again = index_library(library.root, tmp_path / "db", encoder,
                              IndexConfig(views=SMALL, workers=2, blend_objects="all"))
    entries = _entries(tmp_path / "db")
    rock = [r for r in entries.values() if r.name == "Rock_Scan"]
    assert len(rock) == 1 and rock[0].relpath == "scans/unmarked_rock.blend/Object/Rock_Scan"
    # Only the .blend files are read again (their options changed); what is new is exactly the mesh objects
    # nobody marked: the unmarked rock and the members of collection assets (their collection stays one entry).
    assert again.extracted_files == sum(1 for f in library.files() if f.suffix == ".blend")
    assert sorted(again.failed) == sorted(first.failed)  # the unchanged locked .usdz is reported, not read again
    members = {part["name"] for spec in library.assets.values() for part in spec.get("members", [])}
    members |= {part["name"] for spec in library.assets.values() for group in spec.get("children", []) for part in group}
    grown = {r.name for r in entries.values()} - names
    assert grown == members | {"Rock_Scan"}
    assert len(entries) == first.shapes + len(grown)


def test_incremental_delete_one_blend_add_another(library, tmp_path):
    lib = tmp_path / "lib"
    shutil.copytree(library.root, lib)
    encoder = QueryEncoder(load_clip("tiny"))
    config = IndexConfig(views=SMALL, workers=2)
    with one_thread():
        first = index_library(lib, tmp_path / "db", encoder, config)
        (lib / "props" / "lighting.blend").unlink()
        (lib / "new").mkdir()
        shutil.copyfile(library.root / "furniture" / "tables.blend", lib / "new" / "tables_copy.blend")
        started = time.perf_counter()
        second = index_library(lib, tmp_path / "db", encoder, config)
        seconds = time.perf_counter() - started
    lighting = sum(1 for key in library.assets if key[0] == "props/lighting.blend")
    tables = sum(1 for key in library.assets if key[0] == "furniture/tables.blend")
    print(f"incremental: first run {first.seconds:.1f} s ({first.extracted_files} files read by Blender, "
          f"{first.indexed} indexed); second {seconds:.1f} s: {second.extracted_files} read, {second.indexed} indexed, "
          f"{second.removed} removed, {second.skipped} skipped")
    assert second.extracted_files == 1 and second.indexed == tables and second.removed == lighting
    assert sorted(second.failed) == sorted(first.failed)  # the bad files are still reported, but not read again
    assert second.shapes == first.shapes - lighting + tables
    entries = _entries(tmp_path / "db")
    assert not any(r.file == "props/lighting.blend" for r in entries.values())
    assert sum(1 for r in entries.values() if r.file == "new/tables_copy.blend") == tables


def test_kill_9_during_a_blend_index_and_a_rerun_leave_each_asset_once(library, tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    for relpath in {key[0] for key in library.assets}:
        (lib / relpath).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(library.root / relpath, lib / relpath)
    shutil.copyfile(library.root / "blender_assets.cats.txt", lib / "blender_assets.cats.txt")
    db_dir = tmp_path / "db"
    command = [sys.executable, "-m", "backend.cli", "index", str(lib), "--db", str(db_dir), "--clip", "tiny",
               "--device", "cpu", "--views", "2", "--workers", "1"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and process.poll() is None:
            if (db_dir / "library.sqlite").exists():
                try:
                    with LibraryDB.open(db_dir) as db:
                        if db.count() > 0:
                            break
                except Exception:
                    pass
            time.sleep(0.2)
        assert process.poll() is None, "the index run finished before it could be killed: " + process.stderr.read().decode()[-2000:]
        os.killpg(process.pid, signal.SIGKILL)  # the indexer and its Blender workers at once
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    partial = _entries(db_dir)
    print(f"killed with {len(partial)} of {len(library.assets)} assets committed "
          f"({len({r.file for r in partial.values()})} files)")
    assert 0 < len(partial) < len(library.assets)
    files = {r.file for r in partial.values()}
    for file in files:  # what is committed is whole files: every asset of a committed file, none of the others
        assert {k for k in partial if partial[k].file == file} == {
            f"{r}/{d}/{n}" for r, d, n in library.assets if r == file}
    rerun = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    entries = _entries(db_dir)  # asserts each relpath once
    assert sorted(entries) == sorted(f"{r}/{d}/{n}" for r, d, n in library.assets)
    print(f"after the re-run: {len(entries)} assets, each once")


def test_without_blender_the_blender_formats_are_skipped_with_one_line(library, tmp_path, monkeypatch):
    lib = tmp_path / "lib"
    lib.mkdir()
    shutil.copyfile(library.root / "furniture" / "chairs.blend", lib / "chairs.blend")
    shutil.copyfile(library.root / "downloads" / "stool_red.fbx", lib / "stool.fbx")
    (lib / "box.glb").write_bytes(export_glb(make_shape(1, "table").mesh))
    monkeypatch.delenv("ATELIER_BLENDER", raising=False)
    monkeypatch.setattr(blender_pool, "REPO_BLENDER_PYTHON", tmp_path / "no-venv" / "bin" / "python")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with one_thread():
        report = index_library(lib, tmp_path / "db", QueryEncoder(load_clip("tiny")), IndexConfig(views=SMALL))
    assert report.indexed == 1 and report.failed == [] and report.skipped == 2
    lines = [w for w in report.warnings if "Blender" in w]
    assert len(lines) == 1 and "skipped 2 " in lines[0] and "--blender" in lines[0], report.warnings
