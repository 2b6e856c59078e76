"""A shape library in Milvus, through pymilvus: Milvus Lite (a local `.db` path) or a server (`http://host:19530`).

The same methods, arguments and results as `LibraryDB` for what the indexer, `search` and the service use,
so the two stores are interchangeable (`backend.retrieve.stores`). Collections: `milvus_schema`. Everything
(metadata, thumbnails, keyword words, vectors) lives in Milvus, so every artist pointing at one server sees
the same library. Only the GLBs extracted from .blend/FBX/USD files live in a local folder (`directory`):
beside a Milvus Lite file (`lib.db` -> `lib.db.files/`), or for a server in ATELIER_MILVUS_FILES (a folder the
team shares, so fetch_shape works for everyone) else ~/.cache/atelier/milvus/HOST_PORT_PREFIX/.

Atomic writes without transactions. Milvus has none, so each write is an *op* made visible at one instant:
  1. one upsert into meta allocates ids (next_id += n + 1: the op's txn number and its new shape ids) AND
     records the op (`op:<txn>` = {file, old shape ids, the file's new state, committed: false});
  2. the new vector rows, then the shape rows, are inserted, each carrying txn;
  3. COMMIT POINT: `op:<txn>` is upserted with committed: true;
  4. the files row is written, the old shapes' vector rows then shape rows are deleted, `op:<txn>` deleted.
Every read first reads meta (one small query) and adds a visibility condition to its expression: rows of a
txn at or above next_id (a write begun after the read) are hidden, rows of an uncommitted op are hidden, and
the old shape ids of a committed op are hidden. So a reader sees a file's old entries or its new ones, never
both nor half; at worst, a file that commits between a read's meta query and its data query is missing from
that one read. A writer killed at any instant leaves op rows behind; `create` (the next writer) finishes
the committed ones and deletes the rows of the uncommitted ones, while readers keep hiding what they hide.
Removals are ops committed at once (no new rows). Metadata updates (`update_file_state`: size, mtime,
category, a move) upsert whole rows by primary key, which Milvus applies per row.
One writer at a time per library (Milvus Lite enforces it with a file lock; on a server, run one indexer).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from backend.errors import InvalidInputError
from backend.external import require_pymilvus
from backend.retrieve import milvus_schema as ms
from backend.retrieve.db_schema import FileState, ShapeRecord
from backend.retrieve.filters import ShapeFilter
from backend.retrieve.keywords import keyword_score
from backend.retrieve.descriptors import descriptor_kinds
from backend.retrieve.query import KINDS
from backend.retrieve.store_meta import StoreMeta, check_vector_kinds

INDEX_HINT = "index a library first: `atelier index LIBRARY_DIR --store milvus --db URI`"


class MilvusStore(StoreMeta):
    """A library in Milvus. Open with `MilvusStore.open` (search) or `MilvusStore.create` (indexing)."""

    def __init__(self, uri: str, client, config: ms.MilvusConfig, directory: Path):
        self.uri = uri
        self.config = config
        self.directory = directory
        """Local folder for extracted GLBs (module docstring)."""
        self._client = client
        self._lock = threading.RLock()
        self._names = {name: f"{config.prefix}_{name}" for name in ("meta", "files", "shapes", *(f"vectors_{k}" for k in KINDS))}
        self._counts_cache: dict[str, tuple[tuple, dict[str, int]]] = {}
        self._closed = False

    elsewhere = "under another collection prefix / Milvus file"

    @property
    def where(self) -> str:
        return ms.describe(self.uri, self.config.prefix)

    @property
    def library_label(self) -> str:
        return f"shape library in the {self.where}"

    # -- opening -------------------------------------------------------------------------------------

    @classmethod
    def _connect(cls, uri: str, config: ms.MilvusConfig, token: str | None) -> "MilvusStore":
        pymilvus = require_pymilvus()
        if ms.is_lite(uri):
            directory = Path(uri + ".files")
            ms.use_lite(uri)
        else:
            parsed = urlparse(uri)
            cache = os.environ.get("ATELIER_MILVUS_FILES")
            directory = Path(cache).expanduser() if cache else (
                Path.home() / ".cache" / "atelier" / "milvus" / f"{parsed.hostname}_{parsed.port or 19530}_{config.prefix}")
        token = token if token is not None else os.environ.get("ATELIER_MILVUS_TOKEN", "")
        try:
            client = pymilvus.MilvusClient(uri=uri, token=token or "", timeout=config.connect_timeout_s)
            client.list_collections(timeout=config.connect_timeout_s)  # answers, or fails within the timeout
        except Exception as exc:
            if ms.is_lite(uri):
                ms.release_lite(uri)
            raise ms.connect_error(uri, exc) from exc
        return cls(uri, client, config, directory)

    def _load(self) -> None:
        """Loads every collection (Milvus searches loaded ones only; a reopened Milvus Lite file starts released);
        a library has the vectors collections of its descriptor's kinds only."""
        existing = set(self._call(self._client.list_collections))
        for full in (full for full in self._names.values() if full in existing):
            state = self._call(self._client.get_load_state, full)
            if "Loaded" not in str(state.get("state", "")):
                self._call(self._client.load_collection, full)

    @classmethod
    def open(cls, uri: str, config: ms.MilvusConfig | None = None, token: str | None = None) -> "MilvusStore":
        """An existing library; InvalidInputError (with the `atelier index` hint) when there is none."""
        config = config or ms.MilvusConfig()
        if ms.is_lite(uri) and not Path(uri).exists():
            raise InvalidInputError(f"no shape library at the Milvus Lite file {uri}: it does not exist", INDEX_HINT)
        self = cls._connect(uri, config, token)
        try:
            if not self._call(self._client.has_collection, self._names["meta"]):
                raise InvalidInputError(f"the {self.where} holds no shape library ({self._names['meta']} is missing)",
                                        INDEX_HINT)
            self._load()
            meta = self.meta()
            if meta.get("format") != ms.FORMAT or meta.get("version") != str(ms.VERSION):
                raise InvalidInputError(f"the {self.where} holds format {meta.get('format')!r} version "
                                        f"{meta.get('version')!r}, expected {ms.FORMAT!r} version {ms.VERSION}",
                                        "index the library again under another collection prefix")
        except BaseException:
            self.close()
            raise
        return self

    @classmethod
    def create(cls, uri: str, *, clip: str, encoder: str, embed_dim: int, views_json: str,
               config: ms.MilvusConfig | None = None, token: str | None = None, descriptor: str = "views",
               points_encoder: str = "", points_path: str = "", **_ignored) -> "MilvusStore":
        """Opens the library for indexing, creating its collections when missing, and finishes or undoes the
        writes a killed writer left (module docstring). An existing library must have been built with the same
        CLIP, encoder, embedding size, views, descriptor and point encoder, else InvalidInputError naming both:
        vectors are never mixed. `_ignored` takes LibraryDB.create's `vector_config`."""
        config = config or ms.MilvusConfig()
        self = cls._connect(uri, config, token)
        try:
            client, data_type = self._client, require_pymilvus().DataType
            existing = set(self._call(client.list_collections))
            if self._names["meta"] not in existing:
                schemas = ms.make_schemas(client, data_type, embed_dim, descriptor_kinds(descriptor))
                for name, schema in schemas.items():
                    full = self._names[name]
                    if full in existing:
                        continue
                    params = client.prepare_index_params()
                    if name.startswith("vectors_"):
                        params.add_index("vector", index_type=config.index_type, metric_type="IP",
                                         params={"M": config.hnsw_m, "efConstruction": config.ef_construction}
                                         if config.index_type == "HNSW" else {})
                    else:
                        params.add_index("_v", index_type="FLAT", metric_type="L2")
                    self._call(client.create_collection, full, schema=schema, index_params=params,
                               consistency_level="Strong")
                # Last: a library whose meta exists has every collection.
                self._upsert("meta", [self._meta_row(k, v) for k, v in {
                    "format": ms.FORMAT, "version": str(ms.VERSION), "clip": clip, "encoder": encoder,
                    "embed_dim": str(int(embed_dim)), "views": views_json, "library": "", "catalog": "0",
                    "next_id": "1", "descriptor": descriptor, "points_encoder": points_encoder,
                    "points_path": points_path}.items()])
                return self
            self._load()
            meta = self.meta()
            if int(meta.get("embed_dim", -1)) != int(embed_dim):
                raise InvalidInputError(
                    f"the {self.where} holds {meta.get('embed_dim')}-d vectors (CLIP {meta.get('clip')!r}), not "
                    f"{int(embed_dim)}-d ones", "index with the CLIP that built it, or under another collection "
                    "prefix / Milvus file: vectors of two models are never mixed")
            self.check_compatible(clip=clip, encoder=encoder, views_json=views_json, descriptor=descriptor,
                                  points_encoder=points_encoder)
            if points_path and points_path != meta.get("points_path"):
                self._upsert("meta", [self._meta_row("points_path", points_path)])
            self._recover()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with contextlib.suppress(Exception):
                self._client.close()
            if ms.is_lite(self.uri):
                ms.release_lite(self.uri)

    def __enter__(self) -> "MilvusStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- calls into Milvus ----------------------------------------------------------------------------

    def _call(self, fn, *args, **kwargs):
        """One pymilvus call with the configured timeout; a connection failure becomes InvalidInputError."""
        try:
            return fn(*args, timeout=self.config.call_timeout_s, **kwargs)
        except Exception as exc:
            if type(exc).__name__ in ("MilvusUnavailableException",) or "unavailable" in str(exc).lower() or (
                    "deadline" in str(exc).lower()):
                raise ms.connect_error(self.uri, exc) from exc
            raise

    def _query(self, name: str, expr: str, fields: list[str], limit: int | None = None) -> list[dict]:
        """Rows of one collection matching `expr` (every row when limit is None, read in batches)."""
        full = self._names[name]
        if limit is not None:
            return list(self._call(self._client.query, full, filter=expr, output_fields=fields, limit=int(limit)))
        iterator = self._client.query_iterator(full, batch_size=4096, filter=expr or "", output_fields=fields,
                                               timeout=self.config.call_timeout_s)
        rows: list[dict] = []
        try:
            while batch := iterator.next():
                rows += batch
        finally:
            iterator.close()
        return rows

    def _upsert(self, name: str, rows: list[dict]) -> None:
        if rows:
            self._call(self._client.upsert, self._names[name], rows)

    def _insert(self, name: str, rows: list[dict]) -> None:
        if rows:
            self._call(self._client.insert, self._names[name], rows)

    def _delete(self, name: str, expr: str) -> None:
        self._call(self._client.delete, self._names[name], filter=expr)

    @staticmethod
    def _meta_row(key: str, value: str) -> dict:
        return {"key": key, "value": value, "_v": ms.DUMMY}

    # -- meta ----------------------------------------------------------------------------------------

    def _meta_rows(self) -> dict[str, str]:
        return {r["key"]: r["value"] for r in self._query("meta", "", ["key", "value"], limit=16_384)}

    def meta(self) -> dict[str, str]:
        """key -> value, as LibraryDB's (generation = next_id: it grows with every change of the vectors)."""
        meta = {k: v for k, v in self._meta_rows().items() if not k.startswith("op:")}
        meta["generation"] = meta.get("next_id", "0")
        return meta

    def set_library_root(self, root: str) -> None:
        self._upsert("meta", [self._meta_row("library", root)])

    # -- visibility (module docstring) ---------------------------------------------------------------

    def _visible(self, id_field: str = "id") -> str:
        """The condition a row must meet to be seen now: committed, and not replaced by a committed op."""
        rows = self._meta_rows()
        hidden_txns, hidden_ids = [], []
        for key, value in rows.items():
            if key.startswith("op:"):
                op = json.loads(value)
                if op["committed"]:
                    hidden_ids += op["old_ids"]
                else:
                    hidden_txns.append(op["txn"])
        parts = [f"txn < {int(rows.get('next_id', 1))}"]
        if hidden_txns:
            parts.append(f"txn not in {ms.id_list(hidden_txns)}")
        if hidden_ids:
            parts.append(f"{id_field} not in {ms.id_list(hidden_ids)}")
        return " and ".join(parts)

    def _stamp(self) -> tuple:
        """What the metadata counts depend on (next_id, catalog counter, ops in flight)."""
        rows = self._meta_rows()
        return rows.get("next_id"), rows.get("catalog"), tuple(sorted(k for k in rows if k.startswith("op:")))

    # -- writing -------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def batch(self):
        """LibraryDB's bulk-loading group; here each put stays its own atomic op (Milvus has no transaction)."""
        with self._lock:
            yield self

    def _begin(self, file: str, old_ids: list[int], state: FileState | None, new: int, committed: bool) -> dict:
        """Step 1: allocates a txn and `new` shape ids and records the op, in one upsert."""
        next_id = int(self._meta_rows()["next_id"])
        op = {"txn": next_id, "file": file, "old_ids": sorted(int(i) for i in old_ids), "committed": committed,
              "state": None if state is None else state.__dict__.copy(), "time": time.time()}
        self._upsert("meta", [self._meta_row("next_id", str(next_id + new + 1)),
                              self._meta_row(f"op:{next_id}", json.dumps(op))])
        return op

    def _finish(self, op: dict) -> None:
        """Step 4 of a committed op: the file's row, old rows away (vectors first), the op record away."""
        state = op["state"]
        if state is None:
            self._delete("files", f"relpath == {ms.lit(op['file'])}")
        else:
            self._upsert("files", [ms.file_row(FileState(**state), op["time"])])
        if op["old_ids"]:
            for start in range(0, len(op["old_ids"]), 1000):
                chunk = ms.id_list(op["old_ids"][start:start + 1000])
                for kind in self.kinds:
                    self._delete(f"vectors_{kind}", f"shape_id in {chunk}")
                self._delete("shapes", f"id in {chunk}")
        self._delete("meta", f"key == {ms.lit('op:' + str(op['txn']))}")

    def _recover(self) -> None:
        """Finishes committed ops a killed writer left and deletes the rows of uncommitted ones."""
        with self._lock:
            for key, value in sorted(self._meta_rows().items()):
                if not key.startswith("op:"):
                    continue
                op = json.loads(value)
                if op["committed"]:
                    self._finish(op)
                else:
                    for kind in self.kinds:
                        self._delete(f"vectors_{kind}", f"txn == {int(op['txn'])}")
                    self._delete("shapes", f"txn == {int(op['txn'])}")
                    self._delete("meta", f"key == {ms.lit(key)}")

    def _write_op(self, file: str, old_ids: list[int], state: FileState | None,
                  shapes: list[tuple[ShapeRecord, dict[str, np.ndarray]]]) -> list[int]:
        dim, kinds = self.embed_dim, self.kinds
        for _, vectors in shapes:
            check_vector_kinds(vectors, kinds, dim, max_rows=2047)
        rows = []
        with self._lock:
            op = self._begin(file, old_ids, state, len(shapes), committed=not shapes)
            txn = op["txn"]
            ids = [txn + 1 + n for n in range(len(shapes))]
            for shape_id, (record, _) in zip(ids, shapes):
                rows.append(ms.shape_row(record, shape_id, txn))  # ValueError (too large) before any row goes in
            for kind in kinds:
                self._insert(f"vectors_{kind}", [
                    {"pk": shape_id * 2048 + view, "shape_id": shape_id, "view": view, "txn": txn,
                     "vector": np.asarray(row, dtype=np.float32).tolist()}
                    for shape_id, (_, vectors) in zip(ids, shapes) for view, row in enumerate(vectors[kind])])
            self._insert("shapes", rows)
            if shapes:
                op["committed"] = True  # the commit point: one row, one upsert
                self._upsert("meta", [self._meta_row(f"op:{txn}", json.dumps(op))])
            self._finish(op)
        for shape_id, (record, _) in zip(ids, shapes):
            record.id = shape_id
        return ids

    def put_shape(self, record: ShapeRecord, vectors: dict[str, np.ndarray]) -> int:
        """A shape that is a whole file (a loose mesh) and its vectors, replacing any shape at its relpath."""
        old = [int(r["id"]) for r in self._query("shapes", f"relpath == {ms.lit(record.relpath)}", ["id"], 16_384)]
        state = FileState(record.file, record.sha256, record.size, record.mtime_ns, record.category, record.format,
                          entries=1)
        return self._write_op(record.file, old, state, [(record, vectors)])[0]

    def put_file(self, state: FileState, shapes: list[tuple[ShapeRecord, dict[str, np.ndarray]]]) -> list[int]:
        """Replaces everything one library file gave with `shapes` and records its state, as one op: readers
        and a killed run see the old entries or the new ones, never a mix or a duplicate. The new ids."""
        state.entries = len(shapes)
        with self._lock:
            old = [int(r["id"]) for r in self._query("shapes", f"file == {ms.lit(state.relpath)}", ["id"])]
            return self._write_op(state.relpath, old, state, shapes)

    def remove_file(self, relpath: str) -> int:
        """Removes a library file's record and every shape it gave; the number of shapes removed."""
        with self._lock:
            old = [int(r["id"]) for r in self._query("shapes", f"file == {ms.lit(relpath)}", ["id"])]
            known = self._query("files", f"relpath == {ms.lit(relpath)}", ["relpath"], 1)
            if old or known:
                self._write_op(relpath, old, None, [])
        return len(old)

    def remove_shape(self, relpath: str) -> bool:
        """Removes one shape and its vectors; False when there was none at `relpath`."""
        with self._lock:
            found = self._query("shapes", f"relpath == {ms.lit(relpath)}", ["id", "file"], 16_384)
            if not found:
                return False
            file = found[0]["file"]
            rows = self._query("files", f"relpath == {ms.lit(file)}", ms.FILE_FIELDS, 1)
            state = ms.state_of(rows[0]) if rows else None
            if state is not None:
                state.entries -= len(found)
                state = state if state.entries > 0 else None
            self._write_op(file, [int(r["id"]) for r in found], state, [])
        return True

    def update_file_state(self, relpath: str, *, size: int, mtime_ns: int, new_relpath: str | None = None,
                          category: str | None = None, set_category: bool = False) -> None:
        """A file's new size/mtime (content unchanged), and optionally a move or a new category, for the file and
        every shape it gave; ids, txns and vectors stay. Rows are upserted whole (shapes first: a kill between
        leaves a files row the next run sees as gone and a file it indexes again, never a duplicate)."""
        with self._lock:
            rows = self._query("files", f"relpath == {ms.lit(relpath)}", ms.FILE_FIELDS + ["indexed_at"], 1)
            shapes = self._query("shapes", f"file == {ms.lit(relpath)}", ["*"])
            for row in shapes:
                row.update(size=int(size), mtime_ns=int(mtime_ns))
                if set_category:
                    row["category"] = category
                if new_relpath is not None:
                    if row["asset"] is None:  # a loose file's shape is named after the file
                        row["name"] = Path(new_relpath).stem
                    row["relpath"] = new_relpath + row["relpath"][len(relpath):]
                    row["file"] = new_relpath
            self._upsert("shapes", [ms.shape_row(ms.record_of(row), row["id"], row["txn"]) for row in shapes])
            if rows:
                row = {**rows[0], "size": int(size), "mtime_ns": int(mtime_ns), "_v": ms.DUMMY}
                if set_category:
                    row["category"] = category
                if new_relpath is not None:
                    row["relpath"] = new_relpath
                self._upsert("files", [row])
                if new_relpath is not None and new_relpath != relpath:
                    self._delete("files", f"relpath == {ms.lit(relpath)}")
            catalog = int(self._meta_rows().get("catalog", "0"))
            self._upsert("meta", [self._meta_row("catalog", str(catalog + 1))])

    # -- reading -------------------------------------------------------------------------------------

    def count(self) -> int:
        """Shapes visible. With no write in flight, counted without the visibility condition (which makes Milvus
        Lite read every row: 0.7 s at 10,000 shapes against 0.03 s): a write begun meanwhile may count early."""
        quiet = not any(key.startswith("op:") for key in self._meta_rows())
        rows = self._call(self._client.query, self._names["shapes"], filter="" if quiet else self._visible(),
                          output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def file_states(self) -> dict[str, FileState]:
        """relpath -> what is recorded of each library file indexed."""
        return {r["relpath"]: ms.state_of(r) for r in self._query("files", "", ms.FILE_FIELDS)}

    def shapes(self, ids: list[int] | None = None, thumbnails: bool = False) -> list[ShapeRecord]:
        """Shape records (all, by id, or those of `ids` in that order; unknown ids are left out)."""
        fields = ms.SHAPE_FIELDS + (["thumbnail"] if thumbnails else [])
        visible = self._visible()
        if ids is None:
            rows = sorted(self._query("shapes", visible, fields), key=lambda r: r["id"])
        else:
            wanted = [int(i) for i in ids]
            rows = []
            for start in range(0, len(wanted), 1000):
                chunk = wanted[start:start + 1000]
                rows += self._query("shapes", ms.both(visible, f"id in {ms.id_list(chunk)}"), fields, len(chunk))
            order = {i: n for n, i in enumerate(wanted)}
            rows.sort(key=lambda r: order[r["id"]])
        return [ms.record_of(r) for r in rows]

    def shape(self, shape_id: int) -> ShapeRecord:
        """One shape with its thumbnail; InvalidInputError for an unknown id."""
        found = self.shapes([shape_id], thumbnails=True)
        if not found:
            raise InvalidInputError(f"the {self.library_label} has no shape {shape_id}",
                                    "use a shape_id from a search result of this library")
        return found[0]

    def _counts(self, what: str) -> dict[str, int]:
        """category / catalog / tag / format -> shape count, cached until the library changes."""
        stamp = self._stamp()
        held = self._counts_cache.get(what)
        if held is not None and held[0] == stamp:
            return held[1]
        field = {"category": "category", "catalog": "catalog", "tag": "tags", "format": "format"}[what]
        counts: dict[str, int] = {}
        for row in self._query("shapes", self._visible(), [field]):
            values = json.loads(row[field]) if what == "tag" else [row[field]]
            for value in values:
                if value is not None:
                    counts[value] = counts.get(value, 0) + 1
        counts = dict(sorted(counts.items()))
        self._counts_cache[what] = (stamp, counts)
        return counts

    def categories(self) -> dict[str, int]:
        return self._counts("category")

    def catalogs(self) -> dict[str, int]:
        return self._counts("catalog")

    def tags(self) -> dict[str, int]:
        return self._counts("tag")

    def formats(self) -> dict[str, int]:
        return self._counts("format")

    def shape_ids(self, category: "str | ShapeFilter | None" = None) -> np.ndarray:
        """[M] int64 ids of every shape, of one category's, or of those a ShapeFilter lets through."""
        if isinstance(category, str):
            category = ShapeFilter(category=category)
        rows = self._query("shapes", ms.both(self._visible(), ms.filter_expr(category)), ["id"])
        return np.array(sorted(r["id"] for r in rows), dtype=np.int64)

    def mesh_paths(self) -> set[str]:
        """The extracted GLBs shapes refer to (relative to `directory`)."""
        return {r["mesh"] for r in self._query("shapes", "mesh is not null", ["mesh"])}

    def keyword_rows(self, terms: list[str], limit: int) -> list[tuple[int, tuple[str, str, str, str]]]:
        """(shape id, its four keyword columns) of the best `limit` shapes holding any of `terms`, as LibraryDB's.
        Milvus Lite has no full-text index: matched with `like "% word %"` on the space-padded word columns,
        ranked by `keywords.keyword_score` (the name weighs most), then id."""
        terms = [t for t in terms if t and t.isalnum()]  # only such words are ever stored (keywords.words)
        if not terms:
            return []
        match = " or ".join(f'{field} like "% {term} %"' for term in terms for field in ms.KEYWORD_FIELDS)
        rows = self._query("shapes", ms.both(self._visible(), match), ["id", *ms.KEYWORD_FIELDS])
        found = [(int(r["id"]), tuple(r[f].strip() for f in ms.KEYWORD_FIELDS)) for r in rows]
        found.sort(key=lambda item: (-keyword_score(terms, item[1]), item[0]))
        return found[:int(limit)]

    # -- vector search -------------------------------------------------------------------------------

    def search_vectors(self, kind: str, query: np.ndarray, k: int,
                       shape_filter: ShapeFilter | None = None) -> list[tuple[int, float]]:
        """The k best shapes for a [D] unit query against `kind` vectors: [(shape id, best view's cosine)], best
        first; only shapes `shape_filter` lets through. k x candidate_factor views are fetched and aggregated
        to shapes, growing x4 until k shapes are found (as `VectorIndex.search`)."""
        if kind not in self.kinds:
            raise ValueError(f"kind must be one of {self.kinds}, got {kind!r}")
        expr = self._visible("shape_id")
        if shape_filter is not None and not shape_filter.empty:
            allowed = self.shape_ids(shape_filter)
            if len(allowed) == 0:
                return []
            expr = ms.both(expr, f"shape_id in {ms.id_list(allowed)}")
        data = [np.asarray(query, dtype=np.float32).reshape(-1).tolist()]
        n = min(self.config.max_search, k * max(1, self.config.candidate_factor))
        while True:
            params = {"metric_type": "IP"}
            if self.config.index_type == "HNSW":
                params["params"] = {"ef": max(self.config.ef_search, n)}
            found = self._call(self._client.search, self._names[f"vectors_{kind}"], data=data, limit=n, filter=expr,
                               output_fields=["shape_id"], search_params=params)[0]
            hits: dict[int, float] = {}
            for hit in found:
                shape_id = int(hit["entity"]["shape_id"])
                if shape_id not in hits:
                    hits[shape_id] = float(hit["distance"])
                    if len(hits) == k:
                        break
            if len(hits) >= k or len(found) < n or n >= self.config.max_search:
                return sorted(hits.items(), key=lambda item: (-item[1], item[0]))
            n = min(self.config.max_search, n * 4)

    def scores_of(self, kind: str, query: np.ndarray, shape_ids: list[int]) -> dict[int, float]:
        """Each listed shape's best-view cosine with a [D] unit query (exact)."""
        if not shape_ids:
            return {}
        query = np.asarray(query, dtype=np.float32).reshape(-1)
        best: dict[int, float] = {}
        visible = self._visible("shape_id")
        for start in range(0, len(shape_ids), 500):
            chunk = ms.id_list(shape_ids[start:start + 500])
            for row in self._query(f"vectors_{kind}", ms.both(visible, f"shape_id in {chunk}"), ["shape_id", "vector"]):
                score = float(np.asarray(row["vector"], dtype=np.float32) @ query)
                best[int(row["shape_id"])] = max(score, best.get(int(row["shape_id"]), -2.0))
        return best

    def refresh_indexes(self) -> None:
        """Milvus updates its indexes in place; a flush seals what was written (a no-op for Milvus Lite)."""
        for name in self._names.values():
            with contextlib.suppress(Exception):
                self._call(self._client.flush, name)
