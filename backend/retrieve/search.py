"""Search a library database by text, sketch, photo, or sketch + text: the top k shapes with thumbnails.

`search` checks the query, embeds it (`QueryEncoder`), picks the index vectors its mode is compared with
(`QueryEncoder.target_kind`) and ranks shapes by their best view (`VectorIndex.search`); `search_vector` is
the part after the encoder (what the latency benchmark times).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from backend.errors import InvalidInputError
from backend.retrieve.database import LibraryDB
from backend.retrieve.query import KINDS, MODES, QueryEncoder, query_mode
from backend.retrieve.views import IndexViewConfig
from shared_protocol.limits import MAX_STRING, SEARCH_MAX_K

MAX_K = SEARCH_MAX_K
"""Most results one search returns (each carries a thumbnail)."""


@dataclass
class Hit:
    """One search result."""

    shape_id: int
    """The shape's id in its database (what `fetch_shape` takes)."""
    path: str
    """The file, relative to the library folder ('/'-separated)."""
    name: str
    """Display name (the file stem)."""
    category: str | None
    """The shape's category, if it has one."""
    score: float
    """Cosine similarity of the query with the shape's best-matching view, in [-1, 1]."""
    thumbnail: bytes
    """PNG bytes of the shape's thumbnail."""

    def as_dict(self) -> dict:
        """The JSON fields (without the thumbnail bytes)."""
        return {"shape_id": self.shape_id, "path": self.path, "name": self.name, "category": self.category,
                "score": round(self.score, 6)}


def check_k(k: Any) -> int:
    """k as an int in [1, MAX_K]; InvalidInputError otherwise."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= int(k) <= MAX_K:
        raise InvalidInputError(f"k must be an integer from 1 to {MAX_K}, got {k!r}",
                                hint="ask for the number of results you want, e.g. -k 10")
    return int(k)


def check_category(db: LibraryDB, category: Any) -> str | None:
    """The category filter, or None; InvalidInputError for a category the library does not have."""
    if category is None:
        return None
    if not isinstance(category, str) or not category.strip() or len(category) > MAX_STRING:
        raise InvalidInputError(f"category must be a non-empty name, got {category!r:.60}")
    known = db.categories()
    if category not in known:
        listed = ", ".join(known) if known else "none (no shape has a category)"
        raise InvalidInputError(f"the library has no shape of category {category!r}",
                                hint=f"its categories are: {listed}"[:1000])
    return category


def search(db: LibraryDB, encoder: QueryEncoder, text: str | None = None, sketch: Any = None, photo: Any = None,
           k: int = 10, category: str | None = None, mode: str | None = None, kind: str | None = None) -> list[Hit]:
    """The k best shapes for a query, best first.

    text: a description. sketch: PNG bytes, an image path, an array (black strokes on white, any size), or
    stroke polylines in [0, 1]² (a list; y down). photo: encoded bytes, a path or an [H, W, 3] array.
    A query is a text, a sketch, a photo, or a sketch with a text (fused as in TASK-former). mode: when
    given, must agree with what the query holds. category: only shapes of this category. kind: compare with
    "shaded" or "lines" vectors instead of the mode's default (for experiments).
    InvalidInputError for an empty or mixed-up query, an empty text, a blank sketch, k outside [1, MAX_K],
    an unknown category, a database indexed with another CLIP or encoder, and one with no shapes yet.
    """
    k = check_k(k)
    db.check_compatible(clip=encoder.spec, encoder=encoder.encoder_id)
    if db.count() == 0:
        raise InvalidInputError(f"the database {db.directory} holds no shapes yet: its first index run did not finish "
                                "(or the library had no mesh it could read)",
                                hint="run `atelier index LIBRARY_DIR --db DIR` again; it resumes where it stopped")
    found = query_mode(text, sketch, photo)
    if mode is not None and mode != found:
        if mode not in MODES:
            raise InvalidInputError(f"unknown search mode {mode!r}", hint=f"use one of {', '.join(MODES)}")
        raise InvalidInputError(f"search mode {mode!r} does not match the query, which holds a {found}",
                                hint="leave the mode out, or send what the mode needs")
    category = check_category(db, category)
    fill = IndexViewConfig.from_json(db.views_json).line_fill  # frame sketches as the index's drawings are
    mode, vector = encoder.encode_query(text=text, sketch=sketch, photo=photo, fill=fill)
    if kind is not None and kind not in KINDS:
        raise InvalidInputError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return search_vector(db, vector, kind or encoder.target_kind(mode), k, category)


def search_vector(db: LibraryDB, vector: np.ndarray, kind: str, k: int, category: str | None = None) -> list[Hit]:
    """The k best shapes for an embedded query ([D] float32 unit vector) against `kind` vectors."""
    index = db.vector_index(kind)
    allowed = None if category is None else db.category_filter(kind, category)
    ranked = index.search(vector, check_k(k), allowed)
    records = {r.id: r for r in db.shapes([shape_id for shape_id, _ in ranked], thumbnails=True)}
    return [Hit(shape_id=shape_id, path=records[shape_id].relpath, name=records[shape_id].name,
                category=records[shape_id].category, score=score, thumbnail=records[shape_id].thumbnail)
            for shape_id, score in ranked if shape_id in records]
