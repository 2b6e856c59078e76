"""What the `atelier index` / `atelier search` commands and the index, search and fetch_shape jobs share:
choosing the encoder for a database, a cache of open databases, and a shape's file as GLB."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import torch

from backend.errors import InvalidInputError
from backend.retrieve.database import LibraryDB, ShapeRecord, db_exists
from backend.retrieve.query import QueryEncoder

DEFAULT_CLIP = "ViT-B-32:openai"
"""The CLIP a new library is indexed with when none is named (an existing database's recorded spec wins)."""


def load_encoder(clip: str | None = None, checkpoint: str | os.PathLike | None = None,
                 device: torch.device | str = "cpu", allow_download: bool = False,
                 db: LibraryDB | None = None) -> QueryEncoder:
    """The encoder for indexing or searching.

    checkpoint: a TASK-former checkpoint (its own base CLIP; `clip`, when given, must name the same spec).
    Otherwise the CLIP `clip`, else the one `db` records, else DEFAULT_CLIP. Whether it matches the
    database is checked by `search` and `LibraryDB.create` (an error naming both specs).
    """
    from backend.models.clip import load_clip

    if checkpoint is not None:
        from backend.retrieve.taskformer import check_clip_spec

        encoder = QueryEncoder.from_checkpoint(checkpoint, device=device)
        check_clip_spec(encoder.spec, clip, f"the TASK-former checkpoint {checkpoint}")
        return encoder
    spec = clip or (db.clip_spec if db is not None else None) or DEFAULT_CLIP
    return QueryEncoder(load_clip(spec, device, allow_download=allow_download))


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
