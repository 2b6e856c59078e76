"""The Milvus collections of a shape library (`MilvusStore`), rows <-> records, filter expressions, and the
connection helpers (Milvus Lite's in-process server, the error for a server that cannot be reached).

Collections, named `{prefix}_{name}` (prefix "atelier" unless configured; one prefix = one library):
    meta            key -> value: format, version, clip, encoder, embed_dim, views, library, catalog (a
                    counter bumped by metadata changes), next_id (the id allocator and the write generation),
                    and one `op:<txn>` row per write in flight (see `MilvusStore`'s docstring)
    files           one row per library file indexed (as `db_schema.FileState`), keyed by relpath
    shapes          one row per shape: its metadata, thumbnail (base64 in chunks: Milvus has no blob type),
                    the keyword columns (`keywords.index_text`, space-padded for `like "% word %"`), the
                    catalog and every catalog above it and the lower-cased tags (ARRAY fields, so the
                    filters are `array_contains`), and `txn`, the write that made it
    vectors_shaded  one row per view: shape_id, view, txn, vector (FLOAT_VECTOR, inner product)
    vectors_lines   the same for the line drawings
Milvus requires a vector field in every collection: meta, files and shapes carry a constant 2-d one (`_v`).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import threading
from dataclasses import dataclass

from backend.errors import InvalidInputError
from backend.retrieve.db_schema import FileState, ShapeRecord
from backend.retrieve.filters import ShapeFilter
from backend.retrieve.keywords import index_text

FORMAT = "atelier-library-milvus"
VERSION = 1
"""Format version of the collections; `MilvusStore.open` refuses others."""
DUMMY = [1.0, 0.0]
"""The value of the placeholder vector field of meta, files and shapes."""
MAX_TEXT = 65_535
"""Milvus's longest VARCHAR (bytes)."""
THUMB_CHUNK = 60_000
"""Base64 characters per element of a shape's thumbnail array."""
MAX_THUMB_CHUNKS = 64
"""Thumbnail array capacity: about 2.8 MB of PNG."""
MAX_LIST = 256
"""Most tags / catalog levels per shape."""


@dataclass(frozen=True)
class MilvusConfig:
    """How a library is laid out in Milvus and searched there."""

    prefix: str = "atelier"
    """Collection name prefix (letters, digits, underscores): several libraries can share one server."""
    index_type: str = "HNSW"
    """Vector index: "HNSW" (approximate, the default) or "FLAT" (exact; small libraries, tests)."""
    hnsw_m: int = 32
    """HNSW graph degree (as `VectorIndexConfig.hnsw_m`)."""
    ef_construction: int = 80
    """HNSW build-time search width."""
    ef_search: int = 512
    """HNSW query-time search width (raised to the candidate count when larger)."""
    candidate_factor: int = 4
    """Views fetched per wanted shape in the first round (k x factor), before aggregating by shape."""
    connect_timeout_s: float = 3.0
    """Seconds to wait for the server to answer when opening: an unreachable one fails within it."""
    call_timeout_s: float = 300.0
    """Seconds one call may take (a full scan of a large library on Milvus Lite takes seconds)."""
    max_search: int = 16_384
    """Milvus's largest search limit (topk): candidate growth stops there."""

    def __post_init__(self):
        if not self.prefix or not self.prefix.replace("_", "").isalnum() or not self.prefix[0].isalpha():
            raise ValueError(f"the Milvus collection prefix must be letters, digits and underscores starting with a "
                             f"letter, got {self.prefix!r}")
        if self.index_type not in ("HNSW", "FLAT"):
            raise ValueError(f"index_type must be 'HNSW' or 'FLAT', got {self.index_type!r}")


def lit(value: str) -> str:
    """A string literal for a Milvus filter expression (JSON escaping: quotes and backslashes)."""
    return json.dumps(value, ensure_ascii=False)


def id_list(ids) -> str:
    return "[" + ",".join(str(int(i)) for i in ids) + "]"


def catalog_levels(catalog: str | None) -> list[str]:
    """"A/B/C" -> ["A", "A/B", "A/B/C"]: what a catalog-subtree filter matches with array_contains."""
    if not catalog:
        return []
    parts = [p for p in catalog.split("/") if p]
    return ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]


def filter_expr(shape_filter: ShapeFilter | None) -> str:
    """The Milvus expression on `shapes` for a ShapeFilter ("" when nothing is filtered)."""
    if shape_filter is None or shape_filter.empty:
        return ""
    parts = []
    if shape_filter.category is not None:
        parts.append(f"category == {lit(shape_filter.category)}")
    if shape_filter.catalog is not None:
        parts.append(f"array_contains(catalogs, {lit(shape_filter.catalog.strip('/'))})")
    if shape_filter.tag is not None:
        parts.append(f"array_contains(tags_lower, {lit(shape_filter.tag.lower())})")
    if shape_filter.format is not None:
        parts.append(f"format == {lit(shape_filter.format)}")
    return " and ".join(parts)


def both(*exprs: str) -> str:
    return " and ".join(f"({e})" for e in exprs if e)


def make_schemas(client, data_type, embed_dim: int, kinds: tuple[str, ...]) -> dict[str, object]:
    """name -> collection schema (see the module docstring); one vectors collection per kind of the library's
    descriptor."""

    def schema():
        return client.create_schema(auto_id=False, enable_dynamic_field=False)

    def text(s, name, nullable=False, length=MAX_TEXT):
        s.add_field(name, data_type.VARCHAR, max_length=length, nullable=nullable)

    def array(s, name, capacity, length=1024):
        s.add_field(name, data_type.ARRAY, element_type=data_type.VARCHAR, max_capacity=capacity, max_length=length)

    meta = schema()
    meta.add_field("key", data_type.VARCHAR, is_primary=True, max_length=256)
    text(meta, "value")
    meta.add_field("_v", data_type.FLOAT_VECTOR, dim=2)

    files = schema()
    files.add_field("relpath", data_type.VARCHAR, is_primary=True, max_length=4096)
    for name in ("sha256", "format", "options"):
        text(files, name)
    for name in ("size", "mtime_ns", "entries"):
        files.add_field(name, data_type.INT64)
    files.add_field("indexed_at", data_type.DOUBLE)
    text(files, "category", nullable=True)
    text(files, "error", nullable=True)
    files.add_field("_v", data_type.FLOAT_VECTOR, dim=2)

    shapes = schema()
    shapes.add_field("id", data_type.INT64, is_primary=True)
    for name in ("txn", "size", "mtime_ns", "faces", "vertices"):
        shapes.add_field(name, data_type.INT64)
    shapes.add_field("indexed_at", data_type.DOUBLE)
    for name in ("relpath", "sha256", "name", "bbox", "file", "format", "tags", "description", "author", "license",
                 "w_name", "w_tags", "w_catalog", "w_description"):
        text(shapes, name)
    for name in ("category", "asset", "catalog", "mesh"):
        text(shapes, name, nullable=True)
    array(shapes, "catalogs", MAX_LIST)
    array(shapes, "tags_lower", MAX_LIST)
    array(shapes, "thumbnail", MAX_THUMB_CHUNKS, MAX_TEXT)
    shapes.add_field("_v", data_type.FLOAT_VECTOR, dim=2)

    out = {"meta": meta, "files": files, "shapes": shapes}
    for kind in kinds:
        vectors = schema()
        vectors.add_field("pk", data_type.INT64, is_primary=True)
        for name in ("shape_id", "view", "txn"):
            vectors.add_field(name, data_type.INT64)
        vectors.add_field("vector", data_type.FLOAT_VECTOR, dim=int(embed_dim))
        out[f"vectors_{kind}"] = vectors
    return out


SHAPE_FIELDS = ["id", "txn", "relpath", "sha256", "size", "mtime_ns", "name", "category", "faces", "vertices", "bbox",
                "indexed_at", "file", "asset", "format", "catalog", "tags", "description", "author", "license", "mesh"]
"""The shapes fields a ShapeRecord is made of (thumbnail aside)."""
KEYWORD_FIELDS = ["w_name", "w_tags", "w_catalog", "w_description"]


def shape_row(record: ShapeRecord, shape_id: int, txn: int) -> dict:
    """The shapes row of a record. ValueError when a field does not fit Milvus's limits."""
    thumb = base64.b64encode(record.thumbnail or b"").decode()
    chunks = [thumb[i:i + THUMB_CHUNK] for i in range(0, len(thumb), THUMB_CHUNK)]
    if len(chunks) > MAX_THUMB_CHUNKS:
        raise ValueError(f"the thumbnail of {record.relpath} is {len(record.thumbnail)} bytes, more than Milvus rows hold "
                         f"(about {MAX_THUMB_CHUNKS * THUMB_CHUNK * 3 // 4} bytes)")
    tags = [str(t) for t in record.tags]
    levels = catalog_levels(record.catalog)
    if len(tags) > MAX_LIST or len(levels) > MAX_LIST:
        raise ValueError(f"{record.relpath} has more than {MAX_LIST} tags or catalog levels")
    words = index_text(record.name, tags, record.catalog, record.description)
    row = {"id": int(shape_id), "txn": int(txn), "relpath": record.relpath, "sha256": record.sha256,
           "size": int(record.size), "mtime_ns": int(record.mtime_ns), "name": record.name, "category": record.category,
           "faces": int(record.faces), "vertices": int(record.vertices), "bbox": json.dumps(record.bbox),
           "indexed_at": float(record.indexed_at), "file": record.file, "asset": record.asset, "format": record.format,
           "catalog": record.catalog, "tags": json.dumps(tags), "description": record.description,
           "author": record.author, "license": record.license, "mesh": record.mesh,
           "catalogs": levels, "tags_lower": [t.lower() for t in tags], "thumbnail": chunks, "_v": DUMMY}
    row.update({name: f" {value} " for name, value in zip(KEYWORD_FIELDS, words)})
    for name, value in row.items():
        if isinstance(value, str) and len(value.encode()) > MAX_TEXT:
            raise ValueError(f"the {name} of {record.relpath} is longer than Milvus's {MAX_TEXT} bytes")
    return row


def record_of(row: dict) -> ShapeRecord:
    thumbnail = base64.b64decode("".join(row["thumbnail"])) if row.get("thumbnail") else b""
    return ShapeRecord(id=int(row["id"]), relpath=row["relpath"], sha256=row["sha256"], size=int(row["size"]),
                       mtime_ns=int(row["mtime_ns"]), name=row["name"], category=row["category"],
                       faces=int(row["faces"]), vertices=int(row["vertices"]), bbox=json.loads(row["bbox"]),
                       indexed_at=float(row["indexed_at"]), file=row["file"], asset=row["asset"],
                       format=row["format"], catalog=row["catalog"], tags=json.loads(row["tags"]),
                       description=row["description"], author=row["author"], license=row["license"],
                       mesh=row["mesh"], thumbnail=thumbnail)


FILE_FIELDS = ["relpath", "sha256", "size", "mtime_ns", "category", "format", "options", "entries", "error"]


def file_row(state: FileState, indexed_at: float) -> dict:
    return {"relpath": state.relpath, "sha256": state.sha256, "size": int(state.size), "mtime_ns": int(state.mtime_ns),
            "category": state.category, "format": state.format, "options": state.options,
            "entries": int(state.entries), "indexed_at": float(indexed_at), "error": state.error, "_v": DUMMY}


def state_of(row: dict) -> FileState:
    return FileState(row["relpath"], row["sha256"], int(row["size"]), int(row["mtime_ns"]), row["category"],
                     row["format"], row["options"], int(row["entries"]), row["error"])


# -- connecting ---------------------------------------------------------------------------------------

_lite_users: dict[str, int] = {}  # Milvus Lite path -> open stores in this process (its server is released at 0)
_lite_lock = threading.Lock()


def is_lite(uri: str) -> bool:
    return not uri.startswith(("http://", "https://", "tcp://", "unix:"))


def describe(uri: str, prefix: str) -> str:
    return f"Milvus {'Lite file' if is_lite(uri) else 'server'} {uri} (collections {prefix}_*)"


def use_lite(uri: str) -> None:
    """Counts one more store of this process on the Milvus Lite file `uri`."""
    with _lite_lock:
        _lite_users[os.path.abspath(uri)] = _lite_users.get(os.path.abspath(uri), 0) + 1


def release_lite(uri: str) -> None:
    """Stops this process's Milvus Lite server for `uri` (releasing its file lock) once no store uses it."""
    path = os.path.abspath(uri)
    with _lite_lock:
        users = _lite_users.get(path, 0) - 1
        if users > 0:
            _lite_users[path] = users
            return
        _lite_users.pop(path, None)
    with contextlib.suppress(Exception):
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(uri)


def connect_error(uri: str, exc: Exception) -> InvalidInputError:
    """The error for a Milvus that cannot be opened or reached, naming the address and the fix."""
    if "deadline" in str(exc).lower():
        return InvalidInputError(f"Milvus at {uri} did not answer in time: {exc}",
                                 "check the server's health and load, or raise MilvusConfig.call_timeout_s")
    if is_lite(uri):
        return InvalidInputError(f"cannot open the Milvus Lite file {uri}: {exc}",
                                 "another process may hold it (Milvus Lite allows one: stop it, or run a Milvus "
                                 "server and pass --db http://HOST:19530); check the folder exists and is writable")
    return InvalidInputError(f"cannot reach the Milvus server at {uri}: {exc}",
                             "start it (docker run ... milvusdb/milvus, see README), check the address and port, "
                             "and the token in ATELIER_MILVUS_TOKEN")
