"""Feature extractors for the NNFM style loss on tiny random CLIPs and a random VGG-16: layer names, shapes,
strides, gradients, early stopping, and the offline ImageNet VGG-16 weights."""

from __future__ import annotations

import pytest
import torch

from backend.errors import InvalidInputError, WeightsMissingError
from backend.models.clip import load_clip
from backend.stylize.features import (FeatureConfig, VGGFeatures, default_vit_layers, make_extractor,
                                      vgg16_weights_path)


@pytest.fixture(scope="module")
def tiny_rn():
    return load_clip("tiny-rn")


def same_weights(a: VGGFeatures, b: VGGFeatures) -> bool:
    first, second = a.net.state_dict(), b.net.state_dict()
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_resnet_stages_have_their_strides_and_widths(tiny_rn):
    extractor = make_extractor(FeatureConfig(layers=("layer4", "layer1", "layer3", "layer2")), tiny_rn, "cpu")
    assert extractor.layers == ("layer1", "layer2", "layer3", "layer4")  # network order
    maps = extractor(torch.rand(2, 3, 64, 64))
    # tiny-rn: stem width 32, bottleneck expansion 4.
    assert [tuple(m.shape) for m in maps] == [(2, 128, 16, 16), (2, 256, 8, 8), (2, 512, 4, 4), (2, 1024, 2, 2)]


def test_resnet_default_layers_match_open_clip_and_take_gradients_on_any_size(tiny_rn):
    extractor = make_extractor(FeatureConfig(), tiny_rn, "cpu")
    assert extractor.name == "clip-resnet:layer2+layer3"
    images = torch.rand(2, 3, 96, 80, requires_grad=True)  # 80 is not a multiple of 32: no resize
    maps = extractor(images)
    assert [tuple(m.shape) for m in maps] == [(2, 256, 12, 10), (2, 512, 6, 5)]
    sum(m.square().mean() for m in maps).backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    visual = tiny_rn.model.visual
    if hasattr(visual, "forward_intermediates"):
        with torch.no_grad():
            mean, std = torch.tensor(tiny_rn.mean).view(1, 3, 1, 1), torch.tensor(tiny_rn.std).view(1, 3, 1, 1)
            normalised = (images - mean) / std
            expected = visual.forward_intermediates(normalised, indices=[2, 3], intermediates_only=True)
        for got, want in zip(maps, expected["image_intermediates"], strict=True):
            torch.testing.assert_close(got, want)


def test_resnet_stops_after_the_last_requested_stage(tiny_rn):
    visual = tiny_rn.model.visual
    calls: list[str] = []
    hooks = [getattr(visual, name).register_forward_hook(lambda *_, name=name: calls.append(name))
             for name in ("layer1", "layer2", "layer3", "layer4")]
    hooks.append(visual.attnpool.register_forward_hook(lambda *_: calls.append("attnpool")))
    try:
        maps = make_extractor(FeatureConfig(layers=("layer1",)), tiny_rn, "cpu")(torch.rand(1, 3, 32, 32))
    finally:
        for hook in hooks:
            hook.remove()
    assert calls == ["layer1"] and tuple(maps[0].shape) == (1, 128, 8, 8)


def test_resnet_refuses_images_smaller_than_the_deepest_stride(tiny_rn):
    extractor = make_extractor(FeatureConfig(layers=("layer4",)), tiny_rn, "cpu")
    with pytest.raises(InvalidInputError, match="at least 32 px"):
        extractor(torch.rand(1, 3, 24, 64))


def test_vit_gives_the_patch_token_grid_with_gradients(tiny_clip):
    extractor = make_extractor(FeatureConfig(), tiny_clip, "cpu")
    assert extractor.name == "clip-vit:block1"
    images = torch.rand(2, 3, 100, 100, requires_grad=True)  # resized to the 64-px training size
    (tokens,) = extractor(images)
    assert tuple(tokens.shape) == (2, 64, 8, 8)  # width 64, 8-px patches
    tokens.square().mean().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_vit_blocks_match_open_clip(tiny_clip):
    visual = tiny_clip.model.visual
    if not hasattr(visual, "forward_intermediates"):
        pytest.skip("this open_clip has no forward_intermediates")
    images = torch.rand(2, 3, 64, 64)
    maps = make_extractor(FeatureConfig(layers=("block1", "block2")), tiny_clip, "cpu")(images)
    with torch.no_grad():
        expected = visual.forward_intermediates(tiny_clip.preprocess(images), indices=[0, 1], intermediates_only=True)
    for got, want in zip(maps, expected["image_intermediates"], strict=True):
        torch.testing.assert_close(got, want)


def test_default_vit_layers_sit_at_a_third_and_two_thirds():
    assert default_vit_layers(12) == ("block4", "block8")
    assert default_vit_layers(24) == ("block8", "block16")
    assert default_vit_layers(2) == ("block1",)
    assert default_vit_layers(1) == ("block1",)


@pytest.mark.parametrize("extractor, layer, valid", [
    ("tiny-rn", "layer5", "layer1, layer2, layer3, layer4"),
    ("tiny", "block3", "block1, block2"),
    ("vgg16", "conv3_4", "conv3_3"),
])
def test_unknown_layers_are_refused_with_the_valid_ones(extractor, layer, valid):
    clip = None if extractor == "vgg16" else load_clip(extractor)
    config = FeatureConfig(extractor="vgg16" if clip is None else "clip", layers=(layer,), vgg_weights=None)
    with pytest.raises(InvalidInputError, match=layer) as info:
        make_extractor(config, clip, "cpu")
    assert valid in info.value.hint


def test_clip_features_need_a_clip():
    with pytest.raises(ValueError, match="ClipModel"):
        make_extractor(FeatureConfig(), None, "cpu")


def test_random_vgg_has_arf_layers_and_is_frozen_and_seeded():
    before = torch.get_rng_state()
    extractor = make_extractor(FeatureConfig(extractor="vgg16", vgg_weights=None), None, "cpu")
    assert torch.equal(torch.get_rng_state(), before)  # the global RNG is untouched
    assert extractor.name == "vgg16:conv3_1+conv3_2+conv3_3"
    assert len(extractor.net) == 16  # built only up to conv3_3's ReLU
    assert not extractor.net.training and not any(p.requires_grad for p in extractor.net.parameters())
    images = torch.rand(1, 3, 64, 48, requires_grad=True)
    maps = extractor(images)
    assert [tuple(m.shape) for m in maps] == [(1, 256, 16, 12)] * 3
    sum(m.mean() for m in maps).backward()
    assert images.grad.abs().sum() > 0
    again = VGGFeatures(weights=None)
    assert same_weights(extractor, again)
    shapes = [tuple(m.shape) for m in VGGFeatures(("conv1_2", "conv4_1"), weights=None)(torch.rand(1, 3, 32, 32))]
    assert shapes == [(1, 64, 32, 32), (1, 512, 4, 4)]


def test_missing_imagenet_vgg_says_where_it_belongs(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = vgg16_weights_path()
    assert path == tmp_path / "hub" / "checkpoints" / "vgg16-397923af.pth"
    with pytest.raises(WeightsMissingError, match="528 MiB") as info:
        make_extractor(FeatureConfig(extractor="vgg16"), None, "cpu")
    assert str(path) in info.value.message and "download.pytorch.org" in info.value.hint


def test_imagenet_vgg_loads_offline_from_the_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = vgg16_weights_path()
    path.parent.mkdir(parents=True)
    # A stand-in file with torchvision's key layout, holding only block 1-3 weights (all conv3_3 needs).
    source = VGGFeatures(weights=None)
    with torch.no_grad():
        for param in source.net.parameters():
            param.add_(1.0)
    torch.save({f"features.{key}": value for key, value in source.net.state_dict().items()}, path)
    loaded = VGGFeatures(weights="imagenet")
    assert same_weights(source, loaded)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsMissingError, match="could not load"):
        VGGFeatures(weights="imagenet")
