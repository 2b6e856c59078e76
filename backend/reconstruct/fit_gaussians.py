"""Stage 1: the Gaussians fitted to the reference view and guided at novel views (DreamGaussian's first stage).

Every step renders the reference camera (RGB and mask losses against the framed photo) and `novel_views` random
cameras around the object (the guidance loss; with a prior shape, also its silhouette there as a soft target:
what the photo cannot show comes from the prior, which DreamGaussian has no way to use). Densify and prune on
`DensifyConfig`'s schedule.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from backend.errors import InvalidInputError
from backend.geometry.mesh import Mesh
from backend.progress import CancelToken, EtaClock, ProgressFn, no_progress
from backend.reconstruct.gaussian_model import DensifyConfig, GaussianModel
from backend.reconstruct.reference_view import ReferenceView, ViewFitConfig
from backend.render.camera import orbit_cameras
from backend.render.renderer import MeshRenderer, RenderConfig
from backend.render.splat import SplatConfig, render_gaussians

MAX_FIT_STEPS = 5000
PreviewFn = Callable[[int, torch.Tensor], None]
"""preview(step, image [S, S, 3] in [0, 1]): a render of the Gaussians now."""


@dataclass
class GaussianFitConfig:
    """Stage 1's schedule and loss weights."""

    steps: int = 300
    novel_views: int = 2
    """Random cameras per step for the guidance (and the prior's silhouettes)."""
    elevation_range: tuple[float, float] = (-10.0, 50.0)
    """Novel cameras' elevations in degrees (azimuths anywhere around)."""
    rgb_weight: float = 1.0
    mask_weight: float = 1.0
    guidance_weight: float = 0.2
    prior_weight: float = 1.0
    """The prior's silhouette at novel views (0: ignore the prior after initialising from it)."""
    lr_means: float = 1e-3
    lr_scales: float = 5e-3
    lr_quats: float = 5e-3
    lr_opacity: float = 0.05
    lr_colors: float = 0.05
    densify: DensifyConfig = field(default_factory=DensifyConfig)
    splat: SplatConfig = field(default_factory=SplatConfig)
    preview_every: int = 25
    """A preview image every this many steps (0: none)."""
    seed: int = 0

    def check(self) -> None:
        if not 1 <= self.steps <= MAX_FIT_STEPS:
            raise InvalidInputError(f"Gaussian steps must be in [1, {MAX_FIT_STEPS}], got {self.steps}",
                                    hint="300 is the default; 100 is a quick draft")
        if not 0 <= self.novel_views <= 8:
            raise InvalidInputError(f"novel views per step must be in [0, 8], got {self.novel_views}", hint="2")
        self.densify.check()


@dataclass
class GaussianFit:
    model: GaussianModel
    losses: list[float]
    seconds: float
    densified: list[dict]


def fit_gaussians(model: GaussianModel, reference: ReferenceView, guidance, view: ViewFitConfig,
                  config: GaussianFitConfig, prior: Mesh | None = None, *, device="cpu",
                  progress: ProgressFn = no_progress, preview: PreviewFn | None = None,
                  cancel: CancelToken | None = None) -> GaussianFit:
    """Optimises `model` in place (its tensors are replaced when densified) and returns it with the losses.

    guidance: `backend.reconstruct.guidance` (ClipGuidance or Zero123Guidance) or None; prior: the prior mesh in the
    unit sphere for the novel views' silhouettes (None: sphere start). progress(step, total, stage="gaussians",
    loss, gaussians, eta_s); `cancel` is checked every step.
    """
    config.check()
    started, clock = time.perf_counter(), EtaClock()
    generator = torch.Generator().manual_seed(config.seed)
    white = torch.ones(3, device=device)
    target_image, target_mask = reference.image.to(device), reference.mask.to(device)
    prior_renderer = prior_vertices = prior_faces = None
    if prior is not None and config.prior_weight > 0 and config.novel_views:
        prior_renderer = MeshRenderer(RenderConfig(size=view.size), device)
        prior_vertices = torch.as_tensor(np.asarray(prior.vertices), dtype=torch.float32, device=device)
        prior_faces = torch.as_tensor(np.asarray(prior.faces), dtype=torch.int32, device=device)

    def optimiser() -> torch.optim.Adam:
        return torch.optim.Adam(model.param_groups(config.lr_means, config.lr_scales, config.lr_quats,
                                                   config.lr_opacity, config.lr_colors))

    optim = optimiser()
    losses, densified = [], []
    densify_until = int(config.steps * config.densify.until)
    for step in range(config.steps):
        if cancel is not None:
            cancel.check()
        optim.zero_grad(set_to_none=True)
        params = model.activated()
        ref = render_gaussians(**params, cameras=reference.camera.to(device), size=view.size, background=white,
                               config=config.splat)
        loss = config.rgb_weight * ((ref.image[0] - target_image) ** 2).mean() + \
            config.mask_weight * ((ref.alpha[0] - target_mask) ** 2).mean()
        if config.novel_views:
            u = torch.rand(2, config.novel_views, generator=generator)
            low, high = config.elevation_range
            cameras = orbit_cameras(reference.azimuth + 360.0 * u[0], low + (high - low) * u[1], view.distance,
                                    view.fov_deg, device=device)
            novel = render_gaussians(**params, cameras=cameras, size=view.size, background=white, config=config.splat)
            if guidance is not None and config.guidance_weight > 0:
                loss = loss + config.guidance_weight * guidance.loss(novel.image, cameras=cameras, reference=reference)
            if prior_renderer is not None:
                with torch.no_grad():
                    silhouette = prior_renderer.render(prior_vertices, prior_faces, cameras, shade=False).alpha[..., 0]
                loss = loss + config.prior_weight * ((novel.alpha - silhouette) ** 2).mean()
        loss.backward()
        model.track_gradients()
        optim.step()
        losses.append(float(loss.detach()))
        round_end = (step + 1) % config.densify.every == 0 and step + 1 < config.steps
        if round_end:
            counts = model.densify_and_prune(config.densify, generator, densify=step < densify_until)
            densified.append({"step": step + 1, **counts})
            optim = optimiser()
        if preview is not None and config.preview_every and ((step + 1) % config.preview_every == 0
                                                               or step + 1 == config.steps):
            preview(step + 1, ref.image[0].detach().clamp(0, 1).cpu())  # before progress, which sends it
        progress(step + 1, config.steps, stage="gaussians", loss=losses[-1], gaussians=float(len(model)),
                 eta_s=clock.eta(step + 1, config.steps))
    return GaussianFit(model, losses, time.perf_counter() - started, densified)
