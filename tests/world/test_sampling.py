"""Training data: on-the-fly batches and the cached tensor dataset."""

from __future__ import annotations

import torch

from backend.world import CATEGORIES, COLOUR_NAMES, PATTERNS, SamplerConfig, WorldTensors, build_tensor_dataset, sample_batch
from backend.world.captions import contains_phrase


def test_sample_batch_images_labels_and_captions_agree():
    config = SamplerConfig(views_per_shape=2)
    batch = sample_batch(torch.Generator().manual_seed(0), 10, 64, kinds=("render", "sketch", "photo"), config=config)
    assert batch.images.shape == (10, 64, 64, 3) and batch.images.dtype == torch.float32
    assert 0.0 <= float(batch.images.min()) and float(batch.images.max()) <= 1.0
    assert len(batch.captions) == len(batch.kinds) == len(batch.seeds) == 10
    assert set(batch.kinds) <= {"render", "sketch", "photo"}
    for i, caption in enumerate(batch.captions):
        assert contains_phrase(caption, CATEGORIES[int(batch.category[i])])
        for k, colour in enumerate(COLOUR_NAMES):
            if contains_phrase(caption, colour):
                assert k == int(batch.colour[i])
    assert int(batch.pattern.max()) < len(PATTERNS)
    for i, kind in enumerate(batch.kinds):
        if kind == "sketch":
            image = batch.images[i]
            assert torch.equal(image[..., 0], image[..., 2])  # grey


def test_sample_batch_is_deterministic_per_generator():
    a = sample_batch(torch.Generator().manual_seed(3), 4, 32)
    b = sample_batch(torch.Generator().manual_seed(3), 4, 32)
    assert torch.equal(a.images, b.images) and a.captions == b.captions and a.seeds == b.seeds


def test_tensor_dataset_builds_saves_and_loads(tmp_path):
    data = build_tensor_dataset(8, views=1, size=32, seed=2)
    assert data.images["render"].shape == (8, 1, 32, 32, 3) and data.images["render"].dtype == torch.uint8
    assert set(data.images) == {"render", "sketch"}
    assert sorted(int(c) for c in data.category) == list(range(8))  # round-robin: one of each
    data.save(tmp_path / "world.pt")
    back = WorldTensors.load(tmp_path / "world.pt")
    assert torch.equal(back.images["sketch"], data.images["sketch"]) and back.captions == data.captions
    assert back.split == data.split
