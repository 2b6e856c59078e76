"""Blender asset libraries in the Search Library panel, without bpy: where each registered library's index lives,
what a search hit says about the .blend it came from, and how a hit's metadata reads in the panel.

A hit of a .blend asset carries `source` = {"file": the .blend on the backend's machine, "datablock": "Object" |
"Collection", "name": the datablock's name}; loose mesh files (and hits from backends older than asset libraries)
carry no `source` and import as the indexed GLB (`fetch_shape`).
"""

from __future__ import annotations

import hashlib
import os
import re
from urllib.parse import urlsplit

from .errors import AddonError
from .protocol import limits

BLEND_DATABLOCKS = ("Object", "Collection")
"""Datablock types a hit's `source` may name and the add-on can append or link."""
BLEND_IMPORT_MODES = ("AUTO", "APPEND", "LINK")
"""The panel's choice for .blend hits: AUTO links collections and appends objects."""
BLEND_OBJECTS = ("assets", "all")
"""The index job's `blend_objects`: objects and collections marked as assets, or every mesh object."""


TEAM_LIBRARY = "milvus:team"
"""The panel's `search_library` value for the team library: the Milvus store the preferences name."""
TEAM_HINT = ("set Preferences > Add-ons > Atelier > Team library to a Milvus server (http://host:19530) or a "
             "Milvus Lite file (/shared/atelier.db)")


def team_store_uri(text: str) -> str:
    """The team library's Milvus location from the preference: a server URL `http(s)://host[:port]` (`tcp://` too;
    the token stays in the backend's $ATELIER_MILVUS_TOKEN, never in the URL) or an absolute Milvus Lite `.db` path
    on the backend's machine. AddonError naming what is wrong and the fix."""
    text = (text or "").strip()
    if not text:
        raise AddonError("no team library is set", TEAM_HINT, code="team_library")
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme.lower() not in limits.MILVUS_SCHEMES:
            raise AddonError(f"the team library {text!r} has scheme {parts.scheme!r}; a Milvus server takes "
                             f"{', '.join(s + '://' for s in limits.MILVUS_SCHEMES)}", TEAM_HINT, code="team_library")
        try:
            port = parts.port
        except ValueError:
            raise AddonError(f"the team library {text!r} has a bad port", "use http://host:19530",
                             code="team_library") from None
        if not parts.hostname:
            raise AddonError(f"the team library {text!r} names no host", "use http://host:19530", code="team_library")
        if parts.username or parts.password:
            raise AddonError("the team library URL holds a user or password", "leave them out: the backend reads "
                             "the Milvus token from $ATELIER_MILVUS_TOKEN", code="team_library")
        if parts.path.strip("/") or parts.query or parts.fragment:
            raise AddonError(f"the team library {text!r} has a path or query", "use just http://host:19530",
                             code="team_library")
        return f"{parts.scheme.lower()}://{parts.hostname}:{port or 19530}"
    if not os.path.isabs(os.path.expanduser(text)) or not text.lower().endswith(".db"):
        raise AddonError(f"the team library {text!r} is neither a server URL nor an absolute Milvus Lite .db file",
                         TEAM_HINT, code="team_library")
    return text


def library_key(path: str) -> str:
    """A registered library's identity: its folder, absolute and normalised (a library renamed in the Preferences
    keeps its key; two libraries with one name in different folders do not share it)."""
    return os.path.normcase(os.path.normpath(os.path.abspath(os.path.expanduser(path.strip())))) if path.strip() else ""


def library_db(root: str, path: str) -> str:
    """The database folder of the library at `path`, under `root`: `<folder name>-<8 hex of the key>`, readable
    and unique per folder (the same folder registered twice shares one index, which is what it is)."""
    key = library_key(path)
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", os.path.basename(key.rstrip("\\/")) or "library").strip("_")[:40]
    return os.path.join(root, f"{name or 'library'}-{hashlib.sha1(key.encode('utf-8')).hexdigest()[:8]}")


def hit_source(hit: dict) -> dict | None:
    """The .blend a hit came from, {"file", "datablock", "name"}, or None when it has none the add-on can append
    (a loose mesh file, an older backend, a datablock type it does not know): those import as the indexed GLB."""
    source = hit.get("source")
    if not isinstance(source, dict):
        return None
    file, datablock, name = source.get("file"), source.get("datablock"), source.get("name")
    if not (isinstance(file, str) and file.strip() and isinstance(name, str) and name):
        return None
    if datablock not in BLEND_DATABLOCKS:
        return None
    return {"file": file, "datablock": datablock, "name": name}


def blend_link(mode: str, datablock: str) -> bool:
    """Whether a .blend hit is linked (True) or appended, for the panel's import mode."""
    if mode not in BLEND_IMPORT_MODES:
        raise ValueError(f"the import mode must be one of {', '.join(BLEND_IMPORT_MODES)}, got {mode!r}")
    return mode == "LINK" or (mode == "AUTO" and datablock == "Collection")


def _score(value) -> str | None:
    try:
        return f"{float(value):.3f}"
    except (TypeError, ValueError):
        return None


def hit_lines(hit: dict) -> list[tuple[str, str]]:
    """What a hit's grid cell shows below its name and score, as (text, icon): the catalog, the tags and how the
    score was fused (CLIP and keyword). Fields an older backend does not send are left out."""
    lines = []
    catalog = hit.get("catalog")
    if isinstance(catalog, str) and catalog.strip():
        lines.append((catalog.strip(), "ASSET_MANAGER"))
    tags = hit.get("tags")
    if isinstance(tags, list) and tags:
        lines.append((", ".join(str(tag) for tag in tags), "BOOKMARKS"))
    clip, keyword = _score(hit.get("clip_score")), _score(hit.get("keyword_score"))
    if clip is not None or keyword is not None:
        lines.append(("  ".join(part for part in (clip and f"clip {clip}", keyword and f"kw {keyword}") if part),
                      "SORTSIZE"))
    return lines
