"""The library database's files and assets (no Blender, no CLIP): a file's entries replaced in one
transaction, asset metadata and filters, the keyword index and hybrid ranking, and a version-1 database
upgraded in place."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from backend.errors import InvalidInputError
from backend.retrieve.database import FileState, LibraryDB, ShapeRecord
from backend.retrieve.filters import ShapeFilter, check_filter
from backend.retrieve.keywords import index_text, keyword_score, query_terms, words
from backend.retrieve.search import search_vector

DIM = 8


def _db(tmp_path) -> LibraryDB:
    return LibraryDB.create(tmp_path / "db", clip="test", encoder="test", embed_dim=DIM, views_json="{}")


def _unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def _vectors(seed: int) -> dict:
    return {"shaded": _unit(seed)[None], "lines": _unit(seed + 1000)[None]}


def _asset(file: str, datablock: str, name: str, seed: int, **meta) -> tuple[ShapeRecord, dict]:
    record = ShapeRecord(relpath=f"{file}/{datablock}/{name}", sha256="s", size=1, mtime_ns=1, name=name,
                         category=None, faces=12, vertices=8, bbox=[[0, 0, 0], [1, 1, 1]], thumbnail=b"png",
                         file=file, asset=f"{datablock}/{name}", **meta)
    return record, _vectors(seed)


def _state(relpath: str, sha: str = "s") -> FileState:
    return FileState(relpath, sha, 1, 1, None, "blend", "blend_objects=assets")


@pytest.fixture
def assets_db(tmp_path):
    db = _db(tmp_path)
    db.set_library_root(str(tmp_path / "lib"))
    db.put_file(_state("furniture/chairs.blend"), [
        _asset("furniture/chairs.blend", "Object", "Chair_Oak", 1, catalog="Furniture/Chairs", tags=["Wood", "seat"],
               description="a sturdy chair"),
        _asset("furniture/chairs.blend", "Collection", "DiningSet", 2, catalog="Furniture", tags=["set"],
               description="a table with four chairs"),
        _asset("furniture/chairs.blend", "Object", "Stool", 3, catalog="Furniture/Chairs/Stools", tags=["seat"]),
    ])
    db.put_file(_state("props/lamps.blend"), [
        _asset("props/lamps.blend", "Object", "LampBrass", 4, catalog="Props/Lighting", tags=["metal"]),
        _asset("props/lamps.blend", "Object", "Furniture_Polish", 5, catalog="Props", tags=["bottle"]),
    ])
    yield db
    db.close()


def test_words_split_names_fold_plurals_and_accents():
    assert words("Chair_Oak") == words("chairOak") == words("chair oak") == ["chair", "oak"]
    assert words("Chairs, Benches & Lamps") == ["chair", "bench", "lamp"]
    assert words("Stühle Ä") == ["stuhle", "a"]
    assert query_terms("a red chair with the oak legs") == ["red", "chair", "oak", "leg"]
    columns = index_text("Chair_Oak", ["wood"], "Furniture/Chairs", "a sturdy seat")
    assert keyword_score(["oak"], columns) == 1.0            # in the name
    assert keyword_score(["wood"], columns) == 0.8           # a tag
    assert keyword_score(["furniture"], columns) == 0.6      # the catalog
    assert keyword_score(["sturdy", "glass"], columns) == 0.25  # half the words, in the description
    assert keyword_score([], columns) == 0.0


def test_a_file_gives_its_entries_in_one_transaction_and_replacing_it_drops_the_old(assets_db):
    db = assets_db
    assert db.count() == 5
    assert db.file_states()["furniture/chairs.blend"].entries == 3
    oak = next(r for r in db.shapes() if r.name == "Chair_Oak")
    assert oak.source == {"file": "furniture/chairs.blend", "datablock": "Object", "name": "Chair_Oak"}
    assert (oak.format, oak.catalog, oak.tags) == ("blend", "Furniture/Chairs", ["Wood", "seat"])
    # The file changed: two assets now, one renamed. The old three are gone, nothing is doubled.
    db.put_file(_state("furniture/chairs.blend", "t"), [
        _asset("furniture/chairs.blend", "Object", "Chair_Oak", 6), _asset("furniture/chairs.blend", "Object", "Bench", 7)])
    names = sorted(r.name for r in db.shapes())
    assert names == ["Bench", "Chair_Oak", "Furniture_Polish", "LampBrass"]
    assert db.file_states()["furniture/chairs.blend"].entries == 2
    # A failing insert (wrong vector size) rolls the whole file back: the two entries stay.
    bad = _asset("furniture/chairs.blend", "Object", "Broken", 8)
    bad[1]["shaded"] = np.zeros((1, DIM + 1), np.float32)
    with pytest.raises(ValueError):
        db.put_file(_state("furniture/chairs.blend", "u"), [_asset("furniture/chairs.blend", "Object", "X", 9), bad])
    assert sorted(r.name for r in db.shapes()) == names
    # A .blend without assets is remembered (0 entries), and removing a file removes what it gave.
    db.put_file(_state("empty.blend"), [])
    assert db.file_states()["empty.blend"].entries == 0
    assert db.remove_file("furniture/chairs.blend") == 2
    assert "furniture/chairs.blend" not in db.file_states()
    assert db.keyword_rows(["bench"], 10) == []  # the keyword index forgot it with the shape


def test_a_moved_blend_keeps_its_assets_under_the_new_path(assets_db):
    db = assets_db
    db.update_file_state("props/lamps.blend", size=2, mtime_ns=2, new_relpath="props/light/lamps.blend")
    moved = {r.name: r for r in db.shapes() if r.file == "props/light/lamps.blend"}
    assert sorted(moved) == ["Furniture_Polish", "LampBrass"]  # asset names are their own, not the file's
    assert moved["LampBrass"].relpath == "props/light/lamps.blend/Object/LampBrass"
    assert "props/lamps.blend" not in db.file_states()


def test_filters_catalog_subtree_tag_and_format(assets_db):
    db = assets_db
    names = lambda f: sorted(r.name for r in db.shapes(db.shape_ids(f).tolist()))  # noqa: E731
    assert names(ShapeFilter(catalog="Furniture")) == ["Chair_Oak", "DiningSet", "Stool"]
    assert names(ShapeFilter(catalog="Furniture/Chairs")) == ["Chair_Oak", "Stool"]
    assert names(ShapeFilter(catalog="Furniture/Ch")) == []  # a subtree, not a text prefix
    assert names(ShapeFilter(tag="SEAT")) == ["Chair_Oak", "Stool"]
    assert names(ShapeFilter(catalog="Props", tag="metal")) == ["LampBrass"]
    assert db.catalogs()["Furniture/Chairs"] == 1 and db.tags()["seat"] == 2 and db.formats() == {"blend": 5}
    assert check_filter(db, catalog="/Furniture/Chairs/").catalog == "Furniture/Chairs"
    assert check_filter(db, format=".BLEND").format == "blend"
    for kwargs, message in [({"catalog": "Vehicles"}, "no shape of catalog 'Vehicles'"),
                            ({"tag": "plastic"}, "no shape of tag 'plastic'"), ({"format": "fbx"}, "no shape of format"),
                            ({"catalog": ""}, "must be a non-empty name"), ({"tag": 3}, "must be a non-empty name")]:
        with pytest.raises(InvalidInputError, match=message) as caught:
            check_filter(db, **kwargs)
        assert kwargs.get("catalog") != "Vehicles" or "Furniture/Chairs" in caught.value.hint


def test_hybrid_ranking_puts_the_named_asset_first_and_reports_both_scores(assets_db):
    db = assets_db
    query = 1.3 * _unit(5) + _unit(1)  # CLIP alone: Furniture_Polish (seed 5) first, Chair_Oak (seed 1) close
    query /= np.linalg.norm(query)
    clip_only = search_vector(db, query, "shaded", 5, terms=["oak"], keyword_weight=0.0)
    assert clip_only[0].name == "Furniture_Polish" and clip_only[0].keyword_score == 0.0
    assert clip_only[0].score - next(h.score for h in clip_only if h.name == "Chair_Oak") < 0.5
    hits = search_vector(db, query, "shaded", 5, terms=query_terms("oak chair"))
    assert hits[0].name == "Chair_Oak" and hits[0].keyword_score == 1.0
    assert hits[0].score == pytest.approx(hits[0].clip_score + 0.5)
    assert hits[0].clip_score == pytest.approx(float(_unit(1) @ query), abs=1e-5)  # its exact cosine
    # "chair" is in Stool's catalog only and in DiningSet's description: partial matches rank below.
    by_name = {h.name: h for h in hits}
    assert by_name["Stool"].keyword_score == pytest.approx(0.3) and by_name["DiningSet"].keyword_score == 0.25
    # "furniture" names Furniture_Polish but is the catalog of the furniture: the name counts more.
    assert search_vector(db, _unit(99), "shaded", 1, terms=["furniture"], keyword_weight=10)[0].name == "Furniture_Polish"
    # Filters hold for keyword matches too: no lamp is a chair.
    filtered = search_vector(db, query, "shaded", 5, terms=["oak"], shape_filter=ShapeFilter(catalog="Props"))
    assert sorted(h.name for h in filtered) == ["Furniture_Polish", "LampBrass"]
    fields = hits[0].as_dict()
    assert fields["source"] == {"file": str(db.directory.parent / "lib" / "furniture" / "chairs.blend"),
                                "datablock": "Object", "name": "Chair_Oak"}
    assert fields["catalog"] == "Furniture/Chairs" and fields["tags"] == ["Wood", "seat"]


V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE shapes (id INTEGER PRIMARY KEY AUTOINCREMENT, relpath TEXT NOT NULL UNIQUE, sha256 TEXT NOT NULL,
    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, name TEXT NOT NULL, category TEXT, faces INTEGER NOT NULL,
    vertices INTEGER NOT NULL, bbox TEXT NOT NULL, thumbnail BLOB NOT NULL, indexed_at REAL NOT NULL);
CREATE INDEX shapes_category ON shapes (category);
CREATE TABLE vectors (shape_id INTEGER NOT NULL REFERENCES shapes (id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('shaded', 'lines')), view INTEGER NOT NULL, vector BLOB NOT NULL,
    PRIMARY KEY (kind, shape_id, view)) WITHOUT ROWID;
"""


def test_a_version_1_database_is_upgraded_in_place(tmp_path):
    folder = tmp_path / "db"
    folder.mkdir()
    raw = sqlite3.connect(folder / "library.sqlite")
    raw.executescript(V1_SCHEMA)
    raw.executemany("INSERT INTO meta VALUES (?, ?)", [
        ("format", "atelier-library"), ("version", "1"), ("clip", "test"), ("encoder", "test"), ("embed_dim", str(DIM)),
        ("views", "{}"), ("generation", "3"), ("catalog", "3"), ("library", str(tmp_path / "lib"))])
    for shape_id, relpath in [(1, "chairs/OakChair.glb"), (2, "lamp.OBJ")]:
        raw.execute("INSERT INTO shapes VALUES (?, ?, 'h', 5, 6, ?, 'c', 12, 8, ?, x'00', 0)",
                    (shape_id, relpath, relpath.split("/")[-1].split(".")[0], json.dumps([[0, 0, 0], [1, 1, 1]])))
        for kind in ("shaded", "lines"):
            raw.execute("INSERT INTO vectors VALUES (?, ?, 0, ?)", (shape_id, kind, _unit(shape_id).tobytes()))
    raw.commit()
    raw.close()
    with LibraryDB.open(folder) as db:
        assert db.meta()["version"] == "2"
        states = db.file_states()
        assert sorted(states) == ["chairs/OakChair.glb", "lamp.OBJ"]
        assert (states["lamp.OBJ"].format, states["lamp.OBJ"].entries, states["lamp.OBJ"].sha256) == ("obj", 1, "h")
        record = db.shape(1)
        assert (record.file, record.asset, record.format, record.tags) == ("chairs/OakChair.glb", None, "glb", [])
        assert search_vector(db, _unit(2), "shaded", 2, terms=["oak"])[0].name == "OakChair"
    with LibraryDB.create(folder, clip="test", encoder="test", embed_dim=DIM, views_json="{}") as db:
        assert db.count() == 2  # opening it again for indexing finds it current
