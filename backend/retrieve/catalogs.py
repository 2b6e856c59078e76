"""Blender asset catalogs: `blender_assets.cats.txt` -> {catalog UUID: catalog path}.

Blender's format (one file per asset library, kept at its root, or beside a .blend outside any library):
    # comments and blank lines are ignored
    VERSION 1
    UUID:catalog/path:simple name
A path may itself contain ':' only escaped; Blender never writes it, so the UUID is the text before the first
':' and the simple name the text after the last one. A malformed line is a warning, never a failure: a
catalog that cannot be resolved leaves its assets uncatalogued, it does not lose them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

CATS_FILE = "blender_assets.cats.txt"
SUPPORTED_VERSION = 1


@dataclass
class Catalogs:
    """The catalogs of one cats file."""

    paths: dict[str, str] = field(default_factory=dict)
    """Catalog UUID (lower-case) -> path ("Furniture/Chairs")."""
    simple_names: dict[str, str] = field(default_factory=dict)
    """Catalog UUID -> Blender's "simple name" (kept in each asset for when the cats file is lost)."""
    warnings: list[str] = field(default_factory=list)
    """One line per problem met while reading (malformed line, unknown version, unreadable file)."""

    def path_of(self, catalog_id: str | None) -> str | None:
        return self.paths.get(catalog_id.lower()) if catalog_id else None


def parse_catalogs(text: str, source: str = CATS_FILE) -> Catalogs:
    """Parse the text of a cats file (see the module doc). Problems become `warnings`."""
    result = Catalogs()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("VERSION"):
            version = line[len("VERSION"):].strip()
            if version != str(SUPPORTED_VERSION):
                result.warnings.append(f"{source}:{number}: catalog file version {version or '?'}, expected "
                                       f"{SUPPORTED_VERSION}; reading it anyway")
            continue
        identifier, sep, rest = line.partition(":")
        if not sep:
            result.warnings.append(f"{source}:{number}: not 'UUID:path:name', ignored: {line[:80]}")
            continue
        try:
            key = str(uuid.UUID(identifier.strip()))
        except ValueError:
            result.warnings.append(f"{source}:{number}: '{identifier[:40]}' is not a UUID, line ignored")
            continue
        path, _, simple = rest.rpartition(":") if ":" in rest else (rest, "", "")
        path = "/".join(part.strip() for part in path.split("/") if part.strip())
        if not path:
            result.warnings.append(f"{source}:{number}: catalog {key} has no path, line ignored")
            continue
        if key in result.paths and result.paths[key] != path:
            result.warnings.append(f"{source}:{number}: catalog {key} defined twice; keeping '{result.paths[key]}'")
            continue
        result.paths[key] = path
        result.simple_names[key] = simple.strip()
    return result


def read_catalogs(path: str | Path) -> Catalogs:
    """Read a cats file; an unreadable one gives no catalogs and one warning."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return Catalogs(warnings=[f"cannot read {path}: {exc.strerror or exc}"])
    return parse_catalogs(text, source=str(path))


def find_catalog_file(blend_path: str | Path, library_root: str | Path | None = None) -> Path | None:
    """The cats file that governs a .blend: the nearest one in its folder or a parent, up to and including
    `library_root` (never above it: another library's catalogs do not apply). Without a root, only the
    .blend's own folder. None when there is none."""
    folder = Path(blend_path).resolve().parent
    root = Path(library_root).resolve() if library_root is not None else folder
    while True:
        candidate = folder / CATS_FILE
        if candidate.is_file():
            return candidate
        if folder == root or folder.parent == folder or root not in folder.parents:
            return None
        folder = folder.parent


def in_catalog(path: str | None, catalog: str) -> bool:
    """Whether catalog path `path` is `catalog` or below it ("Furniture/Chairs" is in "Furniture")."""
    if not path:
        return False
    wanted = catalog.strip("/")
    return path == wanted or path.startswith(wanted + "/")
