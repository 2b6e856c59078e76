"""What describes a library shape in the index (`atelier index --descriptor`, issue 23; seed 002).

    views   K shaded views and K line drawings, each embedded by the CLIP (2K vectors a shape; the default)
    points  one vector a shape: the point-cloud encoder's embedding of coloured surface samples
            (`backend.retrieve.point_encoder`, pre-aligned to the same CLIP), no view rendered
    both    the two; a search scores each shape by both and fuses the cosines:
                score = (1 - POINTS_WEIGHT) x best view's cosine + POINTS_WEIGHT x the points' cosine

Queries are embedded by the CLIP either way (the point encoder lives in its space), so searching needs no point
encoder; indexing does. A points library answers every query mode with its one vector: text and photos are what
the encoder was aligned to (the CLIP's captions and shaded views); a sketch is compared with it too, but the
encoder never saw line drawings, so sketch search belongs to the views and both descriptors. A store records its descriptor and the point encoder's id (`point_encoder_id`: the
checkpoint's content hash and the CLIP) and refuses to mix vectors of another descriptor or encoder.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from backend.errors import InvalidInputError
from backend.geometry.mesh import Mesh
from backend.geometry.point_samples import coloured_points
from shared_protocol.limits import DESCRIPTORS

VIEW_KINDS = ("shaded", "lines")
"""The vector kinds of the views descriptor: CLIP embeddings of the shaded views and of the line drawings."""
POINTS_KIND = "points"
"""The vector kind of the points descriptor: one embedding a shape."""
POINTS_WEIGHT = 0.5
"""The points' share of a `both` library's score (the views' best cosine takes the rest)."""
SHIPPED = {"domain": Path(__file__).resolve().parents[1] / "models" / "weights" / "points_domain.pt"}
"""Point encoders shipped with Atelier, by the CLIP spec they were trained against (`build.py points`)."""
SAMPLE_SEED = 0
"""Seeds each shape's surface samples: an unchanged mesh is always given the same vector."""


def check_descriptor(value) -> str:
    """`value` when it is a descriptor; InvalidInputError otherwise."""
    if value not in DESCRIPTORS:
        raise InvalidInputError(f"unknown descriptor {value!r}",
                                hint=f"use one of {', '.join(DESCRIPTORS)} (views is the default)")
    return value


def descriptor_kinds(descriptor: str) -> tuple[str, ...]:
    """The vector kinds a library of `descriptor` stores per shape."""
    check_descriptor(descriptor)
    return {"views": VIEW_KINDS, "points": (POINTS_KIND,), "both": (*VIEW_KINDS, POINTS_KIND)}[descriptor]


def query_kinds(descriptor: str, view_kind: str) -> tuple[str, ...]:
    """The kinds a query is scored against: its mode's view kind ("shaded" or "lines"), the points, or both."""
    check_descriptor(descriptor)
    return {"views": (view_kind,), "points": (POINTS_KIND,), "both": (view_kind, POINTS_KIND)}[descriptor]


def point_encoder_id(path: str | os.PathLike, clip_spec: str) -> str:
    """What a store records as the point encoder that made its vectors: the checkpoint's content and the CLIP."""
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    return f"points:{digest}:{clip_spec}"


@dataclass
class PointDescriptor:
    """A loaded point encoder and how it samples a shape."""

    model: torch.nn.Module
    """A `PointEncoder` in eval mode."""
    path: str
    """Its checkpoint (what Ray workers load again)."""
    encoder_id: str
    """`point_encoder_id` of the checkpoint."""
    points: int
    """Surface samples per shape: the count it was trained with (the kNN groups' extent depends on it)."""

    def embed(self, mesh: Mesh) -> np.ndarray:
        """[1, D] float32 unit row: the embedding of the mesh's coloured surface samples (seeded)."""
        cloud = coloured_points(mesh, self.points, np.random.default_rng(SAMPLE_SEED))
        return self.model.encode(torch.from_numpy(cloud).float()[None]).numpy().astype(np.float32)


def load_point_descriptor(path: str | os.PathLike | None, clip_spec: str,
                          device: torch.device | str = "cpu") -> PointDescriptor:
    """The point encoder at `path`, else the one shipped for `clip_spec`. InvalidInputError when there is none
    for that CLIP, the file is missing or not a point encoder, or it was trained for another CLIP."""
    from backend.retrieve.point_encoder import load_point_encoder
    from backend.retrieve.taskformer import canonical_clip_spec

    if path is None:
        shipped = SHIPPED.get(canonical_clip_spec(clip_spec))
        if shipped is None:
            raise InvalidInputError(
                f"no point encoder is shipped for the CLIP {clip_spec!r}",
                hint=f"train one (python -m backend.retrieve.train_points --clip {clip_spec} --out PATH) and pass "
                     f"--points-encoder PATH, or index with --descriptor views")
        path = shipped
    path = Path(path).expanduser()
    model = load_point_encoder(path, clip_spec, device)
    return PointDescriptor(model=model, path=str(path.resolve()), encoder_id=point_encoder_id(path, model.clip_spec),
                           points=int(model.cloud_points))
