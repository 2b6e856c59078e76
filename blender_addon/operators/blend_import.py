"""A search hit from a .blend asset library brought back as itself, not as the indexed GLB: appended (a local copy
with its own materials, modifiers and rig) or linked (a collection instance, or a library override of an object),
at the 3D cursor, selected and active, in the Atelier collection.

Runs inside the `atelier.import_hit` operator when the hit's .blend is on this computer; a hit whose .blend is
elsewhere (a remote backend) is fetched as the GLB instead (`fetch_shape`).
"""

from __future__ import annotations

import os

import bpy

from ..core.assetlib import blend_link
from ..core.errors import AddonError
from .importers import atelier_collection, make_active, move_to_collection

_DATA = {"Object": "objects", "Collection": "collections"}
"""A source's datablock type -> the `bpy.data` / `libraries.load` attribute holding it."""


def _load(path: str, datablock: str, name: str, link: bool):
    """The datablock `name` of the .blend at `path`, appended or linked. AddonError when the file cannot be read or
    no longer holds it (the library changed since it was indexed)."""
    attr = _DATA[datablock]
    found = True
    try:
        with bpy.data.libraries.load(path, link=link) as (data_from, data_to):
            found = name in getattr(data_from, attr)
            if found:
                setattr(data_to, attr, [name])
    except OSError as exc:  # not a .blend, truncated, from a newer Blender...
        raise AddonError(f"Blender cannot read {path}: {exc}", "open it in Blender to see why, then index the "
                         "library again", code="blend_unreadable") from exc
    loaded = getattr(data_to, attr)[0] if found else None
    if loaded is None:
        raise AddonError(f"{path} has no {datablock.lower()} named {name!r} any more",
                         "the library changed since it was indexed: index it again, then search again",
                         code="asset_missing")
    return loaded


def _override(linked: bpy.types.Object, context) -> bpy.types.Object:
    """An editable library override of a linked object (and of what it needs: mesh, rig), as Blender's
    Object > Library Override > Make does; it can be moved while its data stays in the library file."""
    override = linked.override_hierarchy_create(context.scene, context.view_layer)
    if override is None:
        raise AddonError(f"Blender could not make a library override of {linked.name!r}",
                         "choose Append in the Search Library panel to import a local copy", code="override_failed")
    return override


def _place_object(obj: bpy.types.Object, context) -> None:
    obj.parent = None  # a parent stays in its file: the asset alone comes, at the cursor
    move_to_collection(obj, atelier_collection(context.scene))
    obj.location = context.scene.cursor.location.copy()


def _append_collection(collection: bpy.types.Collection, context) -> list[bpy.types.Object]:
    """An appended collection under the Atelier collection, moved so its instance offset sits at the cursor;
    returns its root objects (those without a parent inside it), sorted by name."""
    atelier = atelier_collection(context.scene)
    if collection.name not in atelier.children:
        atelier.children.link(collection)
    shift = context.scene.cursor.location - collection.instance_offset
    objects = list(collection.all_objects)
    roots = sorted((o for o in objects if o.parent is None or o.parent not in objects), key=lambda o: o.name)
    for obj in roots:
        obj.location = obj.location + shift
    return roots


def _instance(collection: bpy.types.Collection, context) -> bpy.types.Object:
    """A collection-instance empty of a linked collection, at the cursor."""
    empty = bpy.data.objects.new(collection.name, None)
    empty.instance_type = "COLLECTION"
    empty.instance_collection = collection
    atelier_collection(context.scene).objects.link(empty)
    empty.location = context.scene.cursor.location.copy()
    return empty


def import_blend_hit(source: dict, mode: str, context) -> tuple[list[bpy.types.ID], str]:
    """Appends or links a hit's datablock (`source`: file, datablock, name) by the panel's `mode` ("AUTO": link
    collections, append objects; "APPEND"; "LINK"). Returns (what was created, the first the active object; "append"
    or "link"). AddonError, with nothing left in the file, when the .blend cannot be read, lacks the datablock or
    Blender cannot override a linked object."""
    path, datablock, name = os.path.abspath(source["file"]), source["datablock"], source["name"]
    link = blend_link(mode, datablock)
    libraries, objects = set(bpy.data.libraries), set(bpy.data.objects)
    try:
        loaded = _load(path, datablock, name, link)
        if datablock == "Object" and link:
            created = [_override(loaded, context)]
            _place_object(created[0], context)
        elif datablock == "Object":
            loaded.asset_clear()  # a local copy, not an asset of this file (as Blender's own drag and drop does)
            _place_object(loaded, context)
            created = [loaded]
        elif link:
            created = [_instance(loaded, context)]
        else:
            loaded.asset_clear()
            created = _append_collection(loaded, context) or [loaded]
    except Exception:
        _undo(libraries, objects)
        raise
    first = next((item for item in created if isinstance(item, bpy.types.Object)), None)
    if first is not None:
        make_active(first, context)
        for obj in created[1:]:
            if isinstance(obj, bpy.types.Object) and obj.name in context.view_layer.objects:
                obj.select_set(True)
    return created, "link" if link else "append"


def _undo(libraries: set, objects: set) -> None:
    """Removes what a failed import brought: new objects, then libraries nothing uses any more."""
    for obj in [o for o in bpy.data.objects if o not in objects and o.library is None]:
        bpy.data.objects.remove(obj)
    for library in [lib for lib in bpy.data.libraries if lib not in libraries]:
        bpy.data.libraries.remove(library)
