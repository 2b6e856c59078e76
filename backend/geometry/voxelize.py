"""Solid voxel occupancy of a mesh, binvox-style: mark every cell the surface passes through, then fill
the cells the shell encloses.

Frame: the grid covers the cube [-bound, bound]^3 (default bound 1) of the mesh's own coordinates,
which is where `normalize.normalize_to_unit_sphere` puts every mesh (all vertices within radius 1).
Axis order is [x, y, z] (index i along x, j along y, k along z, glTF frame: Y up); cell (i, j, k) has
its centre at `-bound + (i + 0.5) * 2 * bound / R` (see `grid_centres`). Every stage that reads voxels
(the generator's encoder, its decoder's grid, IoU) uses this frame.

Why a shell plus fill rather than an inside test at cell centres: world shapes are assemblies of closed
parts that overlap and are not welded to each other (so winding numbers of the joined mesh are > 1 and
ray parity breaks), and their legs and rods are often thinner than a 32^3 cell, which a centre test
would drop. The shell keeps thin parts; filling enclosed empty space gives the union of the parts'
interiors without needing a watertight whole. The price is a conservative surface: the solid is about
half a cell thicker all round than the exact one. An open mesh with holes wider than a cell keeps only
its shell (nothing is enclosed).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from backend.geometry.mesh import Mesh

SAMPLES_PER_CELL = 3
"""Surface samples per cell width along each triangle edge: dense enough that the shell has no 6-connected gaps."""


def grid_centres(resolution: int, bound: float = 1.0) -> np.ndarray:
    """Cell centres of the voxel frame: [R, R, R, 3] float32, `[i, j, k]` -> (x, y, z) in [-bound, bound]."""
    axis = _axis(resolution, bound)
    return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).astype(np.float32)


def _axis(resolution: int, bound: float) -> np.ndarray:
    cell = 2.0 * bound / resolution
    return -bound + (np.arange(resolution) + 0.5) * cell


def surface_voxels(mesh: Mesh, resolution: int, bound: float = 1.0) -> np.ndarray:
    """The cells the surface passes through: bool [R, R, R] (frame in the module docstring).

    mesh: vertices [N, 3], faces [F, 3] in the voxel frame; parts outside [-bound, bound]^3 are clipped.
    """
    _check(mesh, resolution, bound)
    cell = 2.0 * bound / resolution
    triangles = np.asarray(mesh.vertices, dtype=np.float64)[np.asarray(mesh.faces, dtype=np.int64)]
    edges = np.stack([triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 1],
                      triangles[:, 0] - triangles[:, 2]], axis=1)
    longest = np.linalg.norm(edges, axis=2).max(axis=1)
    # Each triangle gets a barycentric lattice of step <= cell / SAMPLES_PER_CELL; triangles sharing a
    # lattice size are sampled together.
    levels = np.maximum(1, np.ceil(longest * SAMPLES_PER_CELL / cell)).astype(np.int64)
    occupied = np.zeros((resolution,) * 3, dtype=bool)
    for level in np.unique(levels):
        group = triangles[levels == level]
        ij = np.array([(i, j) for i in range(level + 1) for j in range(level + 1 - i)], dtype=np.float64) / level
        weights = np.column_stack([1.0 - ij.sum(axis=1), ij])  # [S, 3] barycentric
        points = np.einsum("sc,tcd->tsd", weights, group).reshape(-1, 3)
        _mark(occupied, points, resolution, bound)
    return occupied


def _mark(occupied: np.ndarray, points: np.ndarray, resolution: int, bound: float) -> None:
    index = np.floor((points + bound) * (resolution / (2.0 * bound))).astype(np.int64)
    # A point exactly on the far face belongs to the last cell, not outside.
    index[(points >= bound) & (points <= bound + 1e-9)] = resolution - 1
    inside = np.all((index >= 0) & (index < resolution), axis=1)
    index = index[inside]
    occupied[index[:, 0], index[:, 1], index[:, 2]] = True


def voxelize(mesh: Mesh, resolution: int, bound: float = 1.0) -> np.ndarray:
    """Solid occupancy of a mesh: bool [R, R, R], True where the cell is inside or on the surface.

    mesh: vertices [N, 3] float, faces [F, 3] int, already in the voxel frame (normalise first with
    `normalize_to_unit_sphere`, or use `voxelize_normalized`). resolution: R >= 2 cells per axis.
    bound: half the side of the voxelised cube. Overlapping or unwelded closed parts give the union of
    their interiors (module docstring).
    """
    shell = surface_voxels(mesh, resolution, bound)
    # fill_holes' default 6-connected structure: empty space escapes only through cell faces, so a shell
    # that is closed across faces is enough even where it is only diagonally connected.
    return ndimage.binary_fill_holes(shell)


def voxelize_normalized(mesh: Mesh, resolution: int):
    """`voxelize` of the mesh moved into the unit sphere: (bool [R, R, R], Similarity source -> voxel frame)."""
    from backend.geometry.normalize import normalize_to_unit_sphere

    normalised, similarity = normalize_to_unit_sphere(mesh)
    return voxelize(normalised, resolution), similarity


def _check(mesh: Mesh, resolution: int, bound: float) -> None:
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or resolution < 2:
        raise ValueError(f"resolution must be an integer >= 2, got {resolution!r}")
    if not bound > 0:
        raise ValueError(f"bound must be > 0, got {bound!r}")
    faces = np.asarray(mesh.faces)
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.shape[0] == 0:
        raise ValueError(f"voxelize needs triangles [F, 3] with F > 0, got faces of shape {faces.shape}")
