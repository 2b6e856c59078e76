"""Augmentations: exact on known maps, seeded, differentiable, torchvision-like draws."""

from __future__ import annotations

import pytest
import torch

from backend.stylize.augment import (
    AugmentConfig,
    augment,
    homographies_from_points,
    random_crop_boxes,
    random_perspectives,
    warp,
)

IDENTITY = AugmentConfig(crop_scale=(1.0, 1.0), perspective_p=0.0)


def ramp(size: int = 16, batch: int = 2) -> torch.Tensor:
    """[batch, 3, size, size]: channel 0 = x, channel 1 = y of the pixel centre in [-1, 1], channel 2 = image index."""
    centres = (2 * torch.arange(size, dtype=torch.float32) + 1) / size - 1
    y, x = torch.meshgrid(centres, centres, indexing="ij")
    return torch.stack([torch.stack([x, y, torch.full_like(x, float(b))]) for b in range(batch)])


def test_identity_keeps_the_image_and_layout_is_augmentation_major():
    images = ramp(batch=3)
    out = augment(images, IDENTITY, size=16, count=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == (6, 3, 16, 16)
    torch.testing.assert_close(out, images.repeat(2, 1, 1, 1), atol=1e-5, rtol=0)
    assert out.view(2, 3, 3, 16, 16)[1, 2, 2].eq(2.0).all()  # second draw of image 2


def test_crop_box_is_what_the_output_shows():
    images = ramp(size=32, batch=1)
    boxes = torch.tensor([[0.25, -0.5, 0.5, 0.25]], dtype=torch.float64)  # cx, cy, hx, hy
    out = warp(images, boxes, torch.eye(3, dtype=torch.float64)[None], size=32)
    x, y = out[0, 0], out[0, 1]
    # The output spans x in [cx - hx, cx + hx] and y in [cy - hy, cy + hy], up to half a source texel.
    assert x.min() == pytest.approx(-0.25 + 0.5 / 32, abs=0.04) and x.max() == pytest.approx(0.75 - 0.5 / 32, abs=0.04)
    assert y.min() == pytest.approx(-0.75 + 0.25 / 32, abs=0.04)
    assert y.max() == pytest.approx(-0.25 - 0.25 / 32, abs=0.04)


def test_crop_draws_follow_scale_and_ratio():
    config = AugmentConfig(crop_scale=(0.1, 0.3), crop_ratio=(0.75, 4 / 3))
    boxes = random_crop_boxes(2000, config, generator=torch.Generator().manual_seed(1))
    area = boxes[:, 2] * boxes[:, 3]  # fraction of the image area
    ratio = boxes[:, 2] / boxes[:, 3]
    assert area.min() >= 0.1 - 1e-9 and area.max() <= 0.3 + 1e-9
    assert ratio.min() >= 0.75 - 1e-9 and ratio.max() <= 4 / 3 + 1e-9
    assert ((boxes[:, :2].abs() + boxes[:, 2:]) <= 1 + 1e-9).all(), "boxes stay inside the image"
    whole = random_crop_boxes(50, AugmentConfig(crop_scale=(1.0, 1.0)), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(whole, torch.tensor([[0.0, 0.0, 1.0, 1.0]], dtype=torch.float64).expand(50, 4))


def test_homography_maps_the_four_points():
    src = torch.tensor([[[-0.8, -0.9], [0.7, -0.6], [0.9, 0.8], [-0.6, 0.7]]], dtype=torch.float64)
    dst = torch.tensor([[[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]]], dtype=torch.float64)
    h = homographies_from_points(src, dst)[0]
    mapped = torch.cat([src[0], torch.ones(4, 1, dtype=torch.float64)], dim=1) @ h.T
    torch.testing.assert_close(mapped[:, :2] / mapped[:, 2:], dst[0])


def test_perspective_fills_outside_and_is_seeded():
    images = torch.zeros(4, 3, 24, 24)
    config = AugmentConfig(crop_scale=(1.0, 1.0), perspective_p=1.0, distortion_scale=0.5, fill=(1.0, 0.5, 0.25))
    a = augment(images, config, size=24, generator=torch.Generator().manual_seed(3))
    b = augment(images, config, size=24, generator=torch.Generator().manual_seed(3))
    c = augment(images, config, size=24, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)
    filled = (a[:, 0] == 1.0) & (a[:, 1] == 0.5) & (a[:, 2] == 0.25)
    assert filled.any(dim=(1, 2)).all(), "every warped image shows fill where the corners moved in"
    assert (~filled).float().mean() > 0.5, "most of the image is still the image"
    maps = random_perspectives(100, AugmentConfig(perspective_p=0.3), generator=torch.Generator().manual_seed(0))
    identity = torch.isclose(maps, torch.eye(3, dtype=torch.float64)).all(dim=(1, 2))
    assert 50 <= int(identity.sum()) <= 90, "p=0.3 warps about 30 of 100"


def test_gradients_reach_every_image():
    images = torch.rand(2, 3, 20, 20, requires_grad=True)
    config = AugmentConfig(crop_scale=(0.1, 0.1))
    augment(images, config, size=12, count=3, generator=torch.Generator().manual_seed(0)).sum().backward()
    assert images.grad is not None and (images.grad.abs().sum(dim=(1, 2, 3)) > 0).all()


@pytest.mark.parametrize("kwargs", [dict(crop_scale=(0.0, 0.5)), dict(crop_scale=(0.6, 0.5)),
                                    dict(perspective_p=1.5), dict(distortion_scale=-0.1)])
def test_bad_configs_are_refused(kwargs):
    with pytest.raises(ValueError):
        AugmentConfig(**kwargs)
