"""The occupancy autoencoder: it memorises a few world shapes, checkpoints load weights-only, and the
decoded mesh is closed and exportable."""

import time

import numpy as np
import pytest
import torch
import trimesh

from backend.errors import InvalidInputError, JobCancelled
from backend.generate.decode import DecodeConfig, decode_grid, decode_latent, logits_to_mesh
from backend.generate.occupancy import (
    OccupancyAutoencoder,
    OccupancyAutoencoderConfig,
    OccupancySampler,
    occupancy_at,
    voxel_iou,
)
from backend.generate.train_autoencoder import (
    AutoencoderTrainConfig,
    load_autoencoder,
    reconstruction_iou,
    train_autoencoder,
    voxelize_meshes,
)
from backend.geometry.glb import export_glb, read_glb
from backend.geometry.voxelize import grid_centres
from backend.progress import CancelToken
from backend.world.shape import make_shape

SEEDS = range(4)
"""Four world shapes (bed, chair, table, shelf): memorising them takes ~15 s on one CPU thread."""

TINY = OccupancyAutoencoderConfig(latent_dim=32, encoder_channels=8, decoder_hidden=128, decoder_blocks=3)
"""The production model shrunk (latent 128 -> 32, channels 32 -> 8, width 256 -> 128, 5 -> 3 blocks)."""


@pytest.fixture(scope="module")
def voxels():
    return voxelize_meshes([make_shape(seed).mesh for seed in SEEDS], 32)


@pytest.fixture(scope="module")
def trained(voxels, tmp_path_factory):
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("ae") / "autoencoder.pt"
    calls = []
    start = time.perf_counter()
    model, losses = train_autoencoder(
        voxels, TINY, AutoencoderTrainConfig(steps=250, batch_size=4, points_per_shape=1024, seed=0),
        checkpoint_path=path, progress=lambda step, total, **m: calls.append((step, total, m["loss"])))
    print(f"\ntrained 250 steps in {time.perf_counter() - start:.1f} s")
    return model, losses, calls, path


def test_reconstruction_iou_beats_baselines(trained, voxels):
    model, losses, calls, _ = trained
    ious = reconstruction_iou(model, voxels)
    empty = [voxel_iou(np.zeros_like(grid), grid) for grid in voxels]
    mean_grid = voxels.mean(axis=0) >= 0.5
    mean = [voxel_iou(mean_grid, grid) for grid in voxels]
    print(f"\nvoxel IoU at 32^3: autoencoder {np.mean(ious):.3f} {np.round(ious, 3).tolist()}, "
          f"all-empty {np.mean(empty):.3f}, mean-occupancy {np.mean(mean):.3f}")
    assert np.mean(ious) >= 0.7
    assert min(ious) > max(mean) and min(ious) > 0.5
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:20])
    assert [c[0] for c in calls] == list(range(1, 251)) and all(c[1] == 250 for c in calls)


def test_checkpoint_loads_weights_only_and_matches(trained, voxels):
    model, _, _, path = trained
    state = torch.load(path, weights_only=True)
    assert state["step"] == 250 and state["model_config"]["latent_dim"] == 32
    loaded = load_autoencoder(path)
    grid = torch.from_numpy(voxels[:2])
    points = torch.rand(2, 64, 3) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded(grid, points), model(grid, points))
    with pytest.raises(InvalidInputError, match="not an occupancy autoencoder"):
        bad = path.with_name("bad.pt")
        torch.save({"kind": "other"}, bad)
        load_autoencoder(bad)


def test_decoded_mesh_is_watertight_and_exports(trained, voxels, tmp_path):
    model, _, _, _ = trained
    with torch.no_grad():
        latent = model.encode(torch.from_numpy(voxels[1:2]))[0]
    mesh = decode_latent(model, latent, DecodeConfig(resolution=32))
    assert mesh.num_faces > 0 and mesh.metadata["normals"].shape == mesh.vertices.shape
    assert np.abs(mesh.vertices).max() <= 1.0
    tri = trimesh.Trimesh(mesh.vertices, mesh.faces)
    assert tri.is_watertight and tri.is_winding_consistent and tri.volume > 0
    data = export_glb(mesh, tmp_path / "shape.glb")
    document, _ = read_glb(data)
    assert (tmp_path / "shape.glb").stat().st_size == len(data) and document["meshes"]


def test_shape_touching_the_cube_still_closes():
    logits = 10.0 * (0.99 - np.linalg.norm(grid_centres(24), axis=-1))
    logits[:, -1, :] = 10.0  # a full slab on the top face of the cube
    mesh = logits_to_mesh(logits, DecodeConfig(resolution=24))
    tri = trimesh.Trimesh(mesh.vertices, mesh.faces)
    assert tri.is_watertight and tri.volume > 0


def test_small_floaters_are_dropped():
    centres = grid_centres(32)
    logits = 10.0 * (0.5 - np.linalg.norm(centres, axis=-1))
    logits = np.maximum(logits, 10.0 * (0.08 - np.linalg.norm(centres - [0.8, 0.8, 0.8], axis=-1)))
    kept = logits_to_mesh(logits, DecodeConfig(resolution=32))
    both = logits_to_mesh(logits, DecodeConfig(resolution=32, min_piece_fraction=0.0, keep_detached=True))
    assert len(trimesh.Trimesh(kept.vertices, kept.faces).split(only_watertight=False)) == 1
    assert len(trimesh.Trimesh(both.vertices, both.faces).split(only_watertight=False)) == 2


def test_empty_decode_says_lower_the_threshold():
    with pytest.raises(InvalidInputError, match="empty") as info:
        logits_to_mesh(np.full((8, 8, 8), -3.0, np.float32), DecodeConfig(resolution=8, threshold=0.5))
    assert "lower the threshold" in info.value.hint
    # The same grid at a threshold under its occupancy (sigmoid(-3) ~ 0.047) does decode.
    assert logits_to_mesh(np.full((8, 8, 8), -3.0, np.float32), DecodeConfig(resolution=8, threshold=0.04)).num_faces


def test_sampler_points_and_labels(voxels):
    sampler = OccupancySampler(voxels[0], near_fraction=0.5)
    points, labels = sampler.sample(4000, np.random.default_rng(0))
    assert points.shape == (4000, 3) and points.dtype == np.float32 and labels.shape == (4000,)
    np.testing.assert_array_equal(labels.astype(bool), occupancy_at(voxels[0], points))
    # Near-surface sampling makes the inside far more common than its volume share.
    assert 0.15 < labels.mean() and labels[2000:].mean() < 0.5 * labels[:2000].mean()


def test_cancel_and_bad_inputs(voxels):
    token = CancelToken()
    token.cancel()
    with pytest.raises(JobCancelled):
        train_autoencoder(voxels, TINY, AutoencoderTrainConfig(steps=5), cancel=token)
    with pytest.raises(InvalidInputError, match="32, 32, 32"):
        train_autoencoder(voxels[:, :16, :16, :16], TINY, AutoencoderTrainConfig(steps=1))
    with pytest.raises(ValueError, match="power of two"):
        OccupancyAutoencoderConfig(voxel_resolution=24)
    with pytest.raises(ValueError, match="voxels must be"):
        OccupancyAutoencoder(TINY).encode(torch.zeros(1, 16, 16, 16))
    with pytest.raises(ValueError, match="threshold"):
        DecodeConfig(threshold=1.0)


def test_decode_grid_shape_and_chunking():
    torch.manual_seed(0)
    model = OccupancyAutoencoder(TINY).eval()
    latent = torch.randn(32)
    whole = decode_grid(model, latent, 8)
    chunked = decode_grid(model, latent, 8, chunk_points=37)
    assert whole.shape == (8, 8, 8) and whole.dtype == np.float32
    np.testing.assert_allclose(whole, chunked, atol=1e-5)
