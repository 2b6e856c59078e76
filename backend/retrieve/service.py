"""What the `atelier index` / `atelier search` commands and the index, search and fetch_shape jobs share:
choosing the encoder for a database, a cache of open databases, and a shape's file as GLB."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from backend.errors import InvalidInputError
from backend.retrieve.database import LibraryDB, ShapeRecord, db_exists
from backend.retrieve.query import QueryEncoder

DEFAULT_CLIP = "ViT-B-32:openai"
"""The CLIP a new library is indexed with when none is named (an existing database's recorded spec wins)."""


def load_encoder(clip: str | None = None, checkpoint: str | os.PathLike | None = None,
                 device: torch.device | str = "cpu", allow_download: bool = False,
                 db: LibraryDB | None = None, descriptor: str = "views",
                 points_encoder: str | os.PathLike | None = None) -> QueryEncoder:
    """The encoder for indexing or searching.

    checkpoint: a TASK-former checkpoint (its own base CLIP; `clip`, when given, must name the same spec).
    Otherwise the CLIP `clip`, else the one `db` records, else DEFAULT_CLIP. Whether it matches the
    database is checked by `search` and `LibraryDB.create` (an error naming both specs). descriptor: what
    indexing stores (`backend.retrieve.descriptors`); "points" and "both" load the point encoder
    `points_encoder` (default: the one shipped for the CLIP). Searching needs none: queries go through the CLIP.
    """
    from backend.models.clip import load_clip

    if checkpoint is not None:
        from backend.retrieve.taskformer import check_clip_spec

        encoder = QueryEncoder.from_checkpoint(checkpoint, device=device)
        check_clip_spec(encoder.spec, clip, f"the TASK-former checkpoint {checkpoint}")
    else:
        spec = clip or (db.clip_spec if db is not None else None) or DEFAULT_CLIP
        encoder = QueryEncoder(load_clip(spec, device, allow_download=allow_download))
    from backend.retrieve.descriptors import check_descriptor, load_point_descriptor

    points = None
    if check_descriptor(descriptor) != "views" and encoder.taskformer is None:  # with_points refuses a TASK-former
        points = load_point_descriptor(points_encoder, encoder.spec, device)
    return encoder.with_points(descriptor, points)


@dataclass
class IndexSettings:
    """What an indexing run of a library uses: an existing library's recorded settings, overridden where asked."""

    views: "IndexViewConfig"
    """The view settings (an existing library's, with the views count given)."""
    clip: str | None
    """The recorded CLIP spec (None for a new library)."""
    descriptor: str
    """The descriptor given, else the recorded one, else "views"."""
    points_encoder: str | None
    """The point encoder checkpoint given, else the recorded one (None: the one shipped for the CLIP)."""


def index_settings(db, store: str, views: int | None = None, descriptor: str | None = None,
                   points_encoder: str | None = None) -> IndexSettings:
    """The settings of an indexing run into `db` (`atelier index`, the index job): a library that exists keeps
    its views, CLIP, descriptor and point encoder unless told otherwise (and refuses another when opened for
    indexing); a new one gets the defaults."""
    import dataclasses

    from backend.retrieve.descriptors import check_descriptor
    from backend.retrieve.stores import open_store, store_exists
    from backend.retrieve.views import IndexViewConfig

    settings = IndexSettings(IndexViewConfig(), None, descriptor or "views", points_encoder)
    if store_exists(db, store):
        with open_store(db, store) as library:
            recorded = IndexViewConfig.from_json(library.views_json)
            settings = IndexSettings(recorded, library.clip_spec, descriptor or library.descriptor,
                                     points_encoder or library.points_path or None)
    if views is not None:
        settings.views = dataclasses.replace(settings.views, views=views)
    settings.views.check()
    check_descriptor(settings.descriptor)
    return settings


_open: dict[str, tuple[int, LibraryDB]] = {}
_open_lock = threading.Lock()


def open_cached(directory: str | os.PathLike, store: str = "embedded"):
    """An open library, kept open for later calls (the server keeps FAISS indexes in memory between
    searches). An embedded database folder replaced by another since it was opened is opened afresh; a Milvus
    library is kept by its URI."""
    from backend.retrieve.stores import open_store, parse_store_uri

    where = parse_store_uri(directory, store)
    if where.store != "embedded":
        key = f"{where.store}:{where.uri}"
        with _open_lock:
            held = _open.get(key)
            if held is None:
                held = _open[key] = (0, open_store(where.uri, where.store))
            return held[1]
    path = Path(directory).expanduser()
    key = str(path.resolve()) if path.exists() else str(path)
    if not db_exists(path):
        return LibraryDB.open(path)  # raises the right error for a missing folder or file
    inode = (path / "library.sqlite").stat().st_ino
    with _open_lock:
        held = _open.get(key)
        if held is not None and held[0] == inode:
            return held[1]
        db = LibraryDB.open(path)
        if held is not None:
            held[1].close()
        _open[key] = (inode, db)
        return db


def close_cached() -> None:
    """Closes every database `open_cached` holds (the server's `release`)."""
    with _open_lock:
        for _, db in _open.values():
            db.close()
        _open.clear()


def shape_file(db: LibraryDB, record: ShapeRecord) -> Path:
    """The shape's library file on this machine; InvalidInputError when it is no longer there."""
    root = db.library_root
    path = Path(root) / record.file
    if not root or not path.is_file():
        raise InvalidInputError(f"the file of shape {record.id} ({record.file}) is no longer in the library "
                                f"{root or '(unknown)'}", hint="index the library again: `atelier index LIBRARY_DIR --db DIR`")
    return path


def shape_glb(db: LibraryDB, shape_id: int) -> tuple[bytes, ShapeRecord, bool]:
    """(GLB bytes of the shape's mesh, its record, whether its library file changed since it was indexed).

    A loose mesh is loaded from its file (its own frame and units; glTF files: Y up, metres); an entry read
    by Blender (a .blend asset, an FBX, USD, ...) is the GLB extracted when it was indexed.
    """
    from backend.geometry.glb import export_glb
    from backend.geometry.load import load_mesh
    from backend.retrieve.library_files import file_sha256

    record = db.shape(shape_id)
    path = shape_file(db, record)
    changed = file_sha256(path) != record.sha256
    if record.mesh:
        extracted = db.directory / record.mesh
        if not extracted.is_file():
            raise InvalidInputError(f"the extracted mesh of shape {record.id} ({record.relpath}) is missing from the "
                                    f"database folder {db.directory}",
                                    hint="index the library again with --rehash: `atelier index LIBRARY_DIR --db DIR --rehash`")
        return export_glb(load_mesh(extracted), name=record.name), record, changed
    return export_glb(load_mesh(path), name=record.name), record, changed
