"""The domain CLIP: the shipped checkpoint loads like real weights, knows held-out world shapes, trains reproducibly."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.errors import WeightsMissingError
from backend.models import CLIP_RESOLVERS, load_clip, release_all
from backend.models import domain, domain_train
from backend.models.clip import CHECKPOINT_FORMAT, TinyClipConfig
from backend.models.domain import DOMAIN_WEIGHTS
from backend.models.domain_train import (agreement, config_from_checkpoint, contrastive_loss, render_training_set,
                                         sample_caption, train_domain_clip)
from backend.models.domain_world import DomainClipConfig, heldout_plan, render_heldout, training_plan, zero_shot_accuracy
from backend.models.training import augment
from backend.world.appearance import PATTERN_ADJECTIVES
from backend.world.captions import contains_phrase
from backend.world.shape import make_shape

pytestmark = pytest.mark.usefixtures("fresh_clip_cache")

MICRO = DomainClipConfig(
    model=TinyClipConfig(embed_dim=32, vision_layers=(1, 1, 1, 1), vision_width=8, vision_head_width=32,
                         text_width=32, text_heads=2, text_layers=1, context_length=32),
    shapes=5, renders=2, sketches=1, steps=2, batch=8, warmup=1, threads=1, workers=1,
)
"""The production training recipe shrunk to seconds: 5 shapes, a width-8 ResNet, 2 steps of 8 images."""


@pytest.fixture(scope="module")
def domain_clip():
    return load_clip("domain")


@pytest.fixture(scope="module")
def heldout():
    """32 held-out shapes (never trained on), one render each, from the plan recorded in the checkpoint."""
    return render_heldout(heldout_plan(32, config_from_checkpoint()), ("render",))


def test_load_clip_domain_reads_the_shipped_checkpoint(domain_clip):
    assert CLIP_RESOLVERS["domain"] is domain._domain_resolver
    assert DOMAIN_WEIGHTS.is_file() and DOMAIN_WEIGHTS.stat().st_size <= 10 * 2**20
    assert (domain_clip.spec, domain_clip.name, domain_clip.tower) == ("domain", "domain", "resnet")
    assert domain_clip.image_size == 64
    assert domain_clip.model_cfg == DomainClipConfig().model.model_cfg()
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    image_emb = domain_clip.encode_image(images)
    text_emb = domain_clip.encode_text(["a photo of a chair", "a red object"])
    assert image_emb.shape == (3, domain_clip.embed_dim) and text_emb.shape == (2, domain_clip.embed_dim)
    assert torch.allclose(image_emb.norm(dim=-1), torch.ones(3), atol=1e-5)
    # Larger inputs go through the same preprocessing as real CLIPs (resize, centre crop, normalise).
    assert domain_clip.encode_image(torch.rand(1, 3, 96, 128)).shape == (1, domain_clip.embed_dim)


def test_checkpoint_is_an_atelier_checkpoint_that_records_its_name_and_recipe(domain_clip):
    ckpt = torch.load(DOMAIN_WEIGHTS, map_location="cpu", weights_only=True)
    assert ckpt["format"] == CHECKPOINT_FORMAT and ckpt["spec_name"] == "domain"
    assert ckpt["image_size"] == 64 and len(ckpt["mean"]) == len(ckpt["std"]) == 3
    assert all(v.dtype == torch.float16 for v in ckpt["state_dict"].values() if v.is_floating_point())
    assert config_from_checkpoint() == DomainClipConfig(), "stale weights: run python build.py domain-clip"
    # Loading the file by path takes the generic checkpoint path and gives the same model.
    by_path = load_clip(str(DOMAIN_WEIGHTS))
    assert by_path.name == "domain" and by_path.spec == str(DOMAIN_WEIGHTS.resolve())
    texts = ["a photo of a lamp"]
    assert torch.equal(by_path.encode_text(texts), domain_clip.encode_text(texts))


def test_zero_shot_on_held_out_shapes_beats_chance_clearly(domain_clip, heldout):
    plan = heldout_plan(32, config_from_checkpoint())
    train = {p for p, s in zip(*training_plan(config_from_checkpoint())) if s == "train"}
    assert not train & set(plan)
    # Chance is 1/8; benchmarks/world_clip_bench.py measures ~0.98 on both over all 600 held-out shapes
    # (0.97 and 1.0 on these 32, 4 per category).
    for task in ("category", "colour"):
        accuracy = zero_shot_accuracy(domain_clip, heldout, task)
        assert accuracy >= 0.6, f"zero-shot {task} accuracy {accuracy:.3f} on 32 held-out shapes (chance 0.125)"


def test_missing_domain_file_says_how_to_build_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    release_all()
    monkeypatch.setattr(domain, "DOMAIN_WEIGHTS", tmp_path / "domain_clip.pt")
    with pytest.raises(WeightsMissingError, match="missing") as err:
        load_clip("domain")
    assert "python build.py domain-clip" in err.value.hint


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong_weights"])
def test_damaged_domain_file_says_how_to_rebuild_it(damage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    release_all()
    path = tmp_path / "domain_clip.pt"
    if damage == "garbage":
        path.write_bytes(b"not a checkpoint at all")
    elif damage == "truncated":
        data = DOMAIN_WEIGHTS.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        ckpt = torch.load(DOMAIN_WEIGHTS, map_location="cpu", weights_only=True)
        ckpt["state_dict"].pop("logit_scale")
        torch.save(ckpt, path)
    monkeypatch.setattr(domain, "DOMAIN_WEIGHTS", path)
    with pytest.raises(WeightsMissingError, match="damaged") as err:
        load_clip("domain")
    assert "python build.py domain-clip" in err.value.hint
    release_all()


def test_training_is_deterministic_and_learns_from_random_init():
    data = render_training_set(MICRO, cache=False)
    assert len(data) == 5 and data.renders.shape == (5, 2, 64, 64, 3) and data.sketches.shape == (5, 1, 64, 64, 3)
    losses: list[list[float]] = [[], []]
    runs = [train_domain_clip(MICRO, data, progress=lambda s, t, **m: losses[i].append(m["loss"])) for i in range(2)]
    first, second = (run.model.state_dict() for run in runs)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert losses[0] == losses[1] and len(losses[0]) == 2 and all(np.isfinite(losses[0]))
    untrained = domain_train.clip_from_config(MICRO.model.model_cfg(), name="x", seed=MICRO.model.seed).model.state_dict()
    assert not torch.equal(first["visual.conv1.weight"], untrained["visual.conv1.weight"])
    other = train_domain_clip(replace(MICRO, seed=1), data).model.state_dict()
    assert not torch.equal(first["visual.conv1.weight"], other["visual.conv1.weight"])
    assert runs[0].name == "domain" and not runs[0].model.training


def test_training_captions_state_only_true_labels():
    rng = np.random.default_rng(0)
    for seed, category in heldout_plan(16):
        shape = make_shape(seed, category)
        for kind in ("render", "sketch"):
            for _ in range(8):
                caption, facts = sample_caption(shape.category, shape.colour, shape.pattern, shape.attributes, kind,
                                                rng, DomainClipConfig())
                if facts[0] >= 0:
                    assert contains_phrase(caption, shape.category)
                if facts[1] >= 0:
                    assert kind == "render" and contains_phrase(caption, shape.colour)
                if facts[2] >= 0:
                    assert kind == "render" and contains_phrase(caption, PATTERN_ADJECTIVES[shape.pattern])
                if kind == "sketch":
                    assert not contains_phrase(caption, shape.colour)


def test_label_aware_targets():
    # Image rows: [category, colour, pattern, attributes...]; captions: -1 = says nothing.
    width = 3 + len(domain_train.ATTRIBUTE_NAMES)
    red_chair = [0, 0, 0] + [0] * (width - 3)
    blue_chair_sketch = [0, -2, -2] + [0] * (width - 3)
    images = torch.tensor([red_chair, blue_chair_sketch])
    says_red = [-1, 0, -1] + [-1] * (width - 3)
    says_chair = [0, -1, -1] + [-1] * (width - 3)
    match = agreement(images, torch.tensor([says_red, says_chair]))
    assert match.tolist() == [[True, True], [False, True]]
    emb = torch.nn.functional.normalize(torch.randn(2, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
    plain = contrastive_loss(emb, emb, torch.tensor(10.0), torch.eye(2, dtype=torch.bool))
    expected = torch.nn.functional.cross_entropy(10 * emb @ emb.T, torch.arange(2))
    assert torch.allclose(plain, expected)


def test_augment_keeps_colours_and_white_paper():
    generator = torch.Generator().manual_seed(0)
    white = torch.ones(4, 3, 64, 64)
    assert torch.allclose(augment(white, generator, (0.75, 1.1), True), white)
    red = torch.zeros(4, 3, 64, 64)
    red[:, 0] = 1.0
    out = augment(red, generator, (0.75, 0.9), True)  # zoomed in: no paper shows
    assert torch.allclose(out, red, atol=1e-5)
