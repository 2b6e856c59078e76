"""TASK-former's photo term (issue 20): the train split's photos, cut out by saliency as `search --image` cuts them,
contrasted with their shapes' views; and the trained image tower is what a photo search then embeds with."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from taskformer_helpers import one_thread, tiny_world  # noqa: F401  (fixture)

import backend.retrieve.photo_crops as photo_crops_module
from backend.errors import InvalidInputError
from backend.models import load_clip
from backend.retrieve.data import load_split
from backend.retrieve.photo_crops import cached_photo_crops, cut_split_photos, resize_square
from backend.retrieve.query import QueryEncoder
from backend.retrieve.train import TrainConfig, make_batch, train
from backend.segment.photo_query import cut_photo

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = TrainConfig(steps=16, batch=8, warmup=1, decoder_layers=1, decoder_width=32, seed=5, lr=1e-3,
                   train_layers=-1, photo_weight=1.0, photo_prompt_crops=False, lines_weight=0.0, extra_sketches=0,
                   sketch_augment=False, frame_sketches=False, extra_photos=0)
"""The recipe shrunk to seconds, with every layer trained at a high rate so that 16 steps move the loss (the
saliency crops only, no sketch terms: the photo term alone)."""


@pytest.fixture(scope="module")
def train_split(tmp_path_factory: pytest.TempPathFactory):
    return load_split(tiny_world(tmp_path_factory.mktemp("world") / "data"), "train")


@pytest.fixture(scope="module")
def crops(train_split, tmp_path_factory: pytest.TempPathFactory):
    return cached_photo_crops(train_split, tmp_path_factory.mktemp("crops"))


def test_crops_are_the_query_time_cut_and_are_cached(train_split, crops, tmp_path: Path, monkeypatch):
    assert crops.shape == (8, 1, 32, 32, 3) and crops.dtype == torch.uint8
    photo = train_split.photos[3, 0].numpy()
    cut = cut_photo(photo)  # what search_photo does without a prompt
    assert cut.method == "saliency"
    assert np.array_equal(crops[3, 0].numpy(), resize_square(cut.image, 32))
    assert not np.array_equal(crops[3, 0].numpy(), photo)  # cut out: not the photo itself
    first = cached_photo_crops(train_split, tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 1

    def no_cutting(*args, **kwargs):
        raise AssertionError("the cached crops should have been read")

    monkeypatch.setattr(photo_crops_module, "cut_split_photos", no_cutting)
    assert torch.equal(cached_photo_crops(train_split, tmp_path), first)


def test_prompt_crops_are_the_prompted_cut_and_join_the_saliency_ones(train_split, crops, tmp_path: Path,
                                                                     monkeypatch):
    from backend.retrieve.photo_crops import crops_key, label_prompt

    clip = load_clip("domain")
    prompted = cached_photo_crops(train_split, tmp_path, clip=clip)
    assert prompted.shape == crops.shape and crops_key(train_split, clip=clip) != crops_key(train_split)
    photo = train_split.photos[3, 0].numpy()
    cut = cut_photo(photo, clip, prompt=label_prompt(train_split.labels[3]))  # what `--prompt` does
    assert np.array_equal(prompted[3, 0].numpy(), resize_square(cut.image, 32))
    assert label_prompt(train_split.labels[3]) == f"a {train_split.labels[3]['colour']} {train_split.labels[3]['category']}"
    # Training with them cuts by the model's CLIP and draws from both sets of crops.
    monkeypatch.setenv("ATELIER_HOME", str(tmp_path / "home"))
    seen = []
    real = __import__("backend.retrieve.train", fromlist=["make_batch"]).make_batch

    def spy(data, step, config, photo_crops=None, index_lines=None):
        seen.append(None if photo_crops is None else photo_crops.shape[1])
        return real(data, step, config, photo_crops, index_lines)

    monkeypatch.setattr("backend.retrieve.train.make_batch", spy)
    train(train_split, replace(TINY, steps=1, photo_prompt_crops=True), clip, photo_crops=crops)
    assert seen == [2 * crops.shape[1]]
    seen.clear()  # with 2 extra photos a shape: their saliency and prompt cuts join too
    train(train_split, replace(TINY, steps=1, photo_prompt_crops=True, extra_photos=2), clip, photo_crops=crops)
    assert seen == [2 * crops.shape[1] + 4]


def test_extra_photos_are_new_photos_of_the_shapes_cut_the_same_way(train_split, tmp_path: Path, monkeypatch):
    from backend.retrieve.photo_crops import drawn_photos

    photos = drawn_photos(train_split, 1, seed=0)
    assert photos.shape == (8, 1, 32, 32, 3) and not torch.equal(photos[:, 0], train_split.photos[:, 0])
    assert torch.equal(drawn_photos(train_split, 1, seed=0), photos) and not torch.equal(
        drawn_photos(train_split, 1, seed=1), photos)
    crops = cached_photo_crops(train_split, tmp_path, extra=1, seed=0)
    assert crops.shape == (8, 1, 32, 32, 3)
    assert np.array_equal(crops[2, 0].numpy(), resize_square(cut_photo(photos[2, 0].numpy()).image, 32))
    assert len(list(tmp_path.glob("photos_*.pt"))) == 1  # the drawn photos are cached too
    monkeypatch.setattr(photo_crops_module, "drawn_photos", lambda *a, **k: pytest.fail("should be cached"))
    assert torch.equal(cached_photo_crops(train_split, tmp_path, extra=1, seed=0), crops)
    with pytest.raises(ValueError, match="extra_photos"):
        TrainConfig(extra_photos=-1)


def test_photos_join_the_batch_without_changing_the_rest(train_split, crops):
    plain, with_photos = make_batch(train_split, 2, TINY), make_batch(train_split, 2, TINY, crops)
    assert "photos" not in plain and with_photos["photos"].shape == (8, 3, 32, 32)
    assert torch.equal(plain["images"], with_photos["images"]) and plain["captions"] == with_photos["captions"]
    assert torch.equal(with_photos["photos"], make_batch(train_split, 2, TINY, crops)["photos"])


def test_training_with_photos_lowers_the_photo_loss_and_changes_the_photo_path(train_split, crops, tmp_path: Path):
    seen = []
    result = train(train_split, TINY, load_clip("tiny"), out=tmp_path / "photo.pt", photo_crops=crops,
                   progress=lambda step, total, **m: seen.append(set(m)))
    assert "photo" in seen[0]
    photo = [r["photo"] for r in result.losses]
    assert np.mean(photo[-4:]) < 0.7 * np.mean(photo[:2]), photo
    assert result.losses[-1]["loss"] < result.losses[0]["loss"]

    # A search with the checkpoint embeds a photo with the trained photo tower, not the zero-shot CLIP's...
    assert result.model.photo_visual is not None and result.model.config.photo_tower
    query = crops[0, 0].numpy()
    tensor = torch.from_numpy(query).permute(2, 0, 1)[None].float() / 255
    trained = QueryEncoder.from_checkpoint(tmp_path / "photo.pt").encode_photo(query)
    zero_shot = QueryEncoder(load_clip("tiny")).encode_photo(query)
    with torch.no_grad():
        direct = result.model.encode_photo(tensor)[0].numpy()
        as_view = result.model.encode_image(tensor)[0].numpy()
    np.testing.assert_allclose(trained, direct, atol=1e-5)
    assert float(trained @ zero_shot) < 0.99
    assert float(direct @ as_view) < 0.99  # the photo tower is its own, not the image tower
    # ...and the photo term is what trained it: without photos the model has no photo tower, and with the photo
    # term through the image tower (photo_tower=False) the image tower itself moves.
    without = train(train_split, replace(TINY, photo_weight=0.0), load_clip("tiny"))
    assert "photo" not in without.losses[0] and without.model.photo_visual is None
    shared = train(train_split, replace(TINY, photo_tower=False), load_clip("tiny"), photo_crops=crops)
    assert shared.model.photo_visual is None
    with torch.no_grad():
        plain = without.model.encode_photo(tensor)[0].numpy()
        np.testing.assert_allclose(plain, without.model.encode_image(tensor)[0].numpy(), atol=1e-6)
        # The photo term trains the photo tower alone: the image (and text) side is the run's without photos.
        np.testing.assert_allclose(as_view, without.model.encode_image(tensor)[0].numpy(), atol=1e-5)
        tokens = without.model.tokenize(["a red chair"])
        np.testing.assert_allclose(result.model.encode_text(tokens), without.model.encode_text(tokens), atol=1e-5)
        assert float(shared.model.encode_photo(tensor)[0].numpy() @ plain) < 0.999


def test_photo_term_bad_input(train_split, crops, tmp_path: Path):
    with pytest.raises(ValueError, match="photo_weight"):
        TrainConfig(photo_weight=-1.0)
    with pytest.raises(ValueError, match="photo_weight"):
        TrainConfig(photo_weight=float("nan"))
    with pytest.raises(ValueError, match="photo_crops"):
        train(train_split, replace(TINY, steps=1), load_clip("tiny"), photo_crops=crops[:3])
    no_photos = load_split(tiny_world(tmp_path / "bare", photos=0), "train")
    with pytest.raises(InvalidInputError, match="no photos") as err:
        train(no_photos, replace(TINY, steps=1), load_clip("tiny"))
    assert "photo" in err.value.hint
    with pytest.raises(InvalidInputError, match="no photos"):
        cut_split_photos(no_photos)
