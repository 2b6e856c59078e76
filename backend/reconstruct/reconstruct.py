"""The whole reconstruction: prior, camera, Gaussians, textured mesh (see the package docstring)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from backend.errors import InvalidInputError
from backend.geometry.mesh import Mesh
from backend.progress import CancelToken, ProgressFn, no_progress
from backend.reconstruct.extract import MeshExtractConfig, density_mesh, textured_mesh
from backend.reconstruct.fit_gaussians import GaussianFit, GaussianFitConfig, PreviewFn, fit_gaussians
from backend.reconstruct.gaussian_model import GaussianModel
from backend.reconstruct.guidance import GuidanceConfig, make_guidance
from backend.reconstruct.priors import INITS, Prior, generator_prior, retrieval_prior, volume_samples
from backend.reconstruct.reference_view import ReferenceView, ViewFitConfig, assumed_view, fitted_view, photo_colors


@dataclass
class ReconstructConfig:
    """Photo to 3D by Gaussians: where they start, how they are fitted, how the mesh is made."""

    init: str = "retrieve"
    """One of `priors.INITS`: sphere (DreamGaussian), retrieve, generate, best."""
    gaussians: int = 2000
    """Gaussians at the start (surface samples of the prior, or inside the sphere)."""
    view: ViewFitConfig = field(default_factory=ViewFitConfig)
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)
    fit: GaussianFitConfig = field(default_factory=GaussianFitConfig)
    mesh: MeshExtractConfig = field(default_factory=MeshExtractConfig)
    densify_prior: bool = False
    """Densify a prior-started fit too (pruning runs either way). Off: the prior's Gaussians already fill its
    shape, and densifying them cost a generator-started chair voxel IoU 0.44 -> 0.35 (100 steps, one photo)."""
    category: str | None = None
    """Retrieval prior: only shapes of this category."""
    seed: int = 0

    def check(self) -> None:
        if self.init not in INITS:
            raise InvalidInputError(f"init must be one of {', '.join(INITS)}, got {self.init!r}",
                                    hint="retrieve starts from the library's best match; sphere needs nothing")
        if not 8 <= self.gaussians <= 20000:
            raise InvalidInputError(f"initial Gaussians must be in [8, 20000], got {self.gaussians}", hint="2000")
        self.view.check()
        self.guidance.check()
        self.fit.check()
        self.mesh.check()


@dataclass
class ReconstructResult:
    mesh: Mesh
    """Textured (uv, uint8 texture), in the unit sphere, +Y up."""
    reference: ReferenceView
    prior: Prior | None
    hits: list = field(default_factory=list)
    """The retrieval prior's search hits (empty without one)."""
    fit: GaussianFit | None = None
    texture_losses: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    guidance: str = "clip"


def reconstruct(image: np.ndarray, mask: np.ndarray, clip, config: ReconstructConfig | None = None, *, db=None,
                encoder=None, generator=None, device="cpu", progress: ProgressFn = no_progress,
                preview: PreviewFn | None = None, cancel: CancelToken | None = None) -> ReconstructResult:
    """A textured mesh of the masked object in `image` ([H, W, 3|4] in [0, 1]; mask [H, W] bool).

    clip: the CLIP of the guidance (and of `encoder`/`generator` when they are used); db + encoder: the library for
    init "retrieve"/"best"; generator: for init "generate"/"best". progress(done, total, stage=...): stages
    "prior", "gaussians", "mesh", "texture"; preview(step, image) every `fit.preview_every` steps.
    """
    from backend.segment.photo_query import object_crop

    config = config or ReconstructConfig()
    config.check()
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise InvalidInputError("the mask is empty: there is no object to reconstruct",
                                hint="try another prompt, or a photo where the object is visible")
    if mask.all():
        raise InvalidInputError("the mask covers the whole photo: there is no background to tell the object from",
                                hint="segment the object with a prompt, or crop the photo with a margin around it")
    seconds, notes, hits = {}, [], []
    started = time.perf_counter()
    progress(0, 1, stage="prior")
    crop = object_crop(image, mask)
    priors: list[Prior] = []
    if config.init in ("retrieve", "best"):
        if db is None or encoder is None:
            raise InvalidInputError(f"init {config.init!r} needs a library database", hint="pass --db, or --init sphere")
        prior, hits = retrieval_prior(crop, db, encoder, config.category)
        priors.append(prior)
    if config.init in ("generate", "best"):
        if generator is None:
            raise InvalidInputError(f"init {config.init!r} needs a generator checkpoint",
                                    hint="pass --generator, or --init retrieve / sphere")
        priors.append(generator_prior(crop, generator, clip, config.seed))
    if cancel is not None:
        cancel.check()
    rng = np.random.default_rng(config.seed)
    prior = None
    if priors:
        fitted = [(fitted_view(image, mask, p.mesh, config.view, device, clip), p) for p in priors]
        reference, prior = max(fitted, key=lambda pair: pair[0].pose_score)
        if len(fitted) > 1:
            notes.append("prior chosen by its fit to the photo (silhouette IoU + appearance): " + ", ".join(
                f"{p.source} {v.pose_score:.3f}" for v, p in fitted))
        points = volume_samples(prior.mesh, config.gaussians, rng)
        model = GaussianModel.from_points(points, photo_colors(points, reference))
    else:
        reference = assumed_view(image, mask, config.view)
        model = GaussianModel.sphere(config.gaussians, seed=config.seed)
    seconds["prior"] = time.perf_counter() - started
    progress(1, 1, stage="prior")

    guidance = make_guidance(config.guidance, clip, reference.image, device, notes)
    fit_config = config.fit
    if prior is not None and not config.densify_prior:
        fit_config = replace(fit_config, densify=replace(fit_config.densify, until=0.0))
    fit = fit_gaussians(model.to(device), reference, guidance, config.view, fit_config, prior.mesh if prior else None,
                        device=device, progress=progress, preview=preview, cancel=cancel)
    seconds["gaussians"] = fit.seconds

    stage = time.perf_counter()
    progress(0, 1, stage="mesh")
    params = {name: value.cpu() for name, value in fit.model.detached().items()}  # the mesh is made on the CPU
    surface = density_mesh(params, config.mesh, reference=reference)
    seconds["mesh"] = time.perf_counter() - stage
    stage = time.perf_counter()
    mesh, texture_losses = textured_mesh(surface, params, reference, config.view, config.mesh, config.fit.splat,
                                         device=device, seed=config.seed, progress=progress, cancel=cancel)
    seconds["texture"] = time.perf_counter() - stage
    seconds["total"] = time.perf_counter() - started
    return ReconstructResult(mesh=mesh, reference=reference, prior=prior, hits=hits, fit=fit,
                             texture_losses=texture_losses, notes=notes, seconds=seconds, guidance=guidance.name)
