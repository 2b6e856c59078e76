"""The `index`, `search` and `fetch_shape` jobs on the real server (the tiny CLIP: plumbing, not quality):
progress with shapes/s, hits with thumbnail blobs, a shape's GLB for a remote client, and every bad input
answered with a message and a hint while the server keeps serving."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image
from server_helpers import status

from backend.geometry.glb import read_accessor, read_glb
from backend.geometry.png import encode_png
from backend.server.client import Client
from backend.world.dataset import write_dataset
from shared_protocol import Cancel, Error, Progress, Result, Submit

pytestmark = pytest.mark.timeout(180)

SHAPES = 6
STRIPE = [[[0.5, 0.1], [0.5, 0.9]], [[0.3, 0.9], [0.7, 0.9]]]


def run_job(client, submit: Submit, timeout: float = 120.0) -> list:
    client.send(submit)
    return list(client.job_messages(submit.job, timeout=timeout))


def drawing() -> bytes:
    page = np.full((120, 80, 3), 255, np.uint8)
    page[20:100, 38:42] = 0
    return encode_png(page)


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    root = tmp_path_factory.mktemp("retrieve")
    write_dataset(root / "world", SHAPES, seed=2, views=0, sketches=0, photos=0)
    (root / "world" / "library" / "broken.obj").write_bytes(b"not a mesh at all")
    return root / "world" / "library", root / "db"


@pytest.fixture(scope="module")
def indexed(server, library):
    """The library indexed through the server once: (db folder, the index job's messages)."""
    folder, db = library
    with Client(server.endpoint) as c:
        msgs = run_job(c, Submit(job="idx", kind="index", params={"library": str(folder), "db": str(db),
                                                                    "clip": "tiny", "views": 2}))
    return db, msgs


def test_index_streams_shapes_per_second_and_reports_the_broken_file(indexed):
    _, msgs = indexed
    result = msgs[-1]
    assert isinstance(result, Result), result
    progress = [m for m in msgs if isinstance(m, Progress) and m.stage == "index"]
    assert progress and progress[-1].total == SHAPES + 1 and "shapes_per_s" in progress[-1].metrics
    fields = result.fields
    assert (fields["shapes"], fields["indexed"], fields["skipped"], fields["files"]) == (SHAPES, SHAPES, 0, SHAPES + 1)
    assert [f["path"] for f in fields["failed"]] == ["broken.obj"] and fields["failed"][0]["reason"]
    assert fields["clip"] == "tiny" and fields["views"] == 2 and fields["shapes_per_s"] > 0


def test_index_again_skips_everything(client, indexed, library):
    folder, db = library
    msgs = run_job(client, Submit(job="idx2", kind="index", params={"library": str(folder), "db": str(db)}))
    fields = msgs[-1].fields
    # The broken file is unchanged too: skipped (not read again) and still reported with its reason.
    assert (fields["indexed"], fields["skipped"], fields["shapes"]) == (0, SHAPES + 1, SHAPES)
    assert [f["path"] for f in fields["failed"]] == ["broken.obj"] and fields["failed"][0]["reason"]
    assert fields["clip"] == "tiny", "the recorded CLIP is the default"


def _thumbnails(result: Result) -> None:
    for hit in result.fields["hits"]:
        image = Image.open(io.BytesIO(result.blobs[hit["thumbnail"]]))
        assert image.format == "PNG" and image.size == (128, 128)


def test_search_by_text_returns_hits_with_thumbnail_blobs(client, indexed):
    db, _ = indexed
    msgs = run_job(client, Submit(job="s1", kind="search", params={"db": str(db), "text": "a red chair", "k": 4}))
    result = msgs[-1]
    assert isinstance(result, Result), result
    hits = result.fields["hits"]
    assert len(hits) == 4 and result.fields["mode"] == "text" and result.fields["clip"] == "tiny"
    assert [h["thumbnail"] for h in hits] == ["thumb_000", "thumb_001", "thumb_002", "thumb_003"]
    assert set(result.blobs) == {h["thumbnail"] for h in hits}
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert all(h["path"].endswith(".glb") and "/" not in h["path"] and h["category"] for h in hits)
    _thumbnails(result)


@pytest.mark.parametrize("params, blobs, mode", [
    ({}, {"sketch": drawing()}, "sketch"),
    ({"strokes": STRIPE}, {}, "sketch"),
    ({"strokes": STRIPE, "text": "a blue lamp", "mode": "sketch+text"}, {}, "sketch+text"),
    ({}, {"photo": drawing()}, "photo"),
])
def test_search_by_sketch_strokes_and_photo(client, indexed, params, blobs, mode):
    db, _ = indexed
    msgs = run_job(client, Submit(job="s2", kind="search", params={"db": str(db), "k": 2, **params}, blobs=blobs))
    result = msgs[-1]
    assert isinstance(result, Result), result
    assert result.fields["mode"] == mode and len(result.fields["hits"]) == 2
    _thumbnails(result)


def test_a_photo_search_cuts_the_object_out_as_the_request_asks(client, indexed):
    """A photo query is cut out before it is embedded: by saliency (default), by `prompt`, or not (`raw_photo`);
    the result's `cut` says how (the tiny CLIP: plumbing, the prompt may find nothing and fall back, saying so)."""
    db, _ = indexed
    fields = {}
    for job, extra in (("ps", {}), ("pp", {"prompt": "a red box"}), ("pr", {"raw_photo": True})):
        result = run_job(client, Submit(job=job, kind="search", params={"db": str(db), "k": 2, **extra},
                                        blobs={"photo": photo()}))[-1]
        assert isinstance(result, Result), result
        assert result.fields["mode"] == "photo" and len(result.fields["hits"]) == 2
        _thumbnails(result)
        fields[job] = result.fields["cut"]
    assert fields["ps"]["method"] == "saliency"
    x0, y0, x1, y1 = fields["ps"]["box"]  # the red box: columns 25..74, rows 30..69
    assert abs(x0 - 25) <= 4 and abs(x1 - 75) <= 4 and abs(y0 - 30) <= 4 and abs(y1 - 70) <= 4, fields["ps"]
    assert fields["pp"]["method"] == "prompt" or "no mask found for 'a red box'" in fields["pp"]["note"]
    assert fields["pr"] == {"method": "raw", "box": None, "area_fraction": 1.0, "segmenter": "", "note": ""}
    text = run_job(client, Submit(job="pt", kind="search", params={"db": str(db), "text": "a chair", "k": 1}))[-1]
    assert "cut" not in text.fields


def test_the_category_filter_over_the_server(client, indexed):
    db, _ = indexed
    everything = run_job(client, Submit(job="s3", kind="search", params={"db": str(db), "text": "x", "k": 10}))
    category = everything[-1].fields["hits"][-1]["category"]
    msgs = run_job(client, Submit(job="s3", kind="search", params={"db": str(db), "text": "x", "k": 10,
                                                                  "category": category}))
    hits = msgs[-1].fields["hits"]
    assert hits and {h["category"] for h in hits} == {category}


def test_fetch_shape_sends_the_mesh_as_glb(client, indexed, library):
    db, _ = indexed
    hits = run_job(client, Submit(job="s4", kind="search", params={"db": str(db), "text": "a chair", "k": 1}))[-1]
    shape_id = hits.fields["hits"][0]["shape_id"]
    result = run_job(client, Submit(job="f1", kind="fetch_shape", params={"db": str(db), "shape_id": shape_id}))[-1]
    assert isinstance(result, Result), result
    fields = result.fields
    assert fields["shape_id"] == shape_id and fields["path"] == hits.fields["hits"][0]["path"]
    assert fields["changed"] is False and fields["faces"] > 0
    document, binary = read_glb(result.blobs["mesh"])
    primitive = document["meshes"][0]["primitives"][0]
    assert read_accessor(document, binary, primitive["attributes"]["POSITION"]).shape == (fields["vertices"], 3)
    assert "baseColorTexture" in document["materials"][0]["pbrMetallicRoughness"], "the world's texture travels"
    assert result.blobs["thumbnail"].startswith(b"\x89PNG")


def photo() -> bytes:
    """A red box on a grey floor: something for the segmenter to find."""
    image = np.full((96, 96, 3), 120, np.uint8)
    image[30:70, 25:75] = (200, 30, 30)
    return encode_png(image)


def test_photo_to_3d_segments_retrieves_and_restyles(client, indexed):
    db, _ = indexed
    msgs = run_job(client, Submit(job="p3d", kind="photo_to_3d", blobs={"image": photo()},
                                  params={"db": str(db), "prompt": "a red box", "k": 2, "steps": 2}))
    result = msgs[-1]
    assert isinstance(result, Result), result
    stages = {m.stage for m in msgs if isinstance(m, Progress)}
    assert {"segment", "restyle"} <= stages
    fields = result.fields
    assert len(fields["hits"]) == 2 and fields["chosen"] == {k: v for k, v in fields["hits"][0].items()
                                                              if k != "thumbnail"}
    assert fields["steps"] == 2 and fields["clip"] == "tiny" and "superpixels" in fields["segmentation"]
    assert fields["method"] == "retrieve"
    document, _ = read_glb(result.blobs["mesh"])
    assert "baseColorTexture" in document["materials"][0]["pbrMetallicRoughness"]
    for name in ("style_texture", "mask", "cutout", "thumb_000", "thumb_001"):
        assert result.blobs[name].startswith(b"\x89PNG"), name
    mask = np.asarray(Image.open(io.BytesIO(result.blobs["mask"])))
    assert mask.shape == (96, 96)


@pytest.mark.parametrize("kind, params, blobs, words", [
    ("search", {"db": "{missing}", "text": "a chair"}, {}, "does not exist"),
    ("search", {"db": "{db}", "text": "a chair", "k": 0}, {}, "param 'k'"),
    ("search", {"db": "{db}", "text": "a chair", "k": 101}, {}, "param 'k'"),
    ("search", {"db": "{db}", "text": "  "}, {}, "text query is empty"),
    ("search", {"db": "{db}"}, {}, "the query is empty"),
    ("search", {"db": "{db}"}, {"sketch": encode_png(np.full((32, 32), 255, np.uint8))}, "blank"),
    ("search", {"db": "{db}", "strokes": []}, {}, "no strokes"),
    ("search", {"db": "{db}", "strokes": [[[2, 2]]]}, {}, "leaves [0, 1]"),
    ("search", {"db": "{db}", "strokes": STRIPE}, {"sketch": drawing()}, "both a sketch blob and strokes"),
    ("search", {"db": "{db}", "text": "x"}, {"style_0": drawing()}, "no blob 'style_0'"),
    ("search", {"db": "{db}", "text": "x", "clip": "tiny-rn"}, {}, "indexed with CLIP 'tiny', not 'tiny-rn'"),
    ("search", {"db": "{db}", "text": "x", "category": "boat"}, {}, "no shape of category 'boat'"),
    ("search", {"db": "{db}", "text": "x", "colour": "red"}, {}, "no param 'colour'"),
    ("search", {"db": "{db}", "text": "x", "prompt": "a chair"}, {}, "param 'prompt' applies to a photo query"),
    ("search", {"db": "{db}", "strokes": STRIPE, "raw_photo": True}, {}, "param 'raw_photo' applies to a photo query"),
    ("search", {"db": "{db}", "prompt": "a box", "raw_photo": True}, {"photo": photo()}, "raw-photo flag"),
    ("search", {"db": "{db}", "raw_photo": "yes"}, {"photo": photo()}, "raw_photo"),
    ("search", {"db": "{db}", "prompt": 7}, {"photo": photo()}, "param 'prompt' must be a string"),
    ("search", {"db": "{db}", "prompt": "  "}, {"photo": photo()}, "prompt"),
    ("search", {"db": "{db}"}, {"photo": encode_png(np.full((32, 32, 3), 90, np.uint8))}, "the photo is blank"),
    ("fetch_shape", {"db": "{db}", "shape_id": 9999}, {}, "no shape 9999"),
    ("fetch_shape", {"db": "{db}"}, {}, "param 'shape_id' is missing"),
    ("fetch_shape", {"db": "{missing}", "shape_id": 1}, {}, "does not exist"),
    ("index", {"library": "{empty}", "db": "{missing}", "clip": "tiny"}, {}, "holds no mesh files"),
    ("index", {"library": "{missing}", "db": "{missing}", "clip": "tiny"}, {}, "does not exist"),
    ("index", {"db": "{missing}"}, {}, "param 'library' is missing"),
    ("index", {"library": "{missing}", "db": "{missing}", "clip": "tiny", "descriptor": "points"}, {},
     "no point encoder is shipped for the CLIP 'tiny'"),
    ("index", {"library": "{missing}", "db": "{missing}", "descriptor": "cloud"}, {}, "descriptor"),
    ("index", {"library": "{missing}", "db": "{db}", "descriptor": "points", "points_encoder": "{missing}"}, {},
     "no point encoder at"),
    ("photo_to_3d", {"db": "{db}", "prompt": "a box"}, {}, "needs a photo"),
    ("photo_to_3d", {"db": "{db}", "prompt": " "}, {"image": photo()}, "prompt"),
    ("photo_to_3d", {"db": "{missing}", "prompt": "a box"}, {"image": photo()}, "does not exist"),
    ("photo_to_3d", {"db": "{db}", "prompt": "a box", "k": 2, "pick": 2}, {"image": photo()}, "pick 2 is not among"),
    ("photo_to_3d", {"prompt": "a box"}, {"image": photo()}, "no database was given"),
    ("photo_to_3d", {"prompt": "a box", "method": "auto"}, {"image": photo()}, "no database was given"),
    ("photo_to_3d", {"db": "{db}", "prompt": "a box", "init": "sphere"}, {"image": photo()}, "is for reconstruction"),
    ("photo_to_3d", {"prompt": "a box", "method": "dream"}, {"image": photo()}, "param 'method'"),
    ("photo_to_3d", {"db": "{db}", "prompt": "a box"}, {"image": b"not an image"}, "photo"),
])
def test_bad_input_is_answered_and_the_server_keeps_serving(client, indexed, tmp_path, kind, params, blobs, words):
    db, _ = indexed
    (tmp_path / "empty").mkdir()
    where = {"{db}": str(db), "{missing}": str(tmp_path / "missing"), "{empty}": str(tmp_path / "empty")}
    params = {k: where.get(v, v) if isinstance(v, str) else v for k, v in params.items()}
    error = run_job(client, Submit(job="bad", kind=kind, params=params, blobs=blobs))[-1]
    assert isinstance(error, Error) and error.code == "invalid_input", error
    assert words in error.message and error.hint, error
    assert status(client).running is None


def _glb_is_textured(glb: bytes) -> None:
    document, _ = read_glb(glb)
    assert "baseColorTexture" in document["materials"][0]["pbrMetallicRoughness"]
    assert "TEXCOORD_0" in document["meshes"][0]["primitives"][0]["attributes"]


def test_photo_to_3d_reconstructs_from_a_sphere_with_previews(client):
    """No library: the Gaussians start from a sphere; every stage reports, previews stream, the GLB is textured."""
    msgs = run_job(client, Submit(job="rec", kind="photo_to_3d", blobs={"image": photo()},
                                  params={"prompt": "a red box", "method": "reconstruct", "clip": "tiny", "steps": 4,
                                          "texture_steps": 1, "preview_every": 2}))
    result = msgs[-1]
    assert isinstance(result, Result), result
    progress = [m for m in msgs if isinstance(m, Progress)]
    assert {"segment", "prior", "gaussians", "mesh", "texture"} <= {m.stage for m in progress}
    previews = [m.preview for m in progress if m.stage == "gaussians" and m.preview]
    assert len(previews) == 2 and all(p.startswith(b"\x89PNG") for p in previews)
    fields = result.fields
    assert fields["method"] == "reconstruct" and fields["init"] == "sphere" and fields["prior"] is None
    assert fields["steps"] == 4 and fields["gaussians"] > 0 and fields["faces"] > 0 and fields["guidance"] == "clip"
    _glb_is_textured(result.blobs["mesh"])
    assert set(result.blobs) == {"mesh", "mask", "cutout"}


def test_photo_to_3d_auto_starts_from_the_retrieved_shape(client, indexed):
    db, _ = indexed
    msgs = run_job(client, Submit(job="auto", kind="photo_to_3d", blobs={"image": photo()},
                                  params={"db": str(db), "prompt": "a red box", "method": "auto", "steps": 2,
                                          "texture_steps": 1}))
    result = msgs[-1]
    assert isinstance(result, Result), result
    fields = result.fields
    assert fields["init"] == "retrieve" and fields["prior"] and len(fields["hits"]) == 5
    assert 0.0 <= fields["silhouette_iou"] and fields["clip"] == "tiny"
    _glb_is_textured(result.blobs["mesh"])


def test_cancel_a_running_reconstruction_within_a_step(client):
    client.send(Submit(job="long", kind="photo_to_3d", blobs={"image": photo()},
                       params={"prompt": "a red box", "method": "reconstruct", "clip": "tiny", "steps": 5000}))
    first = next(m for m in client.job_messages("long", timeout=60)
                 if isinstance(m, Progress) and m.stage == "gaussians")
    started = time.monotonic()
    client.send(Cancel(job="long"))
    tail = list(client.job_messages("long", timeout=30))
    assert isinstance(tail[-1], Error) and tail[-1].code == "cancelled"
    assert max([m.step for m in tail if isinstance(m, Progress)], default=first.step) < 5000
    assert time.monotonic() - started < 10.0


@pytest.mark.parametrize("params, code, words", [
    ({"steps": 6000}, "invalid_input", "Gaussian steps must be in [1, 5000]"),
    ({"guidance": "zero123"}, "missing", "Zero123"),
    ({"guidance": "zero123", "zero123_model": "{missing}"}, "missing", "Zero123"),
    ({"init": "generate", "generator": "{missing}"}, "invalid_input", "no generator checkpoint"),
])
def test_bad_reconstruction_options_are_answered_with_the_fix(client, tmp_path, params, code, words):
    params = {k: str(tmp_path / "missing") if v == "{missing}" else v for k, v in params.items()}
    error = run_job(client, Submit(job="bad", kind="photo_to_3d", blobs={"image": photo()},
                                   params={"prompt": "a red box", "method": "reconstruct", "clip": "tiny", **params}))[-1]
    assert isinstance(error, Error) and code in error.code, error
    assert words in error.message and error.hint, error


@pytest.mark.parametrize("image, words", [
    (encode_png(np.full((64, 64, 3), 90, np.uint8)), "the photo is blank"),  # no object to find
    (encode_png(np.full((8, 20_000, 3), 90, np.uint8)), "20000"),  # refused from its header, before decoding
])
def test_a_photo_with_nothing_to_reconstruct_is_answered_with_the_fix(client, image, words):
    error = run_job(client, Submit(job="bad", kind="photo_to_3d", blobs={"image": image},
                                   params={"prompt": "a red box", "method": "reconstruct", "clip": "tiny"}))[-1]
    assert isinstance(error, Error) and error.code == "invalid_input", error
    assert words in error.message and error.hint, error
    assert status(client).running is None


def test_missing_zero123_weights_fall_back_to_clip_only_when_allowed(client, tmp_path):
    msgs = run_job(client, Submit(job="fallback", kind="photo_to_3d", blobs={"image": photo()},
                                  params={"prompt": "a red box", "method": "reconstruct", "clip": "tiny", "steps": 1,
                                          "texture_steps": 0, "guidance": "zero123", "allow_clip_fallback": True,
                                          "zero123_model": str(tmp_path / "missing")}))
    fields = msgs[-1].fields
    assert fields["guidance"] == "clip" and any("CLIP guidance used instead" in n for n in fields["notes"]), fields
