"""Blender's formats in the indexer: the worker pool, and one extracted file into database entries.

A .blend gives one entry per asset (`chairs.blend/Collection/Chair_Oak`: relpath = file / datablock / name,
as Blender's own append paths), with its catalog path (its catalog UUID resolved through the nearest
blender_assets.cats.txt), tags, description, author, licence and its own preview as the thumbnail. An FBX,
USD or Alembic file gives one entry for the whole file. Each entry's mesh is the GLB the worker exported,
kept in the database folder (`extracted/`), so `fetch_shape` serves it without running Blender again.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from backend.errors import InvalidInputError, JobCancelled
from backend.geometry.load import load_mesh
from backend.geometry.png import encode_png
from backend.geometry.validate import validate_mesh
from backend.retrieve.database import ShapeRecord
from backend.retrieve.entry_views import embed_mesh, reason

EXTRACTED = "extracted"
"""Folder of the database holding the GLBs extracted from Blender's formats."""
NIL_UUID = "00000000-0000-0000-0000-000000000000"
"""An asset in no catalog ("Unassigned")."""

def find_blender_or_warn(config, files, warnings: list[str]) -> list[str] | None:
    """The command that starts a Blender worker, or None with one warning line (the other formats still
    index). A Blender the user named that does not exist is an error, not a warning: they asked for it."""
    from backend.geometry.blender_pool import find_blender, no_blender_message

    found = find_blender(config.blender)
    if found is None:
        warnings.append(no_blender_message(sum(1 for f in files if f.needs_blender)))
    return found


@contextlib.contextmanager
def extracted_files(paths: list[Path], config, db_dir: Path):
    """Yields an iterator of `ExtractedFile`s (completion order) from a pool of Blender workers with the run's
    settings; their scratch folder is in the database folder. Leaving the block stops the workers."""
    from backend.geometry.blender_pool import BlenderConfig, BlenderPool

    scratch = Path(db_dir) / EXTRACTED / ".work"
    shutil.rmtree(scratch, ignore_errors=True)  # what a killed run left
    settings = BlenderConfig(blender=config.blender, workers=config.workers, timeout_s=config.file_timeout_s,
                             blend_objects=config.blend_objects)
    with BlenderPool(settings) as pool:
        results = pool.extract(paths, scratch)
        try:
            yield results
        finally:
            results.close()
    shutil.rmtree(scratch, ignore_errors=True)


_catalog_cache: dict[tuple[Path, int], object] = {}


def _catalogs(blend: Path, library: Path):
    """The `Catalogs` of the nearest blender_assets.cats.txt (None when there is none)."""
    from backend.retrieve.catalogs import find_catalog_file, read_catalogs

    cats = find_catalog_file(blend, library)
    if cats is None:
        return None
    key = (cats, cats.stat().st_mtime_ns)
    if key not in _catalog_cache:
        _catalog_cache[key] = read_catalogs(cats)
    return _catalog_cache[key]


def _thumbnail(preview: Path | None, size: int) -> bytes | None:
    """The asset's own preview as the stored thumbnail (size x size RGB PNG), or None."""
    if preview is None:
        return None
    try:
        with Image.open(preview) as image:
            image.load()
            rgba = image.convert("RGBA")
    except (OSError, ValueError):
        return None
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(white, rgba).convert("RGB").resize((size, size), Image.LANCZOS)
    return encode_png(np.asarray(rgb))


def entry_relpath(file_relpath: str, datablock: str, name: str) -> str:
    """The entry key: the file itself for a whole-file entry, else file / datablock / name."""
    return file_relpath if datablock == "File" else f"{file_relpath}/{datablock}/{name}"


def file_entries(result, f, sha: str, library: Path, db_dir: Path, encoder, views, max_faces: int, device,
                 blend_objects: str = "assets"):
    """([(record, vectors)] of one extracted file, [(asset relpath, reason)] of assets that failed, warnings).
    Raises InvalidInputError when the whole file failed (the worker's reason)."""
    if result.error:
        raise InvalidInputError(result.error, result.hint or "")
    warnings: list[str] = []
    if f.format == "blend" and not result.assets:
        warnings.append(f"{f.relpath}: no assets in it; mark objects or collections as assets in Blender "
                        "(right click > Mark as Asset), or index with --blend-objects all")
    catalogs = _catalogs(f.path, library) if f.format == "blend" else None
    if catalogs is not None:
        warnings += [f"{f.relpath}: {w}" for w in catalogs.warnings]
    store = Path(db_dir) / EXTRACTED / sha[:2] / f"{sha}-{blend_objects if f.format == 'blend' else 'file'}"
    store.mkdir(parents=True, exist_ok=True)
    entries, failures = [], []
    for number, asset in enumerate(result.assets):
        relpath = entry_relpath(f.relpath, asset.datablock, asset.name)
        if asset.error or asset.glb is None:
            failures.append((relpath, asset.error or "Blender exported no mesh for it"))
            continue
        try:
            glb = store / f"{number:04d}.glb"
            shutil.copyfile(asset.glb, glb)
            mesh = validate_mesh(load_mesh(glb), max_faces=max_faces)
            vectors, thumbnail, geometry = embed_mesh(mesh, encoder, views, device)
        except (JobCancelled, KeyboardInterrupt):
            raise
        except Exception as exc:  # one broken asset never loses the file's others
            failures.append((relpath, reason(exc)))
            continue
        catalog = None
        if asset.catalog_id and asset.catalog_id != NIL_UUID:
            catalog = catalogs.path_of(asset.catalog_id) if catalogs is not None else None
            if catalog is None:
                warnings.append(f"{relpath}: its catalog {asset.catalog_simple_name or asset.catalog_id} is not in "
                                "any blender_assets.cats.txt of the library (left without a catalog)")
        record = ShapeRecord(
            relpath=relpath, sha256=sha, size=f.size, mtime_ns=f.mtime_ns,
            name=asset.name if asset.datablock != "File" else f.path.stem, category=f.category,
            thumbnail=_thumbnail(asset.preview, views.thumbnail_size) or thumbnail, file=f.relpath,
            asset=None if asset.datablock == "File" else f"{asset.datablock}/{asset.name}", format=f.format,
            catalog=catalog, tags=list(asset.tags), description=asset.description or "", author=asset.author or "",
            license=asset.license or "", mesh=glb.relative_to(db_dir).as_posix(), **geometry)
        entries.append((record, vectors))
    return entries, failures, warnings


def prune_extracted(db_dir: Path, referenced: set[str]) -> None:
    """Deletes extracted folders no shape refers to any more (files removed, changed or re-read)."""
    root = Path(db_dir) / EXTRACTED
    if not root.is_dir():
        return
    keep = {Path(mesh).parent.name for mesh in referenced}
    for shard in root.glob("??"):
        for folder in shard.iterdir():
            if folder.name not in keep:
                shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):  # not empty: still in use
            shard.rmdir()
