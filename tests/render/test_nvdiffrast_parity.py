"""Renderer parity on CUDA: the PyTorch rasterizer against nvdiffrast on the same small scenes.

Images and gradients (to vertex positions and colours) of one shaded, antialiased render must agree within
tolerance. Marked `cuda` (run by `python build.py gpu-check`); skipped without CUDA and nvdiffrast. The scenes'
own claims (back faces seen, triangles crossing the image edge) are checked on the CPU too.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from backend import external
from backend.render.camera import fit_distance, orbit_cameras, to_clip
from backend.render.rasterizer import RasterizerConfig
from backend.render.renderer import MeshRenderer, RenderConfig

FOV = 40.0
SIZE = 128
needs_cuda = pytest.mark.skipif(not (torch.cuda.is_available() and external.HAS_NVDIFFRAST),
                                reason="needs CUDA and nvdiffrast (python build.py gpu-check prepares it)")


def bumpy_sphere(subdivisions: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An icosphere with seeded radial bumps, radius at most 1: self-occlusion, faces turned away from each camera."""
    from backend.geometry.primitives import icosphere

    mesh = icosphere(subdivisions)
    v = np.asarray(mesh.vertices, dtype=np.float64)
    rng = np.random.default_rng(seed)
    bumps = np.zeros(len(v))
    for _ in range(5):
        d = rng.normal(size=3)
        bumps += 0.1 * np.sin(rng.uniform(3, 8) * (v @ (d / np.linalg.norm(d))) + rng.uniform(0, 2 * math.pi))
    v = v * (1 + bumps)[:, None]
    return (v / np.linalg.norm(v, axis=1).max()).astype(np.float32), np.asarray(mesh.faces, dtype=np.int32)


SCENES = {
    # name -> (subdivisions, camera distance as a multiple of the fitting one): whole in view / cut by the edge
    "whole": (3, 1.0),
    "cut by the image edge": (4, 0.6),
}


def scene(name: str, device: str):
    subdivisions, scale = SCENES[name]
    vertices, faces = bumpy_sphere(subdivisions)
    cams = orbit_cameras(torch.tensor([20.0, 140.0, 260.0]), torch.tensor([15.0, -25.0, 40.0]),
                         fit_distance(FOV) * scale, FOV, device=device)
    return torch.tensor(vertices, device=device), torch.tensor(faces, device=device), cams


def render_with_grads(implementation: str, name: str, device: str) -> dict[str, torch.Tensor]:
    vertices, faces, cams = scene(name, device)
    generator = torch.Generator().manual_seed(1)
    colors = torch.rand(len(vertices), 3, generator=generator).to(device).requires_grad_(True)
    weight = torch.rand(len(cams.eye), SIZE, SIZE, 3, generator=generator).to(device)
    vertices.requires_grad_(True)
    renderer = MeshRenderer(RenderConfig(size=SIZE, rasterizer=RasterizerConfig(implementation=implementation)),
                            device)
    assert renderer.name == implementation
    out = renderer.render(vertices, faces, cams, vertex_colors=colors)
    (out.image * weight).sum().backward()
    return {"image": out.image.detach(), "face_id": out.face_id, "d_vertices": vertices.grad, "d_colors": colors.grad}


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp_min(1e-12)).item()


@pytest.mark.parametrize("name", list(SCENES))
def test_scenes_have_back_faces_and_edge_crossings_as_named(name):
    vertices, faces, cams = scene(name, "cpu")
    clip = to_clip(vertices, cams)
    ndc = clip[..., :2] / clip[..., 3:]
    outside = (ndc.abs() > 1).any(-1)  # [B, V]
    crossing = outside[:, faces.long()].any(-1) & ~outside[:, faces.long()].all(-1)  # [B, F]
    assert bool(crossing.any()) == (name == "cut by the image edge")
    tri = ndc[:, faces.long()]  # [B, F, 3, 2]: signed area < 0 is a face turned away
    e1, e2 = tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0]
    area = e1[..., 0] * e2[..., 1] - e1[..., 1] * e2[..., 0]
    assert (area < 0).sum() > 0.3 * area.numel()


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("name", list(SCENES))
def test_torch_and_nvdiffrast_agree_on_images_and_gradients(name):
    ours, theirs = (render_with_grads(impl, name, "cuda") for impl in ("torch", "nvdiffrast"))
    same_face = (ours["face_id"] == theirs["face_id"]).float().mean().item()
    assert same_face >= 0.995, f"triangle ids agree on {same_face:.4f} of pixels"
    diff = (ours["image"] - theirs["image"]).abs()
    assert diff.mean().item() < 2e-3, f"mean image difference {diff.mean().item():.2e}"
    assert (diff > 0.05).float().mean().item() < 0.01, "over 1% of pixel channels differ by more than 0.05"
    assert relative(ours["d_colors"], theirs["d_colors"]) < 0.05
    cosine = torch.nn.functional.cosine_similarity(ours["d_vertices"].flatten(), theirs["d_vertices"].flatten(), 0)
    assert cosine.item() > 0.95, f"position gradients' cosine {cosine.item():.3f}"
    assert relative(ours["d_vertices"], theirs["d_vertices"]) < 0.3
