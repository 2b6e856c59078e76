"""Normals and Lambert/Phong shading with a point light."""

from __future__ import annotations

from dataclasses import dataclass

import torch


def face_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """vertices: [V, 3] or [B, V, 3]; faces: [F, 3] -> unnormalised normals (2 x area) [..., F, 3]."""
    faces = faces.long()
    v0, v1, v2 = vertices[..., faces[:, 0], :], vertices[..., faces[:, 1], :], vertices[..., faces[:, 2], :]
    return torch.linalg.cross(v1 - v0, v2 - v0, dim=-1)


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals, differentiable. vertices: [V, 3] or [B, V, 3]."""
    fn = face_normals(vertices, faces)
    normals = torch.zeros_like(vertices)
    for k in range(3):
        normals = normals.index_add(-2, faces[:, k].long(), fn)
    return torch.nn.functional.normalize(normals, dim=-1, eps=1e-12)


@dataclass
class ShadingConfig:
    """Phong shading with one point light and an ambient term."""

    ambient: float = 0.35
    """Ambient light intensity."""
    diffuse: float = 0.65
    """Diffuse (Lambert) intensity of the point light."""
    specular: float = 0.15
    """Specular intensity; 0 gives pure Lambert."""
    shininess: float = 16.0
    """Phong exponent."""
    two_sided: bool = True
    """Flip normals that face away from the eye (open meshes, inconsistent winding)."""


def phong(albedo: torch.Tensor, position: torch.Tensor, normal: torch.Tensor, eye: torch.Tensor,
          light: torch.Tensor, config: ShadingConfig) -> torch.Tensor:
    """Shades pixels (any leading shape [...], e.g. [B, H, W] or a list of pixels [P]).

    albedo: [..., 3] in [0, 1]; position, normal: [..., 3] world space (normal need not be unit);
    eye, light: world positions broadcastable to position ([..., 3]). Returns [..., 3].
    """
    n = torch.nn.functional.normalize(normal, dim=-1, eps=1e-12)
    to_eye = torch.nn.functional.normalize(eye - position, dim=-1, eps=1e-12)
    if config.two_sided:
        n = torch.where((n * to_eye).sum(-1, keepdim=True) < 0, -n, n)
    to_light = torch.nn.functional.normalize(light - position, dim=-1, eps=1e-12)
    lambert = (n * to_light).sum(-1, keepdim=True).clamp(min=0)
    shaded = albedo * (config.ambient + config.diffuse * lambert)
    if config.specular > 0:
        reflect = 2 * (n * to_light).sum(-1, keepdim=True) * n - to_light
        spec = (reflect * to_eye).sum(-1, keepdim=True).clamp(min=0) ** config.shininess
        shaded = shaded + config.specular * spec * (lambert > 0)
    return shaded
