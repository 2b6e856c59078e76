"""Relevance maps: the contract (shape, dtype, range) on the tiny CLIPs, the dense-feature wiring, the method choice
when CLIPSeg is missing, and every rejected input. Quality with the domain CLIP: test_relevance_domain.py."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from backend import external
from backend.errors import DependencyMissingError, InvalidInputError, WeightsMissingError
from backend.models.clip import load_clip
from backend.segment import relevance as rel
from backend.segment.relevance import RelevanceConfig, relevance_map, resolve_method
from tests.retrieve.library_helpers import one_thread

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


@pytest.fixture
def image() -> np.ndarray:
    return np.random.default_rng(0).random((50, 70, 3)).astype(np.float32)


@pytest.fixture
def no_clipseg(monkeypatch, tmp_path):
    """transformers missing and an empty Hugging Face cache, whatever this machine has."""
    monkeypatch.setattr(external, "HAS_TRANSFORMERS", False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))


@pytest.mark.parametrize("spec", ["tiny", "tiny-rn"])
@pytest.mark.parametrize("shifts", [1, 2])
def test_map_is_float32_in_unit_range_at_the_image_size(spec, shifts, image, no_clipseg):
    clip = load_clip(spec)
    result = relevance_map(image, "a red chair", clip, RelevanceConfig(shifts=shifts))
    assert result.method == "dense-clip"
    assert result.map.shape == (50, 70) and result.map.dtype == np.float32
    assert np.isfinite(result.map).all()
    assert result.map.min() == 0.0 and result.map.max() == 1.0  # min-max: the extremes are attained
    assert result.scores.ndim == 2 and result.scores.dtype == np.float32
    again = relevance_map(image, "a red chair", clip, RelevanceConfig(shifts=shifts))
    np.testing.assert_array_equal(result.map, again.map)


def test_grid_size_follows_scale_stride_and_shifts(image):
    clip = load_clip("tiny-rn")  # 64-px ResNet, stride 32
    one = relevance_map(image, "a chair", clip, RelevanceConfig(method="dense-clip", shifts=1))
    # longer side 70 -> 4 x 64 = 256 px -> 8 cells; shorter 50 -> 183 -> 192 px -> 6 cells
    assert one.scores.shape == (6, 8)
    two = relevance_map(image, "a chair", clip, RelevanceConfig(method="dense-clip", shifts=2, max_side=128))
    assert two.scores.shape == (6, 8)  # 128 px -> 4 cells, twice as fine
    vit = relevance_map(image, "a chair", load_clip("tiny"), RelevanceConfig(method="dense-clip", shifts=1))
    assert vit.scores.shape == (23, 32)  # 8-px patches on 184 x 256 px: a resized positional embedding


def test_small_and_tall_images_and_a_flat_image(no_clipseg):
    clip = load_clip("tiny-rn")
    tall = np.random.default_rng(1).random((9, 8, 3)).astype(np.float32)
    assert relevance_map(tall, "a lamp", clip).map.shape == (9, 8)
    flat = np.full((32, 32, 3), 0.5, np.float32)
    flat_map = relevance_map(flat, "a lamp", clip, RelevanceConfig(shifts=1)).map
    assert flat_map.shape == (32, 32) and np.isfinite(flat_map).all() and 0 <= flat_map.min() <= flat_map.max() <= 1


def test_resnet_value_path_averages_to_the_global_embedding_when_attention_is_uniform():
    """With the pool's query/key projections and positional embedding zeroed, the attention pool attends
    uniformly, so its output is the mean of the per-position value-path embeddings: the dense features are
    exactly the pieces CLIP's global embedding is made of."""
    clip = copy.deepcopy(load_clip("tiny-rn"))
    pool = clip.model.visual.attnpool
    with torch.no_grad():
        for p in (pool.q_proj.weight, pool.q_proj.bias, pool.k_proj.weight, pool.k_proj.bias,
                  pool.positional_embedding):
            p.zero_()
    image = np.random.default_rng(2).random((64, 64, 3)).astype(np.float32)
    config = RelevanceConfig(method="dense-clip", scale=1.0, shifts=1)  # 64 px in: no resize, a 2x2 grid
    x = torch.from_numpy(image).permute(2, 0, 1)[None]
    with torch.no_grad():
        global_embedding = clip.model.encode_image(clip.preprocess(x))[0]
        dense = rel._resnet_features(clip.model.visual, clip.preprocess(x))[0]
    torch.testing.assert_close(dense.mean(dim=(1, 2)), global_embedding, rtol=1e-4, atol=1e-5)
    unit = rel.dense_features(image, clip, config)
    torch.testing.assert_close(unit, torch.nn.functional.normalize(dense, dim=0))


@pytest.mark.parametrize("spec, shifts", [("tiny-rn", 2), ("tiny-rn", 4), ("tiny", 2)])
def test_fine_grid_follows_a_stripe_and_is_centred_on_the_image(spec, shifts):
    """The response to a red stripe on grey, as a centroid on the feature grid mapped to pixels, moves right with
    the stripe, and mirrored stripes give mirrored centroids: the shifted passes interleave in order and the
    grid is not offset by half a cell (which would move every centroid by the same amount)."""
    clip = load_clip(spec)
    config = RelevanceConfig(method="dense-clip", scale=1.0, max_side=128, shifts=shifts)
    plain = rel.dense_features(np.full((128, 128, 3), 0.5, np.float32), clip, config)
    centroids = []
    for column in (16, 48, 80, 112):
        image = np.full((128, 128, 3), 0.5, np.float32)
        image[:, column - 2:column + 2] = (1.0, 0.0, 0.0)
        change = (rel.dense_features(image, clip, config) - plain).norm(dim=0).mean(dim=0)
        cells = torch.arange(len(change)) + 0.5
        centroids.append(float((change * cells).sum() / change.sum()) * 128 / len(change))
    assert all(a < b for a, b in zip(centroids, centroids[1:])), centroids
    assert abs(centroids[0] + centroids[3] - 128) < 6 and abs(centroids[1] + centroids[2] - 128) < 6, centroids


def test_mean_max_is_min_max_rescaled_from_the_mean(image):
    """The default normalisation maps the image's mean score to 0 (and below, clipped) and the peak to 1."""
    clip = load_clip("tiny-rn")
    minmax = relevance_map(image, "a chair", clip, RelevanceConfig(method="dense-clip", normalize="minmax")).map
    default = relevance_map(image, "a chair", clip, RelevanceConfig(method="dense-clip")).map
    mean = minmax.astype(np.float64).mean()
    np.testing.assert_allclose(default, np.clip((minmax - mean) / (1.0 - mean), 0.0, 1.0), atol=1e-5)
    assert default.max() == 1.0 and 0.3 < (default == 0).mean() < 0.9


def test_background_prompts_and_softmax(image):
    clip = load_clip("tiny")
    bg = ("a photo of a background", "clutter")
    sub = relevance_map(image, "a chair", clip, RelevanceConfig(method="dense-clip", background_prompts=bg))
    plain = relevance_map(image, "a chair", clip, RelevanceConfig(method="dense-clip"))
    assert sub.map.shape == (50, 70) and not np.array_equal(sub.map, plain.map)
    soft = relevance_map(image, "a chair", clip, RelevanceConfig(method="dense-clip", background_prompts=bg,
                                                                  normalize="softmax", temperature=10.0))
    assert soft.map.dtype == np.float32 and 0.0 <= soft.map.min() <= soft.map.max() <= 1.0
    assert soft.map.max() < 1.0  # a probability against the background prompts, not stretched to [0, 1]


# ---------------------------------------------------------------------------------------------- CLIPSeg missing


def test_auto_uses_dense_clip_when_transformers_is_missing(image, no_clipseg):
    assert resolve_method(RelevanceConfig()) == "dense-clip"
    assert relevance_map(image, "a chair", load_clip("tiny-rn")).method == "dense-clip"


def test_explicit_clipseg_without_transformers_names_the_package_and_the_way_out(image, no_clipseg):
    with pytest.raises(DependencyMissingError, match="transformers") as info:
        relevance_map(image, "a chair", load_clip("tiny-rn"), RelevanceConfig(method="clipseg"))
    assert "pip install transformers" in info.value.hint and "dense-clip" in info.value.hint
    assert info.value.code == "dependency_missing"


def test_explicit_clipseg_without_weights_names_the_repo_and_never_downloads(image, monkeypatch, tmp_path):
    monkeypatch.setattr(external, "HAS_TRANSFORMERS", True)  # pretend; the weights check comes first
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(external, "require_transformers", lambda: pytest.fail("must not import transformers"))
    with pytest.raises(WeightsMissingError, match="CIDAS/clipseg-rd64-refined") as info:
        relevance_map(image, "a chair", load_clip("tiny-rn"), RelevanceConfig(method="clipseg"))
    assert "huggingface-cli download CIDAS/clipseg-rd64-refined" in info.value.hint
    assert resolve_method(RelevanceConfig(method="auto")) == "dense-clip"  # auto falls back, no error


def test_explicit_clipseg_from_a_missing_folder_says_so(image, monkeypatch, tmp_path):
    monkeypatch.setattr(external, "HAS_TRANSFORMERS", True)
    missing = tmp_path / "no_such_clipseg"
    with pytest.raises(WeightsMissingError, match="the folder .*no_such_clipseg"):
        resolve_method(RelevanceConfig(method="clipseg", clipseg_model=str(missing)))
    missing.mkdir()  # a folder without weights
    with pytest.raises(WeightsMissingError, match="the folder .*no_such_clipseg"):
        resolve_method(RelevanceConfig(method="clipseg", clipseg_model=str(missing)))


def test_weights_in_the_hf_cache_are_found_offline(monkeypatch, tmp_path):
    cache = tmp_path / "hub"
    snapshot = cache / "models--CIDAS--clipseg-rd64-refined" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").write_bytes(b"x")
    (cache / "models--CIDAS--clipseg-rd64-refined" / "refs").mkdir()
    (cache / "models--CIDAS--clipseg-rd64-refined" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    assert rel.clipseg_weights_present()
    monkeypatch.setattr(external, "HAS_TRANSFORMERS", False)
    assert not rel.clipseg_available() and resolve_method(RelevanceConfig()) == "dense-clip"
    with pytest.raises(DependencyMissingError, match="transformers"):
        resolve_method(RelevanceConfig(method="clipseg"))


# ---------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("prompt", ["", "   ", "\n"])
def test_empty_prompt_is_an_invalid_input_with_a_hint(prompt, image):
    with pytest.raises(InvalidInputError, match="the prompt is empty") as info:
        relevance_map(image, prompt, load_clip("tiny-rn"))
    assert "a red chair" in info.value.hint


def test_non_string_prompt(image):
    with pytest.raises(InvalidInputError, match="must be a string"):
        relevance_map(image, ["a chair"], load_clip("tiny-rn"))


@pytest.mark.parametrize("bad, match, hint", [
    (np.zeros((32, 32), np.float32), r"\[H, W, 3\]", "RGB"),
    (np.zeros((32, 32, 4), np.float32), r"\[H, W, 3\]", "alpha"),
    (np.zeros((4, 32, 3), np.float32), "too small", "8 px"),
    (np.zeros((32, 32, 3), np.uint8), "float", "255"),
    (np.full((32, 32, 3), np.nan, np.float32), "NaN", "finite"),
    (np.full((32, 32, 3), 255.0, np.float32), r"in \[0, 1\]", "255"),
    (torch.zeros(32, 32, 3), "numpy array", "float32"),
])
def test_bad_images_are_rejected_with_the_fix(bad, match, hint):
    with pytest.raises(InvalidInputError, match=match) as info:
        relevance_map(bad, "a chair", load_clip("tiny-rn"))
    assert hint in info.value.hint


@pytest.mark.parametrize("config, match", [
    (RelevanceConfig(method="sam"), "unknown relevance method"),
    (RelevanceConfig(normalize="sigmoid"), "normalisation"),
    (RelevanceConfig(scale=0.0), "scale"),
    (RelevanceConfig(scale=float("nan")), "scale"),
    (RelevanceConfig(max_side=0), "max_side"),
    (RelevanceConfig(shifts=0), "shifts"),
    (RelevanceConfig(shifts=1.5), "shifts"),
    (RelevanceConfig(background_prompts="clutter"), "background_prompts"),
    (RelevanceConfig(background_prompts=("clutter", "")), "background_prompts"),
    (RelevanceConfig(normalize="softmax"), "needs background prompts"),
    (RelevanceConfig(background_prompts=("clutter",), normalize="softmax", temperature=-1.0), "temperature"),
    (RelevanceConfig(clipseg_model=""), "clipseg_model"),
])
def test_bad_configs_are_rejected_before_any_work(config, match, image):
    with pytest.raises(InvalidInputError, match=match):
        relevance_map(image, "a chair", load_clip("tiny-rn"), config)


def test_dense_clip_needs_a_clip_model(image, no_clipseg):
    with pytest.raises(InvalidInputError, match="ClipModel"):
        relevance_map(image, "a chair", "domain")
