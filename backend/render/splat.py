"""Differentiable 3D Gaussian splatting: one contract, two implementations (gsplat on CUDA, pure PyTorch anywhere),
and the Gaussians' density field for mesh extraction.

Images are top row first with the same pixel centres as `MeshRenderer`, from the same `Cameras` (OpenGL view and
projection). The PyTorch path is `backend.render.splat_torch`; gsplat comes through `backend.external`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from backend import external
from backend.errors import DependencyMissingError, InvalidInputError
from backend.render import splat_torch
from backend.render.camera import Cameras


@dataclass
class SplatConfig:
    """How Gaussians are rasterized."""

    implementation: Literal["auto", "gsplat", "torch"] = "auto"
    """`auto`: gsplat when it is installed and the Gaussians are on CUDA, else the PyTorch path."""
    tile: int = 16
    """PyTorch path: tile size in pixels (gsplat uses its own 16)."""
    near: float = 0.05
    """Gaussians whose centre is nearer the camera than this (camera-space depth) are culled."""
    blur: float = 0.3
    """2D low-pass added to the projected covariance's diagonal, in pixels squared (3DGS's 0.3, gsplat's eps2d)."""
    min_alpha: float = 1 / 255
    """A Gaussian's alpha at a pixel below this is dropped (PyTorch path; gsplat fixes it at 1/255)."""
    max_alpha: float = 0.99
    """A Gaussian's alpha at a pixel is clamped to this (PyTorch path; gsplat fixes it at 0.999)."""


@dataclass
class SplatOutput:
    """One render of a set of Gaussians from a batch of cameras."""

    image: torch.Tensor
    """[B, H, W, 3] colour composited over the background, top row first (as `MeshRenderer` images)."""
    alpha: torch.Tensor
    """[B, H, W] accumulated opacity in [0, 1]."""
    depth: torch.Tensor
    """[B, H, W] expected camera-space depth (distance along the view axis): sum_i w_i z_i / alpha where alpha > 0,
    0 where no Gaussian reaches the pixel (gsplat's 'ED')."""


def render_gaussians(means: torch.Tensor, scales: torch.Tensor, quats: torch.Tensor, opacities: torch.Tensor,
                     colors: torch.Tensor, cameras: Cameras, size: int | tuple[int, int],
                     background: torch.Tensor | None = None, config: SplatConfig | None = None) -> SplatOutput:
    """Renders N Gaussians from every camera; differentiable w.r.t. all five Gaussian tensors.

    means: [N, 3] world positions. scales: [N, 3] positive standard deviations along the Gaussian's axes (linear,
    not log). quats: [N, 4] rotations (w, x, y, z), normalised here. opacities: [N] in (0, 1). colors: [N, 3].
    cameras: B cameras (OpenGL view and perspective projection). size: H = W, or (H, W).
    background: [3] colour (default black).
    """
    config = config or SplatConfig()
    _check_config(config)
    height, width = _check_inputs(means, scales, quats, opacities, colors, size, background)
    device, dtype = means.device, means.dtype
    if background is None:
        background = torch.zeros(3, dtype=dtype, device=device)
    background = background.to(device=device, dtype=dtype)
    if _use_gsplat(config, device):
        return _render_gsplat(means, scales, quats, opacities, colors, cameras, height, width, background, config)
    viewmats, ks = splat_torch.opencv_cameras(cameras, height, width, dtype, device)
    cov3d = splat_torch.covariances(scales, quats)
    means2d, conics, depths, radii = splat_torch.project(means, cov3d, opacities, viewmats, ks, height, width,
                                                         config.near, config.blur, config.min_alpha)
    sums, alpha = splat_torch.rasterize(means2d, conics, depths, radii, opacities, colors, height, width,
                                        config.tile, config.min_alpha, config.max_alpha)
    image = sums[..., :3] + (1.0 - alpha[..., None]) * background
    return SplatOutput(image=image, alpha=alpha, depth=sums[..., 3] / alpha.clamp(min=1e-10))


def _use_gsplat(config: SplatConfig, device: torch.device) -> bool:
    if config.implementation == "torch":
        return False
    if config.implementation == "auto":
        return device.type == "cuda" and external.HAS_GSPLAT
    external.require_gsplat()
    if device.type != "cuda":
        raise DependencyMissingError(f"gsplat needs the Gaussians on a CUDA device, they are on {device}",
                                     hint="move them to CUDA, or use implementation='torch' (or 'auto')")
    return True


def _render_gsplat(means, scales, quats, opacities, colors, cameras, height, width, background, config):
    gsplat = external.require_gsplat()
    viewmats, ks = splat_torch.opencv_cameras(cameras, height, width, means.dtype, means.device)
    # The background is composited here rather than by gsplat: with render_mode "RGB+ED" its depth channel would
    # need a background of its own, and compositing premultiplied colour is one line.
    rendered, alphas, _meta = gsplat.rasterization(
        means, torch.nn.functional.normalize(quats, dim=-1), scales, opacities, colors, viewmats, ks, width, height,
        near_plane=config.near, eps2d=config.blur, render_mode="RGB+ED", backgrounds=None)
    alpha = alphas[..., 0]
    image = rendered[..., :3] + (1.0 - alpha[..., None]) * background
    return SplatOutput(image=image, alpha=alpha, depth=torch.where(alpha > 0, rendered[..., 3], 0.0))


def _check_config(config: SplatConfig) -> None:
    if config.implementation not in ("auto", "gsplat", "torch"):
        raise InvalidInputError(f"unknown splatting implementation {config.implementation!r}",
                                hint="use 'auto', 'gsplat' or 'torch'")
    if config.tile < 1:
        raise InvalidInputError(f"tile must be at least 1 pixel, got {config.tile}", hint="16 is the usual size")
    if not config.near > 0:
        raise InvalidInputError(f"near must be positive, got {config.near}", hint="e.g. 0.05 (world units)")
    if config.blur < 0:
        raise InvalidInputError(f"blur must be >= 0, got {config.blur}", hint="3DGS uses 0.3")
    if not 0 < config.min_alpha < config.max_alpha < 1:
        raise InvalidInputError(f"need 0 < min_alpha < max_alpha < 1, got {config.min_alpha} and {config.max_alpha}",
                                hint="the defaults are 1/255 and 0.99")


def _check_inputs(means, scales, quats, opacities, colors, size, background) -> tuple[int, int]:
    """Validates shapes and values; returns (H, W)."""
    if not (means.dim() == 2 and means.shape[1] == 3):
        raise InvalidInputError(f"means must be [N, 3], got {list(means.shape)}", hint="one xyz row per Gaussian")
    n = means.shape[0]
    expected = {"scales": (scales, [n, 3]), "quats": (quats, [n, 4]), "opacities": (opacities, [n]),
                "colors": (colors, [n, 3])}
    for name, (tensor, shape) in expected.items():
        if list(tensor.shape) != shape:
            raise InvalidInputError(f"{name} must be {shape} for {n} Gaussians, got {list(tensor.shape)}",
                                    hint="pass one row per Gaussian in every tensor (same N)")
    if n and bool((scales <= 0).any()):
        raise InvalidInputError("scales must be positive (linear standard deviations)",
                                hint="store log-scales and pass their exp(), or clamp to a small positive minimum")
    if n and bool((quats.norm(dim=-1) == 0).any()):
        raise InvalidInputError("a quaternion is zero", hint="use (1, 0, 0, 0) for no rotation")
    if background is not None and background.shape != (3,):
        raise InvalidInputError(f"background must be [3], got {list(background.shape)}", hint="an RGB colour")
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    if int(height) < 1 or int(width) < 1:
        raise InvalidInputError(f"image size must be at least 1x1, got {height}x{width}",
                                hint="pass size as a positive int or (H, W)")
    return int(height), int(width)


_DENSITY_GRID_ENTRIES = 1 << 23
"""At most this many (cell, Gaussian) entries in `gaussian_density`'s grid: its cells grow until they fit."""


def gaussian_density(points: torch.Tensor, means: torch.Tensor, scales: torch.Tensor, quats: torch.Tensor,
                     opacities: torch.Tensor, chunk: int = 1 << 21) -> torch.Tensor:
    """[M] density sum_i opacity_i exp(-0.5 m_i^2) at query points [M, 3], over the Gaussians whose Mahalanobis
    distance m_i to the point is at most 3 (the rest are cut off: it is a local field, for marching cubes).

    Gaussians are binned into a voxel grid by their 3-sigma bounding boxes; each point meets only its voxel's
    Gaussians, `chunk` (point, Gaussian) pairs at a time.
    """
    if not (points.dim() == 2 and points.shape[1] == 3):
        raise InvalidInputError(f"points must be [M, 3], got {list(points.shape)}", hint="one xyz row per query")
    _check_inputs(means, scales, quats, opacities, torch.zeros_like(means), 1, None)
    out = points.new_zeros(len(points))
    if len(means) == 0 or len(points) == 0:
        return out
    # Precision matrices R S^-2 R^T, their 6 distinct entries: m^2 = d^T P d.
    rot = splat_torch.quat_to_rotmat(quats).to(points.dtype)
    scaled = rot / scales.to(points.dtype)[:, None, :]
    precision = scaled @ scaled.transpose(1, 2)
    doubled = torch.tensor([1.0, 1, 1, 2, 2, 2], dtype=points.dtype, device=points.device)
    upper = precision[:, [0, 1, 2, 0, 0, 1], [0, 1, 2, 1, 2, 2]] * doubled
    with torch.no_grad():
        half = 3.0 * torch.sqrt(torch.diagonal(splat_torch.covariances(scales, quats), dim1=1, dim2=2))
        low, high = (means - half).min(0).values, (means + half).max(0).values
        # Cells of half a typical 3-sigma radius: a point then meets about twice the Gaussians that reach it (a
        # coarser grid meets many more); coarser only when the grid would hold too many entries.
        cell = torch.clamp(torch.median(half.max(1).values) / 2, min=float((high - low).max()) / 128)
        while True:
            c0 = torch.clamp(((means - half - low) / cell).floor().long(), min=0)
            dims = torch.clamp(((high - low) / cell).ceil().long(), min=1)
            c1 = torch.minimum(((means + half - low) / cell).floor().long(), dims - 1)
            span = c1 - c0 + 1
            hits = span.prod(1)
            if int(hits.sum()) <= _DENSITY_GRID_ENTRIES or int(hits.max()) == 1:
                break
            cell = cell * 1.5
        owner = torch.repeat_interleave(torch.arange(len(means), device=means.device), hits)
        offset = torch.arange(len(owner), device=means.device) - (torch.cumsum(hits, 0) - hits)[owner]
        sx, sy = span[owner, 0], span[owner, 1]
        ix = c0[owner, 0] + offset % sx
        iy = c0[owner, 1] + torch.div(offset, sx, rounding_mode="floor") % sy
        iz = c0[owner, 2] + torch.div(offset, sx * sy, rounding_mode="floor")
        key = (ix * dims[1] + iy) * dims[2] + iz
        del ix, iy, iz, offset, sx, sy
        order = torch.argsort(key, stable=True)
        members = owner[order]
        per_cell = torch.bincount(key, minlength=int(dims.prod()))
        start = torch.cumsum(per_cell, 0) - per_cell
        del key, order, owner
        grid = ((points.detach() - low) / cell).floor().long()
        inside = ((grid >= 0) & (grid < dims)).all(1)
        query = torch.nonzero(inside).squeeze(1)
        g = grid[query]
        cell_of = (g[:, 0] * dims[1] + g[:, 1]) * dims[2] + g[:, 2]
        count = per_cell[cell_of]
        keep = count > 0
        query, cell_of, count = query[keep], cell_of[keep], count[keep]
        ends = torch.cumsum(count, 0)
    begin = 0
    while begin < len(query):
        # As many points as keep this chunk's pairs within `chunk` (at least one point).
        stop = int(torch.searchsorted(ends, (ends[begin - 1] if begin else 0) + chunk, right=True))
        stop = max(stop, begin + 1)
        q, c, n = query[begin:stop], cell_of[begin:stop], count[begin:stop]
        pair_point = torch.repeat_interleave(q, n)
        local = torch.arange(int(n.sum()), device=points.device) - torch.repeat_interleave(torch.cumsum(n, 0) - n, n)
        pair_gauss = members[torch.repeat_interleave(start[c], n) + local]
        d = points[pair_point] - means[pair_gauss].to(points.dtype)
        p = upper[pair_gauss]
        m2 = (p[:, 0] * d[:, 0] ** 2 + p[:, 1] * d[:, 1] ** 2 + p[:, 2] * d[:, 2] ** 2
              + d[:, 0] * (p[:, 3] * d[:, 1] + p[:, 4] * d[:, 2]) + p[:, 5] * d[:, 1] * d[:, 2])
        value = torch.where(m2 <= 9.0, opacities[pair_gauss].to(points.dtype) * torch.exp(-0.5 * m2), 0.0)
        out = out.index_add(0, pair_point, value)
        begin = stop
    return out
