"""The tables and rows of a shape library database (`LibraryDB`), and the upgrade of a version-1 database.

    meta(key, value)   format, version, clip, encoder, embed_dim, views, library, generation, catalog, and
                       descriptor, points_encoder, points_path (`backend.retrieve.descriptors`; absent: views)
    files              one row per library file indexed (loose meshes, .blend, FBX, USD, ...): what decides
                       whether it must be read again (sha256, size, mtime_ns, options), how many shapes it
                       gave (0 for a .blend without assets: remembered, so it is not re-read every run) and,
                       for a file whose content cannot be indexed, why (it is re-read once it changes)
    shapes             one row per library entry (a loose mesh file, or one asset of a .blend): its file, its
                       asset key (`Object/Name`, `Collection/Name`; NULL for a whole file), metadata, thumbnail
    vectors            shape_id, kind ('shaded' | 'lines' | 'points'), view, vector (float32 little-endian [D]);
                       the kinds are the library's descriptor's (a version-2 table made before 'points' existed
                       is only ever a views library); indexed by
                       shape_id too, for the ON DELETE CASCADE: without it every removed shape scanned all
                       vector rows (0.12 s per shape at 600,000 rows, benchmarks/index_update.py)
    shape_text         FTS5 index of each shape's words (name, tags, catalog, description) for keyword search;
                       its rowid is the shape id, kept in step by put/remove (a trigger deletes with the shape)
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

VERSION = 2
"""Database format version. Version 1 (no files table, no asset metadata) is upgraded on open."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    relpath TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    category TEXT,
    format TEXT NOT NULL,
    options TEXT NOT NULL DEFAULT '',
    entries INTEGER NOT NULL DEFAULT 0,
    indexed_at REAL NOT NULL,
    error TEXT
);
CREATE TABLE IF NOT EXISTS shapes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    relpath TEXT NOT NULL UNIQUE,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    name TEXT NOT NULL,
    category TEXT,
    faces INTEGER NOT NULL,
    vertices INTEGER NOT NULL,
    bbox TEXT NOT NULL,
    thumbnail BLOB NOT NULL,
    indexed_at REAL NOT NULL,
    file TEXT NOT NULL DEFAULT '',
    asset TEXT,
    format TEXT NOT NULL DEFAULT '',
    catalog TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    description TEXT NOT NULL DEFAULT '',
    author TEXT NOT NULL DEFAULT '',
    license TEXT NOT NULL DEFAULT '',
    mesh TEXT
);
CREATE INDEX IF NOT EXISTS shapes_category ON shapes (category);
CREATE INDEX IF NOT EXISTS shapes_file ON shapes (file);
CREATE INDEX IF NOT EXISTS shapes_catalog ON shapes (catalog);
CREATE TABLE IF NOT EXISTS vectors (
    shape_id INTEGER NOT NULL REFERENCES shapes (id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('shaded', 'lines', 'points')),
    view INTEGER NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (kind, shape_id, view)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS vectors_shape ON vectors (shape_id);
CREATE VIRTUAL TABLE IF NOT EXISTS shape_text USING fts5(name, tags, catalog, description, tokenize = 'unicode61');
CREATE TRIGGER IF NOT EXISTS shape_text_delete AFTER DELETE ON shapes BEGIN
    DELETE FROM shape_text WHERE rowid = old.id;
END;
"""

_V2_COLUMNS = (
    ("file", "TEXT NOT NULL DEFAULT ''"), ("asset", "TEXT"), ("format", "TEXT NOT NULL DEFAULT ''"),
    ("catalog", "TEXT"), ("tags", "TEXT NOT NULL DEFAULT '[]'"), ("description", "TEXT NOT NULL DEFAULT ''"),
    ("author", "TEXT NOT NULL DEFAULT ''"), ("license", "TEXT NOT NULL DEFAULT ''"), ("mesh", "TEXT"),
)


def upgrade_v1(db: sqlite3.Connection, words) -> None:
    """Version 1 -> 2 inside the caller's transaction: asset columns on shapes, one files row per shape (each
    v1 shape is a loose mesh file), and the keyword index. `words(name, tags, catalog, description)` gives the
    text the keyword index stores (`backend.retrieve.keywords.index_text`)."""
    present = {row[1] for row in db.execute("PRAGMA table_info(shapes)").fetchall()}
    for name, declaration in _V2_COLUMNS:
        if name not in present:
            db.execute(f"ALTER TABLE shapes ADD COLUMN {name} {declaration}")
    for statement in _statements(SCHEMA):
        db.execute(statement)
    db.execute("UPDATE shapes SET file = relpath WHERE file = ''")
    rows = db.execute("SELECT id, relpath, sha256, size, mtime_ns, category, name, indexed_at FROM shapes").fetchall()
    for shape_id, relpath, sha, size, mtime_ns, category, name, indexed_at in rows:
        suffix = relpath.rsplit(".", 1)[-1].lower() if "." in relpath else ""
        db.execute("UPDATE shapes SET format = ? WHERE id = ?", (suffix, shape_id))
        db.execute("INSERT OR REPLACE INTO files (relpath, sha256, size, mtime_ns, category, format, options, entries, "
                   "indexed_at) VALUES (?, ?, ?, ?, ?, ?, '', 1, ?)", (relpath, sha, size, mtime_ns, category, suffix,
                                                                      indexed_at))
        db.execute("INSERT INTO shape_text (rowid, name, tags, catalog, description) VALUES (?, ?, ?, ?, ?)",
                   (shape_id, *words(name, [], None, "")))
    db.execute("UPDATE meta SET value = ? WHERE key = 'version'", (str(VERSION),))


def _statements(script: str) -> list[str]:
    """The statements of SCHEMA one by one (a trigger body holds semicolons, so split on the END markers)."""
    out, pending = [], ""
    for part in script.split(";"):
        pending += part + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                out.append(pending.strip())
            pending = ""
    return out


@dataclass
class ShapeRecord:
    """One library shape's row (without its vectors)."""

    relpath: str
    """Path relative to the library folder, '/'-separated."""
    sha256: str
    """Hex digest of the file's bytes."""
    size: int
    """File size in bytes when indexed."""
    mtime_ns: int
    """File modification time when indexed (a fast "unchanged" check before hashing)."""
    name: str
    """Display name (the file stem)."""
    category: str | None
    """From a categories.json sidecar or the parent folder's name; None at the library's top level."""
    faces: int
    """Triangle count."""
    vertices: int
    """Vertex count."""
    bbox: list[list[float]]
    """[[min x, y, z], [max x, y, z]] in the file's units and frame."""
    thumbnail: bytes = b""
    """PNG bytes (empty when not loaded)."""
    indexed_at: float = field(default_factory=time.time)
    """Unix time of indexing."""
    id: int | None = None
    """Row id (None before insertion)."""
    file: str = ""
    """The library file it comes from, relative to the library folder ("": `relpath`, a loose mesh file)."""
    asset: str | None = None
    """Within a .blend: the datablock, `Object/Name` or `Collection/Name` (None: the whole file)."""
    format: str = ""
    """The file's extension without the dot ("blend", "fbx", "obj", ...; "": from `relpath`)."""
    catalog: str | None = None
    """Blender asset catalog path ("Furniture/Chairs"), resolved through blender_assets.cats.txt."""
    tags: list[str] = field(default_factory=list)
    """Asset tags."""
    description: str = ""
    author: str = ""
    license: str = ""
    mesh: str | None = None
    """The extracted GLB (a .blend asset, an FBX, USD, ...), relative to the database folder; None: the mesh
    is read from the library file itself."""

    def __post_init__(self):
        self.file = self.file or self.relpath
        self.format = self.format or Path(self.file).suffix.lower().lstrip(".")

    @property
    def source(self) -> dict | None:
        """{"file", "datablock", "name"} of a .blend asset (file relative to the library), else None."""
        if not self.asset:
            return None
        datablock, _, name = self.asset.partition("/")
        return {"file": self.file, "datablock": datablock, "name": name}


SHAPE_COLUMNS = ("id, relpath, sha256, size, mtime_ns, name, category, faces, vertices, bbox, indexed_at, file, asset, "
            "format, catalog, tags, description, author, license, mesh")
SHAPE_WIDTH = SHAPE_COLUMNS.count(",") + 1


def shape_from_row(row, thumbnail: bytes = b"") -> ShapeRecord:
    return ShapeRecord(id=row[0], relpath=row[1], sha256=row[2], size=row[3], mtime_ns=row[4], name=row[5],
                       category=row[6], faces=row[7], vertices=row[8], bbox=json.loads(row[9]), indexed_at=row[10],
                       file=row[11], asset=row[12], format=row[13], catalog=row[14], tags=json.loads(row[15]),
                       description=row[16], author=row[17], license=row[18], mesh=row[19], thumbnail=thumbnail)


@dataclass
class FileState:
    """What the database knows of one library file: whether it must be read again, and what it gave."""

    relpath: str
    sha256: str
    size: int
    mtime_ns: int
    category: str | None
    format: str
    options: str = ""
    """The extraction options its entries were made with (a .blend read with other options is read again)."""
    entries: int = 0
    """Shapes it gave (0: a .blend without assets, remembered so it is not read again every run)."""
    error: str | None = None
    """Why it could not be indexed (its content: a corrupt file is not read again until it changes)."""
