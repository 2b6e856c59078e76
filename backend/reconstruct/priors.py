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
