"""The generator end to end on a tiny library: read, train (both stages, resumable), save, load with checks, and
generate samples from text (coarse-to-fine decoding, refinement plumbing, styled output)."""

import json
import time

import numpy as np
import pytest
import torch
import trimesh

from backend.errors import InvalidInputError, JobCancelled
from backend.generate.decode import DecodeConfig, decode_grid, decode_grid_coarse_to_fine
from backend.generate.flow import FlowConfig
from backend.generate.generate import (GeneratedShape, GenerateConfig, generate, prompt_condition, rank_shapes,
                                       split_prompt, stylize_shapes)
from backend.generate.generator import load_generator
from backend.generate.library import read_library
from backend.generate.refine import RefineConfig, refine_latent
from backend.generate.occupancy import OccupancyAutoencoderConfig, voxel_iou
from backend.generate.train_autoencoder import AutoencoderTrainConfig, CHECKPOINT_KIND as AE_KIND
from backend.generate.train_flow import FlowTrainConfig
from backend.generate.train_generator import GeneratorTrainConfig, parts_dir, train_generator
from backend.geometry.glb import export_glb
from backend.models.clip import load_clip
from backend.progress import CancelToken
from backend.world.shape import make_shape

CATEGORIES = ("chair", "table", "lamp")


def tiny_config(ae_steps: int = 60, flow_steps: int = 60) -> GeneratorTrainConfig:
    return GeneratorTrainConfig(
        autoencoder=OccupancyAutoencoderConfig(latent_dim=16, voxel_resolution=16, encoder_channels=4,
                                               decoder_hidden=32, decoder_blocks=2),
        autoencoder_training=AutoencoderTrainConfig(steps=ae_steps, batch_size=6, points_per_shape=256),
        flow=FlowConfig(coupling_layers=2, hidden=32, hidden_layers=1),
        flow_training=FlowTrainConfig(steps=flow_steps, batch_size=6, learning_rate=1e-3), views=2)


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    root = tmp_path_factory.mktemp("library")
    for category in CATEGORIES:
        (root / category).mkdir()
        for seed in range(2):
            export_glb(make_shape(seed, category).mesh, root / category / f"{category}_{seed}.glb")
    return root


@pytest.fixture(scope="module")
def clip():
    torch.set_num_threads(1)
    return load_clip("tiny")


@pytest.fixture(scope="module")
def trained(library, clip, tmp_path_factory):
    out = tmp_path_factory.mktemp("gen") / "generator.pt"
    stages = []
    start = time.perf_counter()
    report = train_generator(library, out, clip, tiny_config(),
                             progress=lambda step, total, stage="", **m: stages.append(stage))
    print(f"\ntrained the tiny generator in {time.perf_counter() - start:.1f} s")
    return out, report, stages


def test_the_library_is_read_with_categories_and_a_stable_fingerprint(library, tmp_path):
    first = read_library(library, 16)
    assert first.relpaths[0] == "chair/chair_0.glb" and len(first.relpaths) == 6
    assert first.category_counts() == {"chair": 2, "lamp": 2, "table": 2}
    assert first.voxels.shape == (6, 16, 16, 16) and first.voxels.any(axis=(1, 2, 3)).all()
    assert read_library(library, 16).fingerprint == first.fingerprint
    (tmp_path / "a").mkdir()
    for name in ("x.glb", "y.glb"):
        (tmp_path / "a" / name).write_bytes((library / "chair" / "chair_0.glb").read_bytes())
    (tmp_path / "a" / "broken.obj").write_text("v 0 0 0\nf 1 2 3\n")
    other = read_library(tmp_path, 16)
    assert other.fingerprint != first.fingerprint and len(other.relpaths) == 2
    assert other.skipped and other.skipped[0].startswith("a/broken.obj: ")


def test_a_library_with_fewer_than_two_shapes_is_refused(tmp_path, library):
    with pytest.raises(InvalidInputError, match="not a folder"):
        read_library(tmp_path / "missing")
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "a.glb").write_bytes((library / "chair" / "chair_0.glb").read_bytes())
    with pytest.raises(InvalidInputError, match="at least 2"):
        read_library(tmp_path / "one")


def test_training_writes_one_generator_with_its_clip_and_library(trained, library, clip):
    out, report, stages = trained
    assert report.shapes == 6 and report.categories == {"chair": 2, "lamp": 2, "table": 2}
    assert [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s] == ["library", "autoencoder", "views", "flow"]
    assert not parts_dir(out).exists()
    generator = load_generator(out)
    assert generator.clip_spec == clip.spec and generator.condition_dim == clip.embed_dim
    assert generator.library["fingerprint"] == read_library(library, 16).fingerprint
    assert generator.library["categories"] == {"chair": 2, "lamp": 2, "table": 2}
    load_generator(out, library_fingerprint=generator.library["fingerprint"])
    with pytest.raises(InvalidInputError, match="another library"):
        load_generator(out, library_fingerprint="0" * 64)


def test_a_mismatched_or_wrong_checkpoint_is_a_clear_error(trained, tmp_path):
    out, _, _ = trained
    generator = load_generator(out)
    with pytest.raises(InvalidInputError, match="trained with the CLIP 'tiny', not 'tiny-rn'"):
        generator.check_clip(load_clip("tiny-rn"))
    with pytest.raises(InvalidInputError, match="no generator checkpoint"):
        load_generator(tmp_path / "none.pt")
    torch.save({"kind": AE_KIND}, tmp_path / "ae.pt")
    with pytest.raises(InvalidInputError, match=f"not a generator checkpoint \\(it is a {AE_KIND} file\\)"):
        load_generator(tmp_path / "ae.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(InvalidInputError, match="cannot be read"):
        load_generator(tmp_path / "junk.pt")


def test_an_interrupted_training_resumes_from_its_parts(library, clip, tmp_path):
    out = tmp_path / "g.pt"
    token = CancelToken()

    def cancel_in_flow(step, total, stage="", **m):
        if stage == "flow" and step == 5:
            token.cancel()

    config = tiny_config(ae_steps=20, flow_steps=30)
    config.flow_training.checkpoint_every = 5
    with pytest.raises(JobCancelled):
        train_generator(library, out, clip, config, progress=cancel_in_flow, cancel=token)
    assert not out.exists() and {p.name for p in parts_dir(out).iterdir()} >= {"autoencoder.pt", "views.pt", "flow.pt"}
    flow_steps = []
    config = tiny_config(ae_steps=20, flow_steps=30)
    report = train_generator(library, out, clip, config, resume=True,
                             progress=lambda step, total, stage="", **m: flow_steps.append(step) if stage == "flow" else None)
    assert report.resumed == ["autoencoder", "views", "flow"]
    assert flow_steps[0] == 6 and flow_steps[-1] == 30  # continued after the 5 steps it had saved
    assert out.is_file() and not parts_dir(out).exists()


def test_resuming_on_another_library_is_refused(library, clip, tmp_path):
    out = tmp_path / "g.pt"
    parts_dir(out).mkdir()
    (parts_dir(out) / "library.json").write_text(json.dumps({"fingerprint": "x", "clip": clip.spec}))
    with pytest.raises(InvalidInputError, match="another library or CLIP"):
        train_generator(library, out, clip, tiny_config(ae_steps=1, flow_steps=1), resume=True)


def test_epochs_set_both_stages_steps():
    config = tiny_config().with_epochs(3, 10)
    assert config.autoencoder_training.steps == 5 and config.flow_training.steps == 5  # 3 * 10 / 6
    with pytest.raises(InvalidInputError):
        tiny_config().with_epochs(0, 10)


class TwoBlobs(torch.nn.Module):
    """An occupancy field with a known surface: two balls (radius latent[0] and 0.2), logits 10 per unit."""

    def decode(self, points, latent):
        a = latent[:, :1, None] - (points - torch.tensor([-0.3, 0.0, 0.0])).norm(dim=-1, keepdim=True)
        b = 0.2 - (points - torch.tensor([0.5, 0.2, 0.0])).norm(dim=-1, keepdim=True)
        return 10.0 * torch.maximum(a, b)[..., 0]


def test_coarse_to_fine_decoding_matches_the_dense_grid_with_fewer_points():
    model, latent = TwoBlobs(), torch.tensor([0.45])
    dense = decode_grid(model, latent, 64)
    fine, evaluated = decode_grid_coarse_to_fine(model, latent, DecodeConfig(resolution=64, coarse_resolution=16))
    assert evaluated < 0.25 * 64**3
    near = np.abs(dense) < 1.0  # within 0.1 of the surface: evaluated exactly
    assert np.allclose(fine[near], dense[near], atol=1e-5)
    assert ((fine > 0) == (dense > 0)).all()
    same, count = decode_grid_coarse_to_fine(model, latent, DecodeConfig(resolution=64, coarse_resolution=0))
    assert count == 64**3 and np.allclose(same, dense)


def test_generate_draws_watertight_samples_for_a_prompt(trained, clip):
    generator = load_generator(trained[0])
    calls = []
    config = GenerateConfig(samples=3, decode=DecodeConfig(resolution=32, threshold=0.3), seed=1)
    shapes = generate(generator, clip, prompt_condition(clip, "a chair"), config,
                      progress=lambda step, total, stage="", **m: calls.append((stage, step, total)))
    assert len(shapes) == 3 and calls[-1] == ("sample", 3, 3)
    for shape in shapes:
        mesh = trimesh.Trimesh(shape.mesh.vertices, shape.mesh.faces, process=False)
        assert mesh.is_watertight and mesh.volume > 0 and shape.clip_score_before == shape.clip_score_after
        assert shape.cleanup == shape.mesh.metadata["cleanup"] and shape.cleanup["smooth_iterations"] == 10
    assert not np.allclose(shapes[0].latent, shapes[1].latent)
    # Best first by the held-out-view CLIP score; every draw once, ranks 0..N-1, meshes named by rank.
    scores = [shape.clip_score_after for shape in shapes]
    print(f"\nranked scores {np.round(scores, 4).tolist()}, draws {[shape.sample for shape in shapes]}")
    assert scores == sorted(scores, reverse=True) and len(set(scores)) > 1
    assert sorted(shape.sample for shape in shapes) == [0, 1, 2] and [shape.rank for shape in shapes] == [0, 1, 2]
    assert [shape.mesh.name for shape in shapes] == ["generated_0", "generated_1", "generated_2"]
    again = generate(generator, clip, prompt_condition(clip, "a chair"), config)
    assert np.allclose(again[0].mesh.vertices, shapes[0].mesh.vertices)  # seeded
    assert [shape.sample for shape in again] == [shape.sample for shape in shapes]


def test_refinement_reports_scores_and_changes_the_latent(trained, clip):
    generator = load_generator(trained[0])
    config = GenerateConfig(samples=1, refine_steps=2, decode=DecodeConfig(resolution=32, threshold=0.3),
                            refine=RefineConfig(select_views=0))  # always keep the refined latent
    shape = generate(generator, clip, prompt_condition(clip, "a lamp"), config)[0]
    unrefined = generate(generator, clip, prompt_condition(clip, "a lamp"),
                         GenerateConfig(samples=1, decode=DecodeConfig(resolution=32, threshold=0.3)))[0]
    assert np.isfinite([shape.clip_score_before, shape.clip_score_after]).all()
    assert shape.clip_score_before == pytest.approx(unrefined.clip_score_before, abs=1e-5)
    assert not torch.allclose(shape.latent, unrefined.latent)


def test_refinement_keeps_the_start_when_fresh_views_prefer_it(trained, clip):
    generator = load_generator(trained[0])
    condition = prompt_condition(clip, "a lamp")
    start = generator.flow.sample(condition, 1, torch.Generator().manual_seed(0))[0]
    results = [refine_latent(generator.autoencoder, start, condition, clip,
                             RefineConfig(steps=2, threshold=0.3, seed=seed, learning_rate=0.05)) for seed in range(3)]
    for result in results:
        if result.kept_start:
            assert torch.equal(result.latent, start) and result.score_after == pytest.approx(result.score_before)
        elif not result.stopped_early:
            assert not torch.equal(result.latent, start)


def test_an_empty_threshold_suggests_a_lower_one(trained, clip):
    generator = load_generator(trained[0])
    config = GenerateConfig(decode=DecodeConfig(resolution=32, threshold=0.999999))
    with pytest.raises(InvalidInputError, match="empty") as info:
        generate(generator, clip, prompt_condition(clip, "a table"), config)
    assert "lower the threshold" in info.value.hint


def test_an_empty_prompt_is_refused(clip):
    with pytest.raises(InvalidInputError, match="empty"):
        prompt_condition(clip, "   ")


def test_the_prompt_splits_into_shape_and_style():
    assert split_prompt("a chair made of oak") == ("a chair", "a chair made of oak")
    assert split_prompt("A lamp in the style of art deco ") == ("A lamp", "A lamp in the style of art deco")
    assert split_prompt("a round table") == ("a round table", None)
    assert split_prompt("made of oak") == ("made of oak", None)


def test_styled_generation_colours_each_sample(trained, clip):
    generator = load_generator(trained[0])
    shapes = generate(generator, clip, prompt_condition(clip, "a chair"),
                      GenerateConfig(samples=2, decode=DecodeConfig(resolution=32, threshold=0.3)))
    styled = stylize_shapes(shapes, "a chair made of oak", clip, steps=2)
    assert len(styled) == 2
    for shape, result in zip(shapes, styled):
        assert result.colors.shape == (shape.mesh.num_vertices, 3) and result.steps == 2


def test_rank_shapes_orders_best_first_ties_by_draw_and_nan_last():
    def shape(sample, score):
        return GeneratedShape(mesh=make_shape(0, "chair").mesh, latent=torch.zeros(1), clip_score_before=score,
                              clip_score_after=score, seconds=0.0, sample=sample)

    ranked = rank_shapes([shape(0, 0.1), shape(1, float("nan")), shape(2, 0.3), shape(3, 0.1)], "lamp")
    assert [s.sample for s in ranked] == [2, 0, 3, 1] and [s.rank for s in ranked] == [0, 1, 2, 3]
    assert [s.mesh.name for s in ranked] == ["lamp_0", "lamp_1", "lamp_2", "lamp_3"]
    assert ranked[0].clip_score == 0.3
