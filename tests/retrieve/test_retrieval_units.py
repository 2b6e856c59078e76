"""The parts of retrieval on their own: sketch framing and strokes, index views, the vector index, the database."""

from __future__ import annotations

import io
import sqlite3

import numpy as np
import pytest
import torch
from PIL import Image

from library_helpers import one_thread, png_bytes
from backend.errors import InvalidInputError
from backend.retrieve.database import DB_FILE, LibraryDB, ShapeRecord
from backend.retrieve.sketch import SketchInputConfig, check_strokes, sketch_from_image, sketch_from_strokes
from backend.retrieve.vector_index import VectorIndex, VectorIndexConfig
from backend.retrieve.views import IndexViewConfig, index_cameras, render_index_views
from backend.world import make_shape

SQUARE = [[[0.2, 0.2], [0.8, 0.2], [0.8, 0.8], [0.2, 0.8], [0.2, 0.2]]]


def _ink_box(image: torch.Tensor) -> tuple[int, int, int, int]:
    ink = (1 - image.numpy()) > 0.25
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


# -- sketches ---------------------------------------------------------------------------------------------

def test_a_sketch_is_framed_the_same_wherever_and_however_large_it_was_drawn():
    small = np.full((300, 500), 255, np.uint8)
    small[40:80, 30:70] = 0  # a small black square in the top-left of a wide page
    large = np.full((200, 200), 255, np.uint8)
    large[20:180, 20:180] = 0
    a = sketch_from_image(png_bytes(small), 64)
    b = sketch_from_image(png_bytes(large), 64)
    assert a.shape == b.shape == (64, 64) and a.dtype == torch.float32
    top, bottom, left, right = _ink_box(a)
    assert abs((bottom - top + 1) - 0.8 * 64) <= 2 and abs((top + bottom) / 2 - 31.5) <= 1.5
    assert abs((left + right) / 2 - 31.5) <= 1.5
    assert float((a - b).abs().mean()) < 0.02


def test_png_modes_and_transparency_are_accepted():
    rgba = np.zeros((40, 40, 4), np.uint8)  # transparent paper, opaque dark strokes
    rgba[10:30, 18:22] = (20, 20, 20, 255)
    grey_paper = np.full((40, 40), 180, np.uint8)  # a scan: grey paper, dark strokes
    grey_paper[10:30, 18:22] = 30
    a = sketch_from_image(png_bytes(rgba), 32)
    b = sketch_from_image(png_bytes(grey_paper), 32)
    for image in (a, b):
        assert float(image[0, 0]) == pytest.approx(1.0) and float(image.min()) < 0.3
    assert float((a - b).abs().max()) < 0.15


def test_strokes_are_rasterised_antialiased_and_framed():
    image = sketch_from_strokes(SQUARE, 64)
    assert image.shape == (64, 64)
    values = image.numpy()
    assert values.min() < 0.1 and values[32, 32] == pytest.approx(1.0)  # an outline, not a filled square
    assert ((values > 0.05) & (values < 0.95)).any(), "antialiased edges"
    top, bottom, left, right = _ink_box(image)
    assert abs((bottom - top + 1) - 0.8 * 64) <= 2 and abs((right - left) - (bottom - top)) <= 1
    # A stroke drawn smaller, elsewhere, frames the same way.
    moved = sketch_from_strokes([[[0.05 + 0.3 * x, 0.6 + 0.3 * y] for x, y in SQUARE[0]]], 64)
    assert _ink_box(moved) == pytest.approx(_ink_box(image), abs=2)
    dot = sketch_from_strokes([[[0.5, 0.5]]], 32)
    assert float(dot.min()) < 0.9  # a dot is a little ink, antialiased over a few pixels


@pytest.mark.parametrize("strokes, message", [
    ([], "no strokes"),
    ("0,0 1,1", "must be a list"),
    ([[[0.1, 0.2], [0.3]]], "stroke 0"),
    ([[[0.1, 0.2]], []], "stroke 1 must be a non-empty"),
    ([[[0.1, float("nan")]]], "finite"),
    ([[[0.1, 1.5]]], "leaves [0, 1]"),
    ([[["a", "b"]]], "stroke 0"),
])
def test_bad_strokes_are_refused_naming_the_stroke(strokes, message):
    with pytest.raises(InvalidInputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        check_strokes(strokes)


@pytest.mark.parametrize("image", [np.full((64, 64), 255, np.uint8), np.full((64, 64, 3), 250, np.uint8),
                                   np.zeros((64, 64), np.uint8)])
def test_a_blank_sketch_is_refused_with_a_hint(image):
    with pytest.raises(InvalidInputError) as caught:
        sketch_from_image(png_bytes(image), 64)
    assert "blank" in caught.value.message or "dark all over" in caught.value.message
    assert "strokes" in caught.value.hint


def test_unreadable_sketch_bytes_are_refused():
    with pytest.raises(InvalidInputError, match="not an image"):
        sketch_from_image(b"not a png at all", 64)


def test_no_reframing_keeps_the_users_framing():
    page = np.full((64, 64), 255, np.uint8)
    page[4:12, 4:12] = 0
    image = sketch_from_image(page, 64, SketchInputConfig(fill=0.0))
    assert _ink_box(image) == (4, 11, 4, 11)


# -- index views ------------------------------------------------------------------------------------------

def test_index_views_are_fixed_cameras_with_clean_lines_and_a_thumbnail():
    config = IndexViewConfig(views=4).resolved(32)
    assert config.size == 32 and IndexViewConfig.from_json(config.to_json()) == config
    cameras, lights = index_cameras(config)
    assert len(cameras) == 4 and lights.shape == (4, 3)
    mesh = make_shape(3, "chair").mesh
    with one_thread():
        first, again = render_index_views(mesh, config), render_index_views(mesh, config)
    assert first.shaded.shape == (4, 32, 32, 3) and first.lines.shape == (4, 32, 32)
    assert torch.equal(first.shaded, again.shaded) and torch.equal(first.lines, again.lines)  # deterministic
    assert not torch.equal(first.shaded[0], first.shaded[1])
    thumb = Image.open(io.BytesIO(first.thumbnail))
    assert thumb.format == "PNG" and thumb.size == (128, 128)
    # Untextured meshes render in grey, vertex-coloured ones in their colours.
    plain = mesh.copy(uv=None, texture=None)
    coloured = mesh.copy(uv=None, texture=None, vertex_colors=np.tile([[0.9, 0.1, 0.1]], (mesh.num_vertices, 1)))
    with one_thread():
        grey, red = render_index_views(plain, config).shaded, render_index_views(coloured, config).shaded
    covered = (grey < 0.97).any(-1)
    assert float((grey[..., 0] - grey[..., 2])[covered].abs().mean()) < 0.02
    assert float((red[..., 0] - red[..., 2])[covered].mean()) > 0.3


def test_bad_view_configs_are_refused():
    for bad in (IndexViewConfig(views=0), IndexViewConfig(views=99), IndexViewConfig(size=8),
                IndexViewConfig(line_fill=1.5)):
        with pytest.raises(InvalidInputError):
            bad.check()


# -- vector index -----------------------------------------------------------------------------------------

def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _brute_force(vectors, labels, query, k, allowed=None):
    scores = vectors @ query
    best: dict[int, float] = {}
    for i, (label, score) in enumerate(zip(labels, scores)):
        if allowed is not None and not allowed[i]:
            continue
        best[int(label)] = max(best.get(int(label), -np.inf), float(score))
    return sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[:k]


@pytest.mark.parametrize("exact_below", [10_000, 100])
def test_shape_scores_are_the_best_view_and_match_brute_force(exact_below):
    rng = np.random.default_rng(0)
    shapes, views, dim = 300, 6, 16
    vectors = _unit(rng.standard_normal((shapes * views, dim)))
    labels = np.repeat(np.arange(1, shapes + 1), views)
    order = rng.permutation(len(labels))  # rows of a shape need not be adjacent
    index = VectorIndex.build(vectors[order], labels[order], VectorIndexConfig(exact_below=exact_below, ef_search=256))
    assert index.type == ("exact" if exact_below > len(labels) else "hnsw")
    allowed_shapes = set(range(1, shapes + 1, 7))
    allowed = np.isin(labels[order], list(allowed_shapes))
    agree = []
    for q in _unit(rng.standard_normal((20, dim))):
        got = index.search(q, 10)
        want = _brute_force(vectors[order], labels[order], q, 10)
        assert len({s for s, _ in got}) == 10
        agree.append(len({s for s, _ in got} & {s for s, _ in want}) / 10)
        if index.type == "exact":
            assert [s for s, _ in got] == [s for s, _ in want]
            assert np.allclose([v for _, v in got], [v for _, v in want], atol=1e-5)
        filtered = index.search(q, 5, allowed)
        assert {s for s, _ in filtered} <= allowed_shapes and len(filtered) == 5
        assert [s for s, _ in filtered] == [s for s, _ in _brute_force(vectors[order], labels[order], q, 5, allowed)]
    assert np.mean(agree) >= 0.9


def test_fewer_shapes_than_k_and_an_empty_index():
    vectors = _unit(np.random.default_rng(1).standard_normal((6, 8)))
    index = VectorIndex.build(vectors, np.array([1, 1, 1, 2, 2, 2]))
    assert [s for s, _ in index.search(vectors[0], 10)] == [1, 2]
    empty = VectorIndex.build(np.zeros((0, 8), np.float32), np.zeros(0, np.int64))
    assert empty.search(vectors[0], 3) == []


def test_index_files_round_trip_and_garbage_reads_as_missing(tmp_path):
    vectors = _unit(np.random.default_rng(2).standard_normal((50, 8)))
    labels = np.arange(50) // 5
    for exact_below in (1000, 10):
        index = VectorIndex.build(vectors, labels, VectorIndexConfig(exact_below=exact_below))
        index.save(tmp_path / "i.npz", {"generation": 3})
        loaded, meta = VectorIndex.load(tmp_path / "i.npz", VectorIndexConfig(exact_below=exact_below))
        assert meta["generation"] == 3 and meta["rows"] == 50 and loaded.type == index.type
        assert loaded.search(vectors[7], 3) == index.search(vectors[7], 3)
    assert not list(tmp_path.glob("*.tmp")), "no temp file is left behind"
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    assert VectorIndex.load(tmp_path / "bad.npz") is None
    assert VectorIndex.load(tmp_path / "missing.npz") is None


# -- database ---------------------------------------------------------------------------------------------

def _record(relpath: str, category: str = "box") -> ShapeRecord:
    return ShapeRecord(relpath=relpath, sha256="0" * 64, size=1, mtime_ns=1, name=relpath.split("/")[-1],
                       category=category, faces=12, vertices=8, bbox=[[0, 0, 0], [1, 1, 1]], thumbnail=b"png")


def _vectors(seed: int, views: int = 2, dim: int = 8) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"shaded": _unit(rng.standard_normal((views, dim))), "lines": _unit(rng.standard_normal((views, dim)))}


def _create(path, clip="tiny", encoder="clip:tiny"):
    return LibraryDB.create(path, clip=clip, encoder=encoder, embed_dim=8, views_json='{"views": 2}')


def test_database_stores_shapes_and_rebuilds_stale_caches(tmp_path):
    with _create(tmp_path / "db") as db:
        first = db.put_shape(_record("a.obj"), _vectors(0))
        db.put_shape(_record("b.obj", "ball"), _vectors(1))
        assert db.count() == 2 and db.generation == 2 and db.categories() == {"ball": 1, "box": 1}
        index = db.vector_index("shaded")
        assert index.rows == 4 and set(index.labels) == {first, first + 1}
        assert (tmp_path / "db" / "index_shaded.npz").is_file()
        # Replacing a shape at the same path leaves no duplicate and bumps the generation: the cache is updated
        # (the old rows masked at once; 2 of 6 rows removed is past the fraction, so rebuilt in the background).
        db.put_shape(_record("a.obj"), _vectors(2))
        assert db.count() == 2 and db.vector_index("shaded").rows == 4
        assert first in set(db.vector_index("shaded").removed)
        db.wait_for_rebuilds(60)
        assert first not in set(db.vector_index("shaded").labels)
        assert db.remove_shape("b.obj") and not db.remove_shape("b.obj")
        assert db.vector_index("lines").rows == 2
    # A reopened database reads its cache file; a stale cache file (older generation) is rebuilt.
    with LibraryDB.open(tmp_path / "db") as db:
        generation = db.generation
        assert db.vector_index("shaded").rows == 2
    stale = tmp_path / "db" / "index_shaded.npz"
    older = stale.read_bytes()
    with _create(tmp_path / "db") as db:
        db.put_shape(_record("c.obj"), _vectors(3))
    stale.write_bytes(older)  # as if the process died before rewriting the cache
    with LibraryDB.open(tmp_path / "db") as db:
        assert db.generation == generation + 1 and db.vector_index("shaded").rows == 4
    stale.write_bytes(b"half-written garbage")
    with LibraryDB.open(tmp_path / "db") as db:
        assert db.vector_index("shaded").rows == 4


def test_a_batch_is_one_transaction(tmp_path):
    with _create(tmp_path / "db") as db:
        with pytest.raises(RuntimeError):
            with db.batch():
                db.put_shape(_record("a.obj"), _vectors(0))
                raise RuntimeError("killed mid-batch")
        assert db.count() == 0
        with db.batch():
            for i in range(5):
                db.put_shape(_record(f"{i}.obj"), _vectors(i))
        assert db.count() == 5 and db.generation == 1


def test_opening_refuses_missing_foreign_and_mismatched_databases(tmp_path):
    with pytest.raises(InvalidInputError, match="does not exist") as caught:
        LibraryDB.open(tmp_path / "nowhere")
    assert "atelier index" in caught.value.hint
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="is missing"):
        LibraryDB.open(tmp_path / "empty")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidInputError, match="is a file"):
        LibraryDB.open(tmp_path / "file")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / DB_FILE).write_bytes(b"not sqlite" * 100)
    with pytest.raises(InvalidInputError, match="not a readable"):
        LibraryDB.open(tmp_path / "junk")
    other = sqlite3.connect(tmp_path / "other.sqlite")
    other.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    other.execute("INSERT INTO meta VALUES ('format', 'something-else')")
    other.commit()
    other.close()
    (tmp_path / "foreign").mkdir()
    (tmp_path / "other.sqlite").rename(tmp_path / "foreign" / DB_FILE)
    with pytest.raises(InvalidInputError, match="something-else"):
        LibraryDB.open(tmp_path / "foreign")

    _create(tmp_path / "db").close()
    with pytest.raises(InvalidInputError) as caught:
        _create(tmp_path / "db", clip="domain", encoder="clip:domain")
    assert "'tiny'" in caught.value.message and "'domain'" in caught.value.message
    with LibraryDB.open(tmp_path / "db") as db:
        with pytest.raises(InvalidInputError, match="indexed with CLIP 'tiny', not 'domain'"):
            db.check_compatible(clip="domain")
        with pytest.raises(InvalidInputError, match="encoder"):
            db.check_compatible(clip="tiny", encoder="taskformer:abc:tiny")
        with pytest.raises(InvalidInputError, match="view settings"):
            db.check_compatible(clip="tiny", views_json='{"views": 3}')
        with pytest.raises(InvalidInputError, match="no shape 99"):
            db.shape(99)
