"""Standard generative metrics for sets of shapes: MMD-CD, COV-CD and 1-NNA-CD.

Definitions follow PointFlow (Yang et al. 2019, section 5), which the shape-generation literature
reports: every shape becomes a point cloud sampled uniformly on its surface, and two clouds are
compared with the Chamfer distance (CD: mean squared nearest-neighbour distance from a to b plus
the same from b to a). Given a generated set G and a reference set R:

- MMD (lower is better): the mean over reference shapes of the CD to the closest generated shape,
  i.e. fidelity: does every reference shape have a close generated look-alike?
- COV (higher is better): the fraction of reference shapes that are the nearest reference of at
  least one generated shape, i.e. diversity: a mode-collapsed generator covers 1/|R|.
- 1-NNA (0.5 is ideal, 1.0 worst): leave-one-out accuracy of the 1-nearest-neighbour classifier
  telling G from R on G ∪ R. Near 0.5 when the two sets are indistinguishable.

Frame: CD is not scale-invariant, so both sets must be in one frame. The caller passes meshes in
the generator's voxel frame (unit-sphere-normalised, see backend.geometry.normalize); for shapes
from elsewhere apply `normalize_points` to every cloud of both sets.
"""

from __future__ import annotations

import numpy as np
import torch

from backend.errors import InvalidInputError
from backend.geometry.mesh import Mesh
from backend.geometry.point_samples import sample_faces


def surface_points(mesh: Mesh, count: int = 2048, rng: np.random.Generator | None = None) -> np.ndarray:
    """Area-weighted uniform samples on the triangles: [count, 3] float32.

    mesh: vertices [N, 3], faces [F, 3]. rng: the source of randomness (default: seed 0, so results
    are reproducible). Raises ValueError for a mesh with no faces or zero total area.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.shape[0] == 0:
        raise ValueError(f"mesh faces must be a non-empty [F, 3] array, got shape {faces.shape}")
    rng = np.random.default_rng(0) if rng is None else rng
    try:
        picked, weights = sample_faces(vertices, faces, count, rng)
    except InvalidInputError as exc:
        raise ValueError("mesh has zero surface area: nothing to sample (check it has non-degenerate faces)") from exc
    return np.einsum("pk,pkd->pd", weights, vertices[faces[picked]]).astype(np.float32)


def normalize_points(points: np.ndarray) -> np.ndarray:
    """One cloud [P, 3] or a set [N, P, 3], each cloud centred at its bounding-box centre and scaled so
    its farthest point is at radius 1 (the mesh normalisation of backend.geometry.normalize). float32."""
    clouds = _as_clouds(points, "points") if np.ndim(points) == 3 else _as_clouds(np.asarray(points)[None], "points")
    centre = 0.5 * (clouds.min(axis=1, keepdims=True) + clouds.max(axis=1, keepdims=True))
    centred = clouds - centre
    radius = np.linalg.norm(centred, axis=2).max(axis=1)[:, None, None]
    if np.any(radius <= 0.0):
        raise ValueError("cannot normalise a cloud whose points all coincide (radius 0)")
    out = (centred / radius).astype(np.float32)
    return out if np.ndim(points) == 3 else out[0]


def chamfer_matrix(a: np.ndarray, b: np.ndarray | None = None, chunk: int = 8,
                   device: str | torch.device = "cpu") -> np.ndarray:
    """Pairwise Chamfer distances: a [N, P, 3], b [M, P, 3] -> [N, M] float64.

    CD(x, y) = mean_i min_j |x_i - y_j|^2 + mean_j min_i |x_i - y_j|^2 (PointFlow's CD, squared
    distances, no square root). b=None compares a with itself, computing each pair once. chunk: how
    many clouds of `a` meet one cloud of `b` at a time; peak memory is about chunk * P * P * 4 bytes
    (134 MB at chunk 8, P 2048).
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    xa = torch.as_tensor(_as_clouds(a, "a"), device=device)
    symmetric = b is None
    xb = xa if symmetric else torch.as_tensor(_as_clouds(b, "b"), device=device)
    if xa.shape[1] != xb.shape[1]:
        raise ValueError(f"point counts differ: a has {xa.shape[1]} points per cloud, b has {xb.shape[1]}; "
                         "sample both sets with the same count")
    out = torch.zeros(len(xa), len(xb), dtype=torch.float64)
    with torch.no_grad():
        for j in range(len(xb)):
            # For a self-matrix only rows i <= j are needed; the rest is mirrored below.
            stop = j + 1 if symmetric else len(xa)
            for start in range(0, stop, chunk):
                block = xa[start:min(start + chunk, stop)]
                d = torch.cdist(block, xb[j].expand(len(block), -1, -1)).square_()  # [c, P, P]
                cd = d.min(dim=2).values.mean(dim=1) + d.min(dim=1).values.mean(dim=1)
                out[start:start + len(block), j] = cd.double().cpu()
    if symmetric:
        out = torch.triu(out) + torch.triu(out, diagonal=1).T
    return out.numpy()


def generative_metrics(generated: np.ndarray, reference: np.ndarray, chunk: int = 8,
                       device: str | torch.device = "cpu") -> dict:
    """MMD-CD, COV-CD and 1-NNA-CD (module docstring) of generated [N, P, 3] against reference [M, P, 3].

    Both sets in one frame (module docstring). Returns {"mmd": float, "cov": float in [0, 1],
    "one_nna": float in [0, 1], "n_generated": N, "n_reference": M}.
    """
    gen, ref = _as_clouds(generated, "generated"), _as_clouds(reference, "reference")
    if gen.shape[1] != ref.shape[1]:
        raise ValueError(f"point counts differ: generated clouds have {gen.shape[1]} points, reference clouds "
                         f"{ref.shape[1]}; sample both sets with the same count")
    if len(gen) + len(ref) < 3:
        raise ValueError("1-NNA needs at least 3 shapes in all (one held out, two to compare against)")
    ref_gen = chamfer_matrix(ref, gen, chunk, device)  # [M, N]
    mmd = float(ref_gen.min(axis=1).mean())
    cov = len(np.unique(ref_gen.argmin(axis=0))) / len(ref)
    # 1-NNA: each shape is classified by the set of its nearest other shape (itself excluded).
    full = np.block([[chamfer_matrix(ref, None, chunk, device), ref_gen],
                     [ref_gen.T, chamfer_matrix(gen, None, chunk, device)]])
    np.fill_diagonal(full, np.inf)
    is_ref = np.arange(len(full)) < len(ref)
    one_nna = float(np.mean(is_ref[full.argmin(axis=1)] == is_ref))
    return {"mmd": mmd, "cov": float(cov), "one_nna": one_nna, "n_generated": len(gen), "n_reference": len(ref)}


def _as_clouds(clouds: np.ndarray, name: str) -> np.ndarray:
    """Validates a set of clouds [N, P, 3] with N, P >= 1 and finite values; returns float32."""
    array = np.asarray(clouds, dtype=np.float32)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"{name} must be a set of point clouds [N, P, 3], got shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {array.shape}): pass at least one cloud of at least one point")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite coordinates")
    return array
