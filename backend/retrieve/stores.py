"""Which store holds a shape library, chosen by `--store` and a URI (`--db`).

    embedded   a local folder: SQLite + FAISS (`LibraryDB`), the default for one artist
    milvus     what pymilvus takes: a local file path ending in .db (Milvus Lite: tests, laptops) or a server,
               http(s)://HOST:PORT (Milvus standalone or distributed; a team points every artist at one);
               the token, when the server needs one, comes from ATELIER_MILVUS_TOKEN (never in the URI)

Both offer the same methods to the indexer, `search` and the service (`MilvusStore` mirrors `LibraryDB`).
pymilvus is imported only when the Milvus store is used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from backend.errors import InvalidInputError
from shared_protocol import limits

STORES = limits.STORES
"""The store kinds `--store` takes."""
DEFAULT_STORE = "embedded"
SCHEMES = limits.MILVUS_SCHEMES
"""URL schemes of a Milvus server URI."""
DEFAULT_PORT = 19530


@dataclass(frozen=True)
class StoreURI:
    """A checked store location."""

    store: str
    """"embedded" or "milvus"."""
    uri: str
    """The folder (embedded), the Milvus Lite file or the server URL (scheme://host:port), as the store opens it."""
    remote: bool = False
    """A Milvus server (not a local file or folder)."""


def check_store(store) -> str:
    if store not in STORES:
        raise InvalidInputError(f"unknown store {store!r}", hint=f"use one of: {', '.join(STORES)}")
    return store


def parse_store_uri(db, store: str = DEFAULT_STORE) -> StoreURI:
    """The store location `--db` names for `store`; InvalidInputError naming what is wrong and the fix."""
    store = check_store(store)
    if isinstance(db, os.PathLike):
        db = os.fspath(db)
    if not isinstance(db, str) or not db.strip():
        raise InvalidInputError(f"the database location must be a non-empty path or URI, got {db!r:.80}",
                                hint="pass --db DIR (embedded) or --db lib.db / --db http://HOST:19530 (milvus)")
    db = db.strip()
    has_scheme = "://" in db
    if store == "embedded":
        if has_scheme:
            raise InvalidInputError(f"the embedded store takes a folder, not the URI {db}",
                                    hint="pass --store milvus to use a Milvus server, or --db a local folder")
        return StoreURI("embedded", str(Path(db).expanduser()))
    if has_scheme:
        parsed = urlparse(db)
        scheme = parsed.scheme.lower()
        if scheme not in SCHEMES:
            raise InvalidInputError(f"the Milvus URI {db} has scheme {parsed.scheme!r}",
                                    hint=f"use {' or '.join(s + '://' for s in SCHEMES)}HOST:PORT, e.g. "
                                         f"http://localhost:{DEFAULT_PORT}, or a local .db file for Milvus Lite")
        try:
            port = parsed.port
        except ValueError as exc:
            raise InvalidInputError(f"the Milvus URI {db} has a bad port: {exc}",
                                    hint=f"e.g. http://localhost:{DEFAULT_PORT}") from exc
        if not parsed.hostname:
            raise InvalidInputError(f"the Milvus URI {db} names no host",
                                    hint=f"e.g. http://localhost:{DEFAULT_PORT}")
        if parsed.username or parsed.password:
            raise InvalidInputError(f"the Milvus URI {parsed.hostname}:{port} carries credentials",
                                    hint="put the token in the ATELIER_MILVUS_TOKEN environment variable instead")
        if parsed.path not in ("", "/") or parsed.query or parsed.fragment:
            raise InvalidInputError(f"the Milvus URI {db} has a path or query ({parsed.path}{parsed.query})",
                                    hint=f"give only scheme://HOST:PORT, e.g. http://localhost:{DEFAULT_PORT}")
        host = f"[{parsed.hostname}]" if ":" in parsed.hostname else parsed.hostname
        return StoreURI("milvus", f"{scheme}://{host}:{port or DEFAULT_PORT}", remote=True)
    path = Path(db).expanduser()
    if path.suffix != ".db":
        raise InvalidInputError(f"the Milvus Lite location {db} does not end in .db",
                                hint="name a file like lib.db (Milvus Lite), or http://HOST:19530 for a server")
    if not path.parent.resolve().is_dir():
        raise InvalidInputError(f"the folder of the Milvus Lite file {db} does not exist ({path.parent})",
                                hint="create the folder first, or choose another path")
    if path.exists() and not path.is_dir():
        raise InvalidInputError(f"{db} is a file, not a Milvus Lite database (Milvus Lite keeps a folder there)",
                                hint="choose another .db path")
    return StoreURI("milvus", str(path))


def store_exists(db, store: str = DEFAULT_STORE) -> bool:
    """Whether a local store holds a library at `db` (a server is asked only when opened: always True)."""
    where = parse_store_uri(db, store)
    if where.store == "embedded":
        from backend.retrieve.database import db_exists

        return db_exists(where.uri)
    return where.remote or Path(where.uri).is_dir()


def open_store(db, store: str = DEFAULT_STORE, **options):
    """An existing library (for searching); InvalidInputError when there is none or it cannot be reached.
    options: `vector_config` (embedded), `config`/`token` (milvus)."""
    where = parse_store_uri(db, store)
    if where.store == "embedded":
        from backend.retrieve.database import LibraryDB

        return LibraryDB.open(where.uri, **options)
    from backend.retrieve.milvus_store import MilvusStore

    return MilvusStore.open(where.uri, **options)


def create_store(db, store: str = DEFAULT_STORE, *, clip: str, encoder: str, embed_dim: int, views_json: str,
                 **options):
    """A library opened for indexing, created when missing; an existing one must match clip, encoder, embedding
    size, views, descriptor and point encoder (InvalidInputError naming both). options: `descriptor`,
    `points_encoder`, `points_path` (`backend.retrieve.descriptors`), and the store's own."""
    where = parse_store_uri(db, store)
    if where.store == "embedded":
        from backend.retrieve.database import LibraryDB

        db = LibraryDB.create(where.uri, clip=clip, encoder=encoder, embed_dim=embed_dim, views_json=views_json,
                              **options)
        if db.embed_dim != int(embed_dim):  # the same CLIP name with another size: a renamed or retrained model
            found = db.embed_dim
            db.close()
            raise InvalidInputError(f"the shape library database {where.uri} holds {found}-d vectors, not "
                                    f"{int(embed_dim)}-d ones", "index with the model that built it, or into "
                                    "another folder: vectors of two models are never mixed")
        return db
    from backend.retrieve.milvus_store import MilvusStore

    return MilvusStore.create(where.uri, clip=clip, encoder=encoder, embed_dim=embed_dim, views_json=views_json,
                              **options)
