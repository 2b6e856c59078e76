"""Where the Gaussians start: a prior shape's coloured surface samples (a retrieved library shape, or the
generator's sample for the photo's CLIP embedding), or DreamGaussian's sphere.

Every prior mesh is moved into the unit sphere (the library's and the generator's frame, +Y up), so the camera
search (`reference_view.fitted_view`) and the reconstruction share one frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.errors import InvalidInputError
from backend.geometry.mesh import Mesh
from backend.geometry.normalize import normalize_to_unit_sphere

INITS = ("sphere", "retrieve", "generate", "best")
"""sphere: DreamGaussian's start; retrieve: the best library match; generate: the generator's sample for the
photo; best: whichever of retrieve and generate explains the photo's mask better (its fitted silhouette IoU)."""


@dataclass
class Prior:
    """A prior shape in the unit sphere."""

    mesh: Mesh
    source: str
    """"retrieve" or "generate"."""
    label: str
    """What it is: the library shape's name and category, or the generator's."""


def surface_samples(mesh: Mesh, count: int, rng: np.random.Generator,
                    default_color: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Area-weighted samples on the surface and their colours: (points [count, 3] float32, colours [count, 3] in
    [0, 1]) from the texture (nearest texel at the interpolated UV), else the vertex colours, else
    `default_color` (grey)."""
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    corners = vertices[faces]
    areas = 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    if not areas.sum() > 0:
        raise InvalidInputError("the prior shape has no surface area to sample", hint="use --init sphere")
    picked = rng.choice(len(faces), size=count, p=areas / areas.sum())
    root, v = np.sqrt(rng.random((count, 1))), rng.random((count, 1))
    weights = np.concatenate([1 - root, root * (1 - v), root * v], axis=1)  # [count, 3] barycentric
    points = np.einsum("nc,ncd->nd", weights, corners[picked]).astype(np.float32)
    corner_ids = faces[picked]
    if mesh.texture is not None and mesh.uv is not None:
        uv = np.einsum("nc,ncd->nd", weights, np.asarray(mesh.uv, dtype=np.float64)[corner_ids]) % 1.0
        texture = np.asarray(mesh.texture)
        h, w = texture.shape[:2]
        texels = texture[np.minimum((uv[:, 1] * h).astype(int), h - 1), np.minimum((uv[:, 0] * w).astype(int), w - 1)]
        colors = texels[:, :3].astype(np.float32) / (255.0 if texture.dtype == np.uint8 else 1.0)
    elif mesh.vertex_colors is not None:
        colors = np.einsum("nc,ncd->nd", weights, np.asarray(mesh.vertex_colors, dtype=np.float64)[corner_ids, :3])
    else:
        colors = np.broadcast_to(np.asarray(default_color if default_color is not None else (0.6, 0.6, 0.6)),
                                 (count, 3))
    return points, np.clip(np.asarray(colors, dtype=np.float32), 0.0, 1.0)


def volume_samples(mesh: Mesh, count: int, rng: np.random.Generator, resolution: int = 32) -> np.ndarray:
    """[count, 3] float32 points filling the mesh's solid (a mesh in the unit sphere): its occupied voxels (inside
    or on the surface, so parts thinner than a cell are kept) drawn uniformly, jittered within the cell. Gaussians
    that fill a volume have their density's half level on its surface; a shell of them would put it a Gaussian's
    size outside."""
    from backend.geometry.voxelize import grid_centres, voxelize

    occupied = voxelize(mesh, resolution)
    if not occupied.any():
        raise InvalidInputError("the prior shape has no volume to fill", hint="use --init sphere")
    centres = grid_centres(resolution)[occupied]
    picked = centres[rng.integers(0, len(centres), size=count)]
    cell = 2.0 / resolution
    return (picked + rng.uniform(-cell / 2, cell / 2, size=picked.shape)).astype(np.float32)


def unit_prior(mesh: Mesh, source: str, label: str) -> Prior:
    """The mesh moved into the unit sphere, as a prior."""
    normalised, _ = normalize_to_unit_sphere(mesh)
    return Prior(normalised, source, label)


def retrieval_prior(crop: np.ndarray, db, encoder, category: str | None = None) -> tuple[Prior, list]:
    """The library's best match for the object crop (on white): (its prior, the search hits)."""
    from backend.geometry.load import load_mesh
    from backend.retrieve.search import search
    from backend.retrieve.service import shape_file

    hits = search(db, encoder, photo=crop, k=5, category=category)
    if not hits:
        raise InvalidInputError("the library returned no shape to start from", hint="index a library, or use "
                                "--init sphere")
    mesh = load_mesh(shape_file(db, db.shape(hits[0].shape_id)))
    return unit_prior(mesh, "retrieve", f"{hits[0].name} ({hits[0].category})"), hits


def generator_prior(crop: np.ndarray, generator, clip, seed: int = 0) -> Prior:
    """The generator's sample (its flow's mode) for the crop's CLIP image embedding, in the unit sphere."""
    from backend.generate.generate import GenerateConfig, generate, image_condition

    shape = generate(generator, clip, image_condition(clip, crop), GenerateConfig(temperature=0.0, seed=seed),
                     name="prior")[0]
    return unit_prior(shape.mesh, "generate", "generator sample")
