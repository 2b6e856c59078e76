"""Loading SAM: the architectures match segment-anything's builders, a tiny random SAM round-trips through its
checkpoint and the real loader, the weights cache is searched like CLIP's, and every bad file is a clear error."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from backend.errors import InvalidInputError, WeightsMissingError
from backend.models.store import weights_dir
from backend.segment.sam import (
    SAM_ARCHS, TINY_SAM, SamConfig, find_sam_checkpoint, load_sam, predict_prompts, propose_sam, release_sam,
)
from tests.segment.segment_helpers import disc_photo, tiny_sam_config


@pytest.mark.parametrize("sam_type", ["vit_b", "vit_l", "vit_h"])
def test_released_architectures_match_segment_anythings_builders(sam_type):
    from segment_anything import sam_model_registry

    with torch.device("meta"):  # shapes only: no memory, no time
        theirs = sam_model_registry[sam_type]().state_dict()
        ours = SAM_ARCHS[sam_type].build().state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}


def test_tiny_sam_round_trips_through_its_checkpoint(tiny_sam_path):
    release_sam()
    loaded = load_sam(tiny_sam_path)
    assert loaded.name == "tiny" and loaded.arch == TINY_SAM and loaded.path == tiny_sam_path.resolve()
    reference = TINY_SAM.build(seed=0).state_dict()
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, reference[key]), key
    assert not any(p.requires_grad for p in loaded.model.parameters())
    assert load_sam(tiny_sam_path) is loaded  # cached per file
    assert release_sam() == 1 and load_sam(tiny_sam_path) is not loaded


def test_tiny_sam_proposes_masks_and_answers_prompts(tiny_sam_path):
    image, _ = disc_photo()
    pixels = (image * 255).astype(np.uint8)
    loaded = load_sam(tiny_sam_path)
    calls = []
    proposals, predictor = propose_sam(loaded, pixels, tiny_sam_config(tiny_sam_path),
                                       progress=lambda step, total, **m: calls.append((step, total)))
    assert len(proposals.masks) >= 1 and proposals.masks.shape[1:] == image.shape[:2]
    assert proposals.masks.dtype == bool and proposals.method == "sam tiny"
    assert list(proposals.scores) == sorted(proposals.scores, reverse=True)
    assert calls == [(1, 1)]  # 64 prompts in one batch of 64
    # Prompts reuse the generator's image embedding; the answer is the same as with a fresh encoder pass.
    points = np.array([[70.0, 45.0, 1.0], [5.0, 5.0, 0.0]], np.float32)
    reused, reused_scores = predict_prompts(loaded, pixels, points, None, predictor)
    fresh, fresh_scores = predict_prompts(loaded, pixels, points, None)
    assert reused.shape == (3, *image.shape[:2]) and np.array_equal(reused, fresh)
    np.testing.assert_allclose(reused_scores, fresh_scores, atol=1e-5)
    boxed, _ = predict_prompts(loaded, pixels, None, np.array([40, 20, 100, 70], np.float32))
    assert boxed.shape == (3, *image.shape[:2])


def test_the_cache_is_searched_and_a_missing_type_names_file_size_and_pull(empty_home, tiny_sam_path):
    assert find_sam_checkpoint(SamConfig()) is None  # nothing here: the caller falls back to superpixels
    start = time.perf_counter()
    with pytest.raises(WeightsMissingError) as info:
        find_sam_checkpoint(SamConfig(sam_type="vit_l"))
    assert time.perf_counter() - start < 1.0
    text = str(info.value)
    assert "sam_vit_l_0b3195.pth" in text and "1.25 GB" in text and "atelier models pull sam_vit_l" in text
    # A file in the cache under the catalogue's name is found without being named.
    cached = weights_dir() / "sam_vit_b_01ec64.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(tiny_sam_path.read_bytes())
    assert find_sam_checkpoint(SamConfig()) == (cached, None)
    assert find_sam_checkpoint(SamConfig(sam_type="vit_b")) == (cached, "vit_b")


def test_a_given_checkpoint_that_does_not_exist_is_an_error_not_a_fallback(tmp_path, empty_home):
    for path in (tmp_path / "nope.pth", tmp_path):
        with pytest.raises(InvalidInputError, match="SAM checkpoint .* (does not exist|is a folder)"):
            find_sam_checkpoint(SamConfig(checkpoint=str(path)))
    with pytest.raises(InvalidInputError, match="does not exist"):
        load_sam(tmp_path / "nope.pth")


def test_bad_checkpoint_files_are_clear_errors(tmp_path, tiny_sam_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(InvalidInputError, match="not a readable SAM checkpoint"):
        load_sam(junk)
    other = tmp_path / "other.pth"
    torch.save({"visual.proj": torch.zeros(2, 2)}, other)
    with pytest.raises(InvalidInputError, match="no `image_encoder.` weights"):
        load_sam(other)
    # An official-style state dict is typed by its encoder width; a wrong --sam-type says which to pass.
    official = tmp_path / "sam_vit_b.pth"
    torch.save({"image_encoder.patch_embed.proj.weight": torch.zeros(768, 3, 1, 1)}, official)
    with pytest.raises(InvalidInputError, match="holds vit_b weights, not vit_l.*--sam-type vit_b"):
        load_sam(official, "vit_l")
    odd = tmp_path / "odd.pth"
    torch.save({"image_encoder.patch_embed.proj.weight": torch.zeros(100, 3, 1, 1)}, odd)
    with pytest.raises(InvalidInputError, match="100-wide image encoder"):
        load_sam(odd)
    with pytest.raises(InvalidInputError, match="named 'tiny', not vit_b"):
        load_sam(tiny_sam_path, "vit_b")
    with pytest.raises(InvalidInputError, match="unknown SAM type"):
        load_sam(tiny_sam_path, "vit_x")
