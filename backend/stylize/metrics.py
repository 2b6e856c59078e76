"""Objective measures of a restyled texture on views the optimisation never saw.

Everything is measured on *unlit* renders (the albedo the texture gives each pixel), so lighting does not
blur what the restyler changed: colour histograms against the style images, distance to a palette, and
the direction of the pattern's edges (stripes give gradients across the bands, dots in every direction).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from backend.geometry.mesh import Mesh
from backend.geometry.normalize import normalize_to_unit_sphere
from backend.render.camera import Cameras, fit_distance, orbit_cameras
from backend.render.rasterizer import RasterizerConfig
from backend.render.renderer import MeshRenderer, RenderConfig


def held_out_views(count: int = 6, elevation_deg: float = 10.0, fov_deg: float = 40.0, scale: float = 1.1,
                   device: torch.device | str = "cpu") -> Cameras:
    """A fixed turntable (offset half a step from azimuth 0) at a low elevation: views for evaluation."""
    azimuth = (torch.arange(count, dtype=torch.float32) + 0.5) * (360.0 / count)
    return orbit_cameras(azimuth, torch.full((count,), elevation_deg), fit_distance(fov_deg) * scale, fov_deg,
                         device=device)


@torch.no_grad()
def render_albedo(mesh: Mesh, texture: np.ndarray, cameras: Cameras | None = None, size: int = 128,
                  device: torch.device | str = "cpu", renderer: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Unlit renders of `mesh` (normalised to the unit sphere) wearing `texture` ([H, W, 3] uint8, over its UVs).

    Returns (images [B, size, size, 3] float32 in [0, 1], coverage [B, size, size] bool).
    """
    normalised, _ = normalize_to_unit_sphere(mesh)
    cameras = cameras if cameras is not None else held_out_views(device=device)
    render = MeshRenderer(RenderConfig(size=size, antialias=False, rasterizer=RasterizerConfig(implementation=renderer)),
                          device)
    out = render.render(torch.as_tensor(normalised.vertices, device=device),
                        torch.as_tensor(normalised.faces, device=device), cameras,
                        uv=torch.as_tensor(normalised.uv, dtype=torch.float32, device=device),
                        texture=torch.as_tensor(texture[..., :3], device=device).float() / 255.0, shade=False)
    return out.image.cpu().numpy(), (out.face_id >= 0).cpu().numpy()


def colour_histogram(pixels: np.ndarray, bins: int = 8) -> np.ndarray:
    """pixels [..., 3] in [0, 1] -> [bins^3] float64 joint RGB histogram summing to 1."""
    flat = np.clip(np.asarray(pixels, dtype=np.float64).reshape(-1, 3), 0.0, 1.0)
    cells = np.minimum((flat * bins).astype(np.int64), bins - 1)
    index = (cells[:, 0] * bins + cells[:, 1]) * bins + cells[:, 2]
    counts = np.bincount(index, minlength=bins**3).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def histogram_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Total-variation distance of two histograms summing to 1: 0 identical, 1 disjoint."""
    return float(0.5 * np.abs(a - b).sum())


def palette_distance(pixels: np.ndarray, palette: np.ndarray) -> float:
    """Mean Euclidean RGB distance of pixels [..., 3] to their nearest palette colour ([K, 3])."""
    flat = np.asarray(pixels, dtype=np.float64).reshape(-1, 1, 3)
    return float(np.linalg.norm(flat - np.asarray(palette, dtype=np.float64)[None], axis=-1).min(axis=1).mean())


def gradient_energy(images: np.ndarray, coverage: np.ndarray) -> tuple[float, float]:
    """Mean squared luminance gradient (across columns: x, across rows: y) over pixels whose 3x3 neighbourhood
    lies inside the coverage (silhouette edges excluded). images [B, H, W, 3], coverage [B, H, W] bool."""
    luma = torch.as_tensor(np.asarray(images, dtype=np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))
    inside = torch.as_tensor(coverage, dtype=torch.float32)[:, None]
    interior = (-F.max_pool2d(-inside, 3, stride=1, padding=1))[:, 0, 1:-1, 1:-1] > 0.5
    gx = (luma[:, 1:-1, 2:] - luma[:, 1:-1, :-2]) / 2
    gy = (luma[:, 2:, 1:-1] - luma[:, :-2, 1:-1]) / 2
    if not interior.any():
        return 0.0, 0.0
    return float((gx[interior] ** 2).mean()), float((gy[interior] ** 2).mean())
