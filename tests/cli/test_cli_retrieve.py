"""`atelier index` and `atelier search` end to end on the tiny CLIP (plumbing): reports, the JSON results with
thumbnails, sketches as images or strokes, and bad input as one readable line with exit 2."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend.cli import main
from backend.world.dataset import write_dataset

pytestmark = pytest.mark.timeout(180)
SHAPES = 5
TINY = ["--clip", "tiny", "--device", "cpu"]


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    """A 5-shape world library indexed once with `atelier index` (and its report)."""
    root = tmp_path_factory.mktemp("cli-retrieve")
    write_dataset(root / "world", SHAPES, seed=4, views=0, sketches=0, photos=0)
    library, db, report = root / "world" / "library", root / "db", root / "index.json"
    assert main(["index", str(library), "--db", str(db), "--views", "2", *TINY, "--report", str(report)]) == 0
    return library, db, json.loads(report.read_text())


def _search(capsys, *argv) -> dict:
    capsys.readouterr()
    assert main(["search", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_index_writes_the_report(indexed, capsys):
    library, db, report = indexed
    for key in ("command", "seconds", "device", "renderer", "shapes", "indexed", "skipped", "failed", "shapes_per_s"):
        assert key in report, key
    assert report["command"] == "index" and report["renderer"] == "torch" and report["clip"] == "tiny"
    assert (report["shapes"], report["indexed"], report["skipped"], report["failed"]) == (SHAPES, SHAPES, 0, [])
    assert main(["index", str(library), "--db", str(db), "--device", "cpu"]) == 0  # the recorded CLIP is the default
    out = capsys.readouterr().out
    assert f"{SHAPES} shapes" in out and f"0 indexed, {SHAPES} skipped" in out


def test_search_prints_results_with_base64_thumbnails(indexed, capsys):
    library, db, _ = indexed
    results = _search(capsys, "--db", str(db), "--text", "a red chair", "-k", "3", "--device", "cpu")["results"]
    assert len(results) == 3
    for r in results:
        assert {"path", "name", "score", "thumbnail"} <= set(r)
        assert Path(r["path"]).is_file() and Path(r["path"]).parent == library.resolve()
        assert Image.open(io.BytesIO(base64.b64decode(r["thumbnail"]))).format == "PNG"
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)


def test_search_by_sketch_strokes_image_and_category(indexed, capsys, tmp_path):
    _, db, _ = indexed
    page = np.full((90, 60, 3), 255, np.uint8)
    page[10:80, 28:32] = 0
    Image.fromarray(page).save(tmp_path / "sketch.png")
    (tmp_path / "strokes.json").write_text(json.dumps([[[0.5, 0.1], [0.5, 0.9]]]))
    base = ["--db", str(db), "-k", "2", "--device", "cpu"]
    for extra in (["--sketch", str(tmp_path / "sketch.png")], ["--strokes", str(tmp_path / "strokes.json")],
                  ["--image", str(tmp_path / "sketch.png")],
                  ["--sketch", str(tmp_path / "sketch.png"), "--text", "a green vase"]):
        assert len(_search(capsys, *base, *extra)["results"]) == 2
    category = _search(capsys, *base, "--text", "x")["results"][0]["category"]
    results = _search(capsys, *base, "--text", "x", "-k", "10", "--category", category)["results"]
    assert results and {r["category"] for r in results} == {category}


def test_thumbnails_can_be_written_as_files(indexed, capsys, tmp_path):
    _, db, _ = indexed
    report = tmp_path / "r.json"
    results = _search(capsys, "--db", str(db), "--text", "a lamp", "-k", "2", "--thumbnails", str(tmp_path / "t"),
                      "--device", "cpu", "--report", str(report))["results"]
    for rank, r in enumerate(results):
        assert Path(r["thumbnail"]).is_file() and Path(r["thumbnail"]).name.startswith(f"{rank:03d}_")
    data = json.loads(report.read_text())
    assert data["command"] == "search" and len(data["results"]) == 2 and data["clip"] == "tiny"


@pytest.mark.parametrize("argv, words", [
    (["search", "--db", "{missing}", "--text", "a chair"], "atelier index"),
    (["search", "--db", "{db}", "--text", "a chair", "-k", "0"], "k must be"),
    (["search", "--db", "{db}", "--text", "a chair", "-k", "-2"], "k must be"),
    (["search", "--db", "{db}", "--text", ""], "text query is empty"),
    (["search", "--db", "{db}"], "the query is empty"),
    (["search", "--db", "{db}", "--sketch", "{blank}"], "blank"),
    (["search", "--db", "{db}", "--sketch", "{missing}"], "does not exist"),
    (["search", "--db", "{db}", "--strokes", "{blank}"], "cannot read the strokes file"),
    (["search", "--db", "{db}", "--sketch", "{blank}", "--strokes", "{blank}"], "not both"),
    (["search", "--db", "{db}", "--text", "x", "--clip", "tiny-rn"], "indexed with CLIP 'tiny', not 'tiny-rn'"),
    (["search", "--db", "{db}", "--text", "x", "--category", "boat"], "no shape of category"),
    (["search", "--db", "{db}", "--text", "x", "--catalog", "Furniture/Chairs"], "no shape of catalog"),
    (["search", "--db", "{db}", "--text", "x", "--tag", "oak"], "no shape of tag 'oak'"),
    (["search", "--db", "{db}", "--text", "x", "--format", "blend"], "no shape of format 'blend'"),
    (["search", "--db", "{db}", "--text", "x", "--keyword-weight", "-1"], "keyword_weight must be"),
    (["search", "--db", "{db}", "--text", "x", "--prompt", "a chair"], "--prompt applies to a photo query"),
    (["search", "--db", "{db}", "--sketch", "{blank}", "--raw-photo"], "--raw-photo applies to a photo query"),
    (["search", "--db", "{db}", "--image", "{blank}"], "the photo is blank"),
    (["search", "--db", "{db}", "--image", "{blank}", "--prompt", "a chair", "--raw-photo"], "raw-photo flag"),
    (["search", "--db", "{db}", "--image", "{blank}", "--prompt", " "], "prompt"),
    (["search", "--db", "{db}", "--image", "{missing}"], "does not exist"),
    (["index", "{library}", "--db", "{db}", "--workers", "-1"], "--workers must be >= 0"),
    (["index", "{library}", "--db", "{db}", "--file-timeout", "0"], "--file-timeout > 0"),
    (["index", "{library}", "--db", "{db}", "--blender", "{missing}"], "does not exist"),
    (["index", "{empty}", "--db", "{missing}", "--clip", "tiny"], "holds no mesh files"),
    (["index", "{missing}", "--db", "{missing}", "--clip", "tiny"], "does not exist"),
    (["index", "{library}", "--db", "{db}", "--views", "3"], "view settings"),
    (["index", "{library}", "--db", "{db}", "--views", "0"], "views must be"),
    (["index", "{library}", "--db", "{db}", "--clip", "tiny-rn"], "indexed with CLIP 'tiny', not 'tiny-rn'"),
])
def test_bad_input_is_one_readable_line(indexed, tmp_path, capsys, argv, words):
    library, db, _ = indexed
    (tmp_path / "empty").mkdir()
    Image.fromarray(np.full((40, 40), 255, np.uint8)).save(tmp_path / "blank.png")
    where = {"{db}": str(db), "{missing}": str(tmp_path / "missing"), "{empty}": str(tmp_path / "empty"),
             "{blank}": str(tmp_path / "blank.png"), "{library}": str(library)}
    capsys.readouterr()
    code = main([where.get(a, a) for a in argv] + ["--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and words in err[0] and "Traceback" not in err[0], err


def test_searching_a_database_with_no_shapes_says_why(tmp_path, capsys):
    """A first index run killed before its first shape (or a library with nothing readable) leaves a database with
    no shapes: a search says so and how to go on, instead of answering with no hits."""
    library = tmp_path / "empty_library"
    library.mkdir()
    (library / "broken.obj").write_bytes(b"not a mesh")
    db = tmp_path / "db"
    assert main(["index", str(library), "--db", str(db), "--clip", "tiny", "--device", "cpu"]) == 0
    capsys.readouterr()
    code = main(["search", "--db", str(db), "--text", "a chair", "--clip", "tiny", "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "holds no shapes yet" in err and "atelier index" in err


def test_a_milvus_lite_store_indexes_and_answers_as_the_embedded_one(indexed, tmp_path, capsys):
    """--store milvus with a Milvus Lite file: the same index run, the same hits and scores as the embedded store."""
    library, db, _ = indexed
    lite = tmp_path / "team.db"
    report = tmp_path / "milvus.json"
    assert main(["index", str(library), "--db", str(lite), "--store", "milvus", "--views", "2", *TINY,
                 "--report", str(report)]) == 0
    figures = json.loads(report.read_text())
    assert (figures["shapes"], figures["indexed"], figures["failed"]) == (SHAPES, SHAPES, [])
    for text in ("a red chair", "a lamp"):
        embedded = _search(capsys, "--db", str(db), "--text", text, "-k", "3", *TINY)["results"]
        milvus = _search(capsys, "--db", str(lite), "--store", "milvus", "--text", text, "-k", "3", *TINY)["results"]
        assert [(r["name"], r["score"]) for r in milvus] == [(r["name"], r["score"]) for r in embedded]
    capsys.readouterr()
    assert main(["search", "--db", "http://127.0.0.1:1", "--store", "milvus", "--text", "x", *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "127.0.0.1:1" in err[0], err


def test_search_by_photo_cuts_the_object_out_end_to_end(tmp_path, capsys, monkeypatch):
    """`atelier search --image` on the shared world library indexed with the domain CLIP: a world photo of a
    library shape (over clutter) is cut out by saliency, by --prompt, or kept whole (--raw-photo); the printed JSON
    and the report say which; a photo where nothing stands out is searched whole, with a note on stderr."""
    import torch

    from backend.world.shape import make_shape
    from backend.world.views import render_photo
    from tests.retrieve.library_helpers import domain_index, one_thread

    monkeypatch.setenv("ATELIER_HOME", str(tmp_path / "home"))  # no SAM weights: superpixels, on every machine
    _, db, manifest = domain_index()
    record = manifest["shapes"][1]
    with one_thread():
        photo = render_photo(make_shape(record["seed"], record["category"]), size=128,
                             generator=torch.Generator().manual_seed(101)).image.numpy()
    Image.fromarray((photo * 255).round().astype(np.uint8)).save(tmp_path / "photo.png")
    wanted = Path(record["file"]).name
    base = ["--db", str(db), "--image", str(tmp_path / "photo.png"), "-k", "3", "--device", "cpu"]
    with one_thread():
        salient = _search(capsys, *base, "--report", str(tmp_path / "r.json"))
        named = _search(capsys, *base, "--prompt", f"a {record['colour']} {record['category']}")
        whole = _search(capsys, *base, "--raw-photo")
    assert salient["cut"]["method"] == "saliency" and "superpixels" in salient["cut"]["segmenter"]
    x0, y0, x1, y1 = salient["cut"]["box"]
    assert 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 128 and 0 < salient["cut"]["area_fraction"] < 0.5
    assert wanted in [Path(r["path"]).name for r in salient["results"]], salient["results"]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["cut"] == salient["cut"] and report["clip"] == "domain" and len(report["results"]) == 3
    assert named["cut"]["method"] == "prompt" and wanted in [Path(r["path"]).name for r in named["results"]]
    assert whole["cut"] == {"method": "raw", "box": None, "area_fraction": 1.0, "segmenter": "", "note": ""}

    yy, xx = np.mgrid[-1:1:48j, -1:1:64j]  # smooth shading, lighter in the middle: nothing stands out
    shading = 0.5 + 0.06 * np.clip(1 - yy ** 2 - xx ** 2, 0, 1)
    Image.fromarray(np.repeat((shading * 255).round().astype(np.uint8)[..., None], 3, axis=-1)).save(
        tmp_path / "plain.png")
    capsys.readouterr()
    assert main(["search", "--db", str(db), "--image", str(tmp_path / "plain.png"), "-k", "2", "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["cut"]["method"] == "raw" and len(json.loads(out)["results"]) == 2
    assert err.startswith("note: no object stands out") and "--prompt" in err
