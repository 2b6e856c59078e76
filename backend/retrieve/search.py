"""Search a library database by text, sketch, photo, or sketch + text: the top k shapes with thumbnails.

`search` checks the query, embeds it (`QueryEncoder`), picks the index vectors its mode is compared with
(`QueryEncoder.target_kind`; a points library's single vectors, `backend.retrieve.descriptors.query_kinds`) and
ranks shapes by their best view (`VectorIndex.search`); `search_vector` is the part after the encoder (what the
latency benchmark times). A library with both descriptors scores each shape by both and fuses them:
    clip_score = (1 - POINTS_WEIGHT) x best view's cosine + POINTS_WEIGHT x the points' cosine
over the union of each kind's candidates (the other kind's score looked up exactly).

Hybrid text search: a query with words is also matched against each shape's name, tags, catalog and
description (`keywords`: SQLite FTS5 finds the candidates). A hit's score is
    score = clip_score + keyword_weight x keyword_score
with clip_score the cosine of the query with the shape's best view and keyword_score in [0, 1] (1: every
query word is in the name; a word found only in the tags, catalog or description counts less). So "oak
chair" finds the asset named Chair_Oak even when the CLIP model knows no oak, and words no shape carries
leave the CLIP ranking as it is. Both parts are reported with each hit. The fusion is exact: a shape outside
the CLIP candidates and without a keyword match scores below every candidate.

Photo queries: `search_photo` finds the photo's object first (by a segment prompt, or by saliency), crops it on
white as the index's views are, and searches with the crop (`backend.segment.photo_query`); `search` itself
embeds whatever photo it is given (photo-to-3d hands it a crop already).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from backend.errors import InvalidInputError
from backend.retrieve.database import LibraryDB, ShapeRecord
from backend.retrieve.descriptors import POINTS_WEIGHT, query_kinds
from backend.retrieve.filters import ShapeFilter, check_filter
from backend.retrieve.keywords import keyword_score, query_terms
from backend.retrieve.query import MODES, QueryEncoder, query_mode
from backend.retrieve.views import IndexViewConfig
from shared_protocol.limits import SEARCH_MAX_K

MAX_K = SEARCH_MAX_K
"""Most results one search returns (each carries a thumbnail)."""
KEYWORD_WEIGHT = 0.5
"""What a full keyword match (every query word in a shape's name) adds to the cosine score: enough to put an
asset named after the query above any CLIP-only ranking (cosines of one query rarely span more than 0.3)."""
CLIP_CANDIDATES = 50
"""Shapes taken from the vector index before fusing with keyword matches (at least k)."""
KEYWORD_CANDIDATES = 500
"""Most keyword matches (best BM25 first) fused per query."""


@dataclass
class Hit:
    """One search result."""

    shape_id: int
    """The shape's id in its database (what `fetch_shape` takes)."""
    path: str
    """The entry, relative to the library folder ('/'-separated): a file, or file/datablock/name of an asset."""
    name: str
    """Display name (the file stem, or the asset's name)."""
    category: str | None
    """The shape's category, if it has one."""
    score: float
    """The fused score: clip_score + keyword_weight x keyword_score."""
    thumbnail: bytes
    """PNG bytes of the shape's thumbnail (a .blend asset's own preview when it has one)."""
    clip_score: float = 0.0
    """Cosine similarity of the query with the shape's best-matching view (a points library: with its one vector;
    both: the two fused, module docstring), in [-1, 1]."""
    keyword_score: float = 0.0
    """How much of the query's words the name, tags, catalog and description cover, in [0, 1]."""
    record: ShapeRecord | None = None
    """The shape's row (metadata: format, catalog, tags, description, author, licence, source)."""
    library: str = ""
    """The library folder the database indexed (absolute, on the server)."""

    def as_dict(self) -> dict:
        """The JSON fields (without the thumbnail bytes)."""
        fields = {"shape_id": self.shape_id, "path": self.path, "name": self.name, "category": self.category,
                  "score": round(self.score, 6), "clip_score": round(self.clip_score, 6),
                  "keyword_score": round(self.keyword_score, 6)}
        record = self.record
        if record is not None:
            source = record.source
            if source is not None and self.library:
                source["file"] = str(Path(self.library) / source["file"])
            fields.update(format=record.format, catalog=record.catalog, tags=list(record.tags),
                          description=record.description, author=record.author, license=record.license, source=source)
        return fields


def check_k(k: Any) -> int:
    """k as an int in [1, MAX_K]; InvalidInputError otherwise."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= int(k) <= MAX_K:
        raise InvalidInputError(f"k must be an integer from 1 to {MAX_K}, got {k!r}",
                                hint="ask for the number of results you want, e.g. -k 10")
    return int(k)


def check_category(db: LibraryDB, category: Any) -> str | None:
    """The category filter, or None; InvalidInputError for a category the library does not have."""
    return check_filter(db, category=category).category


def search(db: LibraryDB, encoder: QueryEncoder, text: str | None = None, sketch: Any = None, photo: Any = None,
           k: int = 10, category: str | None = None, mode: str | None = None, kind: str | None = None, *,
           catalog: str | None = None, tag: str | None = None, format: str | None = None,
           keyword_weight: float = KEYWORD_WEIGHT) -> list[Hit]:
    """The k best shapes for a query, best first.

    text: a description. sketch: PNG bytes, an image path, an array (black strokes on white, any size), or
    stroke polylines in [0, 1]² (a list; y down). photo: encoded bytes, a path or an [H, W, 3] array.
    A query is a text, a sketch, a photo, or a sketch with a text (fused as in TASK-former). mode: when
    given, must agree with what the query holds. Filters: category, catalog (that Blender asset catalog and
    everything below it), tag, format (file extension). kind: compare with "shaded" or "lines" vectors
    instead of the mode's default (for experiments). keyword_weight: see the module docstring (0: CLIP only).
    InvalidInputError for an empty or mixed-up query, an empty text, a blank sketch, k outside [1, MAX_K],
    an unknown category, catalog, tag or format, a database indexed with another CLIP or encoder, and one
    with no shapes yet.
    """
    k = check_k(k)
    db.check_compatible(clip=encoder.spec, encoder=encoder.encoder_id)
    if db.count() == 0:
        raise InvalidInputError(f"the database {db.where} holds no shapes yet: its first index run did not finish "
                                "(or the library had no mesh it could read)",
                                hint="run `atelier index LIBRARY_DIR --db DIR` again; it resumes where it stopped")
    found = query_mode(text, sketch, photo)
    if mode is not None and mode != found:
        if mode not in MODES:
            raise InvalidInputError(f"unknown search mode {mode!r}", hint=f"use one of {', '.join(MODES)}")
        raise InvalidInputError(f"search mode {mode!r} does not match the query, which holds a {found}",
                                hint="leave the mode out, or send what the mode needs")
    if isinstance(keyword_weight, bool) or not isinstance(keyword_weight, (int, float)) or not 0 <= keyword_weight <= 10:
        raise InvalidInputError(f"keyword_weight must be a number from 0 to 10, got {keyword_weight!r}",
                                hint=f"0 ranks by CLIP alone; the default is {KEYWORD_WEIGHT}")
    shape_filter = check_filter(db, category=category, catalog=catalog, tag=tag, format=format)
    fill = IndexViewConfig.from_json(db.views_json).line_fill  # frame sketches as the index's drawings are
    mode, vector = encoder.encode_query(text=text, sketch=sketch, photo=photo, fill=fill)
    if kind is not None and kind not in db.kinds:
        raise InvalidInputError(f"kind must be one of {db.kinds} (this library's {db.descriptor} descriptor), got "
                                f"{kind!r}")
    terms = query_terms(text) if text else []
    kinds = (kind,) if kind else query_kinds(db.descriptor, encoder.target_kind(mode))
    return search_vector(db, vector, kinds, k, shape_filter=shape_filter, terms=terms, keyword_weight=keyword_weight)


def search_photo(db: LibraryDB, encoder: QueryEncoder, photo: Any, prompt: str | None = None, raw: bool = False,
                 k: int = 10, config: Any = None, device: Any = "cpu", **options: Any) -> tuple[list[Hit], Any]:
    """(the k best shapes, the `PhotoCut`) for a photo query cut out before it is embedded: the object `prompt`
    names (the segmenter, with the encoder's CLIP for the relevance map), else the salient object, else (`raw`,
    or nothing found: the cut's note says so) the whole photo. options: `search`'s filters and keyword_weight.
    InvalidInputError as `search`, and for a blank photo, a bad prompt, or a prompt with `raw`."""
    from backend.segment.photo_query import cut_photo  # noqa: PLC0415  (segmentation loads only for photos)

    k = check_k(k)
    db.check_compatible(clip=encoder.spec, encoder=encoder.encoder_id)  # before the segmenter runs
    cut = cut_photo(photo, encoder.clip, prompt=prompt, raw=raw, config=config, device=device)
    return search(db, encoder, photo=cut.image, k=k, **options), cut


def vector_scores(db: LibraryDB, vector: np.ndarray, kinds: tuple[str, ...], n: int,
                  shape_filter: ShapeFilter) -> dict[int, float]:
    """{shape id: clip score} of the n best shapes of one kind, or of the union of two kinds' n best with their
    scores fused (module docstring)."""
    if len(kinds) == 1:
        return dict(db.search_vectors(kinds[0], vector, n, shape_filter))
    candidates = {i for kind in kinds for i, _ in db.search_vectors(kind, vector, n, shape_filter)}
    return exact_scores(db, vector, kinds, sorted(candidates))


def exact_scores(db: LibraryDB, vector: np.ndarray, kinds: tuple[str, ...], shape_ids: list[int]) -> dict[int, float]:
    """{shape id: clip score} of the listed shapes, each kind's score exact (fused for two kinds)."""
    if len(kinds) == 1:
        return db.scores_of(kinds[0], vector, shape_ids)
    views, points = (db.scores_of(kind, vector, shape_ids) for kind in kinds)
    return {i: (1.0 - POINTS_WEIGHT) * views[i] + POINTS_WEIGHT * points[i] for i in views if i in points}


def search_vector(db: LibraryDB, vector: np.ndarray, kind: str | tuple[str, ...], k: int,
                  category: str | None = None, *, shape_filter: ShapeFilter | None = None,
                  terms: list[str] | None = None, keyword_weight: float = KEYWORD_WEIGHT) -> list[Hit]:
    """The k best shapes for an embedded query ([D] float32 unit vector) against `kind` vectors (or a view kind
    and "points", fused), fused with the keyword matches of `terms` (see the module docstring)."""
    k = check_k(k)
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    shape_filter = shape_filter or ShapeFilter(category=category)
    fuse = bool(terms) and keyword_weight > 0
    clip = vector_scores(db, vector, kinds, max(k, CLIP_CANDIDATES) if fuse or len(kinds) > 1 else k, shape_filter)
    keyword: dict[int, float] = {}
    if fuse:
        permitted = None if shape_filter.empty else set(db.shape_ids(shape_filter).tolist())
        for shape_id, columns in db.keyword_rows(terms, KEYWORD_CANDIDATES):
            if permitted is None or shape_id in permitted:
                keyword[shape_id] = keyword_score(terms, columns)
        clip.update(exact_scores(db, vector, kinds, [i for i in keyword if i not in clip]))
    fused = {shape_id: score + keyword_weight * keyword.get(shape_id, 0.0) for shape_id, score in clip.items()}
    ranked = sorted(fused, key=lambda shape_id: (-fused[shape_id], shape_id))[:k]
    records = {r.id: r for r in db.shapes(ranked, thumbnails=True)}
    library = db.library_root
    return [Hit(shape_id=i, path=records[i].relpath, name=records[i].name, category=records[i].category,
                score=fused[i], thumbnail=records[i].thumbnail, clip_score=clip[i], keyword_score=keyword.get(i, 0.0),
                record=records[i], library=library)
            for i in ranked if i in records]
