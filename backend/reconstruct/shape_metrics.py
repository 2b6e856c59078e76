"""How close a reconstruction is to the true shape: voxel IoU and Chamfer distance, both shapes in the unit sphere,
at the best rotation about the vertical axis (a single photo fixes no azimuth: a sphere-started reconstruction
lives in its camera's frame, a prior-started one in the prior's), and the reference view's mask IoU."""

from __future__ import annotations

import math

import numpy as np
import torch

from backend.generate.metrics import surface_points
from backend.geometry.mesh import Mesh
from backend.geometry.normalize import normalize_to_unit_sphere
from backend.geometry.voxelize import voxelize


def _yaw(vertices: np.ndarray, degrees: float) -> np.ndarray:
    a = math.radians(degrees)
    rotation = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    return vertices @ rotation.T


def aligned_shape_scores(result: Mesh, truth: Mesh, resolution: int = 32, yaws: int = 24,
                         points: int = 2048) -> dict[str, float]:
    """{"voxel_iou", "chamfer", "yaw"}: solid voxel IoU at `resolution`, maximised over `yaws` rotations of the
    result about +Y, and the symmetric Chamfer distance (mean nearest-neighbour distance both ways, unit-sphere
    units) of `points` surface samples at that rotation."""
    result, _ = normalize_to_unit_sphere(result)
    truth, _ = normalize_to_unit_sphere(truth)
    solid_truth = voxelize(truth, resolution)
    best = (-1.0, 0.0)
    for k in range(yaws):
        degrees = 360.0 * k / yaws
        solid = voxelize(result.copy(vertices=_yaw(result.vertices, degrees).astype(np.float32)), resolution)
        union = np.logical_or(solid, solid_truth).sum()
        iou = float(np.logical_and(solid, solid_truth).sum() / union) if union else 0.0
        if iou > best[0]:
            best = (iou, degrees)
    rng = np.random.default_rng(0)
    a = torch.from_numpy(_yaw(surface_points(result, points, rng), best[1]).astype(np.float32))
    b = torch.from_numpy(surface_points(truth, points, rng))
    d = torch.cdist(a, b)
    chamfer = 0.5 * float(d.min(dim=1).values.mean() + d.min(dim=0).values.mean())
    return {"voxel_iou": best[0], "chamfer": chamfer, "yaw": best[1]}


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    """IoU of two boolean masks (0 when both are empty)."""
    union = float((a | b).sum())
    return float((a & b).sum()) / union if union else 0.0
