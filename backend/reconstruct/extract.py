"""Stage 2: a textured mesh from the Gaussians (DreamGaussian's second stage).

1. Mesh: the Gaussians' density on a grid over the unit cube (`backend.render.splat.gaussian_density`, a local
   query), marching cubes at the level whose silhouette best matches the reference mask, then the generator's clean-up (bridging, only the largest piece, Taubin
   smoothing; `backend.generate.decode.logits_to_mesh`).
2. UVs by xatlas (`backend.geometry.unwrap.ensure_uv`), vertex colours from the nearby Gaussians baked into the
   texture.
3. The texture refined by gradient descent so the mesh's unlit renders match the Gaussians' renders at random
   views and the photo at the reference view (on its mask).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from backend.errors import InvalidInputError
from backend.geometry.mesh import Mesh
from backend.geometry.unwrap import ensure_uv
from backend.progress import CancelToken, ProgressFn, no_progress
from backend.reconstruct.reference_view import ReferenceView, ViewFitConfig
from backend.reconstruct.shape_metrics import mask_iou
from backend.render.camera import orbit_cameras
from backend.render.renderer import MeshRenderer, RenderConfig
from backend.render.splat import SplatConfig, gaussian_density, render_gaussians
from backend.render.splat_torch import covariances
from backend.stylize.bake import bake_vertex_colors


@dataclass
class MeshExtractConfig:
    """How the Gaussians become a textured mesh."""

    resolution: int = 64
    """Density grid cells per axis over [-1, 1]^3."""
    level: float = 0.8
    """The surface's density as a fraction of the median density at the Gaussians' centres (the solid's inside).
    0.8: a generator's shape turned into Gaussians and back kept voxel IoU 0.40 of its 0.44 to the truth (0.30 at
    0.5, 0.40 at 1.2; one chair). Used without a reference view."""
    levels: tuple[float, ...] = (0.2, 0.35, 0.5, 0.65, 0.8, 1.0)
    """With a reference view: the levels tried (the same fractions); the one whose mesh's silhouette best matches
    the reference mask is kept (a sphere-started fit after few steps wants a low level, a prior-started one about
    0.8)."""
    smooth_iterations: int = 5
    texture_size: int = 256
    refine_steps: int = 60
    """Texture refinement steps (0: the baked colours only)."""
    refine_views: int = 3
    """Random views per refinement step (besides the reference view)."""
    reference_weight: float = 2.0
    """The photo's weight against one Gaussian view in the texture refinement."""
    lr: float = 0.03

    def check(self) -> None:
        if not 16 <= self.resolution <= 256:
            raise InvalidInputError(f"mesh resolution must be in [16, 256], got {self.resolution}", hint="64")
        if not self.level > 0 or not self.levels or min(self.levels) <= 0:
            raise InvalidInputError(f"density levels must be > 0, got {self.level} and {self.levels}",
                                    hint="fractions of the density inside, e.g. 0.8")
        if not 32 <= self.texture_size <= 4096:
            raise InvalidInputError(f"texture size must be in [32, 4096], got {self.texture_size}", hint="256")
        if not 0 <= self.refine_steps <= 2000:
            raise InvalidInputError(f"texture steps must be in [0, 2000], got {self.refine_steps}", hint="60")


def density_mesh(params: dict[str, torch.Tensor], config: MeshExtractConfig, name: str = "reconstructed",
                 reference: ReferenceView | None = None) -> Mesh:
    """Marching cubes of the Gaussians' density (step 1 of the module docstring). With a `reference` view, each of
    `config.levels` is tried and the mesh whose silhouette best matches the reference mask wins (metadata
    "level", "level_iou"); without one, `config.level`. InvalidInputError when no density reaches a level (the
    Gaussians vanished)."""
    from backend.geometry.voxelize import grid_centres

    config.check()
    r = config.resolution
    points = torch.from_numpy(grid_centres(r).reshape(-1, 3))
    gaussians = params["means"], params["scales"], params["quats"], params["opacities"]
    density = gaussian_density(points, *gaussians).reshape(r, r, r)
    inside = float(gaussian_density(params["means"], *gaussians).median())
    if reference is None:
        return _level_mesh(density, config.level * inside, config, name)
    renderer = MeshRenderer(RenderConfig(size=reference.mask.shape[0], antialias=False))
    target = reference.mask > 0.5
    best = None
    for fraction in config.levels:
        try:
            mesh = _level_mesh(density, fraction * inside, config, name)
        except InvalidInputError:
            continue
        alpha = renderer.render(torch.as_tensor(mesh.vertices), torch.as_tensor(mesh.faces).int(),
                                reference.camera).alpha[0, ..., 0] > 0.5
        iou = mask_iou(alpha, target)
        if best is None or iou > best[0]:
            best = (iou, fraction, mesh)
    if best is None:
        return _level_mesh(density, min(config.levels) * inside, config, name)  # raises with the highest density
    iou, fraction, mesh = best
    mesh.metadata.update(level=fraction, level_iou=iou)
    return mesh


def _level_mesh(density: torch.Tensor, level: float, config: MeshExtractConfig, name: str) -> Mesh:
    from backend.generate.decode import DecodeConfig, logits_to_mesh

    grid = torch.log(density.clamp(min=1e-8) / max(level, 1e-8)).cpu().numpy()
    if not (grid > 0).any():
        raise InvalidInputError(f"no Gaussian density inside the unit cube reaches the surface level {level:.3g} "
                                f"(highest {float(density.max()):.3g})",
                                hint="lower the mesh level, or fit the Gaussians longer")
    decode = DecodeConfig(resolution=config.resolution, threshold=0.5, smooth_iterations=config.smooth_iterations,
                          coarse_resolution=0)
    return logits_to_mesh(grid, decode, name)


def gaussian_colors(points: np.ndarray, params: dict[str, torch.Tensor], k: int = 8, chunk: int = 4096) -> np.ndarray:
    """[N, 3] colours at `points`: the k nearest Gaussians' colours weighted by their opacity-scaled density there
    (the nearest one's where all weights vanish)."""
    means, colors = params["means"].detach().cpu(), params["colors"].detach().cpu()
    inverse = _inverse_covariances(params)
    opacities = params["opacities"].detach().cpu()
    query = torch.as_tensor(points, dtype=torch.float32)
    k = min(k, len(means))
    out = []
    for start in range(0, len(query), chunk):
        q = query[start:start + chunk]
        nearest = torch.cdist(q, means).topk(k, largest=False).indices  # [n, k]
        d = q[:, None, :] - means[nearest]
        mahalanobis = torch.einsum("nki,nkij,nkj->nk", d, inverse[nearest], d)
        weight = opacities[nearest] * torch.exp(-0.5 * mahalanobis) + 1e-12
        weight[:, 0] += 1e-9  # all vanished: the nearest decides
        out.append((weight[..., None] * colors[nearest]).sum(1) / weight.sum(1, keepdim=True))
    return torch.cat(out).numpy()


def _inverse_covariances(params: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.linalg.inv(covariances(params["scales"].detach().cpu(), params["quats"].detach().cpu()))


def textured_mesh(mesh: Mesh, params: dict[str, torch.Tensor], reference: ReferenceView, view: ViewFitConfig,
                  config: MeshExtractConfig, splat: SplatConfig | None = None, *, device="cpu", seed: int = 0,
                  progress: ProgressFn = no_progress, cancel: CancelToken | None = None) -> tuple[Mesh, list[float]]:
    """Steps 2 and 3 of the module docstring: (the mesh with UVs and a uint8 texture, the refinement losses)."""
    config.check()
    unwrapped, _ = ensure_uv(mesh.copy(metadata={k: v for k, v in mesh.metadata.items() if k != "normals"}))
    colors = gaussian_colors(unwrapped.vertices, params)
    baked = bake_vertex_colors(unwrapped.uv, unwrapped.faces, colors, size=config.texture_size, device=device)
    losses: list[float] = []
    if config.refine_steps:
        baked, losses = _refine_texture(unwrapped, baked, params, reference, view, config, splat, device, seed,
                                        progress, cancel)
    return unwrapped.copy(texture=baked, vertex_colors=None), losses


def _refine_texture(mesh: Mesh, baked: np.ndarray, params, reference: ReferenceView, view: ViewFitConfig,
                    config: MeshExtractConfig, splat, device, seed: int, progress, cancel) -> tuple[np.ndarray, list]:
    renderer = MeshRenderer(RenderConfig(size=view.size), device)
    vertices = torch.as_tensor(mesh.vertices, dtype=torch.float32, device=device)
    faces = torch.as_tensor(mesh.faces, dtype=torch.int32, device=device)
    uv = torch.as_tensor(mesh.uv, dtype=torch.float32, device=device)
    texture = torch.tensor(baked, dtype=torch.float32, device=device).div(255.0).requires_grad_(True)
    optim = torch.optim.Adam([texture], lr=config.lr)
    generator = torch.Generator().manual_seed(seed)
    white = torch.ones(3, device=device)
    detached = {k: v.detach().to(device) for k, v in params.items()}
    ref_camera = reference.camera.to(device)
    ref_mask = (reference.mask.to(device) > 0.5).float()[..., None]
    losses = []
    for step in range(config.refine_steps):
        if cancel is not None:
            cancel.check()
        u = torch.rand(2, config.refine_views, generator=generator)
        cameras = orbit_cameras(reference.azimuth + 360.0 * u[0], -10.0 + 60.0 * u[1], view.distance, view.fov_deg,
                                device=device)
        with torch.no_grad():
            target = render_gaussians(**detached, cameras=cameras, size=view.size, background=white,
                                      config=splat).image
        out = renderer.render(vertices, faces, cameras, uv=uv, texture=texture, shade=False)
        covered = out.alpha.detach()
        loss = (((out.image - target) ** 2) * covered).mean()
        ref = renderer.render(vertices, faces, ref_camera, uv=uv, texture=texture, shade=False)
        weight = ref.alpha.detach() * ref_mask
        loss = loss + config.reference_weight * (((ref.image[0] - reference.image.to(device)) ** 2) * weight[0]).mean()
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        with torch.no_grad():
            texture.clamp_(0, 1)
        losses.append(float(loss.detach()))
        progress(step + 1, config.refine_steps, stage="texture", loss=losses[-1])
    return (texture.detach().cpu().numpy() * 255 + 0.5).astype(np.uint8), losses
