"""Shaded views around a mesh: the `render` job and the `atelier render` command."""

from __future__ import annotations

import numpy as np
import torch

from backend.geometry.mesh import Mesh
from backend.geometry.normalize import normalize_to_unit_sphere
from backend.progress import CancelToken, ProgressFn, no_progress
from backend.render.camera import Cameras, fit_distance, orbit_cameras
from backend.render.renderer import MeshRenderer, RenderConfig


def turntable_cameras(views: int, elevation_deg: float = 20.0, fov_deg: float = 40.0,
                      device: torch.device | str = "cpu") -> Cameras:
    """`views` cameras evenly spaced in azimuth (the first looks at the front, +Z) around the unit sphere."""
    azimuth = torch.arange(views, dtype=torch.float32) * (360.0 / views)
    return orbit_cameras(azimuth, torch.full((views,), elevation_deg), fit_distance(fov_deg), fov_deg, device=device)


def mesh_tensors(mesh: Mesh, device: torch.device | str) -> dict[str, torch.Tensor]:
    """The mesh's arrays as tensors for `MeshRenderer.render` (texture as float in [0, 1])."""
    out = {
        "vertices": torch.as_tensor(np.asarray(mesh.vertices, dtype=np.float32), device=device),
        "faces": torch.as_tensor(np.asarray(mesh.faces, dtype=np.int32), device=device),
    }
    if mesh.texture is not None and mesh.uv is not None:
        out["uv"] = torch.as_tensor(np.asarray(mesh.uv, dtype=np.float32), device=device)
        out["texture"] = torch.as_tensor(np.asarray(mesh.texture[..., :3], dtype=np.float32) / 255.0, device=device)
    elif mesh.vertex_colors is not None:
        out["vertex_colors"] = torch.as_tensor(np.asarray(mesh.vertex_colors[:, :3], dtype=np.float32), device=device)
    return out


@torch.no_grad()
def render_turntable(mesh: Mesh, views: int = 8, size: int = 256, device: torch.device | str = "cpu",
                     progress: ProgressFn = no_progress, cancel: CancelToken | None = None,
                     config: RenderConfig | None = None, elevation_deg: float = 20.0) -> np.ndarray:
    """Renders `views` shaded views of a (validated) mesh, normalised to the unit sphere.

    Returns [views, size, size, 3] uint8, top row first. Calls progress(step, total) after each view
    and checks `cancel` before each.
    """
    if views < 1:
        raise ValueError(f"views must be >= 1, got {views}")
    config = config or RenderConfig()
    config = RenderConfig(**{**config.__dict__, "size": int(size)})
    renderer = MeshRenderer(config, device)
    normalised, _ = normalize_to_unit_sphere(mesh)
    tensors = mesh_tensors(normalised, renderer.device)
    cameras = turntable_cameras(views, elevation_deg, device=renderer.device)
    images = []
    for i in range(views):
        if cancel is not None:
            cancel.check()
        out = renderer.render(cameras=cameras[i], **tensors)
        images.append((out.image[0].clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy())
        progress(i + 1, views)
    return np.stack(images)
