"""Photo to textured 3D: the object a text prompt names in a photo, found in the shape library and restyled
after the photo.

1. Segment: `backend.segment.segment.segment` (SAM or the superpixel fallback, with the CLIP relevance map)
   gives the object's mask at the photo's size (the caller runs it; `photo_to_3d` takes the mask).
2. Retrieve: the masked object, cropped to its box and set on white (how the library's shaded views look),
   is a photo query against the library database (`backend.retrieve.search`): the top k shapes.
3. Restyle: the chosen shape (the best, or the user's pick among the k) gets its texture restyled
   (`backend.stylize.restyle`) with the same crop as the style image, so it takes the photo's colours and
   patterns. Its base colour (its texture, or a plain colour) stays separable from the style texture.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from backend.errors import InvalidInputError
from backend.geometry.load import load_mesh
from backend.models.clip import ClipModel
from backend.progress import CancelToken, ProgressFn, no_progress
from backend.retrieve.database import LibraryDB
from backend.retrieve.query import QueryEncoder
from backend.retrieve.search import Hit, check_k, search
from backend.retrieve.service import shape_file
from backend.segment.photo_query import object_crop
from backend.stylize.restyle import RestyleConfig, RestyleResult, preset, restyle


@dataclass
class PhotoTo3DConfig:
    """The retrieval and restyle halves of photo to 3D (segmentation is configured on its own)."""

    k: int = 5
    """Shapes retrieved; the reply lists them all so the user may pick another."""
    pick: int = 0
    """Which of the k to restyle: 0 the best match, 1 the second, ..."""
    crop_margin: float = 0.08
    """The object's box is grown by this fraction of its longer side on every side before cropping."""
    category: str | None = None
    """Only retrieve shapes of this category (None: any)."""
    restyle: RestyleConfig = field(default_factory=lambda: preset("draft"))
    """The texture restyle of the chosen shape (default: the draft preset)."""


@dataclass
class PhotoTo3DResult:
    """What photo to 3D made."""

    crop: np.ndarray
    """[h, w, 3] float32 in [0, 1]: the object alone on white, the query and the style image."""
    hits: list[Hit]
    """The k retrieved shapes, best first."""
    chosen: Hit
    """The restyled one (hits[pick])."""
    restyled: RestyleResult
    """The restyle of the chosen shape (its mesh, textures, losses)."""


def photo_to_3d(image: np.ndarray, mask: np.ndarray, db: LibraryDB, encoder: QueryEncoder, clip: ClipModel,
                config: PhotoTo3DConfig | None = None, *, device="cpu", progress: ProgressFn = no_progress,
                cancel: CancelToken | None = None) -> PhotoTo3DResult:
    """Retrieves the library shape most like the masked object and restyles its texture after it.

    image: the photo [H, W, 3|4] float in [0, 1]; mask: [H, W] bool, the object (from `segment`); db: a library
    database indexed with `encoder`; clip: the CLIP whose image tower supplies the restyle's features.
    InvalidInputError for an empty mask, a pick outside the hits, or a library file that is gone.
    """
    config = config or PhotoTo3DConfig()
    k = check_k(config.k)
    if not 0 <= config.pick < k:
        raise InvalidInputError(f"pick must be in [0, {k - 1}] (one of the {k} results), got {config.pick}",
                                hint="0 restyles the best match")
    crop = object_crop(image, mask, config.crop_margin)
    hits = search(db, encoder, photo=crop, k=k, category=config.category)
    if not hits:
        raise InvalidInputError("the library returned no shape", hint="index a library with `atelier index`")
    if config.pick >= len(hits):
        raise InvalidInputError(f"pick {config.pick} is past the {len(hits)} results", hint="pick a smaller number")
    chosen = hits[config.pick]
    mesh = load_mesh(shape_file(db, db.shape(chosen.shape_id)))
    restyled = restyle(mesh, [crop], clip, config.restyle, device=device, progress=progress, cancel=cancel)
    return PhotoTo3DResult(crop=crop, hits=hits, chosen=chosen, restyled=restyled)
