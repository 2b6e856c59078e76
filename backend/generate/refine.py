"""ISS-style test-time refinement (Liu et al., ICLR 2023, stage 2): move a shape latent so that CLIP finds
grey renders of its decoded surface closer to a text.

ISS fine-tunes its CLIP-to-shape mapper with CLIP consistency between the text and rendered views; here the
optimised variable is the CLIP-Forge latent itself (the flow's sample), with an L2 prior that keeps it near
where it started so the shape stays one the autoencoder knows.

Gradients reach the latent through the iso-surface: marching cubes (not differentiable) gives the surface's
vertices v, then the decoder is evaluated again at v with gradients, f = logit(v; z) - level, and each vertex is
moved by one Newton step along the field's gradient g = grad_x f (held constant):

    v' = v - f g / |g|^2,    so    dv'/dz = -(df/dz) g / |g|^2

(MeshSDF, Remelli et al. 2020): where the decoder raises the logit at a vertex, the surface moves outward along
its normal by df / |g|. The value of v' is v corrected onto the decoder's exact iso-surface (marching cubes
interpolates the field linearly between grid points).

Frame: the voxel frame of `backend.generate.occupancy` ([-1, 1]^3, Y up, the unit-sphere-normalised mesh), which
is also the render frame: cameras orbit the origin at the distance that fits the unit sphere, as the world's
views of unit-sphere-normalised shapes do (`backend.world.views`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F

from backend.devices import resolve_device
from backend.errors import InvalidInputError
from backend.generate.decode import DecodeConfig, decode_grid_coarse_to_fine, logits_to_mesh
from backend.progress import CancelToken, EtaClock, ProgressFn, no_progress
from backend.render.camera import Cameras, fit_distance, orbit_cameras
from backend.render.rasterizer import RasterizerConfig
from backend.render.renderer import MeshRenderer, RenderConfig
from backend.render.shading import ShadingConfig

COARSE_BAND = 4.0
"""Coarse-to-fine grids (`RefineConfig.coarse_resolution`) refine coarse cells within this many logits of the level
(wider than `DecodeConfig.band`: refinement moves thin parts, which a narrow band drops)."""
EMPTY_HINT = "lower the threshold, or refine with fewer steps, a lower learning rate or a higher prior_weight"


@dataclass
class RefineConfig:
    """A test-time refinement run. View and light ranges default to the world's (`backend.world.views.ViewConfig`),
    which is what the domain CLIP saw."""

    steps: int = 40
    """Adam steps on the latent. With the domain CLIP and an 8-shape autoencoder (latent 32), 40 steps raised the
    held-out score toward another category's prompt in 6 of 7 pairs (mean +0.10), at ~0.4 s/step on one CPU thread."""
    learning_rate: float = 0.1
    """Adam learning rate, in units of the latent's spread (`refine_latent`'s scale): Adam's first steps move each
    entry by about this. Shipped generator, 8 category prompts, 20 steps: 0.02 raised the mean held-out score by
    0.004, 0.1 by 0.024, 0.2 by 0.024 (benchmarks/README.md)."""
    prior_weight: float = 0.01
    """Weight of ||u||^2 = ||(z - z0) / scale||^2 (sum over latent entries) in the loss: keeps the latent near its
    start, where the decoder gives plausible shapes. 0 lets CLIP alone move it."""
    resolution: int = 32
    """Cells per axis of the marching-cubes grid over [-1, 1]^3 (each step decodes resolution^3 points)."""
    coarse_resolution: int = 0
    """0: decode the dense grid each step. Else decode this coarse grid first and the fine one only near the surface
    (`DecodeConfig.coarse_resolution`, band `COARSE_BAND`). With 16 at resolution 32 on an 8-shape autoencoder: 3x
    fewer decoder points per step, and up to 13 of 32768 cells changed side (thin parts); vertices are still placed
    by the exact decoder."""
    threshold: float = 0.5
    """Occupancy probability of the surface, in (0, 1)."""
    views_per_step: int = 4
    """Random training views rendered (one CLIP batch) per step."""
    heldout_views: int = 8
    """Fixed evaluation views, never rendered while optimising: azimuths on a grid over `azimuth_range` at the
    centres of `heldout_views` equal cells, at `heldout_elevation_deg`; they give score_before / score_after."""
    heldout_margin_deg: float = 4.0
    """Training azimuths keep at least this far from every held-out azimuth (so the held-out views are disjoint
    from the training ones, not merely unlikely to coincide). Must be under half a cell of the held-out grid."""
    heldout_elevation_deg: float = 25.0
    """Elevation of the held-out views, degrees."""
    image_size: int = 0
    """Render side in pixels; 0 uses the CLIP's input size (no resampling)."""
    azimuth_range: tuple[float, float] = (-100.0, 100.0)
    """Training camera azimuth in degrees (0 looks at the front, +Z), drawn uniformly outside the held-out margins."""
    elevation_range: tuple[float, float] = (5.0, 45.0)
    """Training camera elevation in degrees above the horizon, drawn uniformly."""
    distance_scale: tuple[float, float] = (1.0, 1.2)
    """Camera distance as a multiple of the distance at which the unit sphere fills the view, drawn uniformly
    (held-out views use the middle)."""
    fov_deg: float = 40.0
    """Vertical field of view in degrees."""
    light_azimuth: tuple[float, float] = (-70.0, 70.0)
    """Point-light azimuth relative to the camera's, degrees, drawn uniformly (held-out views: the middle)."""
    light_elevation: tuple[float, float] = (20.0, 75.0)
    """Point-light elevation in degrees, drawn uniformly (held-out views: the middle)."""
    light_distance: float = 6.0
    """Point-light distance from the origin."""
    ambient: float = 0.45
    """Ambient light; the point light's diffuse share is 1 - ambient (the world's renders)."""
    albedo: float = 0.7
    """Grey level of the surface, in [0, 1], over a white background."""
    select_views: int = 8
    """After the last step, the refined and the starting latent are scored on this many fresh random training
    views (never the held-out ones) and the better one is returned, so refinement that drifted away from the text
    gives the start back. 0: always return the refined latent."""
    seed: int = 0
    """Seeds the training views and lights."""
    device: str = "cpu"
    """Torch device (`auto | cpu | cuda | mps`); the model and the CLIP must already be on it."""
    renderer: Literal["auto", "nvdiffrast", "torch"] = "auto"
    """Rasterizer implementation (see `RasterizerConfig`)."""

    def __post_init__(self) -> None:
        if isinstance(self.select_views, bool) or not isinstance(self.select_views, int) or self.select_views < 0:
            raise ValueError(f"select_views must be an integer >= 0, got {self.select_views!r}")
        for name in ("steps", "views_per_step", "heldout_views"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not self.prior_weight >= 0:
            raise ValueError(f"prior_weight must be >= 0, got {self.prior_weight}")
        if not 8 <= self.resolution <= 256:
            raise ValueError(f"resolution must be in [8, 256] cells, got {self.resolution}")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold is a probability in (0, 1), got {self.threshold}")
        if self.coarse_resolution < 0 or self.coarse_resolution == 1:
            raise ValueError(f"coarse_resolution must be 0 (dense) or >= 2, got {self.coarse_resolution}")
        if self.image_size != 0 and not 16 <= self.image_size <= 1024:
            raise ValueError(f"image_size must be 0 (the CLIP's) or in [16, 1024] pixels, got {self.image_size}")
        for name in ("azimuth_range", "elevation_range", "distance_scale", "light_azimuth", "light_elevation"):
            low, high = getattr(self, name)
            if not low <= high:
                raise ValueError(f"{name} must be (low, high) with low <= high, got {(low, high)}")
        if not self.distance_scale[0] > 0 or not self.light_distance > 0:
            raise ValueError("distance_scale and light_distance must be > 0")
        if not (-90.0 < self.elevation_range[0] and self.elevation_range[1] < 90.0
                and -90.0 < self.heldout_elevation_deg < 90.0):
            raise ValueError("elevation_range and heldout_elevation_deg must stay within (-90, 90) degrees")
        if not 0.0 < self.fov_deg < 180.0:
            raise ValueError(f"fov_deg must be in (0, 180), got {self.fov_deg}")
        cell = (self.azimuth_range[1] - self.azimuth_range[0]) / self.heldout_views
        if not 0.0 <= 2.0 * self.heldout_margin_deg < cell:
            raise ValueError(f"heldout_margin_deg must be >= 0 and under half the held-out azimuth step "
                             f"({cell / 2:g} degrees), got {self.heldout_margin_deg}")
        if not 0.0 <= self.ambient <= 1.0 or not 0.0 <= self.albedo <= 1.0:
            raise ValueError("ambient and albedo must be in [0, 1]")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.renderer not in ("auto", "nvdiffrast", "torch"):
            raise ValueError(f"renderer must be 'auto', 'nvdiffrast' or 'torch', got {self.renderer!r}")


@dataclass
class RefineResult:
    """What a refinement did. Scores are cosine similarities in [-1, 1] between the text embedding and CLIP
    embeddings of grey renders, averaged over views."""

    latent: torch.Tensor
    """[L] float32, detached: the last latent of the run (not the best-scoring one; see `refine_latent`)."""
    score_before: float
    """Mean score of the starting latent over the held-out views."""
    score_after: float
    """Mean score of `latent` over the same held-out views."""
    scores: list[float] = field(default_factory=list)
    """Training score at each step (its random views, before that step's update)."""
    losses: list[float] = field(default_factory=list)
    """Loss at each step: -score + prior_weight * ||(z - z0) / scale||^2."""
    seconds: float = 0.0
    """Wall time of the optimisation loop (held-out scoring excluded)."""
    seconds_per_step: float = 0.0
    """seconds / steps run."""
    stopped_early: str = ""
    kept_start: bool = False
    """True when the selection views scored the starting latent above the refined one, which was dropped."""
    """Empty, or why the run stopped before `steps` (the surface vanished); `latent` is then the last latent
    that still had a surface."""


# ----------------------------------------------------------------------------------------------- the surface


def iso_surface(model, latent: torch.Tensor, config: RefineConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The decoded surface of one latent, differentiable w.r.t. the latent.

    model: anything with `decode(points [1, P, 3], latent [1, L]) -> logits [1, P]` (an `OccupancyAutoencoder`).
    latent: [L] float (may require grad). Returns (vertices [N, 3] in the voxel frame, dtype of `latent`, carrying
    gradients w.r.t. `latent` as in the module docstring; faces [F, 3] int64, counter-clockwise from outside).
    Vertices where the one-step correction |f| / |g| exceeds one grid cell (the padding walls where a shape touches
    the cube, flat fields) stay where marching cubes put them and carry no gradient.
    Raises InvalidInputError when nothing reaches the threshold.
    """
    latent = latent.reshape(-1)
    # No smoothing here: the one-step correction below assumes vertices on marching cubes' iso-surface (smoothing
    # would only be undone by it, at a cost every step).
    decode = DecodeConfig(resolution=config.resolution, threshold=config.threshold,
                          coarse_resolution=config.coarse_resolution, band=COARSE_BAND, smooth_iterations=0)
    mesh = logits_to_mesh(decode_grid_coarse_to_fine(model, latent.detach(), decode)[0], decode)
    v = torch.as_tensor(mesh.vertices, device=latent.device, dtype=latent.dtype)
    faces = torch.as_tensor(mesh.faces, device=latent.device).long()
    level = math.log(config.threshold / (1.0 - config.threshold))
    with torch.enable_grad():  # g is needed even when the caller only scores (no_grad)
        x = v.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(model.decode(x[None], latent.detach()[None]).sum(), x)
    f = model.decode(v[None], latent[None])[0] - level  # carries d/dz, not d/dx (v is constant)
    norm = g.norm(dim=-1).clamp_min(1e-12)
    distance = f / norm  # signed distance estimate, > 0 inside
    distance = torch.where(distance.detach().abs() <= 2.0 / config.resolution, distance, torch.zeros_like(distance))
    return v - distance[:, None] * (g / norm[:, None]), faces


# ----------------------------------------------------------------------------------------------- views


def _orbit(azimuth: torch.Tensor, elevation: torch.Tensor, distance: torch.Tensor, light_az: torch.Tensor,
           light_el: torch.Tensor, config: RefineConfig, device) -> tuple[Cameras, torch.Tensor]:
    cameras = orbit_cameras(azimuth, elevation, distance * fit_distance(config.fov_deg), config.fov_deg, device=device)
    az, el = torch.deg2rad(azimuth + light_az), torch.deg2rad(light_el)
    lights = config.light_distance * torch.stack([torch.cos(el) * torch.sin(az), torch.sin(el),
                                                  torch.cos(el) * torch.cos(az)], dim=-1)
    return cameras, lights.to(device)


def heldout_azimuths(config: RefineConfig) -> torch.Tensor:
    """[heldout_views] azimuths in degrees: the centres of equal cells of `azimuth_range`."""
    low, high = config.azimuth_range
    return low + (torch.arange(config.heldout_views, dtype=torch.float32) + 0.5) * (high - low) / config.heldout_views


def heldout_views(config: RefineConfig, device: torch.device | str = "cpu") -> tuple[Cameras, torch.Tensor]:
    """The fixed evaluation views: (cameras, point lights [B, 3]); B = heldout_views. No randomness."""
    azimuth = heldout_azimuths(config)

    def middle(bounds: tuple[float, float]) -> torch.Tensor:
        return torch.full_like(azimuth, 0.5 * (bounds[0] + bounds[1]))

    return _orbit(azimuth, torch.full_like(azimuth, config.heldout_elevation_deg), middle(config.distance_scale),
                  middle(config.light_azimuth), middle(config.light_elevation), config, device)


def training_views(count: int, config: RefineConfig, generator: torch.Generator,
                   device: torch.device | str = "cpu") -> tuple[Cameras, torch.Tensor]:
    """`count` random views (cameras, point lights [count, 3]) from the config's ranges; azimuths avoid the
    held-out ones by `heldout_margin_deg` (each held-out cell, minus its centre's margin, is drawn uniformly)."""

    def uniform(bounds: tuple[float, float]) -> torch.Tensor:
        return bounds[0] + (bounds[1] - bounds[0]) * torch.rand(count, generator=generator)

    low, high = config.azimuth_range
    cell, margin = (high - low) / config.heldout_views, config.heldout_margin_deg
    index = torch.randint(config.heldout_views, (count,), generator=generator)
    offset = torch.rand(count, generator=generator) * (cell - 2.0 * margin)
    offset = torch.where(offset < 0.5 * cell - margin, offset, offset + 2.0 * margin)
    azimuth = low + index * cell + offset
    return _orbit(azimuth, uniform(config.elevation_range), uniform(config.distance_scale),
                  uniform(config.light_azimuth), uniform(config.light_elevation), config, device)


# ----------------------------------------------------------------------------------------------- scoring


def _renderer(config: RefineConfig, clip, device: torch.device) -> MeshRenderer:
    shading = ShadingConfig(ambient=config.ambient, diffuse=1.0 - config.ambient, specular=0.12)
    render = RenderConfig(size=int(config.image_size or clip.image_size), background=(1.0, 1.0, 1.0),
                          default_color=(config.albedo,) * 3, shading=shading,
                          rasterizer=RasterizerConfig(implementation=config.renderer))
    return MeshRenderer(render, device)


def _view_scores(vertices: torch.Tensor, faces: torch.Tensor, cameras: Cameras, lights: torch.Tensor,
                 renderer: MeshRenderer, clip, text: torch.Tensor) -> torch.Tensor:
    """[B] cosines between `text` [C] and CLIP embeddings of grey renders of the surface from each camera."""
    images = renderer.render(vertices.float(), faces, cameras, lights=lights).image
    embeddings = clip.encode_image(images.permute(0, 3, 1, 2).clamp(0, 1))
    return F.cosine_similarity(embeddings, text.to(embeddings.device)[None].float(), dim=-1)


def _text(text_embedding: torch.Tensor) -> torch.Tensor:
    text = torch.as_tensor(text_embedding).detach().float().reshape(-1)
    if not torch.isfinite(text).all() or text.norm() == 0:
        raise InvalidInputError("the text embedding is zero or not finite", hint="pass clip.encode_text([prompt])[0]")
    return F.normalize(text, dim=0)


@torch.no_grad()
def clip_score(model, latent: torch.Tensor, text_embedding: torch.Tensor, clip, cameras: Cameras,
               lights: torch.Tensor | None = None, config: RefineConfig | None = None) -> float:
    """Mean cosine similarity between a text and grey renders of a latent's surface.

    latent: [L]; text_embedding: [C] (any length; normalised here); clip: a `ClipModel`; cameras: B cameras in the
    voxel frame (`heldout_views`, `training_views`); lights: [B, 3] point lights (None: above each camera).
    config: surface and render settings (default `RefineConfig()`). Raises InvalidInputError for an empty surface.
    """
    config = config or RefineConfig()
    device = resolve_device(config.device)
    vertices, faces = iso_surface(model, latent.to(device), config)
    renderer = _renderer(config, clip, device)
    lights = renderer.default_lights(cameras.to(device)) if lights is None else lights
    return float(_view_scores(vertices, faces, cameras, lights, renderer, clip, _text(text_embedding).to(device)).mean())


# ----------------------------------------------------------------------------------------------- the run


def refine_latent(model, latent: torch.Tensor, text_embedding: torch.Tensor, clip, config: RefineConfig | None = None,
                  progress: ProgressFn = no_progress, cancel: CancelToken | None = None,
                  scale: torch.Tensor | None = None) -> RefineResult:
    """Refines a shape latent toward a text (module docstring).

    model: an `OccupancyAutoencoder` in eval mode on config.device (its weights get no gradients);
    latent: [L] start z0; text_embedding: [C] CLIP text embedding (normalised here); clip: a `ClipModel` on
    config.device. scale: [L] (or a number) the latent's spread per entry, e.g. the flow's `latent_std`: the
    optimised variable is u with z = z0 + scale * u, so the learning rate and the prior are in units of the
    latents' own spread (the shipped autoencoder's entries spread ~29 units: a unit step moved nothing);
    None: 1. Each step checks `cancel` (JobCancelled), extracts the surface, renders `views_per_step` random views,
    and takes one Adam step on loss = -mean cosine + prior_weight * ||u||^2; then calls
    progress(step, steps, clip_score=..., loss=..., eta_s=...).

    Returns the last latent, not the best by training score (training scores come from different random views each
    step, so picking their maximum picks lucky views, and picking by held-out score would spend the held-out views),
    unless `select_views` fresh training views score the start higher: then the start (`kept_start`).
    If the surface vanishes mid-run, the run stops and returns the last latent that had one (`stopped_early` says
    so); an empty start raises InvalidInputError.
    """
    config = config or RefineConfig()
    device = resolve_device(config.device)
    start = latent.detach().to(device=device, dtype=torch.float32).reshape(-1)
    text = _text(text_embedding).to(device)
    renderer = _renderer(config, clip, device)
    held_cameras, held_lights = heldout_views(config, device)

    def mean_score(z: torch.Tensor, cameras: Cameras, lights: torch.Tensor) -> float:
        with torch.no_grad():
            vertices, faces = iso_surface(model, z, config)
            return float(_view_scores(vertices, faces, cameras, lights, renderer, clip, text).mean())

    def heldout_score(z: torch.Tensor) -> float:
        return mean_score(z, held_cameras, held_lights)

    try:
        score_before = heldout_score(start)
    except InvalidInputError as exc:
        raise InvalidInputError(f"the starting latent has no surface: {exc.message}", EMPTY_HINT) from exc

    generator = torch.Generator().manual_seed(config.seed)
    spread = torch.ones_like(start) if scale is None else torch.as_tensor(scale, dtype=torch.float32).to(device)
    spread = spread.expand_as(start).detach()
    u = torch.zeros_like(start).requires_grad_(True)
    optimizer = torch.optim.Adam([u], lr=config.learning_rate)
    good, scores, losses, stopped = start.clone(), [], [], ""
    clock, began = EtaClock(), time.perf_counter()
    for step in range(config.steps):
        if cancel is not None:
            cancel.check()
        z = start + spread * u
        try:
            vertices, faces = iso_surface(model, z, config)
        except InvalidInputError:
            stopped = f"the surface vanished at step {step + 1} of {config.steps} ({EMPTY_HINT})"
            break
        good = z.detach().clone()
        cameras, lights = training_views(config.views_per_step, config, generator, device)
        score = _view_scores(vertices, faces, cameras, lights, renderer, clip, text).mean()
        loss = -score + config.prior_weight * u.square().sum()
        # Only u gets a gradient: the caller's model keeps its .grad untouched.
        (u.grad,) = torch.autograd.grad(loss, [u])
        optimizer.step()
        scores.append(float(score.detach()))
        losses.append(float(loss.detach()))
        progress(step + 1, config.steps, clip_score=scores[-1], loss=losses[-1],
                 eta_s=clock.eta(step + 1, config.steps))
    seconds = time.perf_counter() - began
    final, kept_start = (good if stopped else (start + spread * u).detach()), False
    if config.select_views:
        selection = training_views(config.select_views, config, generator, device)
        try:
            refined = mean_score(final, *selection)
        except InvalidInputError:
            stopped = f"the surface vanished after the last step ({EMPTY_HINT})"
            final = good
            refined = mean_score(final, *selection)
        if mean_score(start, *selection) > refined:
            final, kept_start = start.clone(), True
    try:
        score_after = heldout_score(final)
    except InvalidInputError:
        stopped = f"the surface vanished after the last step ({EMPTY_HINT})"
        final = good
        score_after = heldout_score(final)
    return RefineResult(latent=final, score_before=score_before, score_after=score_after, scores=scores,
                        losses=losses, seconds=seconds, seconds_per_step=seconds / max(len(scores), 1),
                        kept_start=kept_start,
                        stopped_early=stopped)
