"""A long-lived extraction worker that runs INSIDE Blender's Python (bpy + stdlib only; never backend or torch).

Started by `blender_pool.BlenderPool` as `python blender_worker.py` (the bpy module) or
`blender --background --factory-startup --python blender_worker.py --`. Protocol, one line each way:
- once at start it answers `ATELIER-READY {"blender": "5.0.1"}`;
- then for each request line on stdin `{"file": abs path, "out": abs dir, "blend_objects": "assets"|"all"}`
  it answers one line `ATELIER-RESULT {json}` (see `extract_file` for the JSON); EOF on stdin ends it.
Blender prints its own messages on stdout (from C as well as Python), so the worker keeps a private copy of the
original stdout for the protocol and points fd 1 at stderr: the parent's channel carries only our lines.

What is extracted:
- `.blend`: every local object and collection with `asset_data` ("assets"), or every mesh object plus the marked
  objects and collections ("all"). Each entry is exported alone to a GLB (modifiers applied, materials and
  image textures) by linking it into a temporary scene; a collection is ONE entry holding all its objects,
  nested collections and collection instances.
- `.fbx`, `.usd*`, `.abc`: imported into an empty factory scene and exported whole as one entry ("File").
One file's failure is an `ok: false` answer with a short reason; the worker keeps serving.
"""

from __future__ import annotations

import json
import os
import re
import struct
import sys
import time
import traceback
import zlib

import bpy

READY = "ATELIER-READY "
MARKER = "ATELIER-RESULT "
TEST_HOOK_ENV = "ATELIER_BLENDER_WORKER_TEST"
"""Tests only: `hang:SUBSTR` sleeps forever and `crash:SUBSTR` kills the worker (SIGKILL) on a file whose path
contains SUBSTR, so the pool's timeout and crash handling are exercised on a real worker."""

GEOMETRY_TYPES = {"MESH", "CURVE", "CURVES", "SURFACE", "META", "FONT", "POINTCLOUD", "VOLUME"}
IMPORTED = (".fbx", ".usd", ".usda", ".usdc", ".usdz", ".abc")
NULL_UUID = "00000000-0000-0000-0000-000000000000"


class FileProblem(Exception):
    """A file that cannot be extracted: `reason` is one readable line, `hint` the fix."""

    def __init__(self, reason: str, hint: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.hint = hint


def version_text(version) -> str:
    return ".".join(str(v) for v in version)


# --- previews --------------------------------------------------------------------------------------------------

def png_bytes(width: int, height: int, rgba: bytes) -> bytes:
    """RGBA8 rows top-down -> a PNG file (stdlib zlib; Blender's Python has no Pillow)."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    stride = width * 4
    raw = b"".join(b"\x00" + rgba[y * stride:(y + 1) * stride] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def write_preview(datablock, path: str) -> str | None:
    """The ID's own stored preview image as a PNG at `path`; None when it has none (never rendered here: a
    background Blender has no preview renderer, and a made-up thumbnail would hide that the asset has none)."""
    preview = getattr(datablock, "preview", None)
    if preview is None:
        return None
    width, height = tuple(preview.image_size)
    if width <= 0 or height <= 0:
        return None
    # image_pixels holds one packed RGBA8 int per pixel (little-endian bytes R, G, B, A), rows bottom-up.
    pixels = preview.image_pixels[:]
    if len(pixels) != width * height:
        return None
    data = struct.pack(f"<{len(pixels)}i", *pixels)
    stride = width * 4
    rows = [data[y * stride:(y + 1) * stride] for y in range(height)]
    if not any(any(row) for row in rows):
        return None  # an ensured but never filled preview is all zeros: no preview, not a black square
    with open(path, "wb") as handle:
        handle.write(png_bytes(width, height, b"".join(reversed(rows))))
    return path


# --- export ----------------------------------------------------------------------------------------------------

def export_glb(path: str, scene) -> None:
    """Everything in `scene` to one GLB: modifiers applied, materials with textures, no animation/cameras/lights."""
    options = dict(filepath=path, export_format="GLB", use_selection=False, use_visible=False,
                   use_renderable=False, use_active_scene=True, export_apply=True, export_materials="EXPORT",
                   export_cameras=False, export_lights=False, export_animations=False, export_extras=False,
                   export_yup=True)
    known = set(bpy.ops.export_scene.gltf.get_rna_type().properties.keys())
    # Option names move between glTF add-on versions (4.2-5.0); pass only those this Blender knows.
    options = {k: v for k, v in options.items() if k in known}
    window = getattr(bpy.context, "window", None)
    override = dict(scene=scene, view_layer=scene.view_layers[0])
    if window is not None:
        override["window"] = window
    previous = window.scene if window is not None else None
    try:
        if window is not None:
            window.scene = scene  # the exporter reads the window's scene in some versions, the context's in others
        with bpy.context.temp_override(**override):
            result = bpy.ops.export_scene.gltf(**options)
    finally:
        if window is not None and previous is not None:
            window.scene = previous
    if "FINISHED" not in result or not os.path.isfile(path):
        raise FileProblem("Blender's glTF exporter wrote nothing")


def collection_objects(collection, seen=None) -> list:
    """All objects of a collection, its children and the collections its instancers show, depth first."""
    seen = set() if seen is None else seen
    if collection.name_full in seen:
        return []
    seen.add(collection.name_full)
    found = list(collection.objects)
    for child in collection.children:
        found += collection_objects(child, seen)
    for ob in list(found):
        if ob.instance_type == "COLLECTION" and ob.instance_collection is not None:
            found += collection_objects(ob.instance_collection, seen)
    return found


def has_geometry(objects) -> bool:
    return any(ob.type in GEOMETRY_TYPES for ob in objects)


def export_entry(datablock, path: str) -> None:
    """Export one object or collection alone. Assets are often linked into no scene at all, so the datablock is
    linked into a temporary scene (whose own view layer shows it, hidden or not) and the scene is removed."""
    scene = bpy.data.scenes.new("ATELIER_EXPORT")
    try:
        if isinstance(datablock, bpy.types.Collection):
            scene.collection.children.link(datablock)
        else:
            scene.collection.objects.link(datablock)
        layer = scene.view_layers[0]
        # An object hidden in the viewport is left out of the depsgraph the exporter reads: show it while exporting.
        hidden = []
        objects = collection_objects(datablock) if isinstance(datablock, bpy.types.Collection) else [datablock]
        for ob in objects:
            if ob.hide_viewport:
                hidden.append(ob)
                ob.hide_viewport = False
        try:
            layer.update()
            export_glb(path, scene)
        finally:
            for ob in hidden:
                ob.hide_viewport = True
    finally:
        bpy.data.scenes.remove(scene)


# --- per file --------------------------------------------------------------------------------------------------

def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:60] or "asset"


def asset_metadata(datablock) -> dict:
    data = datablock.asset_data
    if data is None:
        return dict(marked=False, catalog_id=None, catalog_simple_name="", tags=[], description="", author="",
                    license="", copyright="")
    catalog = str(getattr(data, "catalog_id", "") or "")
    return dict(
        marked=True,
        catalog_id=None if catalog in ("", NULL_UUID) else catalog,
        catalog_simple_name=str(getattr(data, "catalog_simple_name", "") or ""),
        tags=[tag.name for tag in data.tags],
        # author/license/copyright do not exist in every Blender (license and copyright came in 4.0).
        description=str(getattr(data, "description", "") or ""),
        author=str(getattr(data, "author", "") or ""),
        license=str(getattr(data, "license", "") or ""),
        copyright=str(getattr(data, "copyright", "") or ""),
    )


def blend_entries(blend_objects: str) -> list:
    """The datablocks that become entries, objects first, each list sorted by name (stable across runs)."""
    objects = [ob for ob in bpy.data.objects if ob.library is None
               and (ob.asset_data is not None or (blend_objects == "all" and ob.type == "MESH"))]
    collections = [c for c in bpy.data.collections if c.library is None and c.asset_data is not None]
    return sorted(objects, key=lambda d: d.name) + sorted(collections, key=lambda d: d.name)


def extract_blend(path: str, out: str, blend_objects: str) -> dict:
    try:
        bpy.ops.wm.open_mainfile(filepath=path, load_ui=False)
    except RuntimeError as exc:
        # Blender's message repeats the path twice ("Loading "/p" failed: Failed to read blend file '/p': why").
        raise FileProblem(f"Blender cannot open it: {first_line(exc).rsplit(': ', 1)[-1]}",
                          "the file is corrupt, truncated or not a .blend; re-save it from Blender") from exc
    file_version = tuple(bpy.data.version)
    if file_version[:2] > tuple(bpy.app.version[:2]):
        raise FileProblem(
            f"saved by Blender {file_version[0]}.{file_version[1]}, newer than this Blender "
            f"{version_text(bpy.app.version)}",
            f"index it with Blender {file_version[0]}.{file_version[1]} or newer: --blender PATH "
            "(or ATELIER_BLENDER)")
    assets = []
    for index, datablock in enumerate(blend_entries(blend_objects)):
        kind = "Collection" if isinstance(datablock, bpy.types.Collection) else "Object"
        stem = os.path.join(out, f"{index:04d}-{kind[0]}-{safe_name(datablock.name)}")
        entry = dict(datablock=kind, name=datablock.name, glb=None, preview=None, error=None,
                     **asset_metadata(datablock))
        try:
            entry["preview"] = write_preview(datablock, stem + ".png")
            objects = collection_objects(datablock) if kind == "Collection" else [datablock]
            if not has_geometry(objects):
                types = sorted({ob.type for ob in objects}) or ["nothing"]
                raise FileProblem(f"no geometry to show (holds {', '.join(t.lower() for t in types)})")
            export_entry(datablock, stem + ".glb")
            entry["glb"] = stem + ".glb"
        except Exception as exc:  # one asset's failure is reported on that asset; the others still export
            entry["error"] = exc.reason if isinstance(exc, FileProblem) else f"export failed: {first_line(exc)}"
        assets.append(entry)
    return dict(file_version=version_text(file_version), assets=assets)


def import_file(path: str, ext: str) -> None:
    if ext == ".fbx":
        bpy.ops.import_scene.fbx(filepath=path)
    elif ext == ".abc":
        bpy.ops.wm.alembic_import(filepath=path, as_background_job=False)
    else:
        bpy.ops.wm.usd_import(filepath=path)


def extract_imported(path: str, out: str, ext: str) -> dict:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    try:
        import_file(path, ext)
    except RuntimeError as exc:
        raise FileProblem(f"Blender's {ext[1:].upper()} importer failed: {first_line(exc)}",
                          "the file is corrupt, encrypted or not a valid " + ext[1:].upper()) from exc
    scene = bpy.context.scene
    if not has_geometry(scene.objects):
        raise FileProblem(f"Blender's {ext[1:].upper()} importer read no geometry from it",
                          "the file is empty, encrypted, or holds no meshes")
    stem = os.path.splitext(os.path.basename(path))[0]
    glb = os.path.join(out, f"0000-F-{safe_name(stem)}.glb")
    export_glb(glb, scene)
    entry = dict(datablock="File", name=stem, glb=glb, preview=None, error=None, **asset_metadata_none())
    return dict(file_version=None, assets=[entry])


def asset_metadata_none() -> dict:
    return dict(marked=False, catalog_id=None, catalog_simple_name="", tags=[], description="", author="",
                license="", copyright="")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    # Blender's operator errors read "Error: ..." on the first line and repeat details below.
    line = next((t for t in text if t.strip()), type(exc).__name__)
    return line.removeprefix("Error: ").strip()[:300]


def test_hook(path: str) -> None:
    for rule in filter(None, os.environ.get(TEST_HOOK_ENV, "").split(",")):
        action, _, needle = rule.partition(":")
        if needle and needle in path:
            if action == "hang":
                time.sleep(10**6)
            elif action == "crash":
                os.kill(os.getpid(), 9)


def extract_file(request: dict) -> dict:
    """One request -> one answer.

    OK: {"ok": true, "file", "blender": "5.0.1", "file_version": "5.0.113"|null, "seconds",
         "assets": [{"datablock": "Object"|"Collection"|"File", "name", "marked", "glb": path|null,
                     "preview": png path|null, "error": null|reason, "catalog_id": uuid|null,
                     "catalog_simple_name", "tags": [str], "description", "author", "license", "copyright"}]}
    Failed: {"ok": false, "file", "blender", "seconds", "error": reason, "hint": fix}
    """
    start = time.perf_counter()
    path = request.get("file", "")
    answer = dict(file=path, blender=version_text(bpy.app.version))
    try:
        out = request["out"]
        blend_objects = request.get("blend_objects", "assets")
        if blend_objects not in ("assets", "all"):
            raise FileProblem(f"unknown blend_objects {blend_objects!r}", "use 'assets' or 'all'")
        test_hook(path)
        if not os.path.isfile(path):
            raise FileProblem("file not found", "check the path")
        os.makedirs(out, exist_ok=True)
        ext = os.path.splitext(path)[1].lower()
        if ext == ".blend":
            result = extract_blend(path, out, blend_objects)
        elif ext in IMPORTED:
            result = extract_imported(path, out, ext)
        else:
            raise FileProblem(f"not a format Blender extracts here ({ext or 'no extension'})",
                              "use .blend, .fbx, .usd, .usda, .usdc, .usdz or .abc")
        answer.update(ok=True, **result)
    except FileProblem as exc:
        answer.update(ok=False, error=exc.reason, hint=exc.hint)
    except Exception as exc:  # anything Blender raises on one file is that file's failure, never the worker's
        traceback.print_exc(file=sys.stderr)
        answer.update(ok=False, error=f"{type(exc).__name__}: {first_line(exc)}", hint="")
    answer["seconds"] = round(time.perf_counter() - start, 3)
    return answer


def main() -> None:
    sys.stdout.flush()
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # from here Blender's own stdout noise lands on stderr

    def send(prefix: str, payload: dict) -> None:
        channel.write("\n" + prefix + json.dumps(payload, ensure_ascii=True) + "\n")
        channel.flush()

    send(READY, {"blender": version_text(bpy.app.version), "pid": os.getpid()})
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            request = json.loads(line)
        except json.JSONDecodeError as exc:
            send(MARKER, dict(ok=False, file="", error=f"bad request line: {exc}", hint="", seconds=0.0))
            continue
        send(MARKER, extract_file(request))


if __name__ == "__main__":
    main()
