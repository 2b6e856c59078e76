"""ISS-style refinement: the iso-surface moves with the latent as the field says (analytic sphere, finite
differences on a real decoder), the loop runs, reports, cancels and stops cleanly, and bad settings are refused.
Quality is not claimed here: the CLIP is the random tiny one (plumbing only)."""

import numpy as np
import pytest
import torch
from torch.autograd import forward_ad

from backend.errors import InvalidInputError, JobCancelled
from backend.generate.decode import decode_grid
from backend.generate.occupancy import OccupancyAutoencoder, OccupancyAutoencoderConfig
from backend.generate.refine import (RefineConfig, clip_score, heldout_azimuths, heldout_views, iso_surface,
                                     refine_latent, training_views)
from backend.models.clip import load_clip
from backend.progress import CancelToken


class Sphere:
    """logit = k (r - |x|) with r = latent[0]: the surface is the sphere of radius r."""

    k = 10.0

    def decode(self, points, latent):
        return self.k * (latent[:, :1] - points.norm(dim=-1))


class Blob:
    """A small random OccupancyAutoencoder decoder on top of a sphere: a bumpy closed surface (radius ~0.4-0.95,
    clear of the cube's walls) that moves with every latent entry."""

    def __init__(self, seed: int):
        torch.manual_seed(seed)
        config = OccupancyAutoencoderConfig(latent_dim=8, voxel_resolution=8, encoder_channels=4, decoder_hidden=32,
                                            decoder_blocks=2, fourier_frequencies=2, encoder="dense", decoder="global")
        self.net = OccupancyAutoencoder(config).eval()
        self.latent = torch.randn(8) * 2.0
        with torch.no_grad():
            self.net.decoder.out.weight *= 5.0
            self.net.decoder.out.bias -= float(np.median(decode_grid(self.net, self.latent, 16)))

    def decode(self, points, latent):
        return self.net.decode(points, latent) + 8.0 * (0.6 - points.norm(dim=-1))


def moments(vertices, faces):
    """[4]: enclosed volume and first moment (integral of x over the solid) of a closed mesh."""
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    tets = (a * torch.linalg.cross(b, c, dim=-1)).sum(-1) / 6.0
    return torch.cat([tets.sum()[None], ((a + b + c) / 4.0 * tets[:, None]).sum(0)])


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def test_sphere_vertices_lie_on_it_and_move_along_the_normal():
    config = RefineConfig(resolution=32)
    r = torch.tensor([0.6], requires_grad=True)
    vertices, faces = iso_surface(Sphere(), r, config)
    assert faces.dtype == torch.int64 and len(faces) > 1000
    # The Newton correction puts every vertex exactly on the field's level set (marching cubes alone is ~1e-3 off).
    torch.testing.assert_close(vertices.detach().norm(dim=-1), torch.full((len(vertices),), 0.6), atol=1e-5, rtol=0)
    (slope,) = torch.autograd.grad(vertices.norm(dim=-1).mean(), r)
    assert slope.item() == pytest.approx(1.0, abs=1e-4)
    coarse, _ = iso_surface(Sphere(), r, RefineConfig(resolution=32, coarse_resolution=16))
    torch.testing.assert_close(coarse, vertices)  # coarse-to-fine finds the same surface
    # Per vertex (forward mode): dv/dr is the outward unit normal.
    with forward_ad.dual_level():
        vertices, _ = iso_surface(Sphere(), forward_ad.make_dual(torch.tensor([0.6]), torch.ones(1)), config)
        primal, tangent = forward_ad.unpack_dual(vertices)
    torch.testing.assert_close(tangent, primal / primal.norm(dim=-1, keepdim=True), atol=1e-5, rtol=0)


@pytest.mark.parametrize("seed", [0, 2])
def test_surface_derivative_matches_finite_differences_on_a_decoder(seed):
    model, config = Blob(seed), RefineConfig(resolution=32)
    z = model.latent.clone().requires_grad_(True)
    direction = torch.nn.functional.normalize(torch.randn(8, generator=torch.Generator().manual_seed(seed)), dim=0)
    stats = moments(*iso_surface(model, z, config))
    predicted = torch.stack([torch.autograd.grad(s, z, retain_graph=True)[0] @ direction for s in stats])
    eps = 0.05
    with torch.no_grad():
        measured = (moments(*iso_surface(model, model.latent + eps * direction, config))
                    - moments(*iso_surface(model, model.latent - eps * direction, config))) / (2 * eps)
    print(f"\nd(volume, first moment)/dz along d: predicted {predicted.detach().numpy().round(4)}, "
          f"measured {measured.numpy().round(4)}")
    assert abs(measured[0]) > 0.03  # the direction really changes the shape (volume ~0.9)
    assert predicted[0].item() == pytest.approx(measured[0].item(), rel=0.03)
    assert (predicted[1:] - measured[1:]).norm() <= 0.1 * measured[1:].norm() + 2e-3


def test_training_views_avoid_the_heldout_ones():
    config = RefineConfig(heldout_views=8, heldout_margin_deg=4.0)
    held, held_lights = heldout_views(config)
    again, _ = heldout_views(config)
    torch.testing.assert_close(held.eye, again.eye)  # fixed, no randomness
    cameras, lights = training_views(2000, config, torch.Generator().manual_seed(0))
    azimuth = torch.rad2deg(torch.atan2(cameras.eye[:, 0], cameras.eye[:, 2]))
    gap = (azimuth[:, None] - heldout_azimuths(config)[None]).abs().min(dim=1).values
    assert gap.min() >= 4.0 - 1e-3
    assert azimuth.min() < -95 and azimuth.max() > 95  # the rest of the range is covered
    assert lights.shape == (2000, 3) and held_lights.shape == (8, 3) and len(held) == 8


@pytest.fixture(scope="module")
def tiny_clip():
    return load_clip("tiny")


def small_config(**overrides) -> RefineConfig:
    return RefineConfig(**{"steps": 3, "resolution": 20, "views_per_step": 2, "heldout_views": 4, "select_views": 0,
                           "renderer": "torch", **overrides})


def test_refine_runs_reports_and_leaves_the_model_alone(tiny_clip):
    model = Blob(0)
    text = tiny_clip.encode_text(["a photo of a chair"])[0]
    calls = []
    result = refine_latent(model, model.latent, text, tiny_clip, small_config(),
                           progress=lambda step, total, **m: calls.append((step, total, m)))
    assert [c[:2] for c in calls] == [(1, 3), (2, 3), (3, 3)]
    assert all({"clip_score", "loss", "eta_s"} <= set(c[2]) for c in calls)
    assert len(result.scores) == len(result.losses) == 3 and not result.stopped_early
    assert all(-1 <= s <= 1 for s in [*result.scores, result.score_before, result.score_after])
    assert result.latent.shape == (8,) and not result.latent.requires_grad
    assert not torch.equal(result.latent, model.latent)
    assert result.seconds > 0 and result.seconds_per_step == pytest.approx(result.seconds / 3)
    assert all(p.grad is None for p in model.net.parameters())
    held, lights = heldout_views(small_config())
    assert clip_score(model, model.latent, text, tiny_clip, held, lights, small_config()) == \
        pytest.approx(result.score_before, abs=1e-5)


def test_cancel_raises(tiny_clip):
    model, token = Blob(0), CancelToken()
    text = tiny_clip.encode_text(["a photo of a vase"])[0]
    with pytest.raises(JobCancelled):
        refine_latent(model, model.latent, text, tiny_clip, small_config(),
                      progress=lambda step, total, **m: token.cancel(), cancel=token)


class Vanishing:
    """A sphere of radius 0.5 at the start latent that vanishes once the latent moves by ~0.3 either way."""

    def decode(self, points, latent):
        shift = latent[:, :1]
        return 10.0 * (0.5 - points.norm(dim=-1)) - 100.0 * shift ** 2 + 0.01 * shift


def test_vanishing_surface_stops_and_keeps_the_last_good_latent(tiny_clip):
    text = tiny_clip.encode_text(["a photo of a mug"])[0]
    result = refine_latent(Vanishing(), torch.zeros(1), text, tiny_clip, small_config(learning_rate=1.0))
    assert "vanished at step 2" in result.stopped_early and len(result.scores) == 1
    assert torch.equal(result.latent, torch.zeros(1))
    with pytest.raises(InvalidInputError, match="no surface") as info:
        refine_latent(Vanishing(), torch.ones(1), text, tiny_clip, small_config())
    assert "threshold" in info.value.hint


@pytest.mark.parametrize("field, value", [
    ("steps", 0), ("steps", 2.5), ("learning_rate", 0.0), ("prior_weight", -1.0), ("resolution", 4), ("coarse_resolution", 1),
    ("threshold", 1.0), ("views_per_step", 0), ("heldout_views", 0), ("image_size", 8),
    ("azimuth_range", (10.0, -10.0)), ("heldout_margin_deg", 20.0), ("fov_deg", 0.0), ("seed", -1),
    ("elevation_range", (0.0, 95.0)), ("renderer", "opengl"),
])
def test_bad_config_values_are_refused(field, value):
    with pytest.raises(ValueError, match=field.split("_")[0]):
        RefineConfig(**{field: value})


def test_bad_text_embedding_is_refused(tiny_clip):
    with pytest.raises(InvalidInputError, match="text embedding"):
        refine_latent(Sphere(), torch.tensor([0.5]), torch.zeros(64), tiny_clip, small_config())
