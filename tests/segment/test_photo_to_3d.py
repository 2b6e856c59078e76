"""Photo to textured 3D: crop the segmented object, find it in the library, restyle the best match after it.
Segmentation is tested on its own (tests/segment/test_segment*.py); here the world photo's true mask stands in
for it, so these tests measure the retrieval and restyle halves."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.errors import InvalidInputError
from backend.models.clip import load_clip
from backend.retrieve.database import LibraryDB
from backend.retrieve.query import QueryEncoder
from backend.segment.photo_to_3d import PhotoTo3DConfig, object_crop, photo_to_3d
from backend.stylize.restyle import preset
from backend.world.shape import make_shape
from backend.world.views import render_photo
from tests.retrieve.library_helpers import domain_index, one_thread

pytestmark = pytest.mark.timeout(600)


def tiny_restyle(steps: int = 2):
    return preset("draft", steps=steps, batch=1, render_size=64, texture_size=64, renderer="torch")


@pytest.fixture(scope="module")
def library():
    library, db_dir, manifest = domain_index()
    clip = load_clip("domain")
    return LibraryDB.open(db_dir), QueryEncoder(clip), clip, manifest


def world_photo(record: dict, seed: int, size: int = 128):
    shape = make_shape(record["seed"], record["category"])
    with one_thread():
        photo = render_photo(shape, size=size, generator=torch.Generator().manual_seed(seed))
    return photo.image.numpy(), photo.mask.numpy()


def test_object_crop_is_the_object_on_white_in_a_square():
    image = np.zeros((40, 60, 3), np.float32)
    image[10:20, 30:50] = (1.0, 0.0, 0.0)
    mask = np.zeros((40, 60), bool)
    mask[10:20, 30:50] = True
    crop = object_crop(image, mask, margin=0.0)
    assert crop.shape == (20, 20, 3)
    assert np.all(crop[5:15, :] == (1.0, 0.0, 0.0)) and np.all(crop[:5] == 1.0) and np.all(crop[15:] == 1.0)
    edge = np.zeros((40, 60), bool)
    edge[0:4, 0:4] = True  # a box at the corner: the square reaches past the photo, which is white
    assert object_crop(image, edge, margin=0.5).shape == (8, 8, 3)


def test_empty_mask_and_bad_pick_are_clear_errors(library):
    db, encoder, clip, _ = library
    image = np.ones((32, 32, 3), np.float32)
    with pytest.raises(InvalidInputError, match="the mask is empty"):
        photo_to_3d(image, np.zeros((32, 32), bool), db, encoder, clip, PhotoTo3DConfig(restyle=tiny_restyle()))
    mask = np.zeros((32, 32), bool)
    mask[8:24, 8:24] = True
    with pytest.raises(InvalidInputError, match=r"pick must be in \[0, 2\]"):
        photo_to_3d(image, mask, db, encoder, clip, PhotoTo3DConfig(k=3, pick=3, restyle=tiny_restyle()))


def test_photo_finds_a_shape_of_its_category_and_restyles_it(library):
    """Over every library shape photographed over clutter (true masks), the top-1 hit's category is right for
    most of them; the chosen shape comes back restyled with the photo as its style image."""
    db, encoder, clip, manifest = library
    right, total = 0, 0
    for i, record in enumerate(manifest["shapes"]):
        image, mask = world_photo(record, seed=100 + i)
        if mask.sum() < 50:
            continue
        config = PhotoTo3DConfig(k=3, restyle=tiny_restyle(steps=2 if i == 0 else 1))
        with one_thread():
            result = photo_to_3d(image, mask, db, encoder, clip, config)
        right += result.chosen.category == record["category"]
        total += 1
        if i == 0:
            assert len(result.hits) == 3 and result.chosen is result.hits[0]
            assert result.restyled.steps == 2 and result.restyled.base_source == "texture"
            assert np.abs(result.restyled.style_texture).max() > 0
    rate = right / total
    print(f"photo to 3D: top-1 category right for {right} of {total} world photos ({rate:.2f}); chance ~0.125")
    assert total >= 12 and rate >= 0.5


def test_cli_photo_to_3d_segments_retrieves_and_restyles(library, tmp_path):
    """`atelier photo-to-3d` end to end with the real segmentation (no SAM weights here: superpixels, said so)
    and the shared domain-CLIP library."""
    import json

    from PIL import Image

    from backend.cli import main

    db, _, _, manifest = library
    record = manifest["shapes"][0]
    image, _ = world_photo(record, seed=7, size=128)
    photo = tmp_path / "photo.png"
    Image.fromarray((image * 255).round().astype(np.uint8)).save(photo)
    out, report = tmp_path / "out.glb", tmp_path / "r.json"
    prompt = f"a {record['colour']} {record['category']}"
    with one_thread():
        code = main(["photo-to-3d", str(photo), "--prompt", prompt, "--db", str(db.directory), "--out", str(out),
                     "-k", "3", "--steps", "2", "--device", "cpu", "--cutout", str(tmp_path / "cut.png"),
                     "--report", str(report)])
    assert code == 0
    data = json.loads(report.read_text())
    assert data["steps"] == 2 and len(data["hits"]) == 3 and data["chosen"] == data["hits"][0]
    assert data["method"] == "retrieve" and "superpixels" in data["segmentation"] and data["proposals"] > 0
    assert out.exists() and (tmp_path / "out_style.png").exists() and (tmp_path / "cut.png").exists()
    print(f"photo-to-3d '{prompt}': chosen {data['chosen']['name']} ({data['category']}), method {data['method']}")


def test_cli_photo_to_3d_bad_input_is_one_line(library, tmp_path, capsys):
    from backend.cli import main

    db = library[0]
    code = main(["photo-to-3d", str(tmp_path / "missing.png"), "--prompt", "a chair", "--db", str(db.directory),
                 "--out", str(tmp_path / "o.glb")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "missing.png" in err and not (tmp_path / "o.glb").exists()
    code = main(["photo-to-3d", str(tmp_path / "missing.png"), "--prompt", " ", "--db", str(db.directory),
                 "--out", str(tmp_path / "o.glb")])
    assert code == 2 and "prompt" in capsys.readouterr().err
