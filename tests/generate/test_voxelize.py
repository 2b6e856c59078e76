"""Solid voxelisation against analytic volumes, and on the world's multi-part shapes."""

import numpy as np
import pytest

from backend.geometry.mesh import Mesh
from backend.geometry.primitives import cube, icosphere
from backend.geometry.voxelize import grid_centres, surface_voxels, voxelize, voxelize_normalized
from backend.world.shape import make_shape


def _shell_band(area: float, resolution: int) -> float:
    """The most a conservative (surface-cells-included) voxelisation may overshoot, as a fraction of the cube [-1, 1]^3."""
    return area * (2.0 / resolution) / 8.0


@pytest.mark.parametrize("resolution", [32, 64])
def test_sphere_volume_fraction_close_to_analytic(resolution):
    radius = 0.8
    sphere = icosphere(4, radius)
    occupied = voxelize(sphere, resolution)
    assert occupied.shape == (resolution,) * 3 and occupied.dtype == bool
    exact = 4.0 / 3.0 * np.pi * radius**3 / 8.0
    # The icosphere is inscribed (a hair smaller than the sphere); the shell adds at most one cell layer.
    assert exact * 0.97 <= occupied.mean() <= exact + _shell_band(4 * np.pi * radius**2, resolution)
    assert abs(occupied.mean() - exact) / exact < (0.2 if resolution == 32 else 0.1)
    # Solid, not a shell: the centre cell is filled; the corners are empty.
    c = resolution // 2
    assert occupied[c, c, c] and not occupied[0, 0, 0]


def test_cube_volume_and_frame():
    occupied = voxelize(cube(1.0), 64)
    exact = 1.0 / 8.0
    assert exact <= occupied.mean() <= exact + _shell_band(6.0, 64)
    # Cell centres inside the cube [-0.5, 0.5]^3 are all occupied, those farther than a cell outside are not.
    centres = grid_centres(64)
    inside = np.all(np.abs(centres) < 0.5, axis=-1)
    outside = np.any(np.abs(centres) > 0.5 + 2.0 / 64, axis=-1)
    assert occupied[inside].all() and not occupied[outside].any()
    # Axis order is [x, y, z]: a box long in x is long along the first axis.
    box = cube(1.0)
    box = box.copy(vertices=box.vertices * np.array([1.6, 0.4, 0.4], np.float32))
    filled = np.argwhere(voxelize(box, 32))
    extent = filled.max(axis=0) - filled.min(axis=0)
    assert extent[0] > 2 * extent[1] and extent[1] == extent[2]


def test_overlapping_unwelded_parts_give_their_union():
    a = cube(1.0)
    b = a.copy(vertices=a.vertices + np.array([0.5, 0.0, 0.0], np.float32))
    joined = Mesh(np.concatenate([a.vertices, b.vertices]), np.concatenate([a.faces, b.faces + 8]).astype(np.int32))
    union = voxelize(joined, 32)
    assert np.array_equal(union, voxelize(a, 32) | voxelize(b, 32))
    # The overlap region is inside both parts (winding number 2): still filled.
    centres = grid_centres(32)
    assert union[np.all(np.abs(centres - [0.25, 0, 0]) < 0.2, axis=-1)].all()


def test_world_shapes_keep_thin_parts_and_fill():
    for seed in range(6):
        shape = make_shape(seed)
        occupied, similarity = voxelize_normalized(shape.mesh, 32)
        shell = surface_voxels(shape.mesh.copy(vertices=similarity.apply(shape.mesh.vertices)), 32)
        assert occupied.any() and (occupied >= shell).all(), shape.category
        # Every part leaves a mark: the centres of all its faces fall in occupied cells.
        vertices = similarity.apply(shape.mesh.vertices)
        centroids = vertices[shape.mesh.faces].mean(axis=1)
        index = np.clip(np.floor((centroids + 1.0) * 16).astype(int), 0, 31)
        assert occupied[index[:, 0], index[:, 1], index[:, 2]].all(), shape.category


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="resolution"):
        voxelize(cube(), 1)
    with pytest.raises(ValueError, match="triangles"):
        voxelize(Mesh(np.zeros((3, 3), np.float32), np.zeros((0, 3), np.int32)), 8)
