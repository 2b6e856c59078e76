"""NNFM: the blocked nearest-neighbour search against brute force, the loss and its gradient, the style bank
over several images, and the content loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from backend.errors import InvalidInputError
from backend.models.clip import load_clip
from backend.stylize.features import FeatureConfig, make_extractor
from backend.stylize.nnfm import (build_style_bank, content_loss, flatten_features, nearest_neighbours, nnfm_loss,
                                  nnfm_losses)


def brute_force_cosine(queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    return F.normalize(queries, dim=1) @ F.normalize(keys, dim=1).t()


@pytest.mark.parametrize("chunk", [64, 4096])
def test_nearest_neighbours_match_brute_force(chunk):
    generator = torch.Generator().manual_seed(0)
    queries, keys = torch.randn(1000, 16, generator=generator), torch.randn(700, 16, generator=generator)
    index, best = nearest_neighbours(queries, keys, chunk=chunk)
    expected_best, expected_index = brute_force_cosine(queries, keys).max(dim=1)
    assert torch.equal(index, expected_index)
    torch.testing.assert_close(best, expected_best)


def test_search_never_forms_a_block_larger_than_chunk(monkeypatch):
    sizes: list[int] = []
    mm = torch.mm

    def spy(a, b):
        out = mm(a, b)
        sizes.append(out.numel())
        return out

    monkeypatch.setattr(torch, "mm", spy)
    generator = torch.Generator().manual_seed(1)
    queries, keys = torch.randn(3000, 8, generator=generator), torch.randn(2500, 8, generator=generator)
    index, _ = nearest_neighbours(queries, keys, chunk=256)
    monkeypatch.undo()
    assert len(sizes) == 12 * 10 and max(sizes) <= 256 * 256
    assert torch.equal(index, brute_force_cosine(queries, keys).argmax(dim=1))


def test_large_search_finds_exact_matches():
    """12000 x 12000 would be a 576 MB matrix; in blocks of 1024 it is 4 MB at a time."""
    generator = torch.Generator().manual_seed(2)
    queries = torch.randn(12_000, 8, generator=generator)
    order = torch.randperm(12_000, generator=generator)
    index, best = nearest_neighbours(queries, 3.0 * queries[order], chunk=1024)
    assert torch.equal(order[index], torch.arange(12_000))
    assert best.min() > 0.9999


def test_nnfm_loss_value_and_gradient_equal_the_brute_force_minimum():
    generator = torch.Generator().manual_seed(3)
    features = torch.randn(2, 6, 3, 4, generator=generator, requires_grad=True)
    style = torch.randn(50, 6, generator=generator)
    loss = nnfm_loss(features, style, chunk=7)
    (grad,) = torch.autograd.grad(loss, features)
    reference = features.detach().clone().requires_grad_(True)
    expected = (1.0 - brute_force_cosine(flatten_features(reference), style).max(dim=1).values).mean()
    (expected_grad,) = torch.autograd.grad(expected, reference)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(grad, expected_grad)


def test_nnfm_loss_is_zero_when_every_feature_is_a_style_row():
    features = torch.randn(2, 5, 4, 4)
    style = torch.cat([2.0 * flatten_features(features), torch.randn(10, 5)])
    assert nnfm_loss(features, style, chunk=8).item() == pytest.approx(0.0, abs=1e-6)


class PixelFeatures:
    """A stand-in extractor whose one "layer" is the image itself: each pixel's RGB is a feature vector."""

    layers = ("rgb",)

    def __call__(self, images: torch.Tensor) -> list[torch.Tensor]:
        return [images]


def flat(rgb, height: int, width: int) -> torch.Tensor:
    return torch.tensor(rgb, dtype=torch.float32).view(1, 3, 1, 1).expand(1, 3, height, width).clone()


def test_bank_is_the_union_of_the_style_images_and_both_supply_neighbours():
    red, blue = flat((0.9, 0.1, 0.1), 8, 8), flat((0.1, 0.1, 0.9), 4, 6)
    bank = build_style_bank(PixelFeatures(), [red, blue])
    assert bank.count == 2 and tuple(bank.features[0].shape) == (64 + 24, 3)
    assert bank.sources[0].tolist() == [0] * 64 + [1] * 24
    # A render that is a reddish top half and a bluish bottom half.
    render = torch.cat([flat((0.8, 0.2, 0.1), 3, 8), flat((0.2, 0.1, 0.8), 5, 8)], dim=2).repeat(2, 1, 1, 1)
    loss, indices = nnfm_losses([render], bank, chunk=16)
    share = bank.share(0, indices[0])
    assert share.tolist() == pytest.approx([3 / 8, 5 / 8])
    assert 0.0 < loss.item() < 0.05


def test_bank_from_a_real_extractor_holds_every_position():
    extractor = make_extractor(FeatureConfig(), load_clip("tiny-rn"), "cpu")
    bank = build_style_bank(extractor, [torch.rand(1, 3, 64, 64), torch.rand(1, 3, 32, 48)])
    # layer2 (stride 8) and layer3 (stride 16).
    assert [tuple(f.shape) for f in bank.features] == [(64 + 24, 256), (16 + 6, 512)]
    assert [int((s == 1).sum()) for s in bank.sources] == [24, 6]
    assert not any(f.requires_grad for f in bank.features)


def test_bank_refuses_no_images_and_unbatched_ones():
    with pytest.raises(InvalidInputError, match="no style image"):
        build_style_bank(PixelFeatures(), [])
    with pytest.raises(InvalidInputError, match=r"\[1, 3, H, W\]"):
        build_style_bank(PixelFeatures(), [torch.rand(3, 8, 8)])


def test_content_loss_is_zero_for_the_original_and_pulls_toward_it():
    reference = [torch.randn(2, 4, 8, 8), torch.randn(2, 6, 4, 4)]
    assert content_loss([r.clone() for r in reference], reference).item() == 0.0
    moved = [(r + 0.5).requires_grad_(True) for r in reference]
    loss = content_loss(moved, reference)
    assert loss.item() == pytest.approx(0.25)
    loss.backward()
    assert all(m.grad is not None and (m.grad > 0).all() for m in moved)
