"""Training TASK-former on a tiny world dataset: steps, checkpoints, cancel, resume equals uninterrupted, init."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from taskformer_helpers import one_thread, tiny_world, module_home  # noqa: F401  (fixtures)

from backend.errors import InvalidInputError, JobCancelled
from backend.models import load_clip
from backend.progress import CancelToken
import backend.retrieve.train as train_module
from backend.retrieve.data import TripletDataset, hold_out, load_split
from backend.retrieve.taskformer import load_taskformer, read_checkpoint
from backend.retrieve.train import TrainConfig, batch_shapes, lr_factor, make_batch, resume_config, train

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = TrainConfig(steps=4, batch=6, warmup=1, decoder_layers=1, decoder_width=32, seed=5, extra_sketches=2)
"""The CPU recipe shrunk to seconds (the lines term and stroke augmentation on, as by default)."""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_world(tmp_path_factory.mktemp("world") / "data")


@pytest.fixture(scope="module")
def train_split(world: Path):
    return load_split(world, "train")


def test_load_split_reads_the_train_shapes(world: Path, train_split):
    test = load_split(world, "test")
    assert len(train_split) == 8 and len(test) == 8  # 16 shapes: one test shape per category
    assert not set(train_split.ids) & set(test.ids)
    assert train_split.views.shape == (8, 2, 32, 32, 3) and train_split.views.dtype == torch.uint8
    assert train_split.sketches.shape == (8, 2, 32, 32, 3) and train_split.photos.shape == (8, 1, 32, 32, 3)
    assert train_split.class_names[int(train_split.categories[0])] == train_split.labels[0]["category"]
    assert len(load_split(world, "all")) == 16
    dataset = TripletDataset(train_split, load_clip("tiny").tokenizer)
    item = dataset[3]
    assert len(dataset) == 16 and item["image"].shape == (3, 32, 32) and item["sketch"].shape == (3, 32, 32)
    assert item["image"].dtype == torch.float32 and 0 <= item["image"].min() and item["image"].max() <= 1
    assert item["tokens"].shape == (77,) and item["shape"] == 1
    rest, held = hold_out(load_split(world, "all"), 0.2, seed=0)
    assert len(rest) + len(held) == 16 and not set(rest.ids) & set(held.ids)


def test_batches_hold_distinct_shapes_and_are_a_function_of_the_step(train_split):
    for step in range(5):
        shapes = batch_shapes(step, len(train_split), 6, seed=0)
        assert len(set(shapes.tolist())) == 6
    first, again = make_batch(train_split, 3, TINY), make_batch(train_split, 3, TINY)
    assert torch.equal(first["images"], again["images"]) and first["captions"] == again["captions"]
    assert first["images"].shape == (6, 3, 32, 32) and first["sketches"].shape == (6, 3, 32, 32)
    assert not torch.equal(first["images"], make_batch(train_split, 4, TINY)["images"])
    assert lr_factor(0, TINY) == pytest.approx(1.0) and lr_factor(3, TINY) < 1.0


def test_three_steps_write_a_checkpoint(tmp_path: Path, train_split):
    seen = []
    config = replace(TINY, steps=3)
    result = train(train_split, config, load_clip("tiny"), out=tmp_path / "tf.pt",
                   progress=lambda step, total, **m: seen.append((step, total, set(m))))
    assert [s[:2] for s in seen] == [(1, 3), (2, 3), (3, 3)]
    assert {"loss", "embedding", "classification", "caption", "lr"} <= seen[0][2]
    assert len(result.losses) == 3 and all(torch.isfinite(torch.tensor(r["loss"])) for r in result.losses)
    assert result.trainable < result.parameters and result.start_step == 0
    ckpt = read_checkpoint(tmp_path / "tf.pt")
    assert ckpt["step"] == 3 and ckpt["train"]["steps"] == 3 and len(ckpt["extra"]["history"]) == 3
    model = load_taskformer(tmp_path / "tf.pt")
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model.encode_image(images), result.model.encode_image(images), atol=1e-6)


def test_hard_negative_training_runs(train_split):
    result = train(train_split, replace(TINY, steps=2, hard_negative=True, beta=2.0, tau_plus=0.2), load_clip("tiny"))
    assert all(torch.isfinite(torch.tensor(r["embedding"])) for r in result.losses)


def test_cancelled_then_resumed_equals_uninterrupted(tmp_path: Path, train_split):
    clip = load_clip("tiny-rn")  # BatchNorm towers: they must not drift across the interruption
    whole = train(train_split, TINY, clip)

    token = CancelToken()

    def cancel_after_two(step: int, total: int, **metrics: float) -> None:
        if step == 2:
            token.cancel()

    ckpt = tmp_path / "run.pt"
    with pytest.raises(JobCancelled):
        train(train_split, TINY, clip, out=ckpt, progress=cancel_after_two, cancel=token)
    assert read_checkpoint(ckpt)["step"] == 2
    resumed = train(train_split, resume_config(ckpt), resume=ckpt, out=ckpt)
    assert resumed.start_step == 2 and resumed.steps == 4
    assert [r["loss"] for r in resumed.losses] == [r["loss"] for r in whole.losses]
    want, got = whole.model.state_dict(), resumed.model.state_dict()
    assert want.keys() == got.keys()
    for key in want:
        assert torch.equal(want[key], got[key]), key
    assert read_checkpoint(ckpt)["step"] == 4


def test_periodic_checkpoints_and_growing_a_finished_run(tmp_path: Path, train_split, monkeypatch):
    ckpt = tmp_path / "run.pt"
    steps = []
    original = train_module.save_checkpoint

    def spy(path, model, optimizer, step, *args, **kwargs):
        steps.append(step)
        return original(path, model, optimizer, step, *args, **kwargs)

    monkeypatch.setattr(train_module, "save_checkpoint", spy)
    train(train_split, replace(TINY, checkpoint_every=2, steps=5), load_clip("tiny"), out=ckpt)
    assert steps == [2, 4, 5]
    more = train(train_split, resume_config(ckpt, steps=6), resume=ckpt)
    assert (more.start_step, more.steps, len(more.losses)) == (5, 6, 6)
    with pytest.raises(InvalidInputError, match="past --steps"):
        train(train_split, resume_config(ckpt, steps=3), resume=ckpt)


def test_resume_refuses_another_recipe(tmp_path: Path, train_split):
    ckpt = tmp_path / "run.pt"
    train(train_split, replace(TINY, steps=1), load_clip("tiny"), out=ckpt)
    with pytest.raises(InvalidInputError, match="different recipe.*lr"):
        train(train_split, replace(TINY, lr=3e-4), resume=ckpt)
    with pytest.raises(InvalidInputError, match="cannot change batch"):
        resume_config(ckpt, batch=4)


def test_init_fine_tunes_a_trained_model_as_a_new_run(tmp_path: Path, train_split):
    ckpt = tmp_path / "base.pt"
    train(train_split, replace(TINY, steps=2), load_clip("tiny"), out=ckpt)
    tuned = train(train_split, replace(TINY, steps=2, hard_negative=True), init=ckpt, out=tmp_path / "tuned.pt")
    assert tuned.start_step == 0 and len(tuned.losses) == 2
    assert read_checkpoint(tmp_path / "tuned.pt")["train"]["hard_negative"] is True


def test_train_rejects_bad_starts_and_configs(train_split, tmp_path: Path):
    with pytest.raises(ValueError, match="exactly one"):
        train(train_split, TINY)
    with pytest.raises(InvalidInputError, match="does not exist"):
        train(train_split, TINY, resume=tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="TrainConfig.steps"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="tau_plus"):
        TrainConfig(tau_plus=1.0)
    with pytest.raises(ValueError, match="train_layers"):
        TrainConfig(train_layers=-3)
    with pytest.raises(ValueError, match="lines_weight"):
        TrainConfig(lines_weight=-1.0)
    with pytest.raises(ValueError, match="extra_sketches"):
        TrainConfig(extra_sketches=-2)


def test_the_lines_term_trains_the_sketch_encoder_against_the_index_drawings(train_split):
    from backend.retrieve.sketch_domain import cached_index_lines

    lines = cached_index_lines(train_split)
    batch = make_batch(train_split, 0, TINY, index_lines=lines)
    assert batch["lines"].shape == batch["sketches"].shape and batch["lines"].dtype == torch.float32
    assert torch.equal(make_batch(train_split, 0, TINY)["sketches"], batch["sketches"])  # own generator
    result = train(train_split, TINY, load_clip("domain"), index_lines=lines)
    assert all("lines" in record and record["lines"] > 0 for record in result.losses)
    plain = train(train_split, replace(TINY, lines_weight=0.0), load_clip("domain"))
    assert all("lines" not in record for record in plain.losses)
    # The term moves the sketch tower: the two runs embed a sketch differently.
    sketch = batch["sketches"][:2]
    with torch.no_grad():
        assert not torch.allclose(result.model.encode_sketch(sketch), plain.model.encode_sketch(sketch), atol=1e-4)
    with pytest.raises(ValueError, match="index_lines must be"):
        train(train_split, TINY, load_clip("domain"), index_lines=lines[:1])
