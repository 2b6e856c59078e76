"""From a shape latent to a mesh: evaluate the occupancy decoder on a grid, run marching cubes.

The grid is the voxel frame of `backend.geometry.voxelize` (cell centres in [-1, 1]^3) with one extra
cell of forced-empty space on every side, so every surface closes and the mesh is watertight even
where the shape touches the cube's faces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from backend.errors import InvalidInputError
from backend.generate.cleanup import bridge_pieces, clean_surface, signed_volume
from backend.geometry.mesh import Mesh
from backend.geometry.normals import vertex_normals
from backend.geometry.voxelize import grid_centres

EMPTY_LOGIT = -20.0
"""Logit written into the padding cells: surely outside for any threshold in (0, 1)."""


@dataclass
class DecodeConfig:
    """How a latent becomes a mesh."""

    resolution: int = 64
    """Cells per axis of the evaluation grid over [-1, 1]^3 (before the one-cell padding)."""
    threshold: float = 0.5
    """Occupancy probability of the extracted surface, in (0, 1); lower grows the shape."""
    min_piece_fraction: float = 0.05
    """With `keep_detached`: connected pieces enclosing less than this fraction of the surface's total volume are
    dropped (floaters), in [0, 1); 0 keeps every piece. By volume, not face count: a thin chair leg has many faces but is kept
    because it is attached to the seat, and a flat floating slab has many faces but little volume."""
    keep_detached: bool = False
    """False: a generated shape is one object: after bridging, every piece but the largest is dropped whatever its
    size (the report's volume_removed says how much went). True: detached pieces of at least
    `min_piece_fraction` are kept."""
    bridge_floor: float = 0.05
    """Detached pieces of the grid (of at least `bridge_min_fraction` of its cells) are joined to the largest by a
    strut along the field's ridge when they connect to it above this occupancy probability
    (`backend.generate.cleanup.bridge_pieces`): a chair leg that the field keeps just under the threshold at its
    joint stays on the chair instead of floating. 0 (or not below `threshold`): no bridging."""
    bridge_min_fraction: float = 0.005
    """Pieces smaller than this fraction of the occupied cells are never bridged (specks; the clean-up drops them)."""
    smooth_iterations: int = 10
    """Taubin lambda/mu smoothing rounds after the floaters go (0: off): removes the grid's staircase without
    shrinking the shape the way plain Laplacian smoothing does."""
    chunk_points: int = 65536
    """Points per decoder call (bounds memory on big grids)."""
    coarse_resolution: int = 32
    """Coarse-to-fine evaluation: the decoder runs first on a grid this fine, then at `resolution` only in coarse
    cells next to the surface (or within `band` logits of it); elsewhere the coarse logits are interpolated. 0 (or
    >= resolution) evaluates the dense grid. Parts thinner than a coarse cell that never reach the band are lost."""
    band: float = 2.0
    """Coarse cells whose logit is within this many logits of the threshold's are refined too."""

    def __post_init__(self) -> None:
        if self.resolution < 2:
            raise ValueError(f"resolution must be >= 2, got {self.resolution}")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold is a probability in (0, 1), got {self.threshold}")
        if self.coarse_resolution < 0 or self.coarse_resolution == 1:
            raise ValueError(f"coarse_resolution must be 0 (dense) or >= 2, got {self.coarse_resolution}")
        if self.band < 0:
            raise ValueError(f"band must be >= 0, got {self.band}")
        if not 0.0 <= self.min_piece_fraction < 1.0:
            raise ValueError(f"min_piece_fraction is a fraction of the total volume in [0, 1), got "
                             f"{self.min_piece_fraction} (0 keeps every piece)")
        if not 0.0 <= self.bridge_floor < 1.0:
            raise ValueError(f"bridge_floor is an occupancy probability in [0, 1), got {self.bridge_floor} "
                             "(0 turns bridging off)")
        if not 0.0 <= self.bridge_min_fraction < 1.0:
            raise ValueError(f"bridge_min_fraction is a fraction of the occupied cells in [0, 1), got "
                             f"{self.bridge_min_fraction}")
        if self.smooth_iterations < 0:
            raise ValueError(f"smooth_iterations must be >= 0 (0 turns smoothing off), got {self.smooth_iterations}")


@torch.no_grad()
def decode_grid(model, latent: torch.Tensor, resolution: int, chunk_points: int = 65536) -> np.ndarray:
    """Occupancy logits of one latent at the cell centres: latent [L] or [1, L] -> float32 [R, R, R].

    model: an `OccupancyAutoencoder` (anything with `decode(points [1, P, 3], latent [1, L]) -> [1, P]`).
    """
    latent = latent.reshape(1, -1)
    points = torch.from_numpy(grid_centres(resolution).reshape(-1, 3)).to(latent.device)
    logits = [model.decode(chunk.unsqueeze(0), latent)[0] for chunk in torch.split(points, chunk_points)]
    return torch.cat(logits).reshape(resolution, resolution, resolution).float().cpu().numpy()


@torch.no_grad()
def decode_grid_coarse_to_fine(model, latent: torch.Tensor, config: "DecodeConfig") -> tuple[np.ndarray, int]:
    """Logits at the cell centres of a `config.resolution` grid, evaluated coarse to fine (see
    `DecodeConfig.coarse_resolution`): (float32 [R, R, R], the number of points the decoder evaluated)."""
    import torch.nn.functional as F

    r, c = config.resolution, config.coarse_resolution
    if c == 0 or c >= r:
        return decode_grid(model, latent, r, config.chunk_points), r**3
    level = math.log(config.threshold / (1.0 - config.threshold))
    coarse = torch.from_numpy(decode_grid(model, latent, c, config.chunk_points)) - level
    inside = (coarse > 0).float()[None, None]
    # A coarse cell is near the surface when its 3x3x3 neighbourhood holds both signs, or its logit is in the band.
    mixed = F.max_pool3d(inside, 3, 1, 1) != -F.max_pool3d(-inside, 3, 1, 1)
    near = (mixed[0, 0] | (coarse.abs() < config.band)).float()[None, None]
    fine = F.interpolate(coarse[None, None], size=(r, r, r), mode="trilinear", align_corners=False)[0, 0]
    refine = F.interpolate(near, size=(r, r, r), mode="nearest")[0, 0] > 0.5
    index = refine.reshape(-1).nonzero()[:, 0]
    if len(index):
        points = torch.from_numpy(grid_centres(r).reshape(-1, 3))[index].to(latent.device)
        z = latent.reshape(1, -1)
        values = torch.cat([model.decode(chunk.unsqueeze(0), z)[0].float().cpu()
                            for chunk in torch.split(points, config.chunk_points)])
        fine.view(-1)[index] = values - level
    return (fine + level).numpy().astype(np.float32), c**3 + len(index)


def logits_to_mesh(logits: np.ndarray, config: DecodeConfig | None = None, name: str = "generated") -> Mesh:
    """Marching cubes of a logit grid [R, R, R] (voxel frame) at `config.threshold` -> Mesh.

    Detached pieces that nearly touch the largest are bridged to it first (`config.bridge_floor`), the pieces still
    detached are dropped (`config.keep_detached`, `config.min_piece_fraction`), then the surface is Taubin-smoothed (see
    `backend.generate.cleanup`). Returns vertices [N, 3] float32 in the voxel frame, faces [F, 3] int32
    counter-clockwise from outside, metadata["normals"] [N, 3] float32 (after smoothing) and metadata["cleanup"]
    (`CleanupReport.as_dict()` with the `BridgeReport`'s bridged and strut_cells). Raises InvalidInputError when
    nothing is above the threshold.
    """
    from skimage.measure import marching_cubes

    config = config or DecodeConfig()
    r = logits.shape[0]
    level = math.log(config.threshold / (1.0 - config.threshold))
    padded = np.pad(np.asarray(logits, dtype=np.float32), 1, constant_values=EMPTY_LOGIT)
    if not (padded > level).any():
        top = 1.0 / (1.0 + math.exp(-float(np.max(logits))))
        raise InvalidInputError(
            f"the decoded shape is empty: no occupancy reaches the threshold {config.threshold:g} "
            f"(highest {top:.3g})",
            "lower the threshold below the highest occupancy, or check that the checkpoint is trained",
        )
    bridged = {"bridged": 0, "strut_cells": 0}
    if 0 < config.bridge_floor < config.threshold:
        floor = math.log(config.bridge_floor / (1.0 - config.bridge_floor))
        inner, bridge = bridge_pieces(padded[1:-1, 1:-1, 1:-1], level, floor, config.bridge_min_fraction)
        padded[1:-1, 1:-1, 1:-1] = inner
        bridged = {"bridged": bridge.bridged, "strut_cells": bridge.strut_cells}
    cell = 2.0 / r
    vertices, faces, _, _ = marching_cubes(padded, level=level, spacing=(cell, cell, cell))
    # Padded index p is cell p - 1, whose centre is at -1 + (p - 1 + 0.5) * cell.
    vertices = (vertices - 1.0 - 0.5 * cell).astype(np.float32)
    faces = faces.astype(np.int32)
    # Marching cubes winds all faces one way; which way depends on the gradient's sign, so check it (before the
    # clean-up, which tells solids from cavities by the sign of their volume).
    if signed_volume(vertices, faces) < 0:
        faces = np.ascontiguousarray(faces[:, ::-1])
    vertices, faces, report = clean_surface(vertices, faces, config.min_piece_fraction, config.smooth_iterations,
                                             only_largest=not config.keep_detached)
    return Mesh(vertices=vertices, faces=faces, name=name,
                metadata={"normals": vertex_normals(vertices, faces), "cleanup": {**report.as_dict(), **bridged}})


def decode_latent(model, latent: torch.Tensor, config: DecodeConfig | None = None, name: str = "generated") -> Mesh:
    """A latent [L] -> a watertight Mesh in the voxel frame (see `logits_to_mesh`)."""
    config = config or DecodeConfig()
    return logits_to_mesh(decode_grid_coarse_to_fine(model, latent, config)[0], config, name)
