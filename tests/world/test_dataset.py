"""The world on disk: library + categories sidecar, images, masks, manifest, split by shape."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from backend.errors import InvalidInputError
from backend.geometry.load import load_mesh
from backend.world import CATEGORIES, make_shape, read_manifest, world_command, write_dataset
from backend.world.dataset import split_shapes

SHAPES = 12


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    calls = []
    figures = world_command(out, SHAPES, seed=7, size=64, views=1, progress=lambda s, t, **m: calls.append((s, t)))
    return out, figures, calls


def test_command_reports_figures_and_progress(world):
    out, figures, calls = world
    assert figures["shapes"] == SHAPES and figures["seconds"] > 0
    assert figures["train"] + figures["test"] == SHAPES
    assert figures["files"] == sum(1 for p in out.rglob("*") if p.is_file())
    assert calls[-1] == (SHAPES, SHAPES) and len(calls) == SHAPES
    assert sum(figures["categories"].values()) == SHAPES


def test_manifest_is_complete_and_files_exist(world):
    out, _, _ = world
    manifest = read_manifest(out)
    assert manifest["categories"] == list(CATEGORIES)
    records = manifest["shapes"]
    assert len(records) == SHAPES and len({r["id"] for r in records}) == SHAPES
    assert {r["category"] for r in records} == set(CATEGORIES)  # 12 shapes cover all 8 categories
    for r in records:
        assert set(r) >= {"id", "file", "category", "attributes", "colour", "pattern", "caption", "split", "seed",
                          "views", "sketches", "photos", "masks"}
        assert r["file"] == f"library/{r['category']}_{r['id'].split('_')[-1]}.glb"
        assert len(r["views"]) == len(r["sketches"]) == 1 and len(r["photos"]) == len(r["masks"]) == 1
        for key in ("views", "sketches", "photos", "masks"):
            for path in r[key]:
                image = np.asarray(Image.open(out / path))
                assert image.shape[:2] == (64, 64), path
        mask = np.asarray(Image.open(out / r["masks"][0]))
        assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255} and (mask == 255).any()
        # The labels in the manifest are the shape's own: the seed rebuilds it.
        shape = make_shape(r["seed"], r["category"])
        assert (shape.caption, shape.colour, shape.attributes) == (r["caption"], r["colour"], r["attributes"])


def test_library_glbs_load_back_with_their_categories(world):
    out, _, _ = world
    categories = json.loads((out / "library" / "categories.json").read_text())
    assert len(categories) == SHAPES
    for record in read_manifest(out)["shapes"]:
        name = record["file"].split("/")[-1]
        assert categories[name] == record["category"]
        mesh = load_mesh(out / record["file"])
        shape = make_shape(record["seed"], record["category"])
        assert mesh.num_faces == shape.mesh.num_faces
        np.testing.assert_allclose(mesh.vertices, shape.mesh.vertices, atol=1e-6)
        assert mesh.texture is not None and mesh.uv is not None


def test_split_is_by_shape_and_stratified(world):
    out, _, _ = world
    records = read_manifest(out)["shapes"]
    train = {r["id"] for r in records if r["split"] == "train"}
    test = {r["id"] for r in records if r["split"] == "test"}
    assert train and test and not train & test and len(train | test) == SHAPES
    images = lambda ids: {p for r in records if r["id"] in ids for k in ("views", "sketches", "photos") for p in r[k]}  # noqa: E731
    assert not images(train) & images(test)
    # Larger sets: about 20 % test in every category, never a whole category.
    cats = [c for c in CATEGORIES for _ in range(10)]
    split = split_shapes(cats, seed=1)
    for c in CATEGORIES:
        assert [s for s, k in zip(split, cats) if k == c].count("test") == 2
    assert split == split_shapes(cats, seed=1) and split != split_shapes(cats, seed=2)


def test_existing_dataset_is_not_overwritten_and_bad_folders_are_explained(world, tmp_path):
    out, _, _ = world
    with pytest.raises(InvalidInputError, match="already holds"):
        write_dataset(out, 2, size=64)
    with pytest.raises(InvalidInputError, match="manifest.json is missing"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(InvalidInputError, match="expected 'atelier-world'"):
        read_manifest(tmp_path)
    with pytest.raises(InvalidInputError, match="shapes must be"):
        write_dataset(tmp_path / "new", 0)
    with pytest.raises(InvalidInputError, match="seed must be"):
        write_dataset(tmp_path / "new", 2, seed=-1)
