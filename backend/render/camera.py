"""Cameras in OpenGL conventions: look-at views (camera looks down -Z, +Y up) and perspective projection.

The world is glTF's frame (Y up). Angles: azimuth around +Y from +Z toward +X, elevation above the XZ plane.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def look_at(eye: torch.Tensor, target: torch.Tensor, up: torch.Tensor | None = None) -> torch.Tensor:
    """World-to-camera matrices.

    eye, target: [B, 3] float32 world positions. up: [3] (default +Y).
    Returns [B, 4, 4] float32.
    """
    if up is None:
        up = torch.tensor([0.0, 1.0, 0.0], dtype=eye.dtype, device=eye.device)
    forward = torch.nn.functional.normalize(target - eye, dim=-1)
    up = up.expand_as(forward)
    right = torch.linalg.cross(forward, up, dim=-1)
    # Looking straight up or down: any right vector perpendicular to forward will do.
    degenerate = right.norm(dim=-1, keepdim=True) < 1e-6
    alt = torch.linalg.cross(forward, torch.tensor([0.0, 0.0, 1.0], dtype=eye.dtype, device=eye.device).expand_as(forward), dim=-1)
    right = torch.nn.functional.normalize(torch.where(degenerate, alt, right), dim=-1)
    true_up = torch.linalg.cross(right, forward, dim=-1)
    view = torch.zeros(eye.shape[0], 4, 4, dtype=eye.dtype, device=eye.device)
    view[:, 0, :3] = right
    view[:, 1, :3] = true_up
    view[:, 2, :3] = -forward
    view[:, 0, 3] = -(right * eye).sum(-1)
    view[:, 1, 3] = -(true_up * eye).sum(-1)
    view[:, 2, 3] = (forward * eye).sum(-1)
    view[:, 3, 3] = 1.0
    return view


def perspective(fovy: float, aspect: float = 1.0, near: float = 0.05, far: float = 20.0,
                device: torch.device | str = "cpu") -> torch.Tensor:
    """OpenGL projection matrix [4, 4]; fovy in radians (vertical field of view)."""
    f = 1.0 / math.tan(fovy / 2.0)
    proj = torch.zeros(4, 4, device=device)
    proj[0, 0] = f / aspect
    proj[1, 1] = f
    proj[2, 2] = (far + near) / (near - far)
    proj[2, 3] = 2.0 * far * near / (near - far)
    proj[3, 2] = -1.0
    return proj


@dataclass
class Cameras:
    """A batch of pinhole cameras."""

    view: torch.Tensor
    """[B, 4, 4] world-to-camera."""
    proj: torch.Tensor
    """[B, 4, 4] camera-to-clip (OpenGL)."""
    eye: torch.Tensor
    """[B, 3] camera centres in world space."""

    @property
    def mvp(self) -> torch.Tensor:
        """[B, 4, 4] world-to-clip."""
        return self.proj @ self.view

    def __len__(self) -> int:
        return int(self.view.shape[0])

    def to(self, device: torch.device | str) -> "Cameras":
        return Cameras(self.view.to(device), self.proj.to(device), self.eye.to(device))

    def __getitem__(self, index) -> "Cameras":
        if isinstance(index, int):
            index = slice(index, index + 1)
        return Cameras(self.view[index], self.proj[index], self.eye[index])


def to_clip(vertices: torch.Tensor, cameras: Cameras) -> torch.Tensor:
    """vertices: [V, 3] or [B, V, 3] world positions -> [B, V, 4] clip-space positions."""
    homo = torch.nn.functional.pad(vertices, (0, 1), value=1.0)
    return homo @ cameras.mvp.transpose(1, 2)


def orbit_cameras(azimuth_deg: torch.Tensor, elevation_deg: torch.Tensor, distance: torch.Tensor | float,
                  fov_deg: float = 40.0, target: tuple[float, float, float] = (0.0, 0.0, 0.0),
                  device: torch.device | str = "cpu") -> Cameras:
    """Cameras on a sphere around `target` looking at it.

    azimuth_deg, elevation_deg: [B] degrees; distance: [B] or a float, in world units.
    """
    azimuth = torch.as_tensor(azimuth_deg, dtype=torch.float32, device=device).flatten()
    elevation = torch.as_tensor(elevation_deg, dtype=torch.float32, device=device).flatten()
    distance = torch.as_tensor(distance, dtype=torch.float32, device=device).flatten().expand_as(azimuth)
    az, el = torch.deg2rad(azimuth), torch.deg2rad(elevation)
    centre = torch.tensor(target, dtype=torch.float32, device=device)
    offset = torch.stack([torch.cos(el) * torch.sin(az), torch.sin(el), torch.cos(el) * torch.cos(az)], dim=-1)
    eye = centre + distance.unsqueeze(-1) * offset
    view = look_at(eye, centre.expand_as(eye))
    proj = perspective(math.radians(fov_deg), device=device).expand(len(azimuth), 4, 4)
    return Cameras(view, proj.clone(), eye)


def fit_distance(fov_deg: float, radius: float = 1.0, margin: float = 1.05) -> float:
    """Camera distance at which a sphere of `radius` just fits the (vertical) field of view."""
    return radius * margin / math.sin(math.radians(fov_deg) / 2.0)


@dataclass
class ViewSamplerConfig:
    """How random views around a unit-sphere-normalised mesh are drawn."""

    elevation_range: tuple[float, float] = (-10.0, 50.0)
    """Elevation in degrees, drawn uniformly."""
    azimuth_range: tuple[float, float] = (0.0, 360.0)
    """Azimuth in degrees, drawn uniformly."""
    distance_scale: tuple[float, float] = (1.0, 1.3)
    """Distance as a multiple of the distance that fits the unit sphere."""
    fov_deg: float = 40.0
    """Vertical field of view in degrees."""


def sample_views(count: int, config: ViewSamplerConfig | None = None, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> Cameras:
    """`count` random cameras looking at the origin (seeded through `generator`)."""
    config = config or ViewSamplerConfig()

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(count, generator=generator)

    azimuth = uniform(*config.azimuth_range)
    elevation = uniform(*config.elevation_range)
    distance = uniform(*config.distance_scale) * fit_distance(config.fov_deg)
    return orbit_cameras(azimuth, elevation, distance, config.fov_deg, device=device)
